// Command bench is `make bench`: it builds a lab (internal/netlab) under
// its own prefix and measures, over the same emulated DSL and LTE links in
// one run, hybridgw (hcpe + hag), the OpenMPTCProuter approach (Debian's
// shadowsocks-libev with upstream MPTCP) and plain single-link TCP:
// bonding efficiency, time to first byte, DSL handover, CPU per Gbit/s
// (with CPU profiles of hcpe and hag), memory per idle flow at 1,000 and
// 10,000 flows, the link emulator's own ceiling, and hag's connection
// rate (new flows per second until errors appear). It writes report.json
// and report.md to -out, and the profiles to -out/profiles.
//
// `make bench-smoke` runs a short figures 1 and 2 with -smoke, which fails
// unless every system produced them.
//
// It needs root, iproute2, nftables and ss, and the daemons built into
// -bin. Everything it creates (namespaces, processes, nftables tables,
// MPTCP endpoints inside its namespaces) is removed on exit, on failure and
// on the first SIGINT/SIGTERM; a second signal exits at once after
// removing the lab.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// options are the command line.
type options struct {
	Out      string
	Prefix   string
	Bin      string
	Configs  string
	Profiles string
	Version  string
	Commit   string

	Bulk      time.Duration // one bulk download
	Parallel  time.Duration // 8 parallel downloads
	Flows     int           // parallel downloads
	Handover  time.Duration // download with DSL set down
	DownAt    time.Duration // when in it
	CPU       time.Duration // each unshaped transfer
	TTFBRuns  int
	FCTRuns   int    // downloads of each size per system (figure 8)
	IdleFlows string // ascending counts held open at once (figure 5)
	Pairs     string // profile pairs of figure 1
	Seed      uint64
	Budget    time.Duration // the whole run; what does not fit is skipped
	// PolicyHold is waited out before each hybridgw transfer (see
	// policyIdle); 0: hcpe's policy.min_hold as its config loads it.
	PolicyHold time.Duration

	// Repetitions of the noisy figures: each case of figures 1 and 4, and
	// each system's handover download of figure 3.
	EffRuns, CPURuns, HandoverRuns int

	Render string // re-render report.md from this report.json and exit

	Systems string // comma-separated subset, for iterating
	Figures string // comma-separated subset of 1..9

	// Figure 7, hag's connection rate: offered rates in flows/s, each for
	// RateStep, at most RateInFlight connections open at once, each given
	// RateTimeout to get hag's reply.
	RateSteps    string
	RateStep     time.Duration
	RateInFlight int
	RateTimeout  time.Duration

	// ProfileSeconds is the CPU profile taken of hcpe and hag during
	// figure 4's one-flow hybridgw transfer (0: as long as fits in it).
	ProfileSeconds int

	// Smoke makes the run fail unless report.json holds figures 1 and 2
	// for every system run (CI's bench-smoke).
	Smoke bool
}

func main() {
	var o options
	flag.StringVar(&o.Out, "out", "bench/out", "directory for report.md, report.json and logs")
	flag.StringVar(&o.Prefix, "prefix", "bnch-", "lab namespace prefix (not hg- or dbg-)")
	flag.StringVar(&o.Bin, "bin", "bin", "directory holding the hcpe and hag binaries")
	flag.StringVar(&o.Configs, "configs", "configs", "directory holding hcpe.yaml and hag.yaml")
	flag.StringVar(&o.Profiles, "profiles", "test/lab/profiles", "directory of link profiles")
	flag.StringVar(&o.Version, "version", "dev", "hybridgw version, for the report")
	flag.StringVar(&o.Commit, "commit", "unknown", "hybridgw commit, for the report")
	flag.DurationVar(&o.Bulk, "bulk", 10*time.Second, "duration of one bulk download (figure 1)")
	flag.DurationVar(&o.Parallel, "parallel", 5*time.Second, "duration of the parallel downloads (figure 1)")
	flag.IntVar(&o.Flows, "flows", 8, "number of parallel downloads (figures 1 and 4)")
	flag.DurationVar(&o.Handover, "handover", 10*time.Second, "duration of the handover download (figure 3)")
	flag.DurationVar(&o.DownAt, "down-at", 3*time.Second, "when DSL goes down in the handover download")
	flag.DurationVar(&o.CPU, "cpu", 5*time.Second, "duration of each unshaped transfer (figures 4 and 6)")
	flag.IntVar(&o.FCTRuns, "fct-runs", 20, "downloads of each size per system (figure 8)")
	flag.IntVar(&o.TTFBRuns, "ttfb-runs", 200, "small exchanges per system (figure 2)")
	flag.StringVar(&o.IdleFlows, "idle-flows", "1000,10000", "idle flows held open, ascending; each count is measured in turn (figure 5)")
	flag.StringVar(&o.Pairs, "pairs", "equal-rtt,default,lte-80ms", "profile pairs of figure 1 (comma-separated)")
	flag.StringVar(&o.RateSteps, "rate-steps", "100,200,400,800,1200,1600,2000,2400,2800,3200,4000,4800,6400", "offered connection rates, flows/s (figure 7)")
	flag.DurationVar(&o.RateStep, "rate-step", 3*time.Second, "duration of each rate step (figure 7)")
	flag.IntVar(&o.RateInFlight, "rate-in-flight", 1024, "connections the load generator keeps open at most (figure 7)")
	flag.DurationVar(&o.RateTimeout, "rate-timeout", 3*time.Second, "time a connection gets for hag's Convert reply (figure 7)")
	flag.IntVar(&o.ProfileSeconds, "profile-seconds", 0, "seconds of the CPU profiles during figure 4 (0: the transfer less 2 s)")
	flag.BoolVar(&o.Smoke, "smoke", false, "fail unless report.json holds figures 1 and 2 for every system run")
	flag.Uint64Var(&o.Seed, "seed", 20261123, "seed of the link emulator's jitter and of the payload")
	flag.DurationVar(&o.Budget, "budget", 30*time.Minute, "time budget of the whole run (a full run of every figure for all systems takes about 24 minutes here)")
	flag.DurationVar(&o.PolicyHold, "policy-hold", 0, "waited out before each hybridgw transfer (0: hcpe's policy.min_hold from its config)")
	flag.IntVar(&o.EffRuns, "eff-runs", 3, "runs of each case of figure 1")
	flag.IntVar(&o.CPURuns, "cpu-runs", 3, "runs of each case of figure 4")
	flag.IntVar(&o.HandoverRuns, "handover-runs", 5, "handover downloads per system (figure 3)")
	flag.StringVar(&o.Systems, "systems", "direct,hybridgw,hybridgw-bond,peer", "systems to run (comma-separated)")
	flag.StringVar(&o.Figures, "figures", "1,2,3,4,5,6,7,8,9", "figures to measure (comma-separated)")
	flag.StringVar(&o.Render, "render", "", "only re-render report.md next to this report.json (same run, current renderer)")
	flag.Parse()
	if o.Render != "" {
		if err := rerender(o.Render); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			os.Exit(1)
		}
		return
	}
	if o.Prefix == "hg-" || o.Prefix == "dbg-" {
		fmt.Fprintln(os.Stderr, "bench: the prefixes hg- and dbg- belong to tests and debugging; pick another")
		os.Exit(2)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// First signal: stop measuring, tear down, write what was measured.
	// Second: tear down the lab and exit at once.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	var emergency func()
	emergencyReady := make(chan struct{})
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "bench: %v: stopping, tearing down and writing a partial report (again to exit at once)\n", s)
		cancel()
		s = <-sigs
		fmt.Fprintf(os.Stderr, "bench: %v again: removing the lab and exiting\n", s)
		select {
		case <-emergencyReady:
			emergency()
		default:
		}
		os.Exit(128 + int(s.(syscall.Signal)))
	}()

	cmdline := "bench " + strings.Join(os.Args[1:], " ")
	err := run(ctx, o, cmdline, func(f func()) { emergency = f; close(emergencyReady) })
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
	if o.Smoke {
		// Read back what was written: the check is on report.json itself.
		r, err := readReport(filepath.Join(o.Out, "report.json"))
		if err == nil {
			err = smokeCheck(r, strings.Split(o.Systems, ","))
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: smoke check failed: %v\n", err)
			os.Exit(1)
		}
		fmt.Fprintf(os.Stderr, "bench: smoke check passed: figures 1 and 2 produced for %s\n", o.Systems)
	}
}

// counts parses a comma-separated list of positive integers.
func counts(list string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q: not a positive count", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func readReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

// rerender rewrites report.md from a report.json. Values encoded as null
// (not applicable) come back as 0.
func rerender(path string) error {
	r, err := readReport(path)
	if err != nil {
		return err
	}
	r.headlines(r.Flows)
	return os.WriteFile(filepath.Join(filepath.Dir(path), "report.md"), []byte(r.markdown()), 0o644)
}
