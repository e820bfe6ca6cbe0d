package memlimit

import (
	"context"
	"runtime/debug"
	"testing"
	"time"
)

// TestHysteresis: tight from 90 % of the limit, loose again below 80 %.
func TestHysteresis(t *testing.T) {
	var now int64
	g := &Guard{limit: 1000, used: func() int64 { return now }}
	for _, step := range []struct {
		used  int64
		tight bool
	}{
		{100, false}, {899, false}, {900, true}, {850, true}, {800, true}, {799, false}, {950, true}, {0, false},
	} {
		now = step.used
		g.sample()
		if g.Tight() != step.tight {
			t.Errorf("at %d of 1000: tight %v, want %v", step.used, g.Tight(), step.tight)
		}
	}
	var nilGuard *Guard
	if nilGuard.Tight() {
		t.Error("a nil Guard is tight")
	}
}

// TestRun: with a ceiling below what the process already uses, Run turns
// tight on its first sample and sets the runtime's soft limit, and gives
// the previous limit back when it ends.
func TestRun(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	limit := Used() / 2
	if limit <= 0 {
		t.Fatalf("the runtime reports %d bytes in use", Used())
	}
	g := New(limit)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); g.Run(ctx, 10*time.Millisecond) }()
	deadline := time.Now().Add(2 * time.Second)
	for !g.Tight() {
		if time.Now().After(deadline) {
			t.Fatalf("not tight with %d bytes in use and a limit of %d", Used(), limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := debug.SetMemoryLimit(-1); got != limit {
		t.Errorf("runtime soft limit %d, want %d", got, limit)
	}
	cancel()
	<-done
	if got := debug.SetMemoryLimit(-1); got != before {
		t.Errorf("soft limit after Run %d, want the previous %d", got, before)
	}
	if g.Tight() {
		t.Error("still tight after Run ended")
	}
}
