package gateway

import (
	"sync"
	"time"

	"hybridgw/internal/config"
)

// limiter enforces hag's bounds: flows in total and per CPE, and new flows
// per second per CPE (a token bucket). Its maps are keyed by configured CPE
// IDs only, so their size is bounded by the config, not by traffic.
type limiter struct {
	cfg config.HAGLimits

	mu      sync.Mutex
	total   int
	perCPE  map[string]int
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(cfg config.HAGLimits) *limiter {
	return &limiter{cfg: cfg, perCPE: map[string]int{}, buckets: map[string]*bucket{}}
}

// configure replaces the limits (a reload). Flows already admitted keep
// their slots; a lower bound refuses new flows until enough have ended,
// and a smaller burst caps each bucket at its next use.
func (l *limiter) configure(cfg config.HAGLimits) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cfg = cfg
}

// acquire admits one flow of cpe, or names the limit that refused it.
func (l *limiter) acquire(cpe string, now time.Time) (release func(), limit string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total >= l.cfg.FlowsTotal {
		return nil, "flows_total"
	}
	if l.perCPE[cpe] >= l.cfg.FlowsPerCPE {
		return nil, "flows_per_cpe"
	}
	b := l.buckets[cpe]
	if b == nil {
		b = &bucket{tokens: float64(l.cfg.NewFlowsBurst), last: now}
		l.buckets[cpe] = b
	}
	b.tokens = min(float64(l.cfg.NewFlowsBurst), b.tokens+now.Sub(b.last).Seconds()*l.cfg.NewFlowsPerSecond)
	b.last = now
	if b.tokens < 1 {
		return nil, "new_flows_rate"
	}
	b.tokens--
	l.total++
	l.perCPE[cpe]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			l.total--
			l.perCPE[cpe]--
			l.mu.Unlock()
		})
	}, ""
}
