package cpe

import (
	"testing"
	"time"
)

// TestRefillDelay: a refill after a take waits about three probe RTTs
// (the flow's Convert exchange and first request), never less than
// poolRefillMin and never past the run loop's own tick.
func TestRefillDelay(t *testing.T) {
	for _, tc := range []struct {
		rtt, want time.Duration
	}{
		{0, poolRefillMin},
		{time.Millisecond, poolRefillMin},
		{16 * time.Millisecond, 48 * time.Millisecond},
		{60 * time.Millisecond, 180 * time.Millisecond},
		{time.Second, poolTick},
	} {
		if got := refillDelay(tc.rtt); got != tc.want {
			t.Errorf("refillDelay(%v) = %v, want %v", tc.rtt, got, tc.want)
		}
	}
}
