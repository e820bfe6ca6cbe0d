package labproc

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"hybridgw/internal/netlab"
)

// Proc is a child process started in a lab namespace by Start.
type Proc struct {
	name string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // of Wait; read after done
}

// Start runs argv inside ns (`ip netns exec` replaces itself with the
// program, so the pid is the program's) with its output in the file
// logPath, whose directory it creates. The child runs in its own process
// group, so a Ctrl-C on the terminal reaches only this program, which
// stops its children in order; and it gets SIGTERM when this program dies
// (see start).
func Start(ns *netlab.NS, name, logPath string, argv ...string) (*Proc, error) {
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	p := &Proc{name: name, log: logPath, done: make(chan struct{})}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", ns.Name}, argv...)...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := start(p.cmd); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() { p.err = p.cmd.Wait(); f.Close(); close(p.done) }()
	return p, nil
}

// Name is the name Start was given.
func (p *Proc) Name() string { return p.name }

// Log is the path of the process's output.
func (p *Proc) Log() string { return p.log }

// Pid is the process's pid.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Cmd is the running command, for signals other than Stop's.
func (p *Proc) Cmd() *exec.Cmd { return p.cmd }

// Done is closed once the process has exited and its log is closed.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is how the process exited (nil for status 0); valid after Done.
func (p *Proc) Err() error {
	<-p.done
	return p.err
}

// Running says whether the process has not exited yet.
func (p *Proc) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Kill sends SIGKILL to the process (its pid only) if it still runs.
func (p *Proc) Kill() {
	if p.Running() {
		_ = p.cmd.Process.Kill()
	}
}

// Stop sends SIGTERM and waits up to grace for the process to exit, then
// kills it (its pid only) and returns an error saying so. A process that
// already exited is not signalled. How it exited is Err's.
func (p *Proc) Stop(grace time.Duration) error {
	if p == nil || !p.Running() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s (pid %d) did not stop within %v of SIGTERM; killed", p.name, p.Pid(), grace)
	}
}

// LogTail is the last n lines of the process's output.
func (p *Proc) LogTail(n int) string { return TailFile(p.log, n) }
