package relay

import (
	"testing"
	"time"
)

func TestIdleGrace(t *testing.T) {
	for _, tt := range []struct{ timeout, grace time.Duration }{
		{20 * time.Millisecond, 10 * time.Millisecond}, // floor
		{time.Second, 250 * time.Millisecond},          // a quarter
		{time.Hour, 10 * time.Second},                  // cap
	} {
		if g := idleGrace(tt.timeout); g != tt.grace {
			t.Errorf("timeout %v: grace %v, want %v", tt.timeout, g, tt.grace)
		}
	}
}

func TestIdleDecision(t *testing.T) {
	const timeout = time.Second
	const grace = 250 * time.Millisecond
	for _, tt := range []struct {
		name     string
		quiet    time.Duration
		busy     bool
		wantWait time.Duration
		wantIdle bool
	}{
		{"progress re-arms for the rest", 300 * time.Millisecond, false, 700 * time.Millisecond, false},
		{"progress re-arms for the rest, busy or not", 300 * time.Millisecond, true, 700 * time.Millisecond, false},
		{"quiet and nothing in hand is idle at once", timeout, false, 0, true},
		{"quiet with bytes in hand gets the grace", timeout, true, grace, false},
		{"part of the grace left", timeout + 100*time.Millisecond, true, grace - 100*time.Millisecond, false},
		{"grace up is idle", timeout + grace, true, 0, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			wait, idle := idleDecision(timeout, tt.quiet, tt.busy)
			if wait != tt.wantWait || idle != tt.wantIdle {
				t.Errorf("idleDecision(%v, %v, %v) = %v, %v; want %v, %v", timeout, tt.quiet, tt.busy, wait, idle, tt.wantWait, tt.wantIdle)
			}
		})
	}
}
