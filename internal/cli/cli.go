// Package cli is the cobra wiring both daemons share: run, check-config and
// version, signal handling and logger setup. The daemons themselves live in
// internal/cpe and internal/gateway; this package only connects them to a
// command line.
package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"hybridgw/internal/config"
	"hybridgw/internal/logging"
	"hybridgw/internal/version"
)

// Runner is an assembled daemon.
type Runner interface {
	Run(ctx context.Context) error
}

// Reloader is a daemon that can apply a changed config file while it runs.
type Reloader interface {
	Reload(path string) error
}

// reloadOnHUP calls r.Reload for every SIGHUP until the returned stop is
// called. A refused config is logged with every problem; the daemon goes on
// with the one in force.
func reloadOnHUP(ctx context.Context, r Reloader, path string, log *slog.Logger) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		for {
			select {
			case <-ch:
				if err := r.Reload(path); err != nil {
					log.Error("reload failed", "config", path, "err", err)
				}
			case <-done:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
		<-exited
	}
}

// Spec describes one daemon's command line.
type Spec[C any] struct {
	Name    string
	Short   string
	Load    func(path string) (C, error)
	Log     func(C) config.Log
	Summary func(C) []any // key/value pairs logged at start
	New     func(C, *slog.Logger) (Runner, error)
	Extra   []*cobra.Command
}

// Root builds the daemon's root command.
func Root[C any](s Spec[C]) *cobra.Command {
	root := &cobra.Command{
		Use:           s.Name,
		Short:         s.Short,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	var path string
	run := &cobra.Command{
		Use:   "run",
		Short: "Run the daemon until SIGINT or SIGTERM",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := s.Load(path)
			if err != nil {
				return err
			}
			lc := s.Log(cfg)
			log, err := logging.New(os.Stderr, lc.Level, lc.Format)
			if err != nil {
				return err
			}
			log.Info("starting", append([]any{"version", version.Version, "commit", version.Commit, "config", path}, s.Summary(cfg)...)...)
			d, err := s.New(cfg, log)
			if err != nil {
				return err
			}
			ctx, stop := signalContext(log)
			defer stop()
			if r, ok := d.(Reloader); ok {
				defer reloadOnHUP(ctx, r, path, log)()
			}
			if err := d.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
			log.Info("stopped")
			return nil
		},
	}
	check := &cobra.Command{
		Use:   "check-config",
		Short: "Load and validate the config file, report every problem, then exit",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := s.Load(path); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", path)
			return nil
		},
	}
	for _, c := range []*cobra.Command{run, check} {
		c.Flags().StringVarP(&path, "config", "c", "/etc/hybridgw/"+s.Name+".yaml", "config file")
	}
	ver := &cobra.Command{
		Use:   "version",
		Short: "Print the version and commit",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", s.Name, version.String())
		},
	}
	root.AddCommand(append([]*cobra.Command{run, check, ver}, s.Extra...)...)
	return root
}

// Main runs root and exits with 1 on error, printing it as the operator
// should read it: one problem per line.
func Main(root *cobra.Command) {
	if err := root.Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", root.Name(), err)
		os.Exit(1)
	}
}

// signalContext is cancelled by the first SIGINT or SIGTERM, so the daemon
// drains; a second signal exits at once for an operator who will not wait.
func signalContext(log *slog.Logger) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-ch:
			log.Info("signal received; draining (send again to exit at once)", "signal", sig.String())
			cancel()
		case <-done:
			return
		}
		select {
		case sig := <-ch:
			log.Warn("second signal; exiting now", "signal", sig.String())
			os.Exit(130)
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		close(done)
		cancel()
	}
}
