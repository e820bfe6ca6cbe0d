package main

import (
	"fmt"
	"math"
	"strings"
)

func (r *Report) eff(pair, system string, flows int) (EffRow, bool) {
	for _, e := range r.Efficiency {
		if e.Pair == pair && e.System == system && e.Flows == flows && e.Err == "" {
			return e, true
		}
	}
	return EffRow{}, false
}

func (r *Report) ttfbOf(system string) (TTFBRow, bool) {
	for _, e := range r.TTFB {
		if e.System == system && e.Runs > 0 {
			return e, true
		}
	}
	return TTFBRow{}, false
}

// dslRTTms is the default pair's DSL RTT, the unit of "extra RTTs".
func (r *Report) dslRTTms() float64 {
	for _, p := range r.Lab.Pairs {
		if p.Name == "default" {
			return p.DSLRTTms
		}
	}
	return 15
}

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
				"share of the %.0f Mbit/s link sum: hybridgw %s, hybridgw-bond %s, peer %s, direct DSL TCP %s",
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
	if hh != nil && hp != nil && hp.LongestGapMs > 0 {
		add("handover longest gap hybridgw ÷ peer", hh.LongestGapMs/hp.LongestGapMs,
			"%.0f vs %.0f ms without data when DSL went down; back to 80 %% of LTE's rate after %.0f vs %.0f ms", hh.LongestGapMs, hp.LongestGapMs, hh.RecoveryMs, hp.RecoveryMs)
	}
	for _, n := range []int{1, flows} {
		h, p := r.cpuOf(sysHybrid, n), r.cpuOf(sysPeer, n)
		if h != nil && p != nil {
			add(fmt.Sprintf("CPU per Gbit/s hybridgw ÷ peer, %d flow(s) unshaped", n), ratio(h.PerGbps, p.PerGbps),
				"%.2f vs %.2f cores per Gbit/s (hcpe+hag vs ss-redir+ss-server; the peer also encrypts)", h.PerGbps, p.PerGbps)
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
				add(fmt.Sprintf("RSS per idle flow %s, %d ÷ %d flows", s, hi, lo), b/a, "%.1f KB per flow at %d flows, %.1f at %d (1.00: memory grows linearly with flows)", b, hi, a, lo)
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

func (r *Report) handoverOf(sys string) *HandoverRow {
	for i := range r.Handover {
		if r.Handover[i].System == sys && r.Handover[i].Err == "" {
			return &r.Handover[i]
		}
	}
	return nil
}

func (r *Report) cpuOf(sys string, flows int) *CPURow {
	for i := range r.CPU {
		if c := &r.CPU[i]; c.System == sys && c.Flows == flows && c.Err == "" {
			return c
		}
	}
	return nil
}

// perFlowKB sums the RSS per flow of a system's processes at a count of
// idle flows; 0 if unknown.
func (r *Report) perFlowKB(sys string, flows int) float64 {
	var v float64
	for _, m := range r.Memory {
		if m.System == sys && m.target() == flows {
			v += m.PerFlowKB
		}
	}
	return v
}

func (r *Report) rateRun(label string) *RateRun {
	for i := range r.Rate {
		if r.Rate[i].Label == label {
			return &r.Rate[i]
		}
	}
	return nil
}

// glance renders the at-a-glance table: one row per figure and case, one
// column per system, and the hybridgw ÷ peer ratio.
func (r *Report) glance(flows int) string {
	var b strings.Builder
	t := newTable(&b, "measure", "hybridgw", "hybridgw-bond", "peer (OMR)", "direct DSL TCP", "hybridgw ÷ peer")
	cell := func(ok bool, v float64, format string) string {
		if !ok || math.IsNaN(v) {
			return "–"
		}
		return fmt.Sprintf(format, v)
	}
	for _, p := range r.Lab.Pairs {
		for _, n := range []int{1, flows} {
			label := fmt.Sprintf("1. efficiency, %s, %d flow(s)", p.Name, n)
			var vals [4]float64
			var oks [4]bool
			for i, s := range []string{sysHybrid, sysBond, sysPeer, sysDirect} {
				pair := p.Name
				if s == sysDirect {
					pair = "default"
				}
				e, ok := r.eff(pair, s, n)
				vals[i], oks[i] = 100*e.Efficiency, ok
			}
			t.row(label, cell(oks[0], vals[0], "%.1f %%"), cell(oks[1], vals[1], "%.1f %%"), cell(oks[2], vals[2], "%.1f %%"),
				cell(oks[3], vals[3], "%.1f %%"), cell(oks[0] && oks[2], ratio(vals[0], vals[2]), "**%.2f**"))
		}
	}
	h, okh := r.ttfbOf(sysHybrid)
	p, okp := r.ttfbOf(sysPeer)
	d, okd := r.ttfbOf(sysDirect)
	t.row("2. TTFB median ms", cell(okh, h.MedianMs, "%.1f"), "–", cell(okp, p.MedianMs, "%.1f"), cell(okd, d.MedianMs, "%.1f"), cell(okh && okp, ratio(h.MedianMs, p.MedianMs), "**%.2f**"))
	t.row("2. TTFB p99 ms", cell(okh, h.P99Ms, "%.1f"), "–", cell(okp, p.P99Ms, "%.1f"), cell(okd, d.P99Ms, "%.1f"), cell(okh && okp, ratio(h.P99Ms, p.P99Ms), "**%.2f**"))
	t.row("2. TTFB extra DSL RTTs over direct (median)", cell(okh && okd, h.ExtraRTTMed, "%+.2f"), "–", cell(okp && okd, p.ExtraRTTMed, "%+.2f"), "0", "")
	hh, hp, hd := r.handoverOf(sysHybrid), r.handoverOf(sysPeer), r.handoverOf(sysDirect)
	gap := func(x *HandoverRow) (bool, float64) {
		if x == nil {
			return false, 0
		}
		return true, x.LongestGapMs
	}
	okhh, gh := gap(hh)
	okhp, gp := gap(hp)
	okhd, gd := gap(hd)
	dcell := cell(okhd, gd, "%.0f")
	if hd != nil && hd.Stalled {
		dcell += " (stalls)"
	}
	t.row("3. handover: longest gap ms", cell(okhh, gh, "%.0f"), "–", cell(okhp, gp, "%.0f"), dcell, cell(okhh && okhp, ratio(gh, gp), "**%.2f**"))
	rec := func(x *HandoverRow) (bool, float64) {
		if x == nil || x.RecoveryMs < 0 {
			return false, 0
		}
		return true, x.RecoveryMs
	}
	okrh, rh := rec(hh)
	okrp, rp := rec(hp)
	t.row("3. handover: back to 80 % of LTE's rate, ms", cell(okrh, rh, "%.0f"), "–", cell(okrp, rp, "%.0f"), "never", cell(okrh && okrp, ratio(rh, rp), "**%.2f**"))
	for _, n := range []int{1, flows} {
		ch, cp := r.cpuOf(sysHybrid, n), r.cpuOf(sysPeer, n)
		t.row(fmt.Sprintf("4. daemon cores per Gbit/s, %d flow(s)", n), cell(ch != nil, perG(ch), "%.2f"), "–", cell(cp != nil, perG(cp), "%.2f"), "–",
			cell(ch != nil && cp != nil, ratio(perG(ch), perG(cp)), "**%.2f**"))
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
		t.row(label, cell(hm != 0, hm, "%.1f"), "–", cell(pm != 0, pm, "%.1f"), "–", cell(hm != 0 && pm != 0, ratio(hm, pm), "**%.2f**"))
	}
	for _, run := range r.Rate {
		v := fmt.Sprintf("%.0f", run.SustainedPerS)
		if run.BrokeAt > 0 {
			v += fmt.Sprintf(" (broke at %d)", run.BrokeAt)
		}
		t.row("7. hag new flows/s (< 1 % errors, p99 < 1 s), "+run.Label, v, "–", "not measured", "–", "")
	}
	if run := r.rateRun("rate limits raised"); run != nil {
		for _, st := range run.Steps {
			if st.Pass && float64(st.Target) == run.SustainedPerS && st.AchievedPerS > 0 {
				t.row(fmt.Sprintf("7. hag CPU per new flow, µs (at %d flows/s, limits raised)", st.Target), fmt.Sprintf("%.0f", 1e6*st.HagCores/st.AchievedPerS), "–", "not measured", "–", "")
			}
		}
	}
	if len(r.Emulator) > 0 {
		b.WriteString("\nEmulator ceiling (figure 6; no daemon, linkem unshaped, one TCP flow between the cpe and hag namespaces, goal ≥ 1 Gbit/s):")
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

func perG(c *CPURow) float64 {
	if c == nil {
		return math.NaN()
	}
	return c.PerGbps
}

// staticNotes are the method notes and caveats that hold for every run.
func (r *Report) staticNotes(o options) {
	r.note("Order: the emulator ceiling (no daemon), then each system in turn in the same lab — direct (no daemon), hybridgw (hag then hcpe started, stopped at the end), the peer (set up, torn down) — so no two systems ever intercept LAN TCP at once; last, hag's connection rate (figure 7) with hag alone. Every system sees the same link profiles, the same seeds and the same server.")
	r.note("Figure 5 asks for %s idle flows in turn (the larger count adds to the smaller's open flows), and measures every system at every count another system reached. For 10,000, hcpe's `limits.flows` and hag's per-CPE flow and rate limits are raised in the bench's config copies (listed under Systems), the peer's `-n` is at most its open-file limit, and the bench raises RLIMIT_NOFILE for itself and the daemons it starts as far as it may (machine line). Each process's descriptors per flow are measured (figure 5's last column); a count that would take a process past its open-file limit is measured at the most that fits, and a note says so.", strings.ReplaceAll(o.IdleFlows, ",", " and "))
	r.note("Figure 7 namespaces: in cpe, `net.ipv4.ip_local_port_range` 1024–65535 and `tcp_tw_reuse` 1, because one generator stands in for many CPEs from two addresses towards one hag address and port: with the default 32768–60999 and no reuse each address has about 28,000 ports, which TIME_WAIT (60 s, on the side that closes first) holds after use, so about 470 new flows/s per uplink address could be sustained — a real bound of a single CPE towards one hag address, not of hag. In hag, `ip_local_port_range` 1024–65535 as `deploy/sysctl/60-hybridgw-hag.conf` suggests, and the server listens on %d ports: hag closes its server connections first, so its TIME_WAIT sockets pile up towards the server. The TIME_WAIT column shows how many were held after each step.", rateServerPorts)
	r.note("hag runs with the shipped log settings (level info, `log.flows: sample` at 100 flows/s): every line (open, closed, refusals) of the first 100 new flows each second goes to its log file, the flows beyond are only counted (hag_log_flows_unlogged_total), so above 100 flows/s figure 7 measures hag with a bounded log cost.")
	r.note("Profiles: Go's CPU profiler (100 samples per second) ran in hcpe and hag during figure 4's one-flow hybridgw transfer, and in hag during each step of figure 7's second ramp; its small overhead is inside those figures' CPU numbers. The heap profiles of figure 5 are taken after the memory snapshot with the flows open. All profiles are in profiles/ next to report.json.")
	r.note("Durations: one bulk download %v, %d parallel downloads %v (shorter than the single one to keep the whole run under 15 minutes), handover download %v with DSL set down at %v, unshaped transfers %v each. Direct single-link TCP is measured on the default pair only: it uses DSL alone, whose profile is the same in all three pairs.", o.Bulk, o.Flows, o.Parallel, o.Handover, o.DownAt, o.CPU)
	r.note("Goodput is measured at the receiver (the LAN client's socket): shadowsocks does not pass half-close, and the daemons' buffers would make a sender-side figure optimistic. Downloads are time-bounded: the server sends until the client resets the connection at the end of the window.")
	r.note("The peer encrypts (%s) and hybridgw does not; that is part of the OpenMPTCProuter approach as deployed, and it shows in the CPU figure. The peer's client side answers the LAN handshake locally (REDIRECT), so its connect time is a LAN RTT while the real connection to the server is made later; hybridgw holds the LAN handshake until hag has connected to the server, so a refused or unreachable server is seen by the client, as with direct TCP. TTFB is the fair comparison of the two.", peerCipher)
	r.note("hybridgw's hag namespace keeps the kernel's default MPTCP limits (subflows 2, enough for the one LTE join); for the peer both namespaces get `subflow 4 add_addr_accepted 0`, hcpe's own setting, as the issue asks. Neither side announces addresses (ADD_ADDR), so in both systems the CPE opens the LTE subflow.")
	r.note("The link emulator is a userspace process (it runs inside the bench process, so 'bench process cores' includes it) on a 2-core machine that other engineers' tests share; unshaped throughput (figures 4 and 6) is bounded by it and by the machine, not by the daemons alone. Load average before and after the run is in the machine line.")
	r.note("Memory: RSS is VmRSS from /proc/<pid>/status; the Go daemons' RSS includes heap the runtime has not returned to the OS, so 'after close' shows retention rather than a leak unless the heap in use also stays up.")
	r.note("Handover: the link is set down with linkem's SetDown on both directions at once, which drops every packet (no carrier loss signal reaches either host, as when a DSL line drops behind a modem); hybridgw's and the peer's kernels find out by retransmission timeouts. Direct single-link TCP cannot recover and is listed to show the stall.")
	r.note("hybridgw runs configs/hcpe.yaml as shipped (the bench's copy changes only limits and the admin socket), which has `hag.fast_open: false` (the commit notes that MPTCP connections opened with SYN data stall hag's sending on 6.18): the Convert request goes out after hcpe's MPTCP handshake with hag instead of in its SYN, so hybridgw's LAN connect takes about two path RTTs instead of one, which shows in figure 2. It also runs the shipped DSL-first overflow policy (dsl primary, lte overflow, overflow_on 0.8, min_hold 5 s), so a download starts on DSL alone and LTE joins once DSL is loaded; hybridgw-bond shows the same data path with both uplinks bonded from the start.")
	r.note("Not measured here: upload direction efficiency, IPv6 flows (the address-preservation path), loss, the peer with TCP Fast Open (`--fast-open`), which would remove one RTT from its connection to ss-server only if a TFO cookie is cached, and the peer's connection rate (figure 7 drives hag alone).")
}

func (r *Report) note(format string, a ...any) { r.Notes = append(r.Notes, fmt.Sprintf(format, a...)) }
