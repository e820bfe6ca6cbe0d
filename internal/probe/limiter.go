package probe

import (
	"net/netip"
	"time"
)

// limiter is a token bucket per source, pure: the caller passes the time
// (an offset on a monotonic clock). Not safe for concurrent use; each
// Serve loop owns one.
type limiter struct {
	rate      float64 // tokens per second
	burst     float64
	max       int
	buckets   map[netip.AddrPort]bucket
	lastSweep time.Duration
}

type bucket struct {
	tokens float64
	last   time.Duration
}

type verdict int

const (
	allowed verdict = iota
	limited
	full
)

func newLimiter(rate float64, burst, max int) *limiter {
	return &limiter{rate: rate, burst: float64(burst), max: max, buckets: make(map[netip.AddrPort]bucket)}
}

func (l *limiter) allow(src netip.AddrPort, now time.Duration) verdict {
	b, ok := l.buckets[src]
	if !ok {
		if len(l.buckets) >= l.max && !l.sweep(now) {
			return full
		}
		b = bucket{tokens: l.burst, last: now}
	}
	b.tokens = min(l.burst, b.tokens+l.rate*(now-b.last).Seconds())
	b.last = now
	v := limited
	if b.tokens >= 1 {
		b.tokens--
		v = allowed
	}
	l.buckets[src] = b
	return v
}

// sweep forgets buckets that have refilled completely, which is lossless:
// a new bucket starts full. It runs at most once a second so that a full
// table of busy sources costs one scan a second, not one per packet, and
// reports whether it made room.
func (l *limiter) sweep(now time.Duration) bool {
	if l.lastSweep != 0 && now-l.lastSweep < time.Second {
		return false
	}
	l.lastSweep = now
	refill := time.Duration(l.burst / l.rate * float64(time.Second))
	for k, b := range l.buckets {
		if now-b.last >= refill {
			delete(l.buckets, k)
		}
	}
	return len(l.buckets) < l.max
}
