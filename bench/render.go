package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// profilesOf are the profiles taken during a figure ("figure 4").
func (r *Report) profilesOf(figure string) []ProfileRow {
	var out []ProfileRow
	for _, p := range r.Profiles {
		if strings.HasPrefix(p.When, figure+",") || p.When == figure {
			out = append(out, p)
		}
	}
	return out
}

// profileMD renders one profile: what it is, its categories, and the top
// functions by flat and by cumulative samples.
func profileMD(b *strings.Builder, p ProfileRow) {
	fmt.Fprintf(b, "**%s, %s profile** (%s; `%s`", p.Process, p.Kind, p.When, p.File)
	if len(p.Header) > 0 {
		fmt.Fprintf(b, "; %s", strings.Join(p.Header, "; "))
	}
	b.WriteString(")")
	if p.Err != "" {
		fmt.Fprintf(b, " — **not read**: %s\n\n", strings.ReplaceAll(p.Err, "\n", " "))
		if len(p.Flat) == 0 {
			return
		}
	} else {
		b.WriteString("\n\n")
	}
	if len(p.Categories) > 0 {
		var parts []string
		for _, c := range p.Categories {
			parts = append(parts, fmt.Sprintf("%s **%.1f %%**", c.Name, c.Pct))
		}
		fmt.Fprintf(b, "Where the %s goes (flat, by kind): %s.\n\n", map[bool]string{true: "CPU", false: "memory"}[p.Kind == "cpu"], strings.Join(parts, "; "))
	}
	t := newTable(b, "#", "flat", "flat %", "cum", "cum %", "function (top by flat)", "", "cum", "cum %", "function (top by cum)")
	for i := range max(len(p.Flat), len(p.Cum)) {
		cells := []string{fmt.Sprint(i + 1), "", "", "", "", "", "", "", "", ""}
		if i < len(p.Flat) {
			l := p.Flat[i]
			cells[1], cells[2], cells[3], cells[4], cells[5] = l.Flat, fmt.Sprintf("%.1f", l.FlatPct), l.Cum, fmt.Sprintf("%.1f", l.CumPct), "`"+l.Func+"`"
		}
		if i < len(p.Cum) {
			l := p.Cum[i]
			cells[7], cells[8], cells[9] = l.Cum, fmt.Sprintf("%.1f", l.CumPct), "`"+l.Func+"`"
		}
		t.row(cells...)
	}
	if p.Command != "" {
		fmt.Fprintf(b, "\n`%s` (and with `-cum`).\n\n", p.Command)
	} else {
		b.WriteString("\n")
	}
}

// rateMD renders figure 7.
func (r *Report) rateMD(b *strings.Builder) {
	w := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	w("\n## 7. hag connection rate (new flows per second until errors appear)\n\n")
	w("hag alone, driven directly from the cpe namespace on unshaped links (no hcpe: its netstack would be the bottleneck). A load generator in the bench process opens, open loop, MPTCP connections to hag's service address from the CPE's two uplink addresses in turn (with hcpe's path-manager endpoints, so every flow also gets an LTE join, as hcpe's do), sends the Convert Connect hcpe sends (destination, Client Address, the CPE's cookie; after the handshake, as the shipped `fast_open: false` does), waits for hag's reply — sent once hag has connected to the server, a bench server in the srv namespace on %d ports — and closes. Each step offers one rate for its duration, with arrivals at even intervals whatever hag answers, at most the generator's in-flight bound open at once (an arrival that finds the bound reached is an error); a flow without a reply within the timeout is an error. A step passes with under %.0f %% errors and a p99 setup time under %v; the figure is the highest step that passed, and the ramp stops at the first that did not.\n\n", rateServerPorts, rateMaxErrPct, rateMaxP99)
	w("The generator, the link emulator and the test server all run in the bench process on the same 2 cores as hag: the bench process and machine columns say whether hag or the machine ran out first. Connect is a flow's scheduled arrival → its MPTCP handshake with hag done (a wait for one of the generator's %d dial workers included), setup is arrival → hag's Convert reply, both for the flows that succeeded; errors are a share of the flows scheduled in the step. hag's counters are `hag_limit_hits_total` and `hag_flows_total` from its metrics port over the step, and kernel counters of the hag and cpe namespaces over the step (`/proc/net/netstat`): hag's listener drops (ListenDrops; MPJoinNoTokenFound counts the MP_JOINs that arrived for a connection already closed, as the generator closes right after the reply) SYN and SYN-ACK retransmissions in cpe and hag (TCPSynRetrans; they include the LTE joins', and a retransmitted initial SYN costs its flow a second), and the test server's listener drops in srv. \"handshakes ≥ 0.9 s\" counts the flows whose own handshake with hag, after a dial worker took them, took that long: a lost SYN or SYN-ACK.\n\n", dialWorkers)
	for _, run := range r.Rate {
		w("### %s: **%.0f new flows/s**\n\n", capitalize(run.Label), run.SustainedPerS)
		w("hag's limits: %s. Namespaces: %s.\n\n", run.Limits, run.Sysctls)
		t := newTable(b, "offered /s (target)", "offered /s", "ok", "achieved /s", "errors", "errors by kind", "connect median / p99 ms (dial wait p99; handshakes ≥ 0.9 s)", "setup median ms", "p99 ms", "hag results", "hag limit hits", "kernel counters over the step", "emulator packets/s (drops)", "hag cores", "hag CPU µs per flow", "bench cores", "softirq cores", "machine cores", "TIME_WAIT cpe / hag", "pass")
		for _, st := range run.Steps {
			t.row(fmt.Sprint(st.Target), fmt.Sprintf("%.0f", st.OfferedPerS), fmt.Sprint(st.OK), fmt.Sprintf("%.0f", st.AchievedPerS),
				fmt.Sprintf("%d (%.2f %%)", st.ErrorCount, st.ErrPct), kindsCell(st.Errors), f1(st.ConnectMedMs)+" / "+f1(st.ConnectP99Ms)+fmt.Sprintf(" (%s; %d)", f1(st.WaitP99Ms), st.SlowHandshakes), f1(st.MedianMs), f1(st.P99Ms),
				floatsCell(st.HagResults), floatsCell(st.LimitHits), floatsCell(st.Kernel), fmt.Sprintf("%.0f (%d)", float64(st.LinkPackets)/max(st.Seconds, 1e-9), st.LinkDrops), f2(st.HagCores), f1(1e6*ratio(st.HagCores, st.AchievedPerS)), f2(st.BenchCores), f2(st.SoftirqCores), f2(st.MachineCores),
				fmt.Sprintf("%d / %d", st.TimeWaitCPE, st.TimeWaitHAG), yes(st.Pass))
		}
		if run.BrokeAt > 0 {
			w("\n**Broke at %d flows/s:** %s.\n\n", run.BrokeAt, run.Why)
		} else {
			w("\n%s.\n\n", capitalize(run.Why))
		}
		if last := lastStep(run); last != nil && len(last.ErrorSamples) > 0 {
			var parts []string
			for _, k := range slices.Sorted(maps.Keys(last.ErrorSamples)) {
				parts = append(parts, fmt.Sprintf("%s: `%s`", k, strings.ReplaceAll(last.ErrorSamples[k], "`", "'")))
			}
			w("One error of each kind in the last step: %s.\n\n", strings.Join(parts, "; "))
		}
		if run.Profile != nil {
			w("hag's CPU profile during the last step:\n\n")
			profileMD(b, *run.Profile)
		}
	}
}

func lastStep(run RateRun) *RateStep {
	if len(run.Steps) == 0 {
		return nil
	}
	return &run.Steps[len(run.Steps)-1]
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func kindsCell(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, "; ")
}

func floatsCell(m map[string]float64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %.0f", k, m[k]))
	}
	return strings.Join(parts, "; ")
}
