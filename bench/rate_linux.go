package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"hybridgw/internal/config"
	"hybridgw/internal/convert"
	"hybridgw/internal/linkem"
	"hybridgw/internal/mptcp"
	"hybridgw/internal/netlab"
)

// rateServerPorts is how many server ports figure 7 spreads hag's
// connections over (from benchPort up).
const rateServerPorts = 4

// Figure 7's pass criteria for a step.
const (
	rateMaxErrPct = 1.0
	rateMaxP99    = time.Second
)

// rateGen is figure 7's load generator: it stands in for hcpe without
// hcpe's netstack, opening MPTCP connections to hag from the cpe namespace
// and asking, as hcpe does, for a server with a Convert Connect carrying
// the CPE's cookie.
type rateGen struct {
	ns       *netlab.NS
	hag      netip.AddrPort
	srcs     []netip.Addr     // the CPE's uplink addresses, in turn
	dsts     []netip.AddrPort // the server's ports, in turn
	client   netip.Addr       // the LAN host named in the Client Address TLV
	key      convert.CookieKey
	cpeID    string
	timeout  time.Duration
	inFlight int
	seq      atomic.Uint64
}

// dialWorkers is how many goroutines of the generator dial at once. Each
// is locked to an OS thread inside the cpe namespace for the whole step
// (a socket belongs to the namespace of the thread that creates it), so
// that a dial costs no setns and the generator no thread per flow; the
// Convert exchange after the handshake runs on ordinary goroutines.
const dialWorkers = 128

// flowResult is one flow's outcome.
type flowResult struct {
	wait           time.Duration // scheduled start → a dial worker took it
	connect, setup time.Duration // since the flow's scheduled start
	fallback       bool
	err            error
}

// dial opens one flow's MPTCP connection to hag; it runs on a dial
// worker, inside the cpe namespace.
func (g *rateGen) dial(ctx context.Context, seq uint64) (*net.TCPConn, error) {
	src := g.srcs[seq%uint64(len(g.srcs))]
	conn, err := mptcp.Dial(ctx, mptcp.DialOptions{Remote: g.hag, Local: netip.AddrPortFrom(src, 0), Timeout: g.timeout}, nil)
	if err != nil {
		return nil, fmt.Errorf("connecting to hag from %s: %w", src, err)
	}
	return conn, nil
}

// exchange sends the Convert Connect hcpe would send on conn, waits for
// hag's reply (hag has connected to the server by then) and closes.
func (g *rateGen) exchange(conn *net.TCPConn, seq uint64, deadline time.Time) (fallback bool, err error) {
	ok := false
	defer func() {
		if !ok {
			_ = conn.SetLinger(0) // RFC 8803: the client resets on any error
		}
		conn.Close()
	}()
	dst := g.dsts[seq%uint64(len(g.dsts))]
	client := netip.AddrPortFrom(g.client, uint16(1024+seq%60000))
	cookie, err := convert.MakeCookie(g.key, g.cpeID, time.Now(), dst, client)
	if err != nil {
		return false, fmt.Errorf("making the cookie: %w", err)
	}
	msg := convert.ConnectMsg(dst, client, cookie)
	var wire [convert.MaxMsgLen]byte
	b, err := msg.Append(wire[:0])
	if err != nil {
		return false, fmt.Errorf("encoding the Connect: %w", err)
	}
	_ = conn.SetDeadline(deadline)
	if _, err := conn.Write(b); err != nil {
		return false, fmt.Errorf("sending the Connect: %w", err)
	}
	var buf [convert.MaxMsgLen]byte
	if _, err := convert.ReadReply(conn, buf[:]); err != nil {
		return false, fmt.Errorf("waiting for hag's reply: %w", err)
	}
	ok = true
	return !mptcp.IsMPTCP(conn), nil
}

// Error kinds of figure 7.
const (
	errKindTimeout  = "timeout"
	errKindRefused  = "refused"
	errKindReset    = "reset or closed by hag before its reply"
	errKindPorts    = "no local port (EADDRNOTAVAIL: ports in use or in TIME_WAIT)"
	errKindNofile   = "bench out of file descriptors"
	errKindBound    = "not started: generator's in-flight bound reached"
	errKindNoMPTCP  = "MPTCP unavailable"
	errKindOther    = "other"
	errKindConvertP = "Convert error: "
)

// errKind sorts a failed flow into figure 7's error kinds.
func errKind(err error) string {
	var re *convert.RemoteError
	switch {
	case errors.As(err, &re):
		return errKindConvertP + re.Code.String()
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return errKindTimeout
	case errors.Is(err, syscall.ECONNREFUSED):
		return errKindRefused
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return errKindPorts
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return errKindNofile
	case errors.Is(err, mptcp.ErrMPTCPUnavailable):
		return errKindNoMPTCP
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return errKindReset
	}
	return errKindOther
}

// step offers target new flows per second for d, open loop: arrivals are
// scheduled at even intervals whatever hag answers, and an arrival that
// finds g.inFlight flows still unfinished is counted as an error, not
// delayed. A flow's times run from its scheduled arrival, so time spent
// waiting for a dial worker counts too.
func (g *rateGen) step(ctx context.Context, target int, d time.Duration) RateStep {
	n := int(float64(target) * d.Seconds())
	interval := time.Duration(float64(time.Second) / float64(target))
	st := RateStep{Target: target, Seconds: d.Seconds(), Scheduled: n, Errors: map[string]int{}, ErrorSamples: map[string]string{}}
	type job struct {
		seq uint64
		at  time.Time
	}
	jobs := make(chan job, g.inFlight)
	results := make(chan flowResult, g.inFlight)
	sem := make(chan struct{}, g.inFlight)
	var flows, workers sync.WaitGroup
	finish := func(r flowResult) {
		results <- r
		<-sem
		flows.Done()
	}
	for range min(dialWorkers, g.inFlight) {
		workers.Go(func() {
			err := g.ns.Do(func() error {
				for j := range jobs {
					wait := time.Since(j.at)
					deadline := j.at.Add(g.timeout)
					dctx, cancel := context.WithDeadline(ctx, deadline)
					conn, err := g.dial(dctx, j.seq)
					cancel()
					if err != nil {
						finish(flowResult{err: err})
						continue
					}
					connect := time.Since(j.at)
					go func() {
						fb, err := g.exchange(conn, j.seq, deadline)
						finish(flowResult{wait: wait, connect: connect, setup: time.Since(j.at), fallback: fb, err: err})
					}()
				}
				return nil
			})
			if err != nil { // could not enter the namespace: fail what comes
				for j := range jobs {
					_ = j
					finish(flowResult{err: err})
				}
			}
		})
	}
	var waits, conn, lat []time.Duration
	var fall int
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		for r := range results {
			switch {
			case r.err != nil && ctx.Err() != nil:
				// interrupted: not hag's answer
			case r.err != nil:
				k := errKind(r.err)
				st.Errors[k]++
				if _, ok := st.ErrorSamples[k]; !ok {
					st.ErrorSamples[k] = r.err.Error()
				}
			default:
				waits, conn, lat = append(waits, r.wait), append(conn, r.connect), append(lat, r.setup)
				if r.connect-r.wait >= 900*time.Millisecond {
					st.SlowHandshakes++
				}
				if r.fallback {
					fall++
				}
			}
		}
	}()
	var late time.Duration
	bound := 0
	start := time.Now()
	for i := 0; i < n && ctx.Err() == nil; i++ {
		due := start.Add(time.Duration(i) * interval)
		if w := time.Until(due); w > 0 {
			time.Sleep(w)
		} else {
			late = max(late, -w)
		}
		select {
		case sem <- struct{}{}:
		default:
			bound++
			continue
		}
		st.Started++
		flows.Add(1)
		jobs <- job{g.seq.Add(1), due}
	}
	span := time.Since(start)
	close(jobs)
	workers.Wait()
	flows.Wait()
	close(results)
	<-collected
	if bound > 0 {
		st.Errors[errKindBound] = bound
	}
	st.OK, st.Fallbacks = len(lat), fall
	st.OfferedPerS = float64(st.Started) / max(span, d).Seconds()
	st.AchievedPerS = float64(st.OK) / d.Seconds()
	st.LateMs = ms(late)
	for _, v := range st.Errors {
		st.ErrorCount += v
	}
	if n > 0 {
		st.ErrPct = 100 * float64(st.ErrorCount) / float64(n)
	}
	if len(lat) > 0 {
		st.WaitP99Ms = ms(percentile(waits, 99))
		st.ConnectMedMs, st.ConnectP99Ms = ms(percentile(conn, 50)), ms(percentile(conn, 99))
		st.MedianMs, st.P99Ms, st.MaxMs = ms(percentile(lat, 50)), ms(percentile(lat, 99)), ms(slices.Max(lat))
	}
	return st
}

// rateSetup prepares the cpe and hag namespaces for figure 7 and returns
// what undoes it: the path-manager endpoints hcpe installs (one per
// uplink address, flag subflow, so every flow also gets an LTE join, as
// hcpe's do), and wider port ranges (see the report's note).
func (b *bench) rateSetup() (undo func(), err error) {
	var undos []func()
	undo = func() {
		for i := len(undos) - 1; i >= 0; i-- {
			undos[i]()
		}
	}
	cpe, hag := b.lab.CPE, b.lab.HAG
	sysctls := []struct {
		ns       *netlab.NS
		key, val string
	}{
		{cpe, "net/ipv4/ip_local_port_range", "1024 65535"},
		{cpe, "net/ipv4/tcp_tw_reuse", "1"},
		{hag, "net/ipv4/ip_local_port_range", "1024 65535"},
	}
	for _, sc := range sysctls {
		var old []byte
		err := sc.ns.Do(func() (err error) {
			path := "/proc/sys/" + sc.key
			if old, err = os.ReadFile(path); err != nil {
				return err
			}
			return os.WriteFile(path, []byte(sc.val), 0o644)
		})
		if err != nil {
			return undo, fmt.Errorf("setting %s in %s: %w", sc.key, sc.ns.Name, err)
		}
		undos = append(undos, func() {
			_ = sc.ns.Do(func() error { return os.WriteFile("/proc/sys/"+sc.key, old, 0o644) })
		})
	}
	undos = append(undos, func() {
		_ = cpe.Run("ip", "mptcp", "endpoint", "flush")
		_ = cpe.Run("ip", "mptcp", "limits", "set", "subflow", "2", "add_addr_accepted", "0")
	})
	setup := [][]string{{"ip", "mptcp", "endpoint", "flush"}, {"ip", "mptcp", "limits", "set", "subflow", "4", "add_addr_accepted", "0"}}
	for _, e := range peerEndpoints {
		setup = append(setup, []string{"ip", "mptcp", "endpoint", "add", e[0], "dev", e[1], "subflow"})
	}
	for _, c := range setup {
		if err := cpe.Run(c[0], c[1:]...); err != nil {
			return undo, err
		}
	}
	return undo, nil
}

// rateFigure is figure 7: hag's connection rate. hag runs alone (no hcpe,
// whose netstack would be the bottleneck) on unshaped links, first with
// the shipped limits, then with the bench's raised ones; a load generator
// in the bench ramps the offered rate of new flows until a step has 1 % or
// more errors or a p99 setup time of 1 s or more.
func (b *bench) rateFigure(ctx context.Context) {
	b.logf("=== hag connection rate (figure 7) ===")
	b.lab.DSL.Apply(unshaped)
	b.lab.LTE.Apply(unshaped)
	defer b.applyPair(b.pairs[1])
	undo, err := b.rateSetup()
	defer undo()
	if err != nil {
		b.errorf("figure 7: preparing the namespaces: %v", err)
		return
	}
	hc, err := config.LoadHCPE(b.cfgs.HCPE)
	if err != nil {
		b.errorf("figure 7: %v", err)
		return
	}
	var hagAddr netip.Addr
	for _, a := range hc.HAG.Addrs {
		if a.Is4() && !hagAddr.IsValid() {
			hagAddr = a
		}
	}
	if !hagAddr.IsValid() {
		b.errorf("figure 7: %s names no IPv4 address of hag", b.cfgs.HCPE)
		return
	}
	g := &rateGen{ns: b.lab.CPE, hag: netip.AddrPortFrom(hagAddr, uint16(hc.HAG.Port)),
		srcs:   []netip.Addr{netip.MustParseAddr(netlab.CPEDSL4), netip.MustParseAddr(netlab.CPELTE4)},
		client: netip.MustParseAddr(netlab.Client4), key: convert.CookieKey{ID: uint8(hc.HAG.KeyID), Secret: hc.HAG.KeyRaw}, cpeID: hc.HAG.CPEID,
		timeout: b.opts.RateTimeout, inFlight: b.opts.RateInFlight}
	for i := range rateServerPorts {
		g.dsts = append(g.dsts, netip.AddrPortFrom(b.lab.Plan.Server4, uint16(benchPort+i)))
	}
	for _, r := range []struct{ name, label, cfg string }{
		{"hag-rate-shipped", "shipped limits", b.cfgs.HAGLimit},
		{"hag-rate-raised", "rate limits raised", b.cfgs.HAG},
	} {
		if ctx.Err() != nil {
			return
		}
		run := RateRun{Label: r.label, Sysctls: "cpe: net.ipv4.ip_local_port_range 1024 65535, net.ipv4.tcp_tw_reuse 1; hag: net.ipv4.ip_local_port_range 1024 65535"}
		if hg, err := config.LoadHAG(r.cfg); err == nil {
			l := hg.Limits
			run.RateLimit, run.RateBurst = l.NewFlowsPerSecond, l.NewFlowsBurst
			run.Limits = fmt.Sprintf("new_flows_per_second %g, new_flows_burst %d, flows_per_cpe %d, flows_total %d, handshakes_in_flight %d",
				l.NewFlowsPerSecond, l.NewFlowsBurst, l.FlowsPerCPE, l.FlowsTotal, l.HandshakesInFlight)
		}
		s, err := b.startHAG(ctx, r.name, r.cfg)
		if err != nil {
			b.errorf("figure 7 (%s): hag did not start: %v", r.label, err)
			if s != nil {
				_ = s.stop()
			}
			return
		}
		b.mu.Lock()
		b.cur = s
		b.mu.Unlock()
		b.ramp(ctx, s, g, &run, r.name == "hag-rate-raised")
		b.mu.Lock()
		b.cur = nil
		b.mu.Unlock()
		if err := s.alive(); err != nil {
			b.errorf("figure 7 (%s): %v", r.label, err)
		}
		if err := s.stop(); err != nil {
			b.errorf("stopping hag after figure 7 (%s): %v", r.label, err)
		}
		if ctx.Err() != nil {
			return // interrupted: not a measurement
		}
		b.rep.Rate = append(b.rep.Rate, run)
		b.logf("fig7 %s: %s", r.label, run.summary())
	}
}

// ramp runs the steps of one hag config until one fails. With profile,
// hag's CPU is profiled during each step, and the last step's profile is
// read into the report.
func (b *bench) ramp(ctx context.Context, s *system, g *rateGen, run *RateRun, profile bool) {
	metricNames := []string{"hag_limit_hits_total", "hag_flows_total"}
	// hag's listener: drops, and the share of them that are MP_JOINs for
	// connections already closed (the generator closes right after the
	// reply, often before the LTE join arrives); the generator's SYN
	// retransmissions, each a second of someone's setup time.
	kernel := []struct {
		ns    *netlab.NS
		label string
		names []string
	}{
		{b.lab.HAG, "hag ", []string{"TcpExt:ListenOverflows", "TcpExt:ListenDrops", "TcpExt:TCPReqQFullDrop", "TcpExt:TCPReqQFullDoCookies", "MPTcpExt:MPJoinNoTokenFound", "TcpExt:TCPSynRetrans"}},
		{b.lab.CPE, "cpe ", []string{"TcpExt:TCPSynRetrans", "MPTcpExt:MPCapableSYNTX", "MPTcpExt:MPJoinSynTx"}},
		{b.lab.SRV, "srv ", []string{"TcpExt:ListenOverflows", "TcpExt:ListenDrops"}},
	}
	counters := func() map[string]float64 {
		out := map[string]float64{}
		for _, k := range kernel {
			text, err := nsProc(k.ns, "netstat")
			if err != nil {
				continue
			}
			for n, v := range netstatCounters(text, k.names...) {
				_, short, _ := strings.Cut(n, ":")
				out[k.label+short] = v
			}
		}
		return out
	}
	var lastProfile *fetchedProfile
	for _, target := range b.rateSteps {
		if ctx.Err() != nil || !b.fits(fmt.Sprintf("figure 7 step %d/s", target), b.opts.RateStep+b.opts.RateTimeout+2*time.Second) {
			break
		}
		m0, _ := scrapeSeries(ctx, b.lab.HAG, "127.0.0.1:9102", metricNames...)
		k0 := counters()
		var profiling sync.WaitGroup
		if profile {
			secs := max(1, int(b.opts.RateStep/time.Second))
			fp := &fetchedProfile{proc: "hag", kind: "cpu", seconds: secs, when: fmt.Sprintf("figure 7, rate limits raised, step %d flows/s", target),
				path: filepath.Join(b.profDir, fmt.Sprintf("hag-cpu-rate-%d.pprof", target))}
			lastProfile = fp
			profiling.Go(func() {
				fp.err = b.fetchProfile(ctx, s.admin["hag"], fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs), fp.path)
			})
		}
		l0 := b.linkTotals()
		m := startCPU(map[string]int{"hag": s.pids()["hag"], "bench": os.Getpid()})
		t0, si0 := softirqShare()
		st := g.step(ctx, target, b.opts.RateStep)
		cores, machine := m.stop()
		if t1, si1 := softirqShare(); t1 > t0 {
			st.SoftirqCores = float64(si1-si0) / float64(t1-t0) * float64(runtime.NumCPU())
		}
		l1 := b.linkTotals()
		st.LinkPackets, st.LinkDrops = l1.Packets-l0.Packets, linkDropsOf(l1)-linkDropsOf(l0)
		profiling.Wait()
		if ctx.Err() != nil {
			return
		}
		st.HagCores, st.BenchCores, st.MachineCores = cores["hag"], cores["bench"], machine
		if m1, err := scrapeSeries(ctx, b.lab.HAG, "127.0.0.1:9102", metricNames...); err == nil {
			st.LimitHits, st.HagResults = map[string]float64{}, map[string]float64{}
			for k, v := range m1 {
				d := v - m0[k]
				if d == 0 {
					continue
				}
				if strings.HasPrefix(k, "hag_limit_hits_total") {
					st.LimitHits[labelValue(k)] = d
				} else {
					st.HagResults[labelValue(k)] = d
				}
			}
		}
		st.Kernel = map[string]float64{}
		for k, v := range counters() {
			if d := v - k0[k]; d != 0 {
				st.Kernel[k] = d
			}
		}
		st.TimeWaitCPE, st.TimeWaitHAG = timeWait(b.lab.CPE), timeWait(b.lab.HAG)
		st.GeneratorBehind = st.LateMs > 0.1*ms(b.opts.RateStep)
		st.Pass = st.OK > 0 && st.ErrPct < rateMaxErrPct && st.P99Ms < ms(rateMaxP99) && !st.GeneratorBehind
		run.Steps = append(run.Steps, st)
		b.logf("fig7 %s %d/s: offered %.0f/s, %d ok (%.0f/s), errors %.2f %% %v, connect median %.1f ms p99 %.1f ms, setup median %.1f ms p99 %.1f ms, hag %.2f cores, bench %.2f, machine %.2f, limit hits %v, kernel %v, emulator %d packets %d drops, softirq %.2f, TIME_WAIT cpe %d hag %d",
			run.Label, target, st.OfferedPerS, st.OK, st.AchievedPerS, st.ErrPct, st.Errors, st.ConnectMedMs, st.ConnectP99Ms, st.MedianMs, st.P99Ms,
			st.HagCores, st.BenchCores, st.MachineCores, st.LimitHits, st.Kernel, st.LinkPackets, st.LinkDrops, st.SoftirqCores, st.TimeWaitCPE, st.TimeWaitHAG)
		if !st.Pass {
			break
		}
		run.SustainedPerS = float64(target)
		// Let the last step's flows finish closing before the next.
		_ = sleepCtx(ctx, time.Second)
	}
	run.finish(b.opts.RateTimeout)
	if lastProfile != nil && ctx.Err() == nil {
		row := b.analyzeProfile(ctx, s, lastProfile)
		run.Profile = &row
		// Keep only the profile that was read; the others were taken in
		// case the ramp broke at their step.
		for _, st := range run.Steps {
			if p := filepath.Join(b.profDir, fmt.Sprintf("hag-cpu-rate-%d.pprof", st.Target)); p != lastProfile.path {
				os.Remove(p)
			}
		}
	}
}

// finish says where and why a ramp stopped, from the last step's evidence.
func (r *RateRun) finish(timeout time.Duration) {
	if len(r.Steps) == 0 {
		r.Why = "no step ran"
		return
	}
	last := r.Steps[len(r.Steps)-1]
	if last.Pass {
		r.Why = fmt.Sprintf("every step passed, up to %d flows/s (the last step of -rate-steps or of the time budget): hag's ceiling lies higher", last.Target)
		return
	}
	r.BrokeAt = last.Target
	var why []string
	if last.OK == 0 {
		why = append(why, "no flow succeeded")
	}
	if last.ErrPct >= rateMaxErrPct {
		kinds := slices.Sorted(maps.Keys(last.Errors))
		slices.SortStableFunc(kinds, func(a, b string) int { return last.Errors[b] - last.Errors[a] })
		var parts []string
		for _, k := range kinds {
			parts = append(parts, fmt.Sprintf("%d %s", last.Errors[k], k))
		}
		why = append(why, fmt.Sprintf("%.1f %% errors (%s)", last.ErrPct, strings.Join(parts, ", ")))
	}
	for _, l := range slices.Sorted(maps.Keys(last.LimitHits)) {
		why = append(why, fmt.Sprintf("hag's limit %s refused %.0f requests (hag_limit_hits_total)", l, last.LimitHits[l]))
		if l == "new_flows_rate" && r.RateLimit > 0 {
			why = append(why, fmt.Sprintf("that is the per-CPE token bucket: %g new flows/s sustained, bursts of %d", r.RateLimit, r.RateBurst))
			if r.SustainedPerS > r.RateLimit {
				dur := last.Seconds
				why = append(why, fmt.Sprintf("a %g s step at %.0f/s passed only because its %.0f flows fit in the burst plus %g s of refill (%.0f)",
					dur, r.SustainedPerS, r.SustainedPerS*dur, dur, float64(r.RateBurst)+r.RateLimit*dur))
			}
		}
	}
	if last.P99Ms >= ms(rateMaxP99) {
		why = append(why, fmt.Sprintf("p99 setup %.0f ms ≥ %v", last.P99Ms, rateMaxP99))
	}
	if last.Errors[errKindTimeout] > 0 {
		why = append(why, fmt.Sprintf("%d flows got no reply within %v", last.Errors[errKindTimeout], timeout))
	}
	if d := last.Kernel["hag ListenDrops"]; d > 0 {
		s := fmt.Sprintf("hag's listener dropped %.0f packets (ListenDrops", d)
		if j := last.Kernel["hag MPJoinNoTokenFound"]; j > 0 {
			s += fmt.Sprintf("; %.0f of them MP_JOINs for connections already closed", j)
		}
		if o := last.Kernel["hag ListenOverflows"]; o > 0 {
			s += fmt.Sprintf("; %.0f accept-queue overflows", o)
		}
		why = append(why, s+")")
	}
	if last.SlowHandshakes > 0 {
		why = append(why, fmt.Sprintf("%d flows' MPTCP handshakes with hag took 0.9 s or more once a dial worker had them (a SYN or SYN-ACK lost and retransmitted after the 1 s timeout)", last.SlowHandshakes))
	}
	if r := last.Kernel["cpe TCPSynRetrans"]; r > 0 {
		why = append(why, fmt.Sprintf("the cpe namespace's kernel retransmitted %.0f SYNs (TCPSynRetrans: initial subflows and LTE joins; a retransmitted initial SYN costs its flow a second)", r))
	}
	if r := last.Kernel["hag TCPSynRetrans"]; r > 0 {
		why = append(why, fmt.Sprintf("hag's namespace retransmitted %.0f SYNs or SYN-ACKs (its dials to the server, its answers to joins)", r))
	}
	if d := last.Kernel["srv ListenOverflows"] + last.Kernel["srv ListenDrops"]; d > 0 {
		why = append(why, fmt.Sprintf("the test server's listener dropped %.0f (ListenOverflows/ListenDrops in srv)", d))
	}
	if last.WaitP99Ms >= ms(rateMaxP99)/10 {
		why = append(why, fmt.Sprintf("flows waited up to %.0f ms (p99) for one of the generator's %d dial workers, which is part of their setup time", last.WaitP99Ms, dialWorkers))
	}
	if last.LinkDrops > 0 {
		why = append(why, fmt.Sprintf("the link emulator dropped %d packets (queue, arena or write errors)", last.LinkDrops))
	}
	if last.Errors[errKindPorts] > 0 {
		why = append(why, fmt.Sprintf("the generator ran out of local ports: %d sockets in TIME_WAIT in cpe, %d in hag", last.TimeWaitCPE, last.TimeWaitHAG))
	}
	if last.GeneratorBehind {
		why = append(why, fmt.Sprintf("the generator fell %.0f ms behind its schedule: the bench process (generator, link emulator, server) could not offer the rate", last.LateMs))
	}
	if last.MachineCores >= 0.9*float64(runtime.NumCPU()) {
		why = append(why, fmt.Sprintf("the %d-core machine was saturated: %.2f cores busy (hag %.2f, bench process — generator, emulator, server — %.2f, kernel softirq %.2f)",
			runtime.NumCPU(), last.MachineCores, last.HagCores, last.BenchCores, last.SoftirqCores))
	} else {
		why = append(why, fmt.Sprintf("CPU: hag %.2f cores, bench process %.2f, kernel softirq %.2f, machine %.2f busy", last.HagCores, last.BenchCores, last.SoftirqCores, last.MachineCores))
	}
	r.Why = strings.Join(why, "; ")
}

func (r *RateRun) summary() string {
	return fmt.Sprintf("sustained %.0f flows/s (< %.0f %% errors, p99 < %v); %s", r.SustainedPerS, rateMaxErrPct, rateMaxP99, r.Why)
}

// linkTotals sums the link emulator's counters over both links and
// directions.
func (b *bench) linkTotals() linkem.Stats {
	var t linkem.Stats
	for _, l := range []*netlab.Link{b.lab.DSL, b.lab.LTE} {
		for _, d := range []linkem.Dir{netlab.Upstream, netlab.Downstream} {
			s := l.Stats(d)
			t.Packets += s.Packets
			t.DroppedQueue += s.DroppedQueue
			t.DroppedOverflow += s.DroppedOverflow
			t.ReadErrors += s.ReadErrors
			t.WriteErrors += s.WriteErrors
		}
	}
	return t
}

// linkDrops are a linkem.Stats' drops of every kind but loss and down,
// which an unshaped link has none of.
func linkDropsOf(s linkem.Stats) uint64 {
	return s.DroppedQueue + s.DroppedOverflow + s.ReadErrors + s.WriteErrors
}
