package main

import (
	"fmt"
	"strings"
)

// Figure 1, bonding efficiency: bulk-download goodput over the sum of the
// two links' downstream rates, for each profile pair, one download and
// several in parallel, each case repeated -eff-runs times.

// EffRow is one bulk-download measurement (figure 1): one run of one case.
type EffRow struct {
	Pair        string  `json:"pair"`
	System      string  `json:"system"`
	Flows       int     `json:"flows"`
	Run         int     `json:"run,omitempty"` // 1, 2, … of the case's repetitions
	Seconds     float64 `json:"seconds"`
	GoodputMbps float64 `json:"goodput_mbps"`
	SteadyMbps  float64 `json:"steady_goodput_mbps"` // from 3 s on
	SumMbps     float64 `json:"sum_link_mbps"`
	Efficiency  float64 `json:"efficiency"` // goodput / sum of the link rates
	DSLShare    float64 `json:"dsl_share"`  // of the IP bytes the two links carried downstream
	DSLUtil     float64 `json:"dsl_utilisation"`
	LTEUtil     float64 `json:"lte_utilisation"`
	Err         string  `json:"error,omitempty"`
}

// effRuns are the runs of a case that completed without error.
func (r *Report) effRuns(pair, system string, flows int) []EffRow {
	var out []EffRow
	for _, e := range r.Efficiency {
		if e.Pair == pair && e.System == system && e.Flows == flows && e.Err == "" {
			out = append(out, e)
		}
	}
	return out
}

// eff is a case's median run: every field the median over its runs.
func (r *Report) eff(pair, system string, flows int) (EffRow, bool) {
	rows := r.effRuns(pair, system, flows)
	if len(rows) == 0 {
		return EffRow{}, false
	}
	med := func(f func(EffRow) float64) float64 { return spreadBy(rows, f).Med }
	return EffRow{Pair: pair, System: system, Flows: flows, Seconds: rows[0].Seconds, SumMbps: rows[0].SumMbps,
		GoodputMbps: med(func(e EffRow) float64 { return e.GoodputMbps }),
		SteadyMbps:  med(func(e EffRow) float64 { return e.SteadyMbps }),
		Efficiency:  med(func(e EffRow) float64 { return e.Efficiency }),
		DSLShare:    med(func(e EffRow) float64 { return e.DSLShare }),
		DSLUtil:     med(func(e EffRow) float64 { return e.DSLUtil }),
		LTEUtil:     med(func(e EffRow) float64 { return e.LTEUtil }),
	}, true
}

// effSpread is the spread of a case's efficiency over its runs.
func (r *Report) effSpread(pair, system string, flows int) spread {
	return spreadBy(r.effRuns(pair, system, flows), func(e EffRow) float64 { return e.Efficiency })
}

type effCase struct {
	pair, system string
	flows        int
}

// effCases are figure 1's cases in the order first measured.
func (r *Report) effCases() []effCase {
	var out []effCase
	seen := map[effCase]bool{}
	for _, e := range r.Efficiency {
		c := effCase{e.Pair, e.System, e.Flows}
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	return out
}

// linkSum says what "the sum of the two links' downstream rates" is in
// this run's pairs: one figure when they share it.
func (r *Report) linkSum() string {
	var sums []string
	for _, p := range r.Lab.Pairs {
		s := fmt.Sprintf("%.0f Mbit/s", p.SumDown)
		if len(sums) == 0 || sums[0] != s {
			sums = append(sums, s)
		}
	}
	if len(sums) == 1 {
		return sums[0]
	}
	var parts []string
	for _, p := range r.Lab.Pairs {
		parts = append(parts, fmt.Sprintf("%s %.0f Mbit/s", p.Name, p.SumDown))
	}
	return strings.Join(parts, ", ")
}

// renderEfficiency writes figure 1's section.
func (r *Report) renderEfficiency(b *strings.Builder) {
	if len(r.Efficiency) == 0 {
		return
	}
	w := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	w("## 1. Bonding efficiency (bulk download goodput ÷ sum of link rates)\n\n")
	t := newTable(b, "pair", "system", "flows", "runs", "s", "goodput Mbit/s, median (min–max)", "steady (≥3 s)", "÷ sum of links, median (min–max)", "dsl share of bytes", "dsl util", "lte util")
	for _, c := range r.effCases() {
		rows := r.effRuns(c.pair, c.system, c.flows)
		errs := ""
		failed := 0
		for _, e := range r.Efficiency {
			if e.Pair == c.pair && e.System == c.system && e.Flows == c.flows && e.Err != "" {
				failed++
				errs = errCell(fmt.Sprintf("%d run(s) failed, the last: %s", failed, e.Err))
			}
		}
		if len(rows) == 0 {
			t.row(c.pair, c.system, fmt.Sprint(c.flows), "0", "", "", "", "", "", "", errs)
			continue
		}
		f := func(g func(EffRow) float64) spread { return spreadBy(rows, g) }
		t.row(c.pair, c.system, fmt.Sprint(c.flows), fmt.Sprint(len(rows)), f1(rows[0].Seconds),
			f(func(e EffRow) float64 { return e.GoodputMbps }).cell(1, 1),
			f1(f(func(e EffRow) float64 { return e.SteadyMbps }).Med),
			pctSpread(f(func(e EffRow) float64 { return e.Efficiency })),
			pct(f(func(e EffRow) float64 { return e.DSLShare }).Med),
			pct(f(func(e EffRow) float64 { return e.DSLUtil }).Med),
			pct(f(func(e EffRow) float64 { return e.LTEUtil }).Med)+errs)
	}
	for _, p := range r.Lab.Pairs {
		t.row(p.Name, "**limit**", "", "", "", f1(p.SumDown), "", "100 %", "", "", "")
	}
	mtu := r.Lab.MTU
	w("\nEach case ran the number of times in the runs column, one after another with the other pairs' runs in between; the table gives the median run and the least and greatest in brackets, and every run is in report.json. Goodput is what the LAN client's socket received, from the moment it started connecting to the end of the window (so it includes connection setup and slow start); \"steady\" leaves out the first 3 s. Link shares and utilisation are the emulator's counters of IP bytes (headers included) that crossed each link downstream during the window.")
	if mtu > 72 {
		w(" With %d-byte packets TCP carries at most %d/%d = %.1f %% of the link rate as payload (timestamps on), and an MPTCP subflow about %d/%d = %.1f %% (the DSS option), so ~%.0f %% is the practical ceiling of this column.",
			mtu, mtu-52, mtu, 100*float64(mtu-52)/float64(mtu), mtu-72, mtu, 100*float64(mtu-72)/float64(mtu), 100*float64(mtu-72)/float64(mtu))
	}
	w("\n\n")
}
