package main

import (
	"math"
	"path/filepath"
	"strings"
	"testing"
)

// sampleReport has a row of every figure, both ramps of figure 7 and the
// profiles, with values like a real run's.
func sampleReport() *Report {
	r := &Report{Flows: 8, PeerNofile: 20000,
		Lab: LabInfo{Pairs: []Pair{{Name: "default", DSLRTTms: 15, SumDown: 60}}}}
	for _, e := range []EffRow{
		{Pair: "default", System: sysHybrid, Flows: 1, GoodputMbps: 52.7, Efficiency: 0.878},
		{Pair: "default", System: sysBond, Flows: 1, GoodputMbps: 55.5, Efficiency: 0.925},
		{Pair: "default", System: sysPeer, Flows: 1, GoodputMbps: 55.3, Efficiency: 0.922},
		{Pair: "default", System: sysDirect, Flows: 1, GoodputMbps: 19.1, Efficiency: 0.318},
	} {
		e.SteadyMbps = math.NaN()
		r.Efficiency = append(r.Efficiency, e)
	}
	r.TTFB = []TTFBRow{{System: sysDirect, Runs: 200, MedianMs: 30.9, P99Ms: 35}, {System: sysHybrid, Runs: 200, MedianMs: 48.4, P99Ms: 51}, {System: sysPeer, Runs: 200, MedianMs: 32.6, P99Ms: 36}}
	r.CPU = []CPURow{
		{System: sysHybrid, Flows: 1, GoodputMbps: 1418, Cores: map[string]float64{"hcpe": 0.91, "hag": 0.2}, DaemonCores: 1.11, PerGbps: 0.78, MachineCores: 1.63},
		{System: sysPeer, Flows: 1, GoodputMbps: 1778, Cores: map[string]float64{"ss-redir": 0.47, "ss-server": 0.7}, DaemonCores: 1.17, PerGbps: 0.66, MachineCores: 1.89},
	}
	for _, m := range []MemRow{
		{System: sysHybrid, Process: "hag", Asked: 1000, Target: 1000, Flows: 1000, PerFlowKB: 20, FDsPerFlow: 6, PipesLoaded: 4000, FDsLoaded: 6015},
		{System: sysHybrid, Process: "hcpe", Asked: 1000, Target: 1000, Flows: 1000, PerFlowKB: 85, HeapLoadedMB: 100, HeapPerFlowKB: 100, FDsPerFlow: 1, FDsLoaded: 1020},
		{System: sysHybrid, Process: "hag", Asked: 10000, Target: 3200, Flows: 3200, PerFlowKB: 22, FDsPerFlow: 6, Closed: true},
		{System: sysHybrid, Process: "hcpe", Asked: 10000, Target: 3200, Flows: 3200, PerFlowKB: 92, HeapLoadedMB: 357, Closed: true, Goroutines: [3]float64{30, 9630, 30}},
		{System: sysPeer, Process: "ss-redir", Asked: 1000, Target: 1000, Flows: 1000, PerFlowKB: 13.6, FDsPerFlow: 2},
		{System: sysPeer, Process: "ss-server", Asked: 1000, Target: 1000, Flows: 1000, PerFlowKB: 16.1, FDsPerFlow: 2},
		{System: sysPeer, Process: "ss-redir", Asked: 3200, Target: 3200, Flows: 3200, PerFlowKB: 13.8},
		{System: sysPeer, Process: "ss-server", Asked: 3200, Target: 3200, Flows: 3200, PerFlowKB: 14.3},
		{System: sysPeer, Process: "ss-redir", Asked: 10000, Target: 9800, Flows: 9800, PerFlowKB: 13.7},
		{System: sysPeer, Process: "ss-server", Asked: 10000, Target: 9800, Flows: 9800, PerFlowKB: 13.7},
	} {
		if !m.Closed {
			m.Goroutines[2] = math.NaN()
		}
		r.Memory = append(r.Memory, m)
	}
	_, lines := parseTop(topOut)
	r.Profiles = []ProfileRow{
		{Process: "hcpe", Kind: "cpu", When: "figure 4, one unshaped hybridgw download", File: "profiles/hcpe-cpu-fig4.pprof", Flat: lines, Cum: lines, Categories: categories(lines)},
		{Process: "hcpe", Kind: "heap", When: "figure 5, 3200 idle flows open", Flat: []PprofLine{{Flat: "42.81MB", FlatPct: 75.5, Func: "hybridgw/internal/relay.init.func1"}}},
		{Process: "hag", Kind: "cpu", When: "figure 4, one unshaped hybridgw download", Err: "go tool pprof: exit status 1"},
	}
	shipped := RateRun{Label: "shipped limits", RateLimit: 500, RateBurst: 1000, SustainedPerS: 800, Steps: []RateStep{
		{Target: 800, Seconds: 3, OK: 2400, Pass: true},
		{Target: 1200, Seconds: 3, OK: 2500, ErrorCount: 1100, ErrPct: 30.6, Errors: map[string]int{errKindConvertP + "Resource Exceeded": 1100},
			LimitHits: map[string]float64{"new_flows_rate": 1100}, MachineCores: 1.2},
	}}
	shipped.finish(3e9)
	raised := RateRun{Label: "rate limits raised", SustainedPerS: 2000, Steps: []RateStep{
		{Target: 2000, Seconds: 3, OK: 6000, Pass: true},
		{Target: 2400, Seconds: 3, OK: 6000, ErrorCount: 1200, ErrPct: 16.7, Errors: map[string]int{errKindBound: 1100, errKindTimeout: 100},
			ErrorSamples: map[string]string{errKindTimeout: "waiting for hag's reply: i/o timeout"}, P99Ms: 1400, MachineCores: 1.95, HagCores: 0.5, BenchCores: 0.8},
	}, Profile: &r.Profiles[0]}
	raised.finish(3e9)
	r.Rate = []RateRun{shipped, raised}
	r.Hung = []HungRow{{System: sysHybrid, Failed: 7, Tried: 1000, Reused: 0, Expected: 7.1}, {System: sysHybrid, Failed: 30, Tried: 2300}}
	return r
}

func TestMarkdownRendersEveryFigure(t *testing.T) {
	r := sampleReport()
	r.headlines(r.Flows)
	md := r.markdown()
	for _, want := range []string{
		"## 7. hag connection rate", "### Shipped limits: **800 new flows/s**", "**Broke at 1200 flows/s:**",
		"that is the per-CPE token bucket: 500 new flows/s sustained, bursts of 1000",
		"passed only because its 2400 flows fit in the burst plus 3 s of refill (2500)",
		"### Where hybridgw is behind the peer", "**Time to first byte**", "**CPU per Gbit/s (unshaped)**", "**Memory per idle flow**",
		"relay's copy buffers", "5. RSS per idle flow, KB (both daemons), 3200 flows", "7. hag new flows/s (< 1 % errors, p99 < 1 s), rate limits raised",
		"hybridgw-bond — the same binaries", "**not read**", "3200 (10000 asked)",
		"**LAN connects that hang** — in figure 5, 37 of 3300", "0 of the connections that did open reused one, where chance gives 7.1", "hcpe's TCP forwarder is not",
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
	var names []string
	for _, h := range r.Headlines {
		names = append(names, h.Name)
	}
	for _, want := range []string{"hag new flows/s, rate limits raised ÷ shipped limits", "RSS per idle flow hybridgw ÷ peer, 3200 flows", "RSS per idle flow peer, 9800 ÷ 1000 flows"} {
		if !strings.Contains(strings.Join(names, "\n"), want) {
			t.Errorf("no headline %q in %q", want, names)
		}
	}
}

// report.json reads back into the same report.md (rerender).
func TestReportRoundTrip(t *testing.T) {
	r := sampleReport()
	r.headlines(r.Flows)
	dir := t.TempDir()
	if err := r.write(dir); err != nil {
		t.Fatal(err)
	}
	back, err := readReport(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	back.headlines(back.Flows)
	if len(back.Rate) != 2 || back.Rate[1].Profile == nil || back.Rate[0].Steps[1].LimitHits["new_flows_rate"] != 1100 || len(back.Profiles) != 3 {
		t.Errorf("figure 7 or profiles lost in report.json: %+v", back.Rate)
	}
	if len(back.Memory) != len(r.Memory) || back.Memory[2].Asked != 10000 || back.Memory[2].Target != 3200 {
		t.Errorf("figure 5 rows lost: %+v", back.Memory)
	}
}
