package cpe

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"hybridgw/internal/mptcp"
	"hybridgw/internal/pool"
)

// Warm-pool timing. A refill is usable after a handshake and the join of
// the other subflows, well under poolLead on any uplink that passes its
// probes; the sizer provisions for the flows that arrive meanwhile.
const (
	poolLead       = time.Second
	poolTick       = 250 * time.Millisecond
	poolJoinWait   = time.Second // longest a refill waits for its other subflows
	poolBackoffMin = 200 * time.Millisecond
	poolBackoffMax = 5 * time.Second
	poolRefillMin  = 20 * time.Millisecond // refillDelay without a probe RTT yet
)

var errNoUplink = errors.New("no live uplink with an address")

// warm is one established, unused MPTCP connection to hag.
type warm struct {
	conn   *net.TCPConn
	hag    netip.AddrPort
	local  netip.Addr
	uplink string // of the initial subflow
	born   time.Time
}

// warmPool keeps established MPTCP connections to hag so that a new flow
// writes its Convert message at once: the round trip of hcpe's own
// handshake, and the join of the other subflows, are spent before the
// flow exists, without data in any SYN. Sizing is internal/pool's; this
// half owns the sockets.
//
// Lifetime: run owns every refill goroutine and waits for them; on return
// every pooled connection is closed. take is safe from any goroutine.
type warmPool struct {
	c    *CPE
	wake chan struct{}

	mu      sync.Mutex
	sizer   *pool.Sizer
	conns   []warm
	dialing int
	retryAt time.Time // after a failed refill: hag or the uplink is unreachable
	backoff time.Duration
	closed  bool
}

// newWarmPool returns nil when the config disables the pool (ceiling 0).
func newWarmPool(c *CPE) *warmPool {
	p := c.cfg.Pool
	if p.Ceiling <= 0 {
		return nil
	}
	return &warmPool{c: c, wake: make(chan struct{}, 1), sizer: pool.NewSizer(p.Floor, p.Ceiling, p.Window, poolLead)}
}

func (p *warmPool) kick() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// refillAfter starts the refill a take calls for. While the pool still
// holds a connection for the next flow, the refill waits until the flow
// that took one is likely set up (refillDelay): its handshake, the join
// of its other subflows and hag's accept of it would otherwise compete
// for the CPU, and for the uplink, with that flow's Convert exchange and
// first request, which decide the user's time to first byte (make bench
// figure 2). After a miss, or when the pool is empty, it refills at once.
func (p *warmPool) refillAfter(took bool, uplink string, left int) {
	if !took || left == 0 {
		p.kick()
		return
	}
	// The timer's goroutine only kicks (a non-blocking send) and returns;
	// after run has returned the kick is a no-op.
	time.AfterFunc(refillDelay(p.c.health.rtt(uplink)), p.kick)
}

// refillDelay is about the round trips a flow's setup and first exchange
// take over an uplink of this probe RTT, within [poolRefillMin, poolTick]:
// the run loop's tick refills in any case.
func refillDelay(rtt time.Duration) time.Duration {
	return min(max(3*rtt, poolRefillMin), poolTick)
}

// take hands out a live pooled connection whose first uplink is usable
// now, newest first; ok false means the flow dials as without a pool.
// Every call is one arrival for the sizer. A connection that died while
// pooled (hag closed or reset it) is discarded here, never handed out.
func (p *warmPool) take() (w warm, ok bool) {
	if p == nil {
		return warm{}, false
	}
	var dead []warm
	left := 0
	defer func() {
		for _, d := range dead {
			p.discard(d, "dead")
		}
		if ok {
			p.c.m.PoolHits.Inc()
		} else {
			p.c.m.PoolMisses.Inc()
		}
		p.refillAfter(ok, w.uplink, left)
	}()
	p.mu.Lock()
	defer func() { left = len(p.conns); p.mu.Unlock() }()
	p.sizer.Arrive(time.Now())
	for i := len(p.conns) - 1; i >= 0; i-- {
		cand := p.conns[i]
		if !p.c.health.usable(cand.uplink) {
			continue
		}
		p.conns = append(p.conns[:i], p.conns[i+1:]...)
		if !mptcp.Quiet(cand.conn) {
			dead = append(dead, cand)
			continue
		}
		p.c.m.PoolSize.Set(float64(len(p.conns)))
		return cand, true
	}
	p.c.m.PoolSize.Set(float64(len(p.conns)))
	return warm{}, false
}

func (p *warmPool) discard(w warm, reason string) {
	// hag holds nothing for it; no FIN exchange needed. SetLinger fails
	// only on a closed conn, which Close below then does not mind.
	_ = w.conn.SetLinger(0)
	w.conn.Close()
	p.c.m.PoolDiscarded.WithLabelValues(reason).Inc()
}

// size is what `hcpe status` shows.
func (p *warmPool) size() (ready, target int, rate float64) {
	if p == nil {
		return 0, 0, 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	return len(p.conns), p.sizer.Target(now), p.sizer.Rate(now)
}

// run keeps the pool at its target until ctx ends, then closes it.
func (p *warmPool) run(ctx context.Context) {
	var wg sync.WaitGroup
	defer func() {
		wg.Wait() // refills return promptly once ctx is done
		p.mu.Lock()
		p.closed = true
		conns := p.conns
		p.conns = nil
		p.mu.Unlock()
		for _, w := range conns {
			p.discard(w, "shutdown")
		}
		p.c.m.PoolSize.Set(0)
	}()
	t := time.NewTicker(poolTick)
	defer t.Stop()
	for {
		p.sweep()
		for range p.refills() {
			wg.Add(1)
			go func() { defer wg.Done(); p.refill(ctx) }()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-p.wake:
		}
	}
}

// sweep drops pooled connections that cannot carry a flow: their uplink
// went down or is no longer one the policy lets a flow start on, they
// aged past pool.max_idle (hag's pool_idle would close them), or hag
// closed or reset them.
func (p *warmPool) sweep() {
	type drop struct {
		w      warm
		reason string
	}
	var drops []drop
	now := time.Now()
	p.mu.Lock()
	keep := p.conns[:0]
	for _, w := range p.conns {
		switch {
		case !p.c.health.alive(w.uplink):
			drops = append(drops, drop{w, "uplink_down"})
		case !p.c.health.usable(w.uplink):
			// Opened while its uplink came first (DSL down, LTE carried
			// the flows); take no longer hands it out, and kept it would
			// count towards the target and stop the refills a flow needs:
			// bench figure 2 saw 19 of 300 flows miss the pool so.
			drops = append(drops, drop{w, "unusable"})
		case now.Sub(w.born) > p.c.cfg.Pool.MaxIdle:
			drops = append(drops, drop{w, "aged"})
		case !mptcp.Quiet(w.conn):
			drops = append(drops, drop{w, "dead"})
		default:
			keep = append(keep, w)
		}
	}
	clear(p.conns[len(keep):])
	p.conns = keep
	p.c.m.PoolSize.Set(float64(len(p.conns)))
	p.mu.Unlock()
	for _, d := range drops {
		p.discard(d.w, d.reason)
	}
}

// refills is how many refills to start now (reserving them).
func (p *warmPool) refills() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	target := p.sizer.Target(now)
	p.c.m.PoolTarget.Set(float64(target))
	if now.Before(p.retryAt) {
		return 0
	}
	n := max(target-len(p.conns)-p.dialing, 0)
	if p.backoff > 0 {
		n = min(n, 1) // probing hag again: one at a time
	}
	p.dialing += n
	return n
}

// refill opens one connection and pools it once its other subflows have
// joined (or poolJoinWait passed). A failure empties the pool: if hag
// cannot be reached now, what is pooled is likely dead too, and a flow
// must then dial as without a pool rather than wait on a dead socket.
func (p *warmPool) refill(ctx context.Context) {
	w, err := p.open(ctx)
	p.mu.Lock()
	p.dialing--
	if err != nil {
		p.backoff = min(max(2*p.backoff, poolBackoffMin), poolBackoffMax)
		p.retryAt = time.Now().Add(p.backoff)
		stale := p.conns
		p.conns = nil
		p.c.m.PoolSize.Set(0)
		p.mu.Unlock()
		if ctx.Err() == nil {
			p.c.log.Debug("warm pool: could not reach hag", "err", err, "retry_in", p.backoff.String())
		}
		for _, s := range stale {
			p.discard(s, "hag_unreachable")
		}
		return
	}
	p.backoff, p.retryAt = 0, time.Time{}
	if p.closed || ctx.Err() != nil || len(p.conns) >= p.c.cfg.Pool.Ceiling {
		p.mu.Unlock()
		p.discard(w, "shutdown")
		return
	}
	p.conns = append(p.conns, w)
	p.c.m.PoolSize.Set(float64(len(p.conns)))
	p.mu.Unlock()
	p.c.m.PoolRefills.Inc()
}

func (p *warmPool) open(ctx context.Context) (warm, error) {
	hag, local, uplink, ok := p.c.pickPath()
	if !ok {
		return warm{}, errNoUplink
	}
	a, err := p.c.connect(ctx, hag, attempt{uplink: uplink, local: local}, nil, p.c.cfg.HAG.ConnectTimeout)
	if err != nil {
		return warm{}, err
	}
	// Wait for the path manager to join the other usable uplinks, so the
	// flow that takes this connection is bonded from its first byte.
	want := 0
	for _, u := range p.c.cfg.Uplinks {
		if p.c.health.usable(u.Name) && p.c.health.alive(u.Name) {
			want++
		}
	}
	deadline := time.Now().Add(poolJoinWait)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if subs, err := mptcp.Subflows(a.conn); err != nil || len(subs) >= want {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
	return warm{conn: a.conn, hag: hag, local: a.local, uplink: a.uplink, born: time.Now()}, nil
}
