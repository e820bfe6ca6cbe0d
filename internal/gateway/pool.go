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
// They wait under limits.pool_idle and are counted per peer address
// against limits.pool_per_cpe instead of against handshakes_in_flight,
// whose short deadline and global cap are for unproven sources; an MPTCP
// handshake has completed, so the source address is real. The map holds
// only peers with a waiting connection, so its size is bounded by the
// open sockets.
type poolGate struct {
	mu      sync.Mutex
	waiting map[netip.Addr]int
}

func (p *poolGate) enter(a netip.Addr, limit int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.waiting == nil {
		p.waiting = map[netip.Addr]int{}
	}
	if p.waiting[a] >= limit {
		return false
	}
	p.waiting[a]++
	return true
}

func (p *poolGate) leave(a netip.Addr) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.waiting[a]--; p.waiting[a] <= 0 {
		delete(p.waiting, a)
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
	if !g.pool.enter(a, g.cfg.Limits.PoolPerCPE) {
		g.m.LimitHits.WithLabelValues("pool_per_cpe").Inc()
		log.Info("too many idle pooled connections from this peer", "limit", g.cfg.Limits.PoolPerCPE)
		return false
	}
	g.m.PoolWaiting.Inc()
	defer func() { g.pool.leave(a); g.m.PoolWaiting.Dec() }()
	_ = conn.SetReadDeadline(time.Now().Add(g.cfg.Limits.PoolIdle))
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
