package main

import (
	"math"
	"strings"
	"testing"
)

// repeatedReport is sampleReport with figures 1, 3 and 4 repeated as a
// run does: three runs of each case of figures 1 and 4, five handovers
// per system.
func repeatedReport() *Report {
	r := sampleReport()
	r.Efficiency = nil
	for run, effs := range [][3]float64{{0.86, 0.92, 0.90}, {0.88, 0.93, 0.93}, {0.89, 0.94, 0.91}} {
		for i, s := range []string{sysHybrid, sysBond, sysPeer} {
			for _, n := range []int{1, 8} {
				r.Efficiency = append(r.Efficiency, EffRow{Pair: "default", System: s, Flows: n, Run: run + 1, SumMbps: 60,
					GoodputMbps: 60 * effs[i], Efficiency: effs[i], SteadyMbps: math.NaN()})
			}
		}
	}
	// direct: two runs completed, one failed.
	for run, e := range []float64{0.31, 0.32} {
		r.Efficiency = append(r.Efficiency, EffRow{Pair: "default", System: sysDirect, Flows: 1, Run: run + 1, SumMbps: 60, GoodputMbps: 60 * e, Efficiency: e, SteadyMbps: math.NaN()})
	}
	r.Efficiency = append(r.Efficiency, EffRow{Pair: "default", System: sysDirect, Flows: 1, Run: 3, Err: "connection reset"})
	r.Handover = nil
	for run := range 5 {
		r.Handover = append(r.Handover,
			HandoverRow{System: sysHybrid, Run: run + 1, DownAtS: 3, Seconds: 10, AfterS: 5, ThresholdMbps: 32, LongestGapMs: []float64{400, 450, 900, 420, 440}[run], RecoveryMs: []float64{1200, 1300, 2500, 1250, 1280}[run]},
			HandoverRow{System: sysPeer, Run: run + 1, DownAtS: 3, Seconds: 10, AfterS: 5, ThresholdMbps: 32, LongestGapMs: []float64{350, 360, 380, 370, 365}[run], RecoveryMs: []float64{1200, 1250, 1300, -1, 1210}[run]},
			HandoverRow{System: sysDirect, Run: run + 1, DownAtS: 3, Seconds: 10, AfterS: 5, ThresholdMbps: 32, LongestGapMs: 7000, Stalled: true, RecoveryMs: -1})
	}
	r.CPU = nil
	for run, pg := range []float64{0.78, 0.80, 0.95} {
		for _, n := range []int{1, 8} {
			r.CPU = append(r.CPU,
				CPURow{System: sysHybrid, Flows: n, Run: run + 1, GoodputMbps: 1400 + float64(run), Cores: map[string]float64{"hcpe": 0.9, "hag": 0.2}, DaemonCores: 1.1, PerGbps: pg},
				CPURow{System: sysPeer, Flows: n, Run: run + 1, GoodputMbps: 1700, Cores: map[string]float64{"ss-redir": 0.5, "ss-server": 0.6}, DaemonCores: 1.1, PerGbps: pg - 0.1})
		}
	}
	r.Emulator = []EmuRow{{Path: "hag → cpe (downstream)", MTU: 1500, GoodputMbps: 3000}, {Path: "cpe → hag (upstream)", MTU: 1500, GoodputMbps: 1500}}
	r.Lab.MTU = 1500
	r.Policy = PolicyInfo{Roles: "dsl primary, lte overflow", OverflowOn: 0.8, OverflowOff: 0.6, MinHoldS: 5}
	return r
}

// glanceRow is the at-a-glance row whose measure starts with prefix.
func glanceRow(t *testing.T, md, prefix string) []string {
	t.Helper()
	for _, l := range strings.Split(md, "\n") {
		if strings.HasPrefix(l, "| "+prefix) {
			cells := strings.Split(strings.Trim(l, "| "), " | ")
			return cells
		}
	}
	t.Fatalf("no at-a-glance row %q in:\n%s", prefix, md)
	return nil
}

func TestGlanceCarriesSpreadAndN(t *testing.T) {
	r := repeatedReport()
	r.headlines(r.Flows)
	md := r.markdown()
	for _, tc := range []struct {
		row  string
		want []string // cells after the measure
	}{
		{"1. efficiency, default, 1 flow(s)", []string{"88.0 % (86.0–89.0)", "93.0 % (92.0–94.0)", "91.0 % (90.0–93.0)", "31.5 % (31.0–32.0)", "**0.97**", "hybridgw 3, hybridgw-bond 3, peer 3, direct 2"}},
		{"1. efficiency, default, 8 flow(s)", []string{"88.0 % (86.0–89.0)", "93.0 % (92.0–94.0)", "91.0 % (90.0–93.0)", "–", "**0.97**", "3"}},
		{"2. TTFB median ms", []string{"48.4", "–", "32.6", "30.9", "**1.48**", "200"}},
		{"3. handover: longest gap ms, median (worst)", []string{"440 (900)", "–", "365 (380)", "7000 (7000) (5 of 5 stalled)", "**1.21**", "5"}},
		{"3. handover: back to 80 % of LTE's rate, ms, median (worst)", []string{"1280 (2500)", "–", "1250 (never)", "never (never)", "**1.02**", "5"}},
		{"4. daemon cores per Gbit/s, 1 flow(s)", []string{"0.80 (0.78–0.95)", "–", "0.70 (0.68–0.85)", "–", "**1.14**", "3"}},
		{"5. RSS per idle flow, KB (both daemons), 1000 flows", []string{"105.0", "–", "29.7", "–", "**3.54**", "1"}},
		{"7. hag new flows/s (< 1 % errors, p99 < 1 s), shipped limits", []string{"800 (broke at 1200)", "–", "not measured", "–", "", "1 ramp"}},
	} {
		got := glanceRow(t, md, tc.row)
		if strings.Join(got[1:], " | ") != strings.Join(tc.want, " | ") {
			t.Errorf("row %q:\n got %q\nwant %q", tc.row, got[1:], tc.want)
		}
	}
	if !strings.Contains(md, "| measure | hybridgw | hybridgw-bond | peer (OMR) | direct DSL TCP | hybridgw ÷ peer | n (runs per cell) |") {
		t.Error("the at-a-glance table has no n column")
	}
	for _, want := range []string{
		// Figure 1's rows: runs and spread; the failed run is said.
		"| default | hybridgw | 1 | 3 | 0.0 | 52.8 (51.6–53.4) |",
		"1 run(s) failed, the last: connection reset",
		// Figure 3: median and worst, each run.
		"| hybridgw | 5 | 3.0 |", "440 / 900", "400, 450, 900, 420, 440", "1280 / 2500",
		"| direct | 5 |", "7000 / 7000 (5 of 5 stalled to the end)", "never / never",
		// Figure 4: runs and spread.
		"| hybridgw | 1 | 3 | 1401.0 (1400.0–1402.0) |", "0.80 (0.78–0.95)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	for _, bad := range []string{"%!", "NaN", "<nil>"} {
		if i := strings.Index(md, bad); i >= 0 {
			t.Errorf("report.md has %q: …%s…", bad, md[max(0, i-80):min(len(md), i+80)])
		}
	}
}

// The report's text about the run comes from the run: change what was
// measured or configured and the text follows.
func TestTextDerivedFromTheRun(t *testing.T) {
	base := repeatedReport()
	base.headlines(base.Flows)
	md := base.markdown()
	for _, want := range []string{
		"downstream rates (60 Mbit/s)", "overflow_on 0.80, overflow_off 0.60, min_hold 5s", "above 80 % of their nominal rate",
		"DSL RTT of the default profile (15.0 ms)", "p99 of 200 is the 198th smallest value",
		"With 1500-byte packets TCP carries at most 1448/1500 = 96.5 %",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report.md lacks %q", want)
		}
	}

	r := repeatedReport()
	r.Lab.Pairs[0].SumDown, r.Lab.Pairs[0].DSLRTTms = 75, 22
	r.Policy = PolicyInfo{Roles: "dsl primary, lte overflow", OverflowOn: 0.7, OverflowOff: 0.5, MinHoldS: 3}
	r.Lab.MTU = 1400
	r.TTFB[0].Runs = 100
	r.headlines(r.Flows)
	md = r.markdown()
	for _, want := range []string{
		"downstream rates (75 Mbit/s)", "overflow_on 0.70, overflow_off 0.50, min_hold 3s", "above 70 % of their nominal rate",
		"(22.0 ms)", "p99 of 100 is the 99th smallest value", "With 1400-byte packets",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("changed run: report.md lacks %q", want)
		}
	}
	for _, stale := range []string{"60 Mbit/s", "overflow_on 0.8", "min_hold 5", "15.0 ms", "1500-byte"} {
		if strings.Contains(md, stale) {
			t.Errorf("changed run: report.md still says %q", stale)
		}
	}
	r.Policy = PolicyInfo{}
	if md := r.markdown(); !strings.Contains(md, "not recorded in this report") || strings.Contains(md, "overflow_on") {
		t.Error("a report without the policy should say it was not recorded")
	}
}

func TestEmulatorBound(t *testing.T) {
	for _, tc := range []struct {
		direct float64 // direct TCP's goodput in figure 4, 0: not measured
		emu    []EmuRow
		want   string
		bound  bool
	}{
		{0, []EmuRow{{Path: "hag → cpe (downstream)", GoodputMbps: 3000}, {Path: "cpe → hag (upstream)", GoodputMbps: 1500}},
			"carried up to 3000 Mbit/s in this run (its own ceiling in figure 6, one flow, no daemon); every daemon case stayed below 85 % of that (hybridgw with 1 flow(s) 47 %, peer with 1 flow(s) 57 %", false},
		{0, []EmuRow{{Path: "hag → cpe (downstream)", GoodputMbps: 1800}}, "peer with 1 flow(s) 94 %, peer with 8 flow(s) 94 % came to 85 % of that or more", true},
		// Direct TCP got more through the emulator than figure 6 did.
		{4000, []EmuRow{{Path: "hag → cpe (downstream)", GoodputMbps: 1800}}, "carried up to 4000 Mbit/s in this run (direct TCP with 1 flow(s) here, no daemon)", false},
		{0, nil, "Neither figure 6 (the emulator's own ceiling) nor direct TCP was measured", false},
	} {
		r := repeatedReport()
		r.Emulator = tc.emu
		if tc.direct > 0 {
			r.CPU = append(r.CPU, CPURow{System: sysDirect, Flows: 1, Run: 1, GoodputMbps: tc.direct, PerGbps: math.NaN()})
		}
		md := r.markdown()
		if !strings.Contains(md, tc.want) {
			t.Errorf("emulator %v, direct %v: report.md lacks %q", tc.emu, tc.direct, tc.want)
		}
		if bound := strings.Contains(md, "the emulator may bound those"); bound != tc.bound {
			t.Errorf("emulator %v, direct %v: says it bounds: %v", tc.emu, tc.direct, bound)
		}
	}
}

// A run of some figures only shows those: no empty sections, no rows of
// dashes for pairs only direct TCP ran on.
func TestOnlyMeasuredFiguresShow(t *testing.T) {
	r := repeatedReport()
	r.TTFB, r.Memory, r.Rate, r.Profiles, r.Hung = nil, nil, nil, nil, nil
	r.Lab.Pairs = append(r.Lab.Pairs, Pair{Name: "lte-80ms", SumDown: 60})
	r.headlines(r.Flows)
	md := r.markdown()
	for _, absent := range []string{"## 2.", "## 5.", "## 7.", "2. TTFB", "efficiency, lte-80ms"} {
		if strings.Contains(md, absent) {
			t.Errorf("report.md has %q, which this run did not measure", absent)
		}
	}
	for _, present := range []string{"## 1.", "## 3.", "## 4.", "## 6.", "efficiency, default"} {
		if !strings.Contains(md, present) {
			t.Errorf("report.md lacks %q", present)
		}
	}
}

func TestLinearity(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		want string
	}{{1.00, "about linearly"}, {1.09, "about linearly"}, {0.92, "about linearly"}, {1.5, "faster than"}, {0.5, "slower than"}} {
		if got := linearity(tc.v); !strings.Contains(got, tc.want) {
			t.Errorf("linearity(%v) = %q, want %q", tc.v, got, tc.want)
		}
	}
	r := repeatedReport()
	r.headlines(r.Flows)
	for _, h := range r.Headlines {
		if strings.HasPrefix(h.Name, "RSS per idle flow hybridgw, 3200 ÷ 1000") && !strings.Contains(h.Text, "about linearly") {
			t.Errorf("%s (%.2f): %s", h.Name, h.Value, h.Text)
		}
	}
}

func TestSpread(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want spread
		cell string
	}{
		{[]float64{3, 1, 2}, spread{3, 2, 1, 3}, "2.0 (1.0–3.0)"},
		{[]float64{4, 1, 2, 3}, spread{4, 2.5, 1, 4}, "2.5 (1.0–4.0)"},
		{[]float64{5, math.NaN()}, spread{1, 5, 5, 5}, "5.0"},
	} {
		got := spreadOf(tc.in)
		if got != tc.want || got.cell(1, 1) != tc.cell {
			t.Errorf("spreadOf(%v) = %+v %q, want %+v %q", tc.in, got, got.cell(1, 1), tc.want, tc.cell)
		}
	}
	if s := spreadOf(nil); s.N != 0 || s.cell(1, 1) != "n/a" {
		t.Errorf("spreadOf(nil) = %+v", s)
	}
	if got := nCell([]string{"a", "b", "c", "d"}, [4]int{3, 0, 2, 3}); got != "a 3, c 2, d 3" {
		t.Errorf("nCell = %q", got)
	}
}
