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

// firstByteGrace is how long a connection with nothing to read yet may
// wait for its first byte before it counts as a pooled one. hag often
// accepts a new flow's connection on the handshake's last ACK, with the
// Convert message right behind it; counted at once, a burst of new flows
// from one CPE filled pool_per_cpe and was refused as a full pool (make
// bench figure 7: 36 of 7200 flows at 2400/s). Silent connections wait
// this long uncounted, so at most the accept rate times this many.
const firstByteGrace = 250 * time.Millisecond

// awaitFirstByte is for a connection that has nothing to read yet (serve
// peeked): it returns true once conn has a byte to read. false means serve
// should close conn: the peer left, idled past pool_idle, has too many
// waiting, or hag is shutting down.
func (g *Gateway) awaitFirstByte(ctx context.Context, conn *net.TCPConn, peer netip.AddrPort, log *slog.Logger) bool {
	idleUntil := time.Now().Add(g.cfg().Limits.PoolIdle)
	// Deadline setters fail only on a closed conn, and WaitReadable then
	// fails and says so.
	defer conn.SetReadDeadline(time.Time{}) // after stop, below
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	grace := time.Now().Add(firstByteGrace)
	if idleUntil.Before(grace) {
		grace = idleUntil
	}
	_ = conn.SetReadDeadline(grace)
	err := mptcp.WaitReadable(conn)
	var ne net.Error
	if err != nil && errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil && time.Now().Before(idleUntil) {
		// Silent past the grace: a warm-pool connection, counted.
		a := peer.Addr().Unmap()
		if limit := g.pool.enter(a, g.cfg().Limits.PoolPerCPE, g.cfg().Limits.FlowsTotal); limit != "" {
			g.m.LimitHits.WithLabelValues(limit).Inc()
			g.refused(log, "pool_limit", "too many idle pooled connections ("+limit+")")
			return false
		}
		g.m.PoolWaiting.Inc()
		defer func() { g.pool.leave(a); g.m.PoolWaiting.Dec() }()
		_ = conn.SetReadDeadline(idleUntil)
		if ctx.Err() != nil {
			_ = conn.SetReadDeadline(time.Unix(1, 0))
		}
		err = mptcp.WaitReadable(conn)
	}
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
