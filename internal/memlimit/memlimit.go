// Package memlimit gives a daemon a memory ceiling it enforces itself: it
// sets the Go runtime's soft memory limit (runtime/debug.SetMemoryLimit),
// so the collector works harder as memory nears the ceiling, and tells
// when the process is near it, so the daemon refuses new work instead of
// growing into the kernel's OOM killer or its cgroup's MemoryMax.
//
// "Memory" is what the Go runtime has mapped and not returned to the
// kernel (runtime/metrics /memory/classes/total minus heap/released): the
// quantity the soft limit governs, and close to RSS for a Go daemon.
package memlimit

import (
	"context"
	"math"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
	"time"
)

// High and Low are shares of the limit: the Guard turns tight at High and
// loose again only below Low, so one collection does not toggle it.
const (
	High = 0.9
	Low  = 0.8
)

// Guard watches the process's memory against a limit. The zero value and
// a nil *Guard are never tight.
type Guard struct {
	limit int64
	tight atomic.Bool
	used  func() int64 // the runtime's figure; tests replace it
}

// New makes a Guard for limit bytes; 0 means no ceiling.
func New(limit int64) *Guard { return &Guard{limit: limit, used: used} }

// Tight reports whether memory is near the limit. It is one atomic load.
func (g *Guard) Tight() bool { return g != nil && g.tight.Load() }

// Run sets the runtime's soft limit and samples memory every interval
// until ctx ends, then restores the previous soft limit.
func (g *Guard) Run(ctx context.Context, interval time.Duration) {
	if g == nil || g.limit <= 0 {
		return
	}
	prev := debug.SetMemoryLimit(g.limit)
	defer debug.SetMemoryLimit(prev)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		g.sample()
		select {
		case <-ctx.Done():
			g.tight.Store(false)
			return
		case <-t.C:
		}
	}
}

// sample updates Tight from one reading, with hysteresis.
func (g *Guard) sample() {
	u := float64(g.used())
	switch {
	case u >= High*float64(g.limit):
		g.tight.Store(true)
	case u < Low*float64(g.limit):
		g.tight.Store(false)
	}
}

// Used is the process's memory as the soft limit counts it, in bytes.
func Used() int64 { return used() }

func used() int64 {
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	var v [2]uint64
	for i := range s {
		if s[i].Value.Kind() == metrics.KindUint64 {
			v[i] = s[i].Value.Uint64()
		}
	}
	if v[0] < v[1] || v[0]-v[1] > math.MaxInt64 {
		return 0
	}
	return int64(v[0] - v[1])
}
