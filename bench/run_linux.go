package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"hybridgw/internal/netlab"
)

// bench is one run: the lab, the test servers, the system now running and
// the report being filled in.
type bench struct {
	opts   options
	lab    *netlab.Lab
	sp     *spawner
	srv    *servers
	logDir string
	rep    *Report
	start  time.Time

	dsl, lte map[string]netlab.LinkProfile // by profile name, seeds set
	pairs    []pairDef
	dst      netip.AddrPort // the server, as LAN clients reach it

	mu  sync.Mutex
	cur *system // running, for the teardown

	policyWaits []time.Duration // policyIdle's waits
	nofile      uint64          // the open-file limit of the bench and its children
	memCounts   []int           // figure 5's counts measured so far, by any system
	// lanPorts are the LAN client's ports of figure 2's connections in the
	// current phase (the far side closed them first), and when.
	lanPorts map[uint16]time.Time

	cfgs      *benchConfigs
	adminTmp  string // a short directory for the admin sockets, removed at the end ("" if unused)
	profDir   string // where the profiles go
	idle      []int  // figure 5's counts, ascending
	rateSteps []int  // figure 7's offered rates
}

type pairDef struct {
	name     string
	dsl, lte netlab.LinkProfile
}

func (b *bench) logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s bench [%5.1fs] %s\n", time.Now().Format("15:04:05"), time.Since(b.start).Seconds(), fmt.Sprintf(format, a...))
}

func (b *bench) errorf(format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	b.logf("ERROR: %s", msg)
	b.rep.Errors = append(b.rep.Errors, msg)
}

// left is the time remaining in the budget.
func (b *bench) left() time.Duration { return b.opts.Budget - time.Since(b.start) }

// fits says whether a step of about d still fits in the budget, and notes
// the skip if not.
func (b *bench) fits(what string, d time.Duration) bool {
	if b.left() >= d {
		return true
	}
	b.errorf("skipped %s: about %v left of the %v budget, it needs about %v", what, b.left().Round(time.Second), b.opts.Budget, d)
	return false
}

func want(list, item string) bool { return slices.Contains(strings.Split(list, ","), item) }

func run(ctx context.Context, o options, cmdline string, setEmergency func(func())) (err error) {
	b := &bench{opts: o, start: time.Now(), sp: newSpawner(), logDir: filepath.Join(o.Out, "logs")}
	b.rep = &Report{Started: b.start.UTC().Format(time.RFC3339), Version: o.Version, Commit: o.Commit, Command: cmdline, Flows: o.Flows,
		Durations: map[string]float64{"bulk": o.Bulk.Seconds(), "parallel": o.Parallel.Seconds(), "handover": o.Handover.Seconds(),
			"handover_dsl_down_at": o.DownAt.Seconds(), "cpu": o.CPU.Seconds(), "budget": o.Budget.Seconds()}}
	// A hard stop a little after the budget: the soft one skips steps.
	ctx, cancel := context.WithTimeout(ctx, o.Budget+90*time.Second)
	defer cancel()
	if err := os.MkdirAll(b.logDir, 0o755); err != nil {
		return err
	}
	b.machine()
	defer func() {
		b.rep.Finished = time.Now().UTC().Format(time.RFC3339)
		b.rep.RuntimeSeconds = math.Round(time.Since(b.start).Seconds())
		b.rep.Machine.LoadAfter = loadavg()
		if len(b.policyWaits) > 0 {
			b.rep.Notes = append(b.rep.Notes, fmt.Sprintf("Before each hybridgw transfer of figures 1 and 3 the bench waited until hcpe reported LTE back in backup (`hcpe_uplink_backup{uplink=\"lte\"} 1`), and then waited the policy's min_hold (%v) more, so LTE can join as soon as DSL is loaded, as on a line that has been idle for a while. Waits: %d, median %v, longest %v.",
				b.opts.PolicyHold,
				len(b.policyWaits), percentile(b.policyWaits, 50).Round(10*time.Millisecond), slices.Max(b.policyWaits).Round(10*time.Millisecond)))
		}
		b.rep.headlines(o.Flows)
		b.rep.staticNotes(o)
		if werr := b.rep.write(o.Out); werr != nil {
			err = errors.Join(err, werr)
		} else {
			b.logf("wrote %s and %s (%.0f s)", filepath.Join(o.Out, "report.md"), filepath.Join(o.Out, "report.json"), b.rep.RuntimeSeconds)
		}
	}()

	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces)")
	}
	if b.idle, err = counts(o.IdleFlows); err != nil {
		return fmt.Errorf("-idle-flows: %w", err)
	}
	slices.Sort(b.idle)
	if b.rateSteps, err = counts(o.RateSteps); err != nil {
		return fmt.Errorf("-rate-steps: %w", err)
	}
	if err := b.prepareConfigs(); err != nil {
		return fmt.Errorf("writing the bench's configs: %w", err)
	}
	defer func() {
		if b.adminTmp != "" {
			os.RemoveAll(b.adminTmp)
		}
	}()
	b.raiseNofile()
	for _, tool := range []string{"ip", "nft", "ss"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("needs %s: %w", tool, err)
		}
	}
	if want(o.Systems, sysHybrid) {
		for _, d := range []string{"hcpe", "hag"} {
			if _, err := os.Stat(filepath.Join(o.Bin, d)); err != nil {
				return fmt.Errorf("daemon binary: %w (make bench builds them)", err)
			}
		}
	}
	if want(o.Systems, sysPeer) {
		if err := ensurePeerInstalled(b.logf); err != nil {
			b.errorf("peer unavailable: %v", err)
		}
		b.rep.Machine.PeerVersion = peerVersion()
	}
	if left, _ := netlab.Leftovers(o.Prefix); len(left) > 0 {
		return fmt.Errorf("namespaces with prefix %q exist (%v): another bench is running or one was killed; remove them with ip netns del", o.Prefix, left)
	}
	if err := b.loadProfiles(); err != nil {
		return err
	}

	bctx, bcancel := context.WithTimeout(ctx, 30*time.Second)
	def := b.pairs[1]
	b.lab, err = netlab.Build(bctx, netlab.Options{Prefix: o.Prefix, DSL: &def.dsl, LTE: &def.lte,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	bcancel()
	if err != nil {
		return err
	}
	b.logf("lab %s up", o.Prefix)
	b.rep.Lab.Prefix = o.Prefix
	b.rep.Lab.MTU = b.lab.DSL.MTU
	setEmergency(b.emergency)
	defer b.teardown()

	b.srv = newServers(o.Seed)
	b.dst = netip.AddrPortFrom(b.lab.Plan.Server4, benchPort)
	listens := []struct {
		ns   *netlab.NS
		addr string
	}{{b.lab.SRV, fmt.Sprintf("[::]:%d", benchPort)}, {b.lab.CPE, "[::]:9100"}, {b.lab.HAG, "[::]:9100"}}
	if want(o.Figures, "7") {
		// Figure 7 spreads hag's connections over several server ports,
		// as hag's real traffic goes to many servers: one 4-tuple space
		// towards one server port would run out of ports first.
		for i := 1; i < rateServerPorts; i++ {
			listens = append(listens, struct {
				ns   *netlab.NS
				addr string
			}{b.lab.SRV, fmt.Sprintf("[::]:%d", benchPort+i)})
		}
	}
	for _, l := range listens {
		if err := b.srv.listen(l.ns, l.addr); err != nil {
			return err
		}
	}

	if want(o.Figures, "6") && b.fits("figure 6", 3*o.CPU) {
		b.emulatorCeiling(ctx)
	}
	for _, name := range []string{sysDirect, sysHybrid, sysBond, sysPeer} {
		if !want(o.Systems, name) || ctx.Err() != nil {
			continue
		}
		b.phase(ctx, name)
	}
	if want(o.Figures, "7") && want(o.Systems, sysHybrid) && ctx.Err() == nil &&
		b.fits("figure 7", 12*(o.RateStep+2*time.Second)) { // about a ramp each way; each step checks again
		b.rateFigure(ctx)
	}
	if ctx.Err() != nil {
		b.errorf("run interrupted or over its hard time limit: %v", ctx.Err())
		return fmt.Errorf("interrupted (%w); the report holds what was measured before", ctx.Err())
	}
	return nil
}

// phase starts one system, measures every figure that applies to it and
// stops it.
func (b *bench) phase(ctx context.Context, name string) {
	o := b.opts
	b.applyPair(b.pairs[1])
	b.logf("=== %s ===", name)
	var s *system
	var err error
	switch name {
	case sysDirect:
		s = startDirect()
	case sysHybrid:
		s, err = b.startHybrid(ctx, sysHybrid, b.cfgs.HCPE, b.cfgs.HAG)
	case sysBond:
		s, err = b.startHybrid(ctx, sysBond, b.cfgs.Bond, b.cfgs.HAG)
	case sysPeer:
		s, err = b.startPeer(ctx)
	}
	if err != nil {
		b.errorf("%s did not start: %v", name, err)
		b.rep.Checks = append(b.rep.Checks, Check{System: name, What: "starts", OK: false, Detail: err.Error()})
		return
	}
	b.mu.Lock()
	b.cur = s
	b.mu.Unlock()
	b.lanPorts = map[uint16]time.Time{}
	defer func() {
		b.mu.Lock()
		b.cur = nil
		b.mu.Unlock()
		if err := s.stop(); err != nil {
			b.errorf("stopping %s: %v", name, err)
		}
		b.logf("%s stopped", name)
	}()

	if want(o.Figures, "1") {
		for i, p := range b.pairs {
			if name == sysDirect && i != 1 {
				continue // direct uses DSL only, which is the same in every pair
			}
			if !want(o.Pairs, p.name) {
				continue
			}
			if ctx.Err() != nil || !b.fits("figure 1 "+name+" "+p.name, o.Bulk+o.Parallel+5*time.Second) {
				break
			}
			b.applyPair(p)
			b.efficiency(ctx, s, p, 1, o.Bulk, i == 1 || (name != sysDirect && i == 0))
			b.efficiency(ctx, s, p, o.Flows, o.Parallel, false)
		}
		b.applyPair(b.pairs[1])
	} else if s.port != 0 {
		b.verify(ctx, s)
	}
	if name == sysBond {
		return // figure 1 only
	}
	if want(o.Figures, "2") && ctx.Err() == nil && b.fits("figure 2 "+name, time.Duration(o.TTFBRuns)*100*time.Millisecond) {
		b.ttfbFigure(ctx, s)
	}
	if want(o.Figures, "8") && ctx.Err() == nil && b.fits("figure 8 "+name, time.Duration(o.FCTRuns)*6*time.Second) {
		b.fctFigure(ctx, s)
	}
	if want(o.Figures, "3") && ctx.Err() == nil && b.fits("figure 3 "+name, o.Handover+5*time.Second) {
		b.handover(ctx, s)
	}
	if want(o.Figures, "5") && name != sysDirect && ctx.Err() == nil {
		b.memory(ctx, s)
	}
	if want(o.Figures, "4") && ctx.Err() == nil && b.fits("figure 4 "+name, 2*o.CPU+5*time.Second) {
		b.cpuCeiling(ctx, s)
	}
	if want(o.Figures, oneCoreFigure) && ctx.Err() == nil && b.fits("figure 9 "+name, 2*o.CPU+5*time.Second) {
		b.oneCore(ctx, s)
	}
	if err := s.alive(); err != nil {
		b.errorf("%s: %v", name, err)
	}
}

// loadProfiles reads the four profiles of the comparison and gives every
// direction its own seed.
func (b *bench) loadProfiles() error {
	b.rep.Seeds = Seeds{Data: b.opts.Seed, Links: map[string]int64{}}
	b.rep.Lab.Profiles = map[string]string{}
	seed := int64(b.opts.Seed % (1 << 40))
	load := func(name, role string) (netlab.LinkProfile, error) {
		lp, err := netlab.LoadProfile(b.opts.Profiles, name)
		if err != nil {
			return lp, err
		}
		k := role + "/" + name
		lp.Up.Seed, lp.Down.Seed = seed+int64(len(b.rep.Seeds.Links))+1, seed+int64(len(b.rep.Seeds.Links))+2
		b.rep.Seeds.Links[k+"/up"], b.rep.Seeds.Links[k+"/down"] = lp.Up.Seed, lp.Down.Seed
		b.rep.Lab.Profiles[name] = netlab.DescribeProfile(lp.Up.Linkem()) + "|" + netlab.DescribeProfile(lp.Down.Linkem())
		return lp, nil
	}
	dsl, err := load("dsl", "dsl")
	if err != nil {
		return err
	}
	for _, p := range []struct{ name, lte string }{{"equal-rtt", "equal-rtt"}, {"default", "lte"}, {"lte-80ms", "lte-80ms"}} {
		lte, err := load(p.lte, "lte")
		if err != nil {
			return err
		}
		b.pairs = append(b.pairs, pairDef{p.name, dsl, lte})
		b.rep.Lab.Pairs = append(b.rep.Lab.Pairs, Pair{Name: p.name, DSL: "dsl", LTE: p.lte,
			DSLDown: float64(dsl.Down.Linkem().RateBps) / 1e6, LTEDown: float64(lte.Down.Linkem().RateBps) / 1e6,
			SumDown:  float64(dsl.Down.Linkem().RateBps+lte.Down.Linkem().RateBps) / 1e6,
			DSLRTTms: ms(dsl.Up.Delay + dsl.Down.Delay), LTERTTms: ms(lte.Up.Delay + lte.Down.Delay)})
	}
	b.rep.Lab.Profiles["unshaped"] = "rate unlimited delay 0s|rate unlimited delay 0s"
	return nil
}

func (b *bench) applyPair(p pairDef) {
	b.lab.DSL.Apply(p.dsl)
	b.lab.LTE.Apply(p.lte)
}

var unshaped = netlab.LinkProfile{Name: "unshaped", MTU: netlab.DefaultMTU}

// settle waits for queues to drain and the last connections to go.
func (b *bench) settle(ctx context.Context) { _ = sleepCtx(ctx, 1500*time.Millisecond) }

type linkBytes struct{ dsl, lte uint64 }

func (b *bench) downBytes() linkBytes {
	return linkBytes{b.lab.DSL.Stats(netlab.Downstream).Bytes, b.lab.LTE.Stats(netlab.Downstream).Bytes}
}

// policyIdle waits, for hybridgw with its shipped overflow policy, until
// hcpe has put LTE back to backup after the previous transfer, so that
// every transfer starts from the state an idle line is in (DSL only; LTE
// joins once DSL is loaded). Without it a transfer's start would depend on
// how long ago the previous one ended (the policy holds each state for at
// least min_hold).
func (b *bench) policyIdle(ctx context.Context, s *system) {
	if s.name != sysHybrid {
		return
	}
	const series = `hcpe_uplink_backup{uplink="lte"}`
	t0 := time.Now()
	err := waitFor(ctx, "hcpe to put lte back to backup", 12*time.Second, func() bool {
		v, err := scrape(ctx, b.lab.CPE, "127.0.0.1:9101", series)
		return err == nil && v[series] == 1
	})
	if err != nil {
		b.logf("%s: %v; measuring anyway", s.name, err)
		return
	}
	// An idle line has been in that state for long: wait out the hold the
	// flip just started, or LTE could not join for min_hold.
	_ = sleepCtx(ctx, b.opts.PolicyHold)
	b.policyWaits = append(b.policyWaits, time.Since(t0))
}

// verify checks, during a short download, that the system's connections
// towards hag are MPTCP with a subflow on each uplink.
func (b *bench) verify(ctx context.Context, s *system) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		downloads(ctx, b.lab.LAN, b.dst, 1, 4*time.Second)
	}()
	_ = sleepCtx(ctx, 3*time.Second)
	b.checkMPTCP(s)
	<-done
	b.settle(ctx)
}

func (b *bench) checkMPTCP(s *system) {
	if s.port == 0 {
		v, err := ssView(b.lab.CPE, int(b.dst.Port()), netlab.CPEDSL4, netlab.CPELTE4)
		ok := err == nil && v.MPTCPConns == 0
		b.rep.Checks = append(b.rep.Checks, Check{System: s.name, What: "plain TCP, no MPTCP in cpe", OK: ok,
			Detail: fmt.Sprintf("cpe forwards; no socket of its own to the server (%d mptcp sockets) %v", v.MPTCPConns, errStr(err))})
		return
	}
	v, err := ssView(b.lab.CPE, s.port, netlab.CPEDSL4, netlab.CPELTE4)
	ok := err == nil && v.MPTCPConns >= 1 && v.SubflowsDSL >= 1 && v.SubflowsLTE >= 1 && v.PlainTCP == 0
	detail := fmt.Sprintf("ss -tniM in cpe during a download: %d mptcp connection(s) to :%d, extra subflows %v; tcp subflows from dsl %d, from lte %d; plain TCP (fallback) %d %s",
		v.MPTCPConns, s.port, v.ExtraSubflow, v.SubflowsDSL, v.SubflowsLTE, v.PlainTCP, errStr(err))
	b.rep.Checks = append(b.rep.Checks, Check{System: s.name, What: "MPTCP with a subflow on each uplink", OK: ok, Detail: detail, View: &v})
	b.logf("%s check: %s", s.name, detail)
	if !ok {
		b.errorf("%s: connections are not MPTCP with two subflows: %s\n%s", s.name, detail, v.Raw)
	}
}

func errStr(err error) string {
	if err == nil {
		return ""
	}
	return "(error: " + err.Error() + ")"
}

// efficiency is figure 1: n downloads side by side for dur.
func (b *bench) efficiency(ctx context.Context, s *system, p pairDef, n int, dur time.Duration, check bool) {
	b.settle(ctx)
	b.policyIdle(ctx, s)
	l0 := b.downBytes()
	var checked sync.WaitGroup
	if check {
		checked.Go(func() {
			if sleepCtx(ctx, 3*time.Second) == nil {
				b.checkMPTCP(s)
			}
		})
	}
	ss, res := downloads(ctx, b.lab.LAN, b.dst, n, dur)
	l1 := b.downBytes()
	checked.Wait()
	row := EffRow{Pair: p.name, System: s.name, Flows: n, Seconds: dur.Seconds()}
	for _, r := range res {
		if r.Err != nil {
			row.Err = r.Err.Error()
		}
	}
	dslRate, lteRate := float64(p.dsl.Down.Linkem().RateBps), float64(p.lte.Down.Linkem().RateBps)
	row.GoodputMbps = mbps(bytesIn(ss, 0, dur), dur)
	row.SteadyMbps = math.NaN()
	if dur > 3*time.Second {
		row.SteadyMbps = mbps(bytesIn(ss, 3*time.Second, dur), dur-3*time.Second)
	}
	row.SumMbps = (dslRate + lteRate) / 1e6
	row.Efficiency = ratio(row.GoodputMbps, row.SumMbps)
	dd, ld := float64(l1.dsl-l0.dsl), float64(l1.lte-l0.lte)
	row.DSLShare = ratio(dd, dd+ld)
	row.DSLUtil = ratio(dd*8/dur.Seconds(), dslRate)
	row.LTEUtil = ratio(ld*8/dur.Seconds(), lteRate)
	if ctx.Err() != nil {
		return // interrupted: not a measurement
	}
	b.rep.Efficiency = append(b.rep.Efficiency, row)
	b.logf("fig1 %s %s %d flow(s): %.1f Mbit/s (%.1f%% of %.0f), dsl share %.0f%% %s", s.name, p.name, n, row.GoodputMbps, 100*row.Efficiency, row.SumMbps, 100*row.DSLShare, row.Err)
}

// ttfbFigure is figure 2 on the default pair.
func (b *bench) ttfbFigure(ctx context.Context, s *system) {
	b.settle(ctx)
	row := TTFBRow{System: s.name}
	var h0 map[string]float64
	if s.name == sysHybrid {
		h0, _ = scrape(ctx, b.lab.CPE, "127.0.0.1:9101", "hcpe_flow_setup_duration_seconds_sum", "hcpe_flow_setup_duration_seconds_count")
	}
	var conn, first []time.Duration
	var lastErr error
	for i := 0; i < b.opts.TTFBRuns && ctx.Err() == nil; i++ {
		c, f, port, err := ttfb(ctx, b.lab.LAN, b.dst)
		if port != 0 && err == nil {
			b.lanPorts[port] = time.Now()
		}
		if err != nil {
			row.Failures++
			lastErr = err
			if row.Failures > b.opts.TTFBRuns/10 {
				break
			}
			continue
		}
		conn, first = append(conn, c), append(first, f)
	}
	row.Runs = len(first)
	if lastErr != nil {
		row.Err = lastErr.Error()
	}
	if len(first) > 0 {
		row.ConnectMedMs = ms(percentile(conn, 50))
		row.MedianMs = ms(percentile(first, 50))
		row.P99Ms = ms(percentile(first, 99))
		row.MinMs = ms(slices.Min(first))
		row.MaxMs = ms(slices.Max(first))
	}
	if s.name == sysHybrid && h0 != nil {
		if h1, err := scrape(ctx, b.lab.CPE, "127.0.0.1:9101", "hcpe_flow_setup_duration_seconds_sum", "hcpe_flow_setup_duration_seconds_count"); err == nil {
			if n := h1["hcpe_flow_setup_duration_seconds_count"] - h0["hcpe_flow_setup_duration_seconds_count"]; n > 0 {
				row.SetupMeanMs = 1000 * (h1["hcpe_flow_setup_duration_seconds_sum"] - h0["hcpe_flow_setup_duration_seconds_sum"]) / n
			}
		}
	}
	b.rep.TTFB = append(b.rep.TTFB, row)
	b.logf("fig2 %s: TTFB median %.1f ms p99 %.1f ms (connect %.1f ms), %d failures", s.name, row.MedianMs, row.P99Ms, row.ConnectMedMs, row.Failures)
}

// handover is figure 3 on the default pair: DSL goes down o.DownAt into
// a download of o.Handover.
func (b *bench) handover(ctx context.Context, s *system) {
	b.settle(ctx)
	b.policyIdle(ctx, s)
	o := b.opts
	def := b.pairs[1]
	lteRate := float64(def.lte.Down.Linkem().RateBps) / 1e6
	row := HandoverRow{System: s.name, DownAtS: o.DownAt.Seconds(), Seconds: o.Handover.Seconds(), ThresholdMbps: 0.8 * lteRate}
	var downAtNs, l0 atomic.Int64 // set by the timers
	start := time.Now()
	timer := time.AfterFunc(o.DownAt, func() {
		b.lab.DSL.SetDown(true)
		downAtNs.Store(int64(time.Since(start)))
	})
	afterAt := o.Handover - 5*time.Second
	lteTimer := time.AfterFunc(afterAt, func() { l0.Store(int64(b.lab.LTE.Stats(netlab.Downstream).Bytes)) })
	t := download(ctx, b.lab.LAN, b.dst, start, o.Handover)
	l1 := int64(b.lab.LTE.Stats(netlab.Downstream).Bytes)
	timer.Stop()
	lteTimer.Stop()
	b.lab.DSL.SetDown(false)
	downAt := time.Duration(downAtNs.Load())
	if t.Err != nil {
		row.Err = t.Err.Error()
	}
	if downAt == 0 {
		downAt = o.DownAt
	}
	row.DownAtS = downAt.Seconds()
	row.BeforeMbps = mbps(bytesIn(t.Samples, 1*time.Second, downAt), downAt-time.Second)
	gap, stalled := longestGap(t.Samples, downAt, o.Handover)
	row.LongestGapMs, row.Stalled = ms(gap), stalled
	before, _ := longestGap(t.Samples, time.Second, downAt)
	row.GapBeforeMs = ms(before)
	rec := recovery(t.Samples, downAt, o.Handover, 250*time.Millisecond, row.ThresholdMbps)
	row.RecoveryMs = ms(rec)
	if rec < 0 {
		row.RecoveryMs = -1
	}
	row.AfterMbps = mbps(bytesIn(t.Samples, afterAt, o.Handover), o.Handover-afterAt)
	if l0.Load() > 0 {
		row.LTEUtilAfter = float64(l1-l0.Load()) * 8 / (o.Handover - afterAt).Seconds() / (lteRate * 1e6)
	}
	if ctx.Err() != nil {
		return // interrupted: not a measurement
	}
	b.rep.Handover = append(b.rep.Handover, row)
	b.logf("fig3 %s: before %.1f Mbit/s, longest gap %.0f ms (stalled %v), back to %.0f Mbit/s after %.0f ms, last 5 s %.1f Mbit/s %s",
		s.name, row.BeforeMbps, row.LongestGapMs, row.Stalled, row.ThresholdMbps, row.RecoveryMs, row.AfterMbps, row.Err)
	// DSL is back: let the system notice before the next figure.
	_ = sleepCtx(ctx, 3*time.Second)
}

// cpuCeiling is figure 4: links unshaped, one flow and o.Flows flows.
func (b *bench) cpuCeiling(ctx context.Context, s *system) {
	b.lab.DSL.Apply(unshaped)
	b.lab.LTE.Apply(unshaped)
	defer b.applyPair(b.pairs[1])
	for _, n := range []int{1, b.opts.Flows} {
		if ctx.Err() != nil {
			return
		}
		b.settle(ctx)
		pids := s.pids()
		pids["bench"] = os.Getpid()
		// hybridgw's one-flow transfer is profiled: hcpe and hag each write
		// a CPU profile to their admin socket while it runs. It is read
		// with go tool pprof only after the transfer, which would
		// otherwise compete with it for the CPU.
		var profiling sync.WaitGroup
		var profiles []*fetchedProfile
		if s.name == sysHybrid && n == 1 {
			secs := b.opts.ProfileSeconds
			if secs <= 0 {
				secs = max(1, int((b.opts.CPU-2*time.Second)/time.Second))
			}
			for _, proc := range []string{"hcpe", "hag"} {
				fp := &fetchedProfile{proc: proc, kind: "cpu", seconds: secs, when: "figure 4, one unshaped hybridgw download",
					path: filepath.Join(b.profDir, proc+"-cpu-fig4.pprof")}
				profiles = append(profiles, fp)
				profiling.Go(func() {
					if sleepCtx(ctx, time.Second) == nil {
						fp.err = b.fetchProfile(ctx, s.admin[proc], fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs), fp.path)
					}
				})
			}
		}
		m := startCPU(pids)
		ss, res := downloads(ctx, b.lab.LAN, b.dst, n, b.opts.CPU)
		cores, machine := m.stop()
		profiling.Wait()
		for _, fp := range profiles {
			b.analyzeProfile(ctx, s, fp)
		}
		row := CPURow{System: s.name, Flows: n, Seconds: b.opts.CPU.Seconds(), GoodputMbps: mbps(bytesIn(ss, 0, b.opts.CPU), b.opts.CPU),
			Cores: map[string]float64{}, BenchCores: cores["bench"], MachineCores: machine}
		for k, v := range cores {
			if k != "bench" {
				row.Cores[k] = v
				row.DaemonCores += v
			}
		}
		row.PerGbps = ratio(row.DaemonCores, row.GoodputMbps/1000)
		if s.name == sysDirect {
			row.PerGbps = math.NaN()
		}
		for _, r := range res {
			if r.Err != nil {
				row.Err = r.Err.Error()
			}
		}
		if ctx.Err() != nil {
			return // interrupted: not a measurement
		}
		b.rep.CPU = append(b.rep.CPU, row)
		b.logf("fig4 %s %d flow(s): %.0f Mbit/s, daemons %.2f cores (%s), bench %.2f, machine %.2f %s", s.name, n, row.GoodputMbps, row.DaemonCores, coresCell(row.Cores), row.BenchCores, row.MachineCores, row.Err)
	}
}

// memoryTime is about how long figure 5 takes for n idle flows: fixed
// waits, then opening (32 at a time, about 1 ms a flow on the default
// profiles) and closing them.
func memoryTime(n int) time.Duration { return 20*time.Second + time.Duration(n)*4*time.Millisecond }

// memory is figure 5: RSS (and heap for Go daemons) with idle flows open,
// at each count of -idle-flows in turn, and at every count an earlier
// system was measured at, so that systems compare at equal counts: the
// flows of one count stay open while the next count's are added, and all
// are closed at the end. Counts beyond what the open-file limit allows are
// measured at the most that fits (found from the descriptors each process
// took per flow at the previous count), and the report says so. A count
// that does not fit in the time budget is skipped, with the larger ones.
func (b *bench) memory(ctx context.Context, s *system) {
	asked := slices.Clone(b.idle)
	for _, n := range b.memCounts {
		if !slices.Contains(asked, n) {
			asked = append(asked, n)
		}
	}
	slices.Sort(asked)
	b.settle(ctx)
	type snap struct {
		rss            map[string]int64
		heap, routines map[string]float64
		fds, pipes     map[string]int // "bench" included
	}
	metricsAt := map[string]struct {
		ns   *netlab.NS
		addr string
	}{"hcpe": {b.lab.CPE, "127.0.0.1:9101"}, "hag": {b.lab.HAG, "127.0.0.1:9102"}}
	take := func() snap {
		sn := snap{rss: map[string]int64{}, heap: map[string]float64{}, routines: map[string]float64{}, fds: map[string]int{}, pipes: map[string]int{}}
		pids := s.pids()
		for name, pid := range pids {
			sn.rss[name], _ = rssBytes(pid)
			if m, ok := metricsAt[name]; ok {
				if v, err := scrape(ctx, m.ns, m.addr, "go_memstats_heap_inuse_bytes", "go_goroutines"); err == nil {
					sn.heap[name], sn.routines[name] = v["go_memstats_heap_inuse_bytes"], v["go_goroutines"]
				}
			}
		}
		pids["bench"] = os.Getpid()
		for name, pid := range pids {
			sn.fds[name], sn.pipes[name] = fdCount(pid)
		}
		return sn
	}
	base := take()
	names := make([]string, 0, len(base.rss))
	for n := range base.rss {
		names = append(names, n)
	}
	slices.Sort(names)
	var lims []string
	for _, n := range append(slices.Clone(names), "bench") {
		pid := os.Getpid()
		if n != "bench" {
			pid = s.pids()[n]
		}
		lims = append(lims, n+" "+nofileOf(pid))
	}
	b.rep.Notes = append(b.rep.Notes, fmt.Sprintf("Figure 5, %s: open-file limits (soft, /proc/<pid>/limits): %s.", s.name, strings.Join(lims, ", ")))
	mb := func(v float64) float64 { return v / (1 << 20) }
	dropNames := []string{"hcpe_netstack_drops_total", "hcpe_flows_total", `hcpe_flows_total{result="ok"}`}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	perFlow := map[string]float64{} // descriptors per flow, as measured at the last count
	var last []int                  // this system's rows of the last count measured
	for _, want := range asked {
		if ctx.Err() != nil {
			return
		}
		target := want
		if fit, who := b.fdFit(perFlow, base.fds); target > fit {
			b.rep.Notes = append(b.rep.Notes, fmt.Sprintf("Figure 5, %s: asked for %d idle flows, measured %d. Every process here may open at most %d files (%s). At %d flows %s; %d flows would need %.0f in %s. %d is the most that fits with %d descriptors to spare in every process, rounded down to hundreds.",
				s.name, want, fit, b.nofile, b.rep.Machine.Nofile, len(conns), describeFDs(perFlow, last, b.rep.Memory), want, float64(base.fds[who])+perFlow[who]*float64(want), who, fit, nofileReserve))
			target = fit
		}
		if target <= len(conns) {
			continue
		}
		if !b.fits(fmt.Sprintf("figure 5 %s with %d idle flows", s.name, target), memoryTime(target)) {
			break
		}
		var drops0 map[string]float64
		if s.name == sysHybrid {
			drops0, _ = scrape(ctx, b.lab.CPE, "127.0.0.1:9101", dropNames...)
		}
		had := len(conns)
		t0 := time.Now()
		more, err := openIdle(ctx, b.lab.LAN, b.dst, target-had, 32)
		conns = append(conns, more...)
		openFor := time.Since(t0)
		if drops0 != nil {
			if d1, derr := scrape(ctx, b.lab.CPE, "127.0.0.1:9101", dropNames...); derr == nil {
				msg := fmt.Sprintf("while opening flows %d to %d (%d established end to end in %.1f s): hcpe counted %.0f new flows (%.0f ok) and %.0f netstack drops (LAN SYNs dropped by a bound)",
					had+1, target, len(more), openFor.Seconds(), d1["hcpe_flows_total"]-drops0["hcpe_flows_total"], d1[dropNames[2]]-drops0[dropNames[2]],
					d1["hcpe_netstack_drops_total"]-drops0["hcpe_netstack_drops_total"])
				b.logf("fig5 %s: %s", s.name, msg)
				b.rep.Notes = append(b.rep.Notes, "Figure 5, hybridgw: "+msg+".")
			}
		}
		b.logf("fig5 %s: %d idle flows open (%d more in %v) %v", s.name, len(conns), len(more), openFor.Round(time.Millisecond), errStr(err))
		if failed := target - had - len(more); failed > 0 {
			b.reusedPorts(s, failed, target-had, t0, more)
		}
		_ = sleepCtx(ctx, 2*time.Second)
		loaded := take()
		if len(conns) > 0 {
			for n, f := range loaded.fds {
				perFlow[n] = float64(f-base.fds[n]) / float64(len(conns))
			}
		}
		if !slices.Contains(b.memCounts, target) {
			b.memCounts = append(b.memCounts, target) // the peer is measured there too
		}
		if want == asked[len(asked)-1] || (s.name == sysHybrid && target < want) {
			b.heapProfiles(ctx, s, len(conns))
		}
		last = last[:0]
		for _, name := range names {
			row := MemRow{System: s.name, Process: name, Target: target, Asked: want, Flows: len(conns), OpenSeconds: openFor.Seconds(),
				RSSBaseMB: mb(float64(base.rss[name])), RSSLoadedMB: mb(float64(loaded.rss[name])),
				FDsBase: base.fds[name], FDsLoaded: loaded.fds[name], PipesLoaded: loaded.pipes[name]}
			if len(conns) > 0 {
				row.PerFlowKB = float64(loaded.rss[name]-base.rss[name]) / 1024 / float64(len(conns))
				row.FDsPerFlow = perFlow[name]
			}
			if loaded.heap[name] > 0 {
				row.HeapBaseMB, row.HeapLoadedMB = mb(base.heap[name]), mb(loaded.heap[name])
				row.Goroutines = [3]float64{base.routines[name], loaded.routines[name], math.NaN()}
				if len(conns) > 0 {
					row.HeapPerFlowKB = (loaded.heap[name] - base.heap[name]) / 1024 / float64(len(conns))
				}
			}
			if err != nil {
				row.Err = err.Error()
			}
			last = append(last, len(b.rep.Memory))
			b.rep.Memory = append(b.rep.Memory, row)
			b.logf("fig5 %s %s %d flows: RSS %.1f → %.1f MB (%.1f KB/flow), heap %.1f → %.1f MB, descriptors %d → %d (%.1f per flow, %d pipes)", s.name, name, len(conns),
				row.RSSBaseMB, row.RSSLoadedMB, row.PerFlowKB, row.HeapBaseMB, row.HeapLoadedMB, row.FDsBase, row.FDsLoaded, row.FDsPerFlow, row.PipesLoaded)
		}
		if err != nil {
			// A few failures do not stop the figure; many do.
			if len(more) < (target-had)*9/10 {
				b.errorf("figure 5 %s: %v; measured %d idle flows, not %d (and no larger count)", s.name, err, len(conns), target)
				break
			}
			b.errorf("figure 5 %s: %v; measured %d idle flows, not %d", s.name, err, len(conns), target)
		}
	}
	if len(last) == 0 {
		return
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	// Closing thousands of flows takes the daemons a moment; then the heap,
	// goroutines and descriptors they leave behind.
	_ = sleepCtx(ctx, 3*time.Second)
	after := take()
	for _, i := range last {
		row := &b.rep.Memory[i]
		row.Closed = true
		row.RSSAfterMB = mb(float64(after.rss[row.Process]))
		row.FDsAfter = after.fds[row.Process]
		if row.HeapLoadedMB > 0 {
			row.HeapAfterMB = mb(after.heap[row.Process])
			row.Goroutines[2] = after.routines[row.Process]
		}
		b.logf("fig5 %s %s after closing: RSS %.1f MB, heap %.1f MB, %.0f goroutines, %d descriptors", s.name, row.Process, row.RSSAfterMB, row.HeapAfterMB, row.Goroutines[2], row.FDsAfter)
	}
}

// reusedPorts looks for why some of figure 5's LAN connections got no
// answer: whether they were more likely than chance to reuse a port of
// figure 2's connections, which the far side closed first and so may still
// hold in TIME_WAIT while the client, closing second, reuses the port. It
// adds what it finds to the report's notes.
func (b *bench) reusedPorts(s *system, failed, tried int, start time.Time, opened []net.Conn) {
	// Only ports whose far side may still hold TIME_WAIT until the end of
	// the opening count: used less than a minute before now.
	end := time.Now()
	recent := 0
	for _, t := range b.lanPorts {
		if end.Sub(t) < time.Minute {
			recent++
		}
	}
	if recent == 0 {
		b.rep.Hung = append(b.rep.Hung, HungRow{System: s.name, Failed: failed, Tried: tried})
		b.rep.Notes = append(b.rep.Notes, fmt.Sprintf("Figure 5, %s: %d of %d new LAN connections got no answer within the 10 s dial timeout.", s.name, failed, tried))
		return
	}
	reused := 0
	for _, c := range opened {
		if t, ok := b.lanPorts[localPort(c)]; ok && end.Sub(t) < time.Minute {
			reused++
		}
	}
	lo, hi := 32768, 60999
	if text, err := b.lab.LAN.Output("cat", "/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		fmt.Sscan(text, &lo, &hi)
	}
	expected := float64(recent) * float64(tried) / float64(hi-lo+1)
	b.rep.Hung = append(b.rep.Hung, HungRow{System: s.name, Failed: failed, Tried: tried, Reused: reused, Expected: expected})
	msg := fmt.Sprintf("Figure 5, %s: %d of %d new LAN connections got no answer to their SYNs within the 10 s dial timeout (opened in %.1f s). %d of figure 2's connections had used their local port less than a minute before the last of these (ports %d–%d); of the %d new connections that did open, %d reused one of those ports, where chance alone gives about %.1f.",
		s.name, failed, tried, end.Sub(start).Seconds(), recent, lo, hi, len(opened), reused, expected)
	if s.name == sysHybrid && float64(reused)+float64(failed) >= expected/2 && float64(reused) < expected/2 {
		msg += " So the failures are most likely the connections that reused such a port: the far side closed those connections first, so hcpe's userspace TCP (gVisor) still holds them in TIME_WAIT, while the LAN client, which closed second and kept no TIME_WAIT, may reuse the port at once; and gVisor hands a new SYN that arrives for a connection in TIME_WAIT only to a listening endpoint (tcp.(*Endpoint).handleTimeWaitSegments), which hcpe's TCP forwarder is not, so it drops the SYN until the TIME_WAIT ends (60 s, gVisor's DefaultTCPTimeWaitTimeout; hcpe does not set it). Linux in its place accepts such a SYN. A LAN host that reuses ports quickly sees those connects hang."
	}
	b.rep.Notes = append(b.rep.Notes, msg)
	b.logf("%s", msg)
}

// fdFit is the most idle flows (rounded down to hundreds) that keep every
// process nofileReserve descriptors below the open-file limit, given the
// descriptors each took per flow so far, and the process that bounds it.
// Before any flow was measured it assumes two per flow.
func (b *bench) fdFit(perFlow map[string]float64, base map[string]int) (int, string) {
	if b.nofile == 0 {
		return math.MaxInt, ""
	}
	fit, who := math.MaxInt, ""
	for n, f := range base {
		pf := perFlow[n]
		if len(perFlow) == 0 {
			pf = 2
		}
		if pf <= 0 {
			continue
		}
		room := float64(b.nofile) - float64(nofileReserve) - float64(f)
		if k := int(room/pf) / 100 * 100; k < fit {
			fit, who = max(k, 0), n
		}
	}
	return fit, who
}

// describeFDs says how many descriptors each process held per flow at the
// last count, and how many of them were pipes.
func describeFDs(perFlow map[string]float64, last []int, rows []MemRow) string {
	names := slices.Sorted(maps.Keys(perFlow))
	slices.SortStableFunc(names, func(a, b string) int { return cmpFloat(perFlow[b], perFlow[a]) })
	var parts []string
	for _, n := range names {
		part := fmt.Sprintf("%s held %.1f descriptors per flow", n, perFlow[n])
		for _, i := range last {
			if r := rows[i]; r.Process == n && r.Flows > 0 && float64(r.PipesLoaded)/float64(r.Flows) >= 0.5 {
				part += fmt.Sprintf(" (%.1f of them pipes)", float64(r.PipesLoaded)/float64(r.Flows))
			}
		}
		parts = append(parts, part)
	}
	return strings.Join(parts, ", ")
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// emulatorCeiling is figure 6: linkem unshaped, one TCP flow between the
// cpe and hag namespaces over the dsl link, each way; no daemon runs.
func (b *bench) emulatorCeiling(ctx context.Context) {
	b.lab.DSL.Apply(unshaped)
	b.lab.LTE.Apply(unshaped)
	defer b.applyPair(b.pairs[1])
	for _, c := range []struct {
		path string
		ns   *netlab.NS
		dst  netip.AddrPort
	}{
		{"hag → cpe (downstream)", b.lab.CPE, netip.AddrPortFrom(b.lab.Plan.DSL.HAG4, 9100)},
		{"cpe → hag (upstream)", b.lab.HAG, netip.AddrPortFrom(b.lab.Plan.DSL.CPE4, 9100)},
	} {
		if ctx.Err() != nil {
			return
		}
		b.settle(ctx)
		m := startCPU(map[string]int{"bench": os.Getpid()})
		ss, res := downloads(ctx, c.ns, c.dst, 1, b.opts.CPU)
		cores, machine := m.stop()
		row := EmuRow{Path: c.path, MTU: b.lab.DSL.MTU, Seconds: b.opts.CPU.Seconds(), GoodputMbps: mbps(bytesIn(ss, 0, b.opts.CPU), b.opts.CPU),
			BenchCores: cores["bench"], MachineCores: machine}
		row.GoalMet = row.GoodputMbps >= 1000
		if res[0].Err != nil {
			row.Err = res[0].Err.Error()
		}
		b.rep.Emulator = append(b.rep.Emulator, row)
		b.logf("fig6 %s: %.0f Mbit/s, bench %.2f cores, machine %.2f %s", c.path, row.GoodputMbps, row.BenchCores, row.MachineCores, row.Err)
	}
}

// teardown stops what runs and removes the lab; it checks nothing is left.
func (b *bench) teardown() {
	b.mu.Lock()
	s := b.cur
	b.mu.Unlock()
	if s != nil {
		if err := s.stop(); err != nil {
			b.errorf("stopping %s: %v", s.name, err)
		}
	}
	if b.srv != nil {
		b.srv.close()
	}
	if err := b.lab.Close(); err != nil {
		b.errorf("removing the lab: %v", err)
	}
	if left, _ := netlab.Leftovers(b.opts.Prefix); len(left) > 0 {
		b.errorf("namespaces left behind: %v", left)
	}
	b.logf("lab %s removed", b.opts.Prefix)
}

// emergency is the second signal's teardown: kill what runs, remove the lab.
func (b *bench) emergency() {
	b.mu.Lock()
	s := b.cur
	b.mu.Unlock()
	if s != nil {
		for _, p := range s.procs {
			if p.running() {
				_ = p.cmd.Process.Kill()
			}
		}
	}
	_ = b.lab.Close()
}

// machine records the machine and what else runs on it.
func (b *bench) machine() {
	m := &b.rep.Machine
	m.Cores = runtime.NumCPU()
	m.GoVersion = runtime.Version()
	if k, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(k))
	}
	if c, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(c), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				m.CPUModel = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if c, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		fmt.Sscanf(strings.SplitN(string(c), "\n", 2)[0], "MemTotal: %d kB", &kb)
		m.MemTotalMB = kb >> 10
	}
	m.LoadBefore = loadavg()
	if ents, err := os.ReadDir("/run/netns"); err == nil {
		m.OtherLabs = len(ents)
	}
	t0, i0 := machineBusy()
	time.Sleep(500 * time.Millisecond)
	t1, i1 := machineBusy()
	if t1 > t0 {
		m.IdleCores = float64((t1-t0)-(i1-i0)) / float64(t1-t0) * float64(m.Cores)
	}
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "?"
}

func peerVersion() string {
	out, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", "shadowsocks-libev").Output()
	if err != nil {
		return "shadowsocks-libev (version unknown)"
	}
	return "shadowsocks-libev " + string(out) + " (Debian)"
}
