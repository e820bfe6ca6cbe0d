package main

import (
	"runtime"
	"strings"
	"testing"
)

func TestParseDevDrops(t *testing.T) {
	text := `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0
   dsl: 5000000   40000    0    3    0     0          0         0  6000000   50000    0  117    0     0       0          0
`
	got := parseDevDrops(text)
	if got["dsl rx_drop"] != 3 || got["dsl tx_drop"] != 117 || got["lo tx_drop"] != 0 || len(got) != 4 {
		t.Errorf("parseDevDrops = %v", got)
	}
}

// TestRanOut: each kind of evidence names its resource.
func TestRanOut(t *testing.T) {
	n := float64(runtime.NumCPU())
	tests := []struct {
		name string
		st   RateStep
		want string
	}{
		{"limits", RateStep{ErrorCount: 100, LimitHits: map[string]float64{"new_flows_rate": 90}}, "configured limits"},
		{"hag", RateStep{HagCores: 0.95, MachineCores: n}, "hag's CPU"},
		{"emulator", RateStep{HagCores: 0.4, Kernel: map[string]float64{"cpe dsl tx_drop": 50}}, "link emulator"},
		{"emulator starved", RateStep{HagCores: 0.2, BenchCores: 0.3, MachineCores: n, Kernel: map[string]float64{"cpe dsl tx_drop": 50}}, "other processes ("},
		{"accept queue", RateStep{HagCores: 0.4, Kernel: map[string]float64{"hag ListenOverflows": 7}}, "accept queue"},
		{"generator", RateStep{HagCores: 0.4, GeneratorBehind: true, LateMs: 800}, "load generator"},
		{"others", RateStep{HagCores: 0.3, BenchCores: 0.5, MachineCores: n}, "other processes"},
		{"machine", RateStep{HagCores: 0.6, BenchCores: n - 0.6, MachineCores: n}, "machine's CPU"},
		{"unclear", RateStep{HagCores: 0.3, MachineCores: 1}, "none clearly"},
	}
	for _, tt := range tests {
		if got := ranOut(tt.st); !strings.Contains(got, tt.want) {
			t.Errorf("%s: ranOut = %q, want it to name %q", tt.name, got, tt.want)
		}
	}
}

func TestParseCtxSwitches(t *testing.T) {
	status := "Name:\thag\nvoluntary_ctxt_switches:\t120\nnonvoluntary_ctxt_switches:\t7\n"
	if got := parseCtxSwitches(status); got != 127 {
		t.Errorf("parseCtxSwitches = %v, want 127", got)
	}
}
