// Command hglab runs the hybridgw lab topology of docs/lab.md: four
// network namespaces joined by veth pairs and by two emulated access links
// (dsl and lte), whose profiles can be changed while traffic flows. The
// work is done by internal/netlab; this command only wires flags to it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"hybridgw/internal/labdemo"
	"hybridgw/internal/linkem"
	"hybridgw/internal/netlab"
)

func main() {
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "hglab:", err)
		os.Exit(1)
	}
}

type globals struct {
	prefix, runDir string
}

func newRoot() *cobra.Command {
	var g globals
	root := &cobra.Command{
		Use:   "hglab",
		Short: "Run the hybridgw lab topology (namespaces, veths and emulated dsl/lte links)",
		Long: `hglab runs the lab of docs/lab.md: namespaces <prefix>lan, <prefix>cpe,
<prefix>hag and <prefix>srv, joined by veth pairs (lan, wan) and by the
emulated links dsl and lte between cpe and hag, with the address plan of
docs/lab.md. "hglab up" keeps the lab in the foreground; the other commands
talk to it over its control socket.

  hglab up [--prefix hg-] [--profiles test/lab/profiles] [--dsl dsl] [--lte lte]
  hglab status [--json]
  hglab set dsl down                     # the link drops everything
  hglab set dsl up                       # ... until brought back
  hglab set dsl flap 2.5s 30s            # down 2.5 s every 30 s (a resync)
  hglab set lte down-rate 10mbit delay 30ms loss 2%
  hglab set lte rtt 80ms jitter 0s
  hglab down                             # stop the lab, remove what remains
  hglab demo [--bin bin] [--configs configs] [--seconds 20]   # make lab

Run a command in a namespace with: ip netns exec hg-lan ping 203.0.113.10`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.prefix, "prefix", netlab.DefaultPrefix, "namespace name prefix of the lab")
	root.PersistentFlags().StringVar(&g.runDir, "run-dir", netlab.DefaultRunDir, "directory of the lab's pid file and control socket")
	root.AddCommand(newUp(&g), newDown(&g), newStatus(&g), newSet(&g), newDemo(&g))
	return root
}

func logger() *slog.Logger {
	if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, nil))
}

func newUp(g *globals) *cobra.Command {
	var dir, dsl, lte string
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Build the lab and run it in the foreground until SIGINT/SIGTERM or 'hglab down'",
		Long: `Build the lab and run it in the foreground: the emulated links are
forwarded by this process. It tears the lab down on SIGINT, SIGTERM or
'hglab down'; a second signal exits at once ('hglab down' then removes
what is left).

Profiles are YAML files (see test/lab/profiles/dsl.yaml for the format);
--dsl and --lte name a file in --profiles (without .yaml) or give a path.
Without --profiles, or when a named file is missing from it, the built-in
defaults of docs/lab.md are used for the names dsl and lte.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := logger()
			opts := netlab.Options{Prefix: g.prefix, Logger: log}
			var err error
			if opts.DSL, err = loadProfile(dir, dsl, netlab.DefaultDSL()); err != nil {
				return err
			}
			if opts.LTE, err = loadProfile(dir, lte, netlab.DefaultLTE()); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			go func() {
				<-ctx.Done()
				stop() // a second signal now kills the process at once
			}()
			return netlab.Serve(ctx, opts, g.runDir)
		},
	}
	cmd.Flags().StringVar(&dir, "profiles", "", "directory of link profiles (e.g. test/lab/profiles)")
	cmd.Flags().StringVar(&dsl, "dsl", "dsl", "profile of the dsl link: a name in --profiles or a path")
	cmd.Flags().StringVar(&lte, "lte", "lte", "profile of the lte link: a name in --profiles or a path")
	return cmd
}

// loadProfile loads name from dir; the default profile's own name falls
// back to the built-in default when there is no such file.
func loadProfile(dir, name string, def netlab.LinkProfile) (*netlab.LinkProfile, error) {
	if dir == "" && !strings.ContainsRune(name, '/') {
		if name == def.Name {
			return &def, nil
		}
		return nil, fmt.Errorf("profile %q: give --profiles DIR or a path", name)
	}
	lp, err := netlab.LoadProfile(dir, name)
	if errors.Is(err, os.ErrNotExist) && name == def.Name {
		return &def, nil
	}
	if err != nil {
		return nil, err
	}
	return &lp, nil
}

func newDown(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "down",
		Short: "Stop the running lab, then remove any of its namespaces that remain",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := logger()
			pidPath := netlab.PIDPath(g.runDir, g.prefix)
			pid := netlab.ReadPID(pidPath)
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
			_, err := netlab.Control(ctx, netlab.SocketPath(g.runDir, g.prefix), netlab.Request{Cmd: "stop"})
			cancel()
			if err != nil && pid != 0 {
				// It does not answer: ask it the other way, if the pid is
				// still an hglab (and not a reused pid).
				if cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); strings.Contains(string(cmdline), "hglab") {
					log.Warn("the lab does not answer on its socket; sending SIGTERM", "pid", pid, "err", err)
					_ = syscall.Kill(pid, syscall.SIGTERM)
				} else {
					pid = 0
				}
			}
			if pid != 0 {
				deadline := time.Now().Add(15 * time.Second)
				for netlab.ReadPID(pidPath) == pid && time.Now().Before(deadline) {
					time.Sleep(100 * time.Millisecond)
				}
				if netlab.ReadPID(pidPath) == pid {
					return fmt.Errorf("lab process %d did not stop within 15 s", pid)
				}
			}
			removed, err := netlab.Sweep(g.prefix)
			if len(removed) > 0 {
				log.Info("removed leftover namespaces", "namespaces", strings.Join(removed, " "))
			}
			if err != nil {
				return err
			}
			_ = os.Remove(pidPath)
			_ = os.Remove(netlab.SocketPath(g.runDir, g.prefix))
			fmt.Printf("lab %s is down\n", g.prefix)
			return nil
		},
	}
}

func newStatus(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the running lab's link profiles and counters",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
			defer cancel()
			resp, err := netlab.Control(ctx, netlab.SocketPath(g.runDir, g.prefix), netlab.Request{Cmd: "status"})
			if err != nil {
				return fmt.Errorf("lab %s: %w", g.prefix, err)
			}
			if asJSON {
				e := json.NewEncoder(os.Stdout)
				e.SetIndent("", "  ")
				return e.Encode(resp.Status)
			}
			printStatus(resp.Status)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printStatus(s *netlab.Status) {
	fmt.Printf("lab %s (pid %d): %s\n", s.Prefix, s.PID, strings.Join(s.Namespaces, " "))
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "LINK\tDIR\tPROFILE\tPACKETS\tBYTES\tDROP queue/loss/down/overflow\tWRITE ERR\tLATE mean/max/>1ms")
	for _, l := range s.Links {
		row := func(dir, text string, st linkem.Stats) {
			// Lateness: how long after its due time the emulator released a
			// packet (never before it).
			var mean time.Duration
			if st.Packets > 0 {
				mean = time.Duration(st.LateNs / st.Packets)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%d/%d/%d/%d\t%d\t%v/%v/%d\n", l.Name, dir, text, st.Packets, st.Bytes,
				st.DroppedQueue, st.DroppedLoss, st.DroppedDown, st.DroppedOverflow, st.WriteErrors,
				mean.Round(time.Microsecond), time.Duration(st.LateMaxNs).Round(time.Microsecond), st.LateOver1ms)
		}
		row("up", l.UpText, l.UpStats)
		row("down", l.DownText, l.DownStats)
	}
	_ = w.Flush()
}

func newSet(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "set dsl|lte SETTING...",
		Short: "Change a link of the running lab while traffic flows",
		Long:  "Change a link of the running lab while traffic flows.\n\n" + netlab.SettingsHelp,
		Example: `  hglab set dsl down
  hglab set dsl up
  hglab set lte down-rate 10mbit delay 30ms loss 0.02
  hglab set dsl up-rate 2mbit queue-delay 200ms
  hglab set dsl flap 2.5s 30s`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
			defer cancel()
			resp, err := netlab.Control(ctx, netlab.SocketPath(g.runDir, g.prefix),
				netlab.Request{Cmd: "set", Link: args[0], Args: args[1:]})
			if err != nil {
				return fmt.Errorf("lab %s: %w", g.prefix, err)
			}
			printStatus(resp.Status)
			return nil
		},
	}
}

func newDemo(g *globals) *cobra.Command {
	cfg := labdemo.Config{}
	var seconds int
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Build a lab, run hag and hcpe, show a bonded download, tear everything down (make lab)",
		Long: `demo is 'make lab' (docs/lab.md): it builds a lab with the default
profiles under --prefix (which must not exist yet), starts hag and hcpe
from --bin with the configs in --configs, downloads from the server to the
LAN client over IPv6 for --seconds while printing each uplink's rate once a
second, makes a short IPv4 connection, and prints a summary: goodput
against the sum of the link rates, each uplink's share, the addresses the
server saw and the flow's subflows. It then stops the daemons and removes
the lab, also on failure and on Ctrl-C, and exits non-zero if any step
failed. The daemons' logs are kept in a temporary directory (or --log-dir).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Prefix = g.prefix
			cfg.Duration = time.Duration(seconds) * time.Second
			cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			go func() {
				<-ctx.Done()
				stop() // a second signal now kills the process at once
			}()
			return labdemo.Run(ctx, cfg)
		},
	}
	cmd.Flags().StringVar(&cfg.BinDir, "bin", "bin", "directory of the hcpe and hag binaries")
	cmd.Flags().StringVar(&cfg.ConfigDir, "configs", "configs", "directory of hcpe.yaml and hag.yaml")
	cmd.Flags().IntVar(&seconds, "seconds", 20, "how long the download runs")
	cmd.Flags().StringVar(&cfg.LogDir, "log-dir", "", "directory for the daemons' logs (default: a new temporary directory)")
	return cmd
}
