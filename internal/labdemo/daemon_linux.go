package labdemo

import (
	"fmt"
	"sync/atomic"
	"time"

	"hybridgw/internal/labproc"
	"hybridgw/internal/netlab"
)

// daemon is an hcpe or hag this process started in a lab namespace.
type daemon struct {
	name     string
	p        *labproc.Proc
	stopping atomic.Bool
}

// startDaemon runs `<bin> run -c <cfg>` inside ns (labproc.Start: its own
// process group, SIGTERM if we die) with its output in logPath. died is
// called, from a goroutine that ends when the daemon exits, if it exits
// before stop.
func startDaemon(ns *netlab.NS, name, bin, cfg, logPath string, died func(error)) (*daemon, error) {
	p, err := labproc.Start(ns, name, logPath, bin, "run", "-c", cfg)
	if err != nil {
		return nil, err
	}
	d := &daemon{name: name, p: p}
	go func() {
		<-p.Done()
		if !d.stopping.Load() {
			err := p.Err()
			if err == nil {
				err = fmt.Errorf("exited with status 0")
			}
			died(fmt.Errorf("%s (pid %d) exited unexpectedly: %w", name, p.Pid(), err))
		}
	}()
	return d, nil
}

// stop sends SIGTERM and waits for the daemon to exit; after 10 s it kills
// it (only this pid). It returns an error when the daemon did not exit
// cleanly on SIGTERM.
func (d *daemon) stop() error {
	if d.stopping.Swap(true) || !d.p.Running() {
		<-d.p.Done()
		return nil // already reported by died, or stopped before
	}
	if err := d.p.Stop(10 * time.Second); err != nil {
		return err
	}
	if err := d.p.Err(); err != nil {
		return fmt.Errorf("%s exited with %v after SIGTERM", d.name, err)
	}
	return nil
}
