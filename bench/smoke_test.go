package main

import (
	"strings"
	"testing"
)

func TestSmokeCheck(t *testing.T) {
	r := &Report{
		Efficiency: []EffRow{{System: sysDirect, GoodputMbps: 19}, {System: sysHybrid, GoodputMbps: 39}, {System: sysPeer, GoodputMbps: 0}},
		TTFB:       []TTFBRow{{System: sysDirect, Runs: 20, MedianMs: 30}, {System: sysHybrid, Runs: 0}},
	}
	err := smokeCheck(r, []string{sysDirect, sysHybrid, sysPeer})
	if err == nil {
		t.Fatal("a report missing figures passed")
	}
	for _, want := range []string{"hybridgw: no figure 2", "peer: no figure 1", "peer: no figure 2"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "direct") {
		t.Errorf("direct has both figures, but: %v", err)
	}
	r.Efficiency[2].GoodputMbps = 50
	r.TTFB[1] = TTFBRow{System: sysHybrid, Runs: 20, MedianMs: 47}
	r.TTFB = append(r.TTFB, TTFBRow{System: sysPeer, Runs: 19, MedianMs: 31})
	r.Efficiency = append(r.Efficiency, EffRow{System: sysBond, GoodputMbps: 55})
	if err := smokeCheck(r, []string{sysDirect, sysHybrid, sysBond, sysPeer, ""}); err != nil {
		t.Errorf("a complete report failed (hybridgw-bond needs no figure 2): %v", err)
	}
}
