package pool

import (
	"testing"
	"time"
)

func TestTarget(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	tests := []struct {
		name           string
		floor, ceiling int
		lead           time.Duration
		arrivals       []time.Duration // offsets from t0
		at             time.Duration
		want           int
		wantRate       float64
	}{
		{name: "idle keeps the floor", floor: 2, ceiling: 16, lead: time.Second, at: 5 * time.Second, want: 2},
		{name: "floor zero idle is empty", floor: 0, ceiling: 16, lead: time.Second, at: time.Second, want: 0},
		{name: "one flow a second, 1 s lead", floor: 0, ceiling: 16, lead: time.Second,
			arrivals: every(10, time.Second), at: 9500 * time.Millisecond, want: 2, wantRate: 1},
		{name: "ten a second, 1 s lead", floor: 2, ceiling: 16, lead: time.Second,
			arrivals: every(100, 100*time.Millisecond), at: 9950 * time.Millisecond, want: 11, wantRate: 10},
		{name: "burst clamps to the ceiling", floor: 2, ceiling: 8, lead: time.Second,
			arrivals: every(500, time.Millisecond), at: time.Second, want: 8, wantRate: 50},
		{name: "old arrivals age out", floor: 1, ceiling: 16, lead: time.Second,
			arrivals: every(100, time.Millisecond), at: 30 * time.Second, want: 1},
		{name: "ceiling below floor is the floor", floor: 4, ceiling: 2, lead: time.Second, at: 0, want: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewSizer(tt.floor, tt.ceiling, 10*time.Second, tt.lead)
			for _, a := range tt.arrivals {
				s.Arrive(t0.Add(a))
			}
			now := t0.Add(tt.at)
			if got := s.Target(now); got != tt.want {
				t.Errorf("Target = %d, want %d (rate %.2f/s)", got, tt.want, s.Rate(now))
			}
			if got := s.Rate(now); got != tt.wantRate {
				t.Errorf("Rate = %.3f, want %.3f", got, tt.wantRate)
			}
		})
	}
}

// A bucket reused after a full window must not add its stale count.
func TestBucketReuse(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	s := NewSizer(0, 100, 10*time.Second, time.Second)
	for range 50 {
		s.Arrive(t0)
	}
	s.Arrive(t0.Add(10 * time.Second)) // same bucket index, next lap
	if got := s.Rate(t0.Add(10 * time.Second)); got != 0.1 {
		t.Fatalf("Rate = %v, want 0.1 (the stale 50 must be dropped)", got)
	}
}

func every(n int, d time.Duration) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = time.Duration(i) * d
	}
	return out
}
