package main

import (
	"fmt"
	"math"
	"strings"

	"hybridgw/internal/labproc"
)

// The plain-language findings of a run: where hybridgw is behind the peer
// and what this run's own measurements say about why. Every number in
// them comes from the report; nothing is written that the run did not
// measure.

// worseBy is how far a ratio must be from 1 before it counts as behind.
const worseBy = 0.03

// behind lists the figures where hybridgw is behind the peer in this run,
// each with its likely cause.
func (r *Report) behind() []string {
	var out []string
	if s := r.effBehind(); s != "" {
		out = append(out, s)
	}
	h, okh := r.ttfbOf(sysHybrid)
	p, okp := r.ttfbOf(sysPeer)
	if okh && okp && ratio(h.MedianMs, p.MedianMs) > 1+worseBy {
		s := fmt.Sprintf("**Time to first byte** — %.1f vs %.1f ms median (%+.2f vs %+.2f DSL RTTs over direct TCP).",
			h.MedianMs, p.MedianMs, h.ExtraRTTMed, p.ExtraRTTMed)
		if d, ok := r.ttfbOf(sysDirect); ok && d.MedianMs > 0 {
			// Split hybridgw's excess over direct at the LAN connect, which
			// hcpe holds until hag's Convert reply, from the request and
			// answer that follow it; the peer accepts the LAN connection
			// locally, so only its second part compares.
			s += fmt.Sprintf(" Of hybridgw's %+.1f ms over direct, %+.1f ms is in the LAN connect (held until hag's Convert reply; hcpe's own setup histogram averaged %.1f ms against a %.0f ms DSL RTT) and %+.1f ms in the request and answer after it.",
				h.MedianMs-d.MedianMs, h.ConnectMedMs-d.ConnectMedMs, h.SetupMeanMs, r.dslRTTms(), (h.MedianMs-h.ConnectMedMs)-(d.MedianMs-d.ConnectMedMs))
		}
		out = append(out, s)
	}
	if hh, hp := r.handoverOf(sysHybrid), r.handoverOf(sysPeer); hh != nil && hp != nil && hp.Gap.Med > 0 && hh.Gap.Med/hp.Gap.Med > 1+worseBy {
		s := fmt.Sprintf("**Handover** — longest gap %.0f vs %.0f ms when DSL went down (medians of %d and %d runs; worst %.0f vs %.0f ms).", hh.Gap.Med, hp.Gap.Med, len(hh.Runs), len(hp.Runs), hh.Gap.Max, hp.Gap.Max)
		if hh.Gap.Min > hp.Gap.Max {
			s += " Every hybridgw run was slower than every peer run."
		} else {
			s += " The runs overlap (hybridgw's best is no slower than the peer's worst), so the difference is within this run's noise."
		}
		out = append(out, s+" Both recover through the kernel's MPTCP retransmission timeouts; this run does not isolate a cause.")
	}
	if s := r.hungBehind(); s != "" {
		out = append(out, s)
	}
	if s := r.cpuBehind(); s != "" {
		out = append(out, s)
	}
	if s := r.memBehind(); s != "" {
		out = append(out, s)
	}
	return out
}

func (r *Report) effBehind() string {
	var worst, bondWorst float64 = math.Inf(1), math.Inf(1)
	var worstCase string
	n := 0
	for _, pair := range r.Lab.Pairs {
		for _, flows := range []int{1, r.Flows} {
			h, okh := r.eff(pair.Name, sysHybrid, flows)
			p, okp := r.eff(pair.Name, sysPeer, flows)
			if !okh || !okp {
				continue
			}
			if v := ratio(h.GoodputMbps, p.GoodputMbps); v < worst {
				worst, worstCase = v, fmt.Sprintf("%s pair, %d flow(s): %.1f vs %.1f %%", pair.Name, flows, 100*h.Efficiency, 100*p.Efficiency)
			}
			if bd, ok := r.eff(pair.Name, sysBond, flows); ok {
				bondWorst = min(bondWorst, ratio(bd.GoodputMbps, p.GoodputMbps))
				n++
			}
		}
	}
	if math.IsInf(worst, 1) || worst >= 1-worseBy {
		return ""
	}
	s := fmt.Sprintf("**Bonding efficiency** — hybridgw's goodput is down to %.2f× the peer's (%s of the link sum).", worst, worstCase)
	switch {
	case n == 0:
		s += " hybridgw-bond was not measured, so this run cannot tell the overflow policy from the data path."
	case bondWorst >= 1-worseBy:
		s += fmt.Sprintf(" hybridgw-bond — the same binaries with both uplinks bonded from the start — is at least %.2f× the peer in every case, so the likely cause is the shipped overflow policy (a download starts on the primary uplink alone; with the %s), not the data path.", bondWorst, r.policyText())
	default:
		s += fmt.Sprintf(" hybridgw-bond is also behind (down to %.2f× the peer), so part of the gap is the data path, not only the overflow policy.", bondWorst)
	}
	return s
}

func (r *Report) cpuBehind() string {
	var parts []string
	for _, n := range []int{1, r.Flows} {
		h, p := r.cpuOf(sysHybrid, n), r.cpuOf(sysPeer, n)
		if h == nil || p == nil || ratio(h.PerGbps, p.PerGbps) <= 1+worseBy {
			continue
		}
		parts = append(parts, fmt.Sprintf("%d flow(s): %.2f vs %.2f daemon cores per Gbit/s (%s vs %s), machine %.2f vs %.2f busy cores per Gbit/s",
			n, h.PerGbps, p.PerGbps, coresCell(h.Cores), coresCell(p.Cores),
			ratio(h.MachineCores, h.GoodputMbps/1000), ratio(p.MachineCores, p.GoodputMbps/1000)))
	}
	if len(parts) == 0 {
		return ""
	}
	s := "**CPU per Gbit/s (unshaped)** — " + strings.Join(parts, "; ") + "."
	if reading := r.cpuReading(); reading != "" {
		s += " " + reading
	} else {
		s += " No profile was read in this run."
	}
	return s
}

// cpuReading summarises the figure-4 CPU profiles: where each daemon's
// time goes and what of it the peer has no counterpart for.
func (r *Report) cpuReading() string {
	var parts []string
	var hcpe *ProfileRow
	for _, p := range r.profilesOf("figure 4") {
		if p.Kind != "cpu" || p.Err != "" || len(p.Categories) == 0 {
			continue
		}
		if p.Process == "hcpe" {
			hcpe = &p
		}
		var cats []string
		for _, c := range p.Categories[:min(5, len(p.Categories))] {
			cats = append(cats, fmt.Sprintf("%s %.0f %%", c.Name, c.Pct))
		}
		var fns []string
		for _, l := range p.Flat[:min(3, len(p.Flat))] {
			fns = append(fns, fmt.Sprintf("`%s` %.0f %%", l.Func, l.FlatPct))
		}
		parts = append(parts, fmt.Sprintf("%s's profile: %s; its top functions by flat time: %s.", p.Process, strings.Join(cats, ", "), strings.Join(fns, ", ")))
	}
	if len(parts) == 0 {
		return ""
	}
	s := strings.Join(parts, " ")
	if h := r.cpuOf(sysHybrid, 1); h != nil && hcpe != nil && h.DaemonCores > 0 {
		share := h.Cores["hcpe"] / h.DaemonCores
		user := catPct(hcpe, catGVisor) + catPct(hcpe, catTUN)
		sys := catPct(hcpe, catSyscall)
		s += fmt.Sprintf(" hcpe is %.0f %% of hybridgw's daemon CPU in the one-flow transfer. Of hcpe's samples, %.0f %% are gVisor's TCP/IP stack and the TUN framing — "+
			"userspace TCP that the peer does not run (ss-redir's LAN-side TCP is the kernel's, much of it done in softirq, which is not charged to ss-redir; the machine column counts both) — "+
			"%.0f %% system calls (reads and writes of the TUN device and the MPTCP socket), %.0f %% GC and allocation, %.0f %% copying.",
			100*share, user, sys, catPct(hcpe, catGC), catPct(hcpe, catCopy))
		if share >= 0.5 && user+sys >= 50 {
			s += " Likely cause of the gap: hcpe terminates every LAN connection in a userspace TCP/IP stack and moves its packets across the TUN device and through user memory, where the peer's relay only reads and writes kernel sockets."
		} else {
			s += " The profiles do not single out one cause: no category holds most of the CPU."
		}
	}
	return s
}

func catPct(p *ProfileRow, name string) float64 {
	for _, c := range p.Categories {
		if c.Name == name {
			return c.Pct
		}
	}
	return 0
}

func (r *Report) memBehind() string {
	var parts []string
	for _, n := range r.idleCounts() {
		h, p := r.perFlowKB(sysHybrid, n), r.perFlowKB(sysPeer, n)
		if h <= 0 || p <= 0 || h/p <= 1+worseBy {
			continue
		}
		part := fmt.Sprintf("%.1f vs %.1f KB per flow at %d idle flows", h, p, n)
		for _, m := range r.Memory {
			if m.System == sysHybrid && m.Process == "hcpe" && m.target() == n {
				part += fmt.Sprintf(" (hcpe %.1f KB of it, heap %.1f KB per flow)", m.PerFlowKB, m.HeapPerFlowKB)
			}
		}
		parts = append(parts, part)
	}
	if len(parts) == 0 {
		return ""
	}
	s := "**Memory per idle flow** — " + strings.Join(parts, "; ") + "."
	if hag, srv := r.memRow(sysHybrid, "hag"), r.memRow(sysPeer, "ss-server"); hag != nil && srv != nil && hag.FDsPerFlow > srv.FDsPerFlow*(1+worseBy) {
		s += fmt.Sprintf(" Descriptors too: hag holds %.1f per idle flow (%.1f of them pipes: Go's splice holds a pipe, two descriptors, in each direction while it waits) against ss-server's %.1f",
			hag.FDsPerFlow, float64(hag.PipesLoaded)/float64(max(hag.Flows, 1)), srv.FDsPerFlow)
		if hm, pm := r.maxFlows(sysHybrid), r.maxFlows(sysPeer); hm > 0 && pm > 0 && hm < pm {
			s += fmt.Sprintf(", so under this machine's open-file limit hybridgw reached %d idle flows and the peer %d", hm, pm)
		}
		s += "."
	}
	for _, p := range r.profilesOf("figure 5") {
		if p.Process != "hcpe" || p.Err != "" || len(p.Flat) == 0 {
			continue
		}
		var fns []string
		for _, l := range p.Flat[:min(3, len(p.Flat))] {
			fns = append(fns, fmt.Sprintf("`%s` %s (%.0f %%)", l.Func, l.Flat, l.FlatPct))
		}
		s += fmt.Sprintf(" hcpe's heap profile (%s; in use as of its last GC, sampled): largest allocation sites %s.", p.When, strings.Join(fns, ", "))
		top := p.Flat[0]
		switch {
		case strings.HasPrefix(top.Func, "hybridgw/internal/relay.") && top.FlatPct >= 30:
			s += fmt.Sprintf(" Likely cause: the relay's copy buffers — %.0f %% of hcpe's heap. hcpe relays between a gVisor endpoint and a kernel socket, which cannot be spliced, so each direction of every flow takes a pooled buffer (internal/relay's bufSize) and holds it while its Read waits, idle flows included.", top.FlatPct)
		case strings.HasPrefix(top.Func, "gvisor.dev/") && top.FlatPct >= 30:
			s += fmt.Sprintf(" Likely cause: gVisor's per-connection state (%.0f %% of hcpe's heap in its largest site): every LAN connection is a full TCP endpoint in userspace.", top.FlatPct)
		default:
			s += " No single site holds most of the heap."
		}
		break
	}
	return s
}

// hungBehind reports LAN connects that got no answer in figure 5 for
// hybridgw but not for the peer.
func (r *Report) hungBehind() string {
	var failed, tried, peerFailed int
	var reused, expected float64
	for _, h := range r.Hung {
		switch h.System {
		case sysHybrid:
			failed, tried = failed+h.Failed, tried+h.Tried
			if h.Expected > 0 {
				reused, expected = reused+float64(h.Reused), expected+h.Expected
			}
		case sysPeer:
			peerFailed += h.Failed
		}
	}
	if failed == 0 || peerFailed > 0 {
		return ""
	}
	peerTried := 0
	for _, m := range r.Memory {
		if m.System == sysPeer && m.Flows > peerTried {
			peerTried = m.Flows
		}
	}
	s := fmt.Sprintf("**LAN connects that hang** — in figure 5, %d of %d new LAN connections through hybridgw got no answer to their SYNs within %v; through the peer, none of %d.", failed, tried, labproc.DialTimeout, peerTried)
	if expected > 0 {
		s += fmt.Sprintf(" Where figure 2's connections had used local ports less than a minute before, %.0f of the connections that did open reused one, where chance gives %.1f.", reused, expected)
		if reused < expected/2 {
			s += " Likely cause: those connections were closed by the server side first, so hcpe's gVisor stack keeps them in TIME_WAIT (60 s), while the LAN client, having closed second, may reuse the port at once; gVisor gives a new SYN for a connection in TIME_WAIT only to a listening endpoint, which hcpe's TCP forwarder is not, so the SYNs are dropped (see the notes)."
		}
	}
	return s
}
