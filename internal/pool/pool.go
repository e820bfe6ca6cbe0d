// Package pool decides how many warm MPTCP connections hcpe keeps open to
// hag: enough to hand every new flow one that is already established (and
// joined on its other uplinks) before the next refill can complete, and no
// more. It is the pure half of hcpe's warm pool; the sockets live in
// internal/cpe.
package pool

import (
	"math"
	"time"
)

// Buckets is how many slots the arrival window is cut into: enough to let
// a burst age out smoothly, few enough to keep a Sizer a fixed small size.
const Buckets = 10

// Sizer counts flow arrivals in a sliding window and turns the rate into a
// target pool size. It is not safe for concurrent use; the caller locks.
type Sizer struct {
	floor, ceiling int
	window         time.Duration
	lead           time.Duration

	counts [Buckets]int
	stamp  [Buckets]int64 // which slot index each bucket currently counts
}

// NewSizer keeps between floor and ceiling connections; window is how far
// back arrivals count, lead how long a refill takes to be usable (a
// handshake plus the join of the other subflows), i.e. how many arrivals
// the pool must absorb before it is topped up again.
func NewSizer(floor, ceiling int, window, lead time.Duration) *Sizer {
	floor = max(floor, 0)
	ceiling = max(ceiling, floor)
	if window < Buckets {
		window = Buckets
	}
	return &Sizer{floor: floor, ceiling: ceiling, window: window, lead: max(lead, 0)}
}

func (s *Sizer) slot(now time.Time) int64 {
	return now.UnixNano() / int64(s.window/Buckets)
}

// Arrive records one new flow at now.
func (s *Sizer) Arrive(now time.Time) {
	k := s.slot(now)
	i := int(uint64(k) % Buckets)
	if s.stamp[i] != k {
		s.stamp[i], s.counts[i] = k, 0
	}
	s.counts[i]++
}

// Rate is the flows per second seen over the window ending at now.
func (s *Sizer) Rate(now time.Time) float64 {
	k := s.slot(now)
	n := 0
	for i := range Buckets {
		if d := k - s.stamp[i]; d >= 0 && d < Buckets {
			n += s.counts[i]
		}
	}
	return float64(n) / s.window.Seconds()
}

// Target is how many pooled connections to hold at now: the arrivals
// expected during one refill, rounded up, plus one so that a flow arriving
// just as the last was taken still finds one, clamped to [floor, ceiling].
func (s *Sizer) Target(now time.Time) int {
	r := s.Rate(now)
	want := s.floor
	if r > 0 {
		want = int(math.Ceil(r*s.lead.Seconds())) + 1
	}
	return min(max(want, s.floor), s.ceiling)
}
