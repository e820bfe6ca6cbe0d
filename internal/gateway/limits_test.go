package gateway

import (
	"testing"
	"time"

	"hybridgw/internal/config"
)

func TestLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newLimiter(config.HAGLimits{FlowsTotal: 3, FlowsPerCPE: 2, NewFlowsPerSecond: 1, NewFlowsBurst: 10})
	r1, lim := l.acquire("a", now)
	if lim != "" {
		t.Fatal(lim)
	}
	if _, lim := l.acquire("a", now); lim != "" {
		t.Fatal(lim)
	}
	if _, lim := l.acquire("a", now); lim != "flows_per_cpe" {
		t.Fatalf("third flow of a: %q", lim)
	}
	if _, lim := l.acquire("b", now); lim != "" {
		t.Fatal(lim)
	}
	if _, lim := l.acquire("c", now); lim != "flows_total" {
		t.Fatalf("fourth flow: %q", lim)
	}
	r1()
	r1() // idempotent
	if _, lim := l.acquire("c", now); lim != "" {
		t.Fatalf("after release: %q", lim)
	}

	// Rate: a burst of 2 at 1/s.
	l = newLimiter(config.HAGLimits{FlowsTotal: 100, FlowsPerCPE: 100, NewFlowsPerSecond: 1, NewFlowsBurst: 2})
	for i := 0; i < 2; i++ {
		if _, lim := l.acquire("a", now); lim != "" {
			t.Fatal(lim)
		}
	}
	if _, lim := l.acquire("a", now); lim != "new_flows_rate" {
		t.Fatalf("over the burst: %q", lim)
	}
	if _, lim := l.acquire("a", now.Add(time.Second)); lim != "" {
		t.Fatalf("a second later: %q", lim)
	}
}
