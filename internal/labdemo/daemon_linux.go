package labdemo

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"hybridgw/internal/netlab"
)

// daemon is an hcpe or hag this process started in a lab namespace.
type daemon struct {
	name     string
	log      string
	cmd      *exec.Cmd
	done     chan struct{} // closed when the process has exited
	err      error         // of Wait; read after done
	stopping atomic.Bool
}

// startDaemon runs `ip netns exec <ns> <bin> run -c <cfg>` (ip execs the
// daemon, so the pid is the daemon's) with its output in logPath. It runs
// in its own process group, so a Ctrl-C on the terminal reaches only us and
// we stop the daemons in order; if we die, the kernel sends it SIGTERM.
// died is called if it exits before stop.
func startDaemon(ns *netlab.NS, name, bin, cfg, logPath string, died func(error)) (*daemon, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	d := &daemon{name: name, log: logPath, done: make(chan struct{})}
	d.cmd = exec.Command("ip", "netns", "exec", ns.Name, bin, "run", "-c", cfg)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := d.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() {
		d.err = d.cmd.Wait()
		logf.Close()
		close(d.done)
		if !d.stopping.Load() {
			if d.err == nil {
				d.err = fmt.Errorf("exited with status 0")
			}
			died(fmt.Errorf("%s (pid %d) exited unexpectedly: %w", name, d.cmd.Process.Pid, d.err))
		}
	}()
	return d, nil
}

func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits for the daemon to exit; after 10 s it kills
// it (only this pid). It returns an error when the daemon did not exit
// cleanly on SIGTERM.
func (d *daemon) stop() error {
	if d.stopping.Swap(true) || d.exited() {
		<-d.done
		return nil // already reported by died, or stopped before
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		if d.err != nil {
			return fmt.Errorf("%s exited with %v after SIGTERM", d.name, d.err)
		}
		return nil
	case <-time.After(10 * time.Second):
	}
	_ = d.cmd.Process.Kill()
	select {
	case <-d.done:
	case <-time.After(2 * time.Second):
	}
	return fmt.Errorf("%s (pid %d) did not stop within 10 s of SIGTERM; killed", d.name, d.cmd.Process.Pid)
}

// tailFile returns the last n lines of a file.
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
