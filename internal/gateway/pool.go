package gateway

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"hybridgw/internal/mptcp"
)

// poolGate holds connections that are established but have not sent a
// byte: hcpe's warm pool opens them before it has a flow to put on them.
// They wait under limits.pool_idle and are counted per source (one IPv4
// address or one IPv6 /64, as handshakes_per_source counts, so a host
// cannot escape the bound by rotating addresses) against
// limits.pool_per_cpe, and all together against limits.flows_total,
// instead of against handshakes_in_flight, whose short deadline is for
// unproven sources: an MPTCP handshake has completed, so the source
// address is real. The map holds only sources with a waiting connection.
type poolGate struct {
	mu      sync.Mutex
	total   int
	waiting map[netip.Prefix]int
}

// enter takes a waiting slot for a; limit is "" when it got one, else the
// bound that refused it.
func (p *poolGate) enter(a netip.Addr, perSource, total int) (limit string) {
	k := sourceKey(a)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.waiting == nil {
		p.waiting = map[netip.Prefix]int{}
	}
	switch {
	case p.waiting[k] >= perSource:
		return "pool_per_cpe"
	case p.total >= total:
		return "pool_total"
	}
	p.waiting[k]++
	p.total++
	return ""
}

func (p *poolGate) leave(a netip.Addr) {
	k := sourceKey(a)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total--
	if p.waiting[k]--; p.waiting[k] <= 0 {
		delete(p.waiting, k)
	}
}

// awaitFirstByte returns true once conn has a byte to read, at once when
// the Convert message is already there (a fresh, unpooled flow). false
// means serve should close conn: the peer left, idled past pool_idle, has
// too many waiting, or hag is shutting down.
func (g *Gateway) awaitFirstByte(ctx context.Context, conn *net.TCPConn, peer netip.AddrPort, log *slog.Logger) bool {
	if !mptcp.Quiet(conn) {
		return true // data, EOF or an error: the Convert read says which
	}
	a := peer.Addr().Unmap()
	if limit := g.pool.enter(a, g.cfg().Limits.PoolPerCPE, g.cfg().Limits.FlowsTotal); limit != "" {
		g.m.LimitHits.WithLabelValues(limit).Inc()
		g.refused(log, "pool_limit", "too many idle pooled connections ("+limit+")")
		return false
	}
	g.m.PoolWaiting.Inc()
	defer func() { g.pool.leave(a); g.m.PoolWaiting.Dec() }()
	// Deadline setters fail only on a closed conn, and WaitReadable then
	// fails and says so.
	_ = conn.SetReadDeadline(time.Now().Add(g.cfg().Limits.PoolIdle))
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Unix(1, 0)) })
	err := mptcp.WaitReadable(conn)
	stop()
	_ = conn.SetReadDeadline(time.Time{})
	var ne net.Error
	switch {
	case err == nil:
		return true
	case errors.Is(err, io.EOF):
		g.m.PoolEnds.WithLabelValues("closed").Inc()
	case errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil:
		g.m.PoolEnds.WithLabelValues("idle").Inc()
	default:
		g.m.PoolEnds.WithLabelValues("error").Inc()
	}
	return false
}
