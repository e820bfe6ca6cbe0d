package main

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// headlines derives the ratios of the run (one per figure and case, each
// measured in this run) and fills in the TTFB rows' extra RTTs.
func (r *Report) headlines(flows int) {
	r.Headlines = nil
	add := func(name string, v float64, format string, a ...any) {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return
		}
		r.Headlines = append(r.Headlines, Headline{Name: name, Value: v, Text: fmt.Sprintf(format, a...)})
	}
	effPct := func(pair, sys string, n int) string {
		if e, ok := r.eff(pair, sys, n); ok {
			return fmt.Sprintf("%.1f %%", 100*e.Efficiency)
		}
		return "n/a"
	}
	for _, p := range r.Lab.Pairs {
		for _, n := range []int{1, flows} {
			what := "one download"
			if n > 1 {
				what = fmt.Sprintf("%d parallel downloads", n)
			}
			h, okh := r.eff(p.Name, sysHybrid, n)
			pe, okp := r.eff(p.Name, sysPeer, n)
			if !okh || !okp {
				continue
			}
			add(fmt.Sprintf("goodput hybridgw ÷ peer, %s pair, %s", p.Name, what), ratio(h.GoodputMbps, pe.GoodputMbps),
				"medians of %d and %d runs; share of the %.0f Mbit/s link sum: hybridgw %s, hybridgw-bond %s, peer %s, direct DSL TCP %s",
				len(r.effRuns(p.Name, sysHybrid, n)), len(r.effRuns(p.Name, sysPeer, n)),
				p.SumDown, effPct(p.Name, sysHybrid, n), effPct(p.Name, sysBond, n), effPct(p.Name, sysPeer, n), effPct("default", sysDirect, n))
		}
	}
	rtt := r.dslRTTms()
	d, okd := r.ttfbOf(sysDirect)
	for i := range r.TTFB {
		e := &r.TTFB[i]
		if okd && e.Runs > 0 {
			e.ExtraRTTMed = (e.MedianMs - d.MedianMs) / rtt
			e.ExtraRTTP99 = (e.P99Ms - d.P99Ms) / rtt
		} else {
			e.ExtraRTTMed, e.ExtraRTTP99 = math.NaN(), math.NaN()
		}
	}
	for _, s := range []string{sysHybrid, sysPeer} {
		if e, ok := r.ttfbOf(s); ok && okd {
			add(fmt.Sprintf("TTFB median %s ÷ direct", s), ratio(e.MedianMs, d.MedianMs),
				"%.1f vs %.1f ms: %+.2f DSL RTTs (p99 %.1f vs %.1f ms, %+.2f RTTs)", e.MedianMs, d.MedianMs, e.ExtraRTTMed, e.P99Ms, d.P99Ms, e.ExtraRTTP99)
		}
	}
	hh, hp := r.handoverOf(sysHybrid), r.handoverOf(sysPeer)
	if hh != nil && hp != nil && hp.Gap.Med > 0 {
		add("handover longest gap hybridgw ÷ peer (medians)", hh.Gap.Med/hp.Gap.Med,
			"%.0f vs %.0f ms without data when DSL went down, median of %d and %d runs (worst %.0f vs %.0f ms); back to %.0f %% of LTE's rate after %s vs %s ms (medians; worst %s vs %s)",
			hh.Gap.Med, hp.Gap.Med, len(hh.Runs), len(hp.Runs), hh.Gap.Max, hp.Gap.Max, 100*recoveryShare,
			recCell(hh.recMedian()), recCell(hp.recMedian()), recCell(hh.recWorst()), recCell(hp.recWorst()))
	}
	for _, n := range []int{1, flows} {
		h, p := r.cpuOf(sysHybrid, n), r.cpuOf(sysPeer, n)
		if h != nil && p != nil {
			add(fmt.Sprintf("CPU per Gbit/s hybridgw ÷ peer, %d flow(s) unshaped", n), ratio(h.PerGbps, p.PerGbps),
				"%.2f vs %.2f cores per Gbit/s, medians of %d and %d runs (hcpe+hag vs ss-redir+ss-server; the peer also encrypts)",
				h.PerGbps, p.PerGbps, len(r.cpuRuns(sysHybrid, n)), len(r.cpuRuns(sysPeer, n)))
		}
	}
	idle := r.idleCounts()
	for _, n := range idle {
		hm, pm := r.perFlowKB(sysHybrid, n), r.perFlowKB(sysPeer, n)
		if hm > 0 && pm > 0 {
			add(fmt.Sprintf("RSS per idle flow hybridgw ÷ peer, %d flows", n), hm/pm, "%.1f vs %.1f KB per flow (hcpe+hag vs ss-redir+ss-server)", hm, pm)
		}
	}
	if len(idle) > 1 {
		lo, hi := idle[0], idle[len(idle)-1]
		for _, s := range []string{sysHybrid, sysPeer} {
			a, b := r.perFlowKB(s, lo), r.perFlowKB(s, hi)
			if a > 0 && b > 0 {
				add(fmt.Sprintf("RSS per idle flow %s, %d ÷ %d flows", s, hi, lo), b/a, "%.1f KB per flow at %d flows, %.1f at %d (%s)", b, hi, a, lo, linearity(b/a))
			}
		}
	}
	if sh, rs := r.rateRun("shipped limits"), r.rateRun("rate limits raised"); sh != nil && rs != nil && sh.SustainedPerS > 0 {
		add("hag new flows/s, rate limits raised ÷ shipped limits", rs.SustainedPerS/sh.SustainedPerS,
			"%.0f vs %.0f new flows/s with < 1 %% errors and p99 setup < 1 s; shipped limits broke at %d/s, raised at %d/s (figure 7 says why)",
			rs.SustainedPerS, sh.SustainedPerS, sh.BrokeAt, rs.BrokeAt)
	}
	for _, e := range r.Emulator {
		if e.Err == "" {
			add("emulator ceiling ÷ 1 Gbit/s goal, "+e.Path, e.GoodputMbps/1000, "%.0f Mbit/s, one TCP flow, MTU %d", e.GoodputMbps, e.MTU)
		}
	}
}

func (r *Report) rateRun(label string) *RateRun {
	for i := range r.Rate {
		if r.Rate[i].Label == label {
			return &r.Rate[i]
		}
	}
	return nil
}

// linearWithin is how far the ratio of memory per flow at two counts may
// be from 1 for the report to call the growth linear.
const linearWithin = 0.10

// linearity says what a ratio of memory per flow at a larger count to a
// smaller one shows.
func linearity(v float64) string {
	switch {
	case math.Abs(v-1) <= linearWithin:
		return fmt.Sprintf("within %.0f %% of 1.00: memory grows about linearly with flows", 100*linearWithin)
	case v > 1:
		return "above 1.00: memory grows faster than the flow count"
	default:
		return "below 1.00: memory grows slower than the flow count (a fixed share spread over more flows)"
	}
}

// glance renders the at-a-glance table: one row per figure and case, one
// column per system, the hybridgw ÷ peer ratio of the medians, and n, the
// runs behind each cell.
func (r *Report) glance(flows int) string {
	var b strings.Builder
	systems := []string{sysHybrid, sysBond, sysPeer, sysDirect}
	t := newTable(&b, "measure", "hybridgw", "hybridgw-bond", "peer (OMR)", "direct DSL TCP", "hybridgw ÷ peer", "n (runs per cell)")
	cell := func(ok bool, v float64, format string) string {
		if !ok || math.IsNaN(v) {
			return "–"
		}
		return fmt.Sprintf(format, v)
	}
	for _, p := range r.Lab.Pairs {
		if len(r.effRuns(p.Name, sysHybrid, 1))+len(r.effRuns(p.Name, sysBond, 1))+len(r.effRuns(p.Name, sysPeer, 1)) == 0 {
			continue // not measured on this pair (direct uses the default pair's DSL for every pair)
		}
		for _, n := range []int{1, flows} {
			var cells [4]string
			var ns [4]int
			for i, s := range systems {
				pair := p.Name
				if s == sysDirect {
					pair = "default"
				}
				sp := r.effSpread(pair, s, n)
				ns[i] = sp.N
				cells[i] = "–"
				if sp.N > 0 {
					cells[i] = pctSpread(sp)
				}
			}
			h, p2 := r.effSpread(p.Name, sysHybrid, n), r.effSpread(p.Name, sysPeer, n)
			t.row(fmt.Sprintf("1. efficiency, %s, %d flow(s): median (min–max)", p.Name, n), cells[0], cells[1], cells[2], cells[3],
				cell(h.N > 0 && p2.N > 0, ratio(h.Med, p2.Med), "**%.2f**"), nCell(systems, ns))
		}
	}
	h, okh := r.ttfbOf(sysHybrid)
	p, okp := r.ttfbOf(sysPeer)
	d, okd := r.ttfbOf(sysDirect)
	tn := nCell(systems, [4]int{h.Runs, 0, p.Runs, d.Runs})
	if len(r.TTFB) > 0 {
		glanceTTFB(t, h, p, d, okh, okp, okd, tn)
	}
	hs := [4]*handoverStat{r.handoverOf(sysHybrid), nil, r.handoverOf(sysPeer), r.handoverOf(sysDirect)}
	var hn [4]int
	var gaps, recs [4]string
	for i, x := range hs {
		gaps[i], recs[i] = "–", "–"
		if x == nil {
			continue
		}
		hn[i] = len(x.Runs)
		gaps[i] = fmt.Sprintf("%.0f (%.0f)", x.Gap.Med, x.Gap.Max)
		if x.Stalled > 0 {
			gaps[i] += fmt.Sprintf(" (%d of %d stalled)", x.Stalled, len(x.Runs))
		}
		recs[i] = recCell(x.recMedian()) + " (" + recCell(x.recWorst()) + ")"
	}
	gapRatio, recRatio := "", ""
	if hh, hp := hs[0], hs[2]; hh != nil && hp != nil {
		gapRatio = cell(true, ratio(hh.Gap.Med, hp.Gap.Med), "**%.2f**")
		if mh, mp := hh.recMedian(), hp.recMedian(); mh >= 0 && mp >= 0 {
			recRatio = cell(true, ratio(mh, mp), "**%.2f**")
		}
	}
	if len(r.Handover) > 0 {
		t.row("3. handover: longest gap ms, median (worst)", gaps[0], gaps[1], gaps[2], gaps[3], gapRatio, nCell(systems, hn))
		t.row(fmt.Sprintf("3. handover: back to %.0f %% of LTE's rate, ms, median (worst)", 100*recoveryShare), recs[0], recs[1], recs[2], recs[3], recRatio, nCell(systems, hn))
	}
	for _, n := range []int{1, flows} {
		if len(r.CPU) == 0 {
			break
		}
		ch, cp := r.cpuOf(sysHybrid, n), r.cpuOf(sysPeer, n)
		sh := spreadBy(r.cpuRuns(sysHybrid, n), func(c CPURow) float64 { return c.PerGbps })
		sp := spreadBy(r.cpuRuns(sysPeer, n), func(c CPURow) float64 { return c.PerGbps })
		t.row(fmt.Sprintf("4. daemon cores per Gbit/s, %d flow(s): median (min–max)", n), ifOK(ch != nil, sh.cell(2, 1)), "–", ifOK(cp != nil, sp.cell(2, 1)), "–",
			cell(ch != nil && cp != nil, ratio(perG(ch), perG(cp)), "**%.2f**"), nCell(systems, [4]int{sh.N, 0, sp.N, 0}))
	}
	for _, n := range r.idleCounts() {
		hm, pm := r.perFlowKB(sysHybrid, n), r.perFlowKB(sysPeer, n)
		label := fmt.Sprintf("5. RSS per idle flow, KB (both daemons), %d flows", n)
		for _, m := range r.Memory {
			if m.target() == n && m.Asked > n {
				label += fmt.Sprintf(" (%d asked: the most the open-file limit allows, see figure 5)", m.Asked)
				break
			}
		}
		var mn [4]int
		if hm != 0 {
			mn[0] = 1
		}
		if pm != 0 {
			mn[2] = 1
		}
		t.row(label, cell(hm != 0, hm, "%.1f"), "–", cell(pm != 0, pm, "%.1f"), "–", cell(hm != 0 && pm != 0, ratio(hm, pm), "**%.2f**"), nCell(systems, mn))
	}
	for _, run := range r.Rate {
		v := fmt.Sprintf("%.0f", run.SustainedPerS)
		if run.BrokeAt > 0 {
			v += fmt.Sprintf(" (broke at %d)", run.BrokeAt)
		}
		t.row("7. hag new flows/s (< 1 % errors, p99 < 1 s), "+run.Label, v, "–", "not measured", "–", "", "1 ramp")
	}
	if run := r.rateRun("rate limits raised"); run != nil {
		for _, st := range run.Steps {
			if st.Pass && float64(st.Target) == run.SustainedPerS && st.AchievedPerS > 0 {
				t.row(fmt.Sprintf("7. hag CPU per new flow, µs (at %d flows/s, limits raised)", st.Target), fmt.Sprintf("%.0f", 1e6*st.HagCores/st.AchievedPerS), "–", "not measured", "–", "", "1 step")
			}
		}
	}
	if len(r.Emulator) > 0 {
		b.WriteString("\nEmulator ceiling (figure 6; no daemon, linkem unshaped, one TCP flow between the cpe and hag namespaces, goal ≥ 1 Gbit/s, n = 1):")
		for i, e := range r.Emulator {
			sep := ","
			if i == 0 {
				sep = ""
			}
			fmt.Fprintf(&b, "%s %s **%.0f Mbit/s** (MTU %d, goal met: %s)", sep, e.Path, e.GoodputMbps, e.MTU, yes(e.GoalMet && e.Err == ""))
		}
		b.WriteString(".\n")
	}
	return b.String()
}

// glanceTTFB is figure 2's rows of the at-a-glance table.
func glanceTTFB(t *table, h, p, d TTFBRow, okh, okp, okd bool, tn string) {
	cell := func(ok bool, v float64, format string) string {
		if !ok || math.IsNaN(v) {
			return "–"
		}
		return fmt.Sprintf(format, v)
	}
	t.row("2. TTFB median ms", cell(okh, h.MedianMs, "%.1f"), "–", cell(okp, p.MedianMs, "%.1f"), cell(okd, d.MedianMs, "%.1f"), cell(okh && okp, ratio(h.MedianMs, p.MedianMs), "**%.2f**"), tn)
	t.row("2. TTFB p99 ms", cell(okh, h.P99Ms, "%.1f"), "–", cell(okp, p.P99Ms, "%.1f"), cell(okd, d.P99Ms, "%.1f"), cell(okh && okp, ratio(h.P99Ms, p.P99Ms), "**%.2f**"), tn)
	t.row("2. TTFB extra DSL RTTs over direct (median)", cell(okh && okd, h.ExtraRTTMed, "%+.2f"), "–", cell(okp && okd, p.ExtraRTTMed, "%+.2f"), cell(okd, 0, "%.0f"), "", tn)
}

// ifOK is s, or "–" when there is nothing to show.
func ifOK(ok bool, s string) string {
	if !ok {
		return "–"
	}
	return s
}

// pctSpread renders a share's median and range in per cent:
// "88.1 % (86.0–89.2)".
func pctSpread(s spread) string {
	if s.N <= 1 {
		return pct(s.Med)
	}
	return fmt.Sprintf("%s (%s–%s)", pct(s.Med), num(100*s.Min, 1), num(100*s.Max, 1))
}

// nCell is the n column: the one count every system measured shares, or
// each system's.
func nCell(systems []string, ns [4]int) string {
	var parts []string
	same := -1
	for i, n := range ns {
		if n == 0 {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %d", systems[i], n))
		switch same {
		case -1:
			same = n
		case n:
		default:
			same = -2
		}
	}
	switch {
	case same == -1:
		return "–"
	case same >= 0:
		return fmt.Sprint(same)
	}
	return strings.Join(parts, ", ")
}

func perG(c *CPURow) float64 {
	if c == nil {
		return math.NaN()
	}
	return c.PerGbps
}

// staticNotes are the method notes and caveats that hold for every run.
func (r *Report) staticNotes(o options) {
	r.note("Order: the emulator ceiling (no daemon), then each system in turn in the same lab — direct (no daemon), hybridgw (hag then hcpe started, stopped at the end), the peer (set up, torn down) — so no two systems ever intercept LAN TCP at once; last, hag's connection rate (figure 7) with hag alone. Every system sees the same link profiles, the same seeds and the same server.")
	r.note("Figure 5 asks for %s idle flows in turn (the larger count adds to the smaller's open flows), and measures every system at every count another system reached. For the larger counts, hcpe's `limits.flows` and hag's per-CPE flow and rate limits are raised in the bench's config copies (listed under Systems), the peer's `-n` is at most its open-file limit, and the bench raises RLIMIT_NOFILE for itself and the daemons it starts as far as it may (machine line). Each process's descriptors per flow are measured (figure 5's last column); a count that would take a process past its open-file limit is measured at the most that fits, and a note says so.", strings.ReplaceAll(o.IdleFlows, ",", " and "))
	r.note("Figure 7 namespaces: in cpe, `net.ipv4.ip_local_port_range` 1024–65535 and `tcp_tw_reuse` 1, because one generator stands in for many CPEs from two addresses towards one hag address and port: with the default 32768–60999 and no reuse each address has about 28,000 ports, which TIME_WAIT (60 s, on the side that closes first) holds after use, so about 470 new flows/s per uplink address could be sustained — a real bound of a single CPE towards one hag address, not of hag. In hag, `ip_local_port_range` 1024–65535 as `deploy/sysctl/60-hybridgw-hag.conf` suggests, and the server listens on %d ports: hag closes its server connections first, so its TIME_WAIT sockets pile up towards the server. The TIME_WAIT column shows how many were held after each step.", rateServerPorts)
	r.note("hag runs with the shipped log level (info), which writes two log lines per flow (open and closed) and one per refusal to its log file; at thousands of flows per second that is part of hag's cost in figure 7.")
	r.note("Profiles: Go's CPU profiler (100 samples per second) ran in hcpe and hag during figure 4's one-flow hybridgw transfer, and in hag during each step of figure 7's second ramp; its small overhead is inside those figures' CPU numbers. The heap profiles of figure 5 are taken after the memory snapshot with the flows open. All profiles are in profiles/ next to report.json.")
	r.note("Durations and repetitions: one bulk download %v and %d parallel downloads %v, each case of figure 1 run %d times (the parallel ones shorter, to keep the whole run in its budget of %v: what does not fit is skipped and listed under errors); a handover download of %v with DSL set down at %v, %d times per system; unshaped transfers of %v, each case of figure 4 run %d times. Direct single-link TCP is measured on the default pair only: it uses DSL alone, whose profile is the same in every pair.",
		o.Bulk, o.Flows, o.Parallel, o.EffRuns, o.Budget, o.Handover, o.DownAt, o.HandoverRuns, o.CPU, o.CPURuns)
	r.note("Goodput is measured at the receiver (the LAN client's socket): shadowsocks does not pass half-close, and the daemons' buffers would make a sender-side figure optimistic. Downloads are time-bounded: the server sends until the client resets the connection at the end of the window.")
	r.note("The peer encrypts (%s) and hybridgw does not; that is part of the OpenMPTCProuter approach as deployed, and it shows in the CPU figure. The peer's client side answers the LAN handshake locally (REDIRECT), so its connect time is a LAN RTT while the real connection to the server is made later; hybridgw holds the LAN handshake until hag has connected to the server, so a refused or unreachable server is seen by the client, as with direct TCP. TTFB is the fair comparison of the two.", peerCipher)
	r.note("hybridgw's hag namespace keeps the kernel's default MPTCP limits (subflows 2, enough for the one LTE join); for the peer both namespaces get `subflow 4 add_addr_accepted 0`, hcpe's own setting, as the issue asks. Neither side announces addresses (ADD_ADDR), so in both systems the CPE opens the LTE subflow.")
	r.note("The link emulator is a userspace process (it runs inside the bench process, so 'bench process cores' includes it) on a %d-core machine that other engineers' tests share; whether it bounds the unshaped throughput of figure 4 is read off against its own ceiling in figure 6 (the text under figure 4 says). Load average before and after the run is in the machine line.", r.Machine.Cores)
	r.note("Memory: RSS is VmRSS from /proc/<pid>/status; the Go daemons' RSS includes heap the runtime has not returned to the OS, so 'after close' shows retention rather than a leak unless the heap in use also stays up.")
	r.note("Handover: the link is set down with linkem's SetDown on both directions at once, which drops every packet (no carrier loss signal reaches either host, as when a DSL line drops behind a modem); hybridgw's and the peer's kernels find out by retransmission timeouts. Direct single-link TCP cannot recover and is listed to show the stall.")
	r.note("hybridgw runs configs/hcpe.yaml as shipped (the bench's copy changes only limits and the admin socket), which has `hag.fast_open: false` (the commit notes that MPTCP connections opened with SYN data stall hag's sending on 6.18): no Convert request rides in a SYN. A flow that finds a warm-pool connection (the shipped `pool` section: MPTCP connections to hag opened before they are needed) writes its Convert request on it at once, so its LAN connect takes one path RTT as direct TCP's does; a flow that finds the pool empty dials first and takes two. Figure 2 measures flows as they come, sequentially, so the pool has refilled between them. It also runs the shipped %s, so a download starts on the primary uplink alone and the overflow one joins once the primary is loaded; hybridgw-bond shows the same data path with both uplinks bonded from the start.", r.policyText())
	r.note("Not measured here: upload direction efficiency, IPv6 flows (the address-preservation path), loss, the peer with TCP Fast Open (`--fast-open`), which would remove one RTT from its connection to ss-server only if a TFO cookie is cached, and the peer's connection rate (figure 7 drives hag alone).")
}

// policyText describes hybridgw's uplink policy as its config loaded it.
func (r *Report) policyText() string {
	p := r.Policy
	if p.Roles == "" {
		return "uplink policy (not recorded in this report)"
	}
	return fmt.Sprintf("uplink policy (%s; overflow_on %.2f, overflow_off %.2f, min_hold %v): an overflow uplink carries data once the primary ones run above %.0f %% of their nominal rate, and is released below %.0f %%, each flip held at least %v",
		p.Roles, p.OverflowOn, p.OverflowOff, secs(p.MinHoldS), 100*p.OverflowOn, 100*p.OverflowOff, secs(p.MinHoldS))
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func (r *Report) note(format string, a ...any) { r.Notes = append(r.Notes, fmt.Sprintf(format, a...)) }
