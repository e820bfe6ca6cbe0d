package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"hybridgw/internal/netlab"
)

// bench is one run: the lab, the test servers, the system now running and
// the report being filled in.
type bench struct {
	opts   options
	lab    *netlab.Lab
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
	b := &bench{opts: o, start: time.Now(), logDir: filepath.Join(o.Out, "logs")}
	b.rep = &Report{Started: b.start.UTC().Format(time.RFC3339), Version: o.Version, Commit: o.Commit, Command: cmdline, Flows: o.Flows,
		Durations: map[string]float64{"bulk": o.Bulk.Seconds(), "parallel": o.Parallel.Seconds(), "handover": o.Handover.Seconds(),
			"handover_dsl_down_at": o.DownAt.Seconds(), "cpu": o.CPU.Seconds(), "budget": o.Budget.Seconds()},
		Runs: map[string]int{"efficiency": o.EffRuns, "handover": o.HandoverRuns, "cpu": o.CPURuns}}
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
		b.rep.staticNotes(b.opts)
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
	if o.EffRuns < 1 || o.CPURuns < 1 || o.HandoverRuns < 1 {
		return errors.New("-eff-runs, -cpu-runs and -handover-runs must be at least 1")
	}
	if err := b.prepareConfigs(); err != nil {
		return fmt.Errorf("writing the bench's configs: %w", err)
	}
	b.rep.Policy = b.cfgs.Policy
	if b.opts.PolicyHold == 0 {
		b.opts.PolicyHold = time.Duration(b.cfgs.Policy.MinHoldS * float64(time.Second))
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
		b.effFigure(ctx, s)
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
	if want(o.Figures, "3") && ctx.Err() == nil {
		b.handoverFigure(ctx, s)
	}
	if want(o.Figures, "5") && name != sysDirect && ctx.Err() == nil {
		b.memory(ctx, s)
	}
	if want(o.Figures, "4") && ctx.Err() == nil {
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
			p.Kill()
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
