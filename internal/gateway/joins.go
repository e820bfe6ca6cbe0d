package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"hybridgw/internal/config"
	"hybridgw/internal/mptcp"
	"hybridgw/internal/mptcp/pm"
)

// joinGuard holds the relayed flows whose subflows hag checks: authorize
// judged the initial subflow's source, and an MP_JOIN may add a subflow
// from anywhere the client can reach, so every later subflow must come
// from the CPE's wan_prefixes too, or it is closed. The map is keyed by
// the connection's MPTCP token, which path-manager events carry, and holds
// only live flows of CPEs with wan_prefixes, so it is bounded by
// limits.flows_total.
type joinGuard struct {
	mu    sync.Mutex
	flows map[uint32]*joinFlow
}

// joinFlow is one guarded flow.
type joinFlow struct {
	cpe  *config.CPE
	peer netip.AddrPort // the initial subflow's remote end
	conn *net.TCPConn
	log  *slog.Logger

	refused map[netip.AddrPort]bool // under joinGuard.mu: subflows already closed
}

// joinAllowed says whether a subflow from remote may stay on a flow of cpe
// whose initial subflow came from peer. The initial subflow's address was
// judged by authorize; a CPE without wan_prefixes (auth cookie) has
// nothing to check against.
func joinAllowed(cpe *config.CPE, peer netip.Addr, remote netip.Addr) bool {
	remote = remote.Unmap()
	return remote == peer.Unmap() || len(cpe.WAN) == 0 || inAny(remote, cpe.WAN)
}

func (j *joinGuard) add(token uint32, f *joinFlow) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.flows == nil {
		j.flows = map[uint32]*joinFlow{}
	}
	j.flows[token] = f
}

func (j *joinGuard) remove(token uint32) {
	j.mu.Lock()
	defer j.mu.Unlock()
	delete(j.flows, token)
}

func (j *joinGuard) get(token uint32) *joinFlow {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.flows[token]
}

func (j *joinGuard) all() []*joinFlow {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make([]*joinFlow, 0, len(j.flows))
	for _, f := range j.flows {
		out = append(out, f)
	}
	return out
}

// firstRefusal records that the subflow from remote is being closed and
// says whether it was the first time: the event and the scan at flow start
// may both see the same subflow, and it is counted once.
func (j *joinGuard) firstRefusal(f *joinFlow, remote netip.AddrPort) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	if f.refused[remote] {
		return false
	}
	if f.refused == nil {
		f.refused = map[netip.AddrPort]bool{}
	}
	f.refused[remote] = true
	return true
}

// guardJoins puts a relayed flow under the join check and checks the
// subflows that joined before it was registered (a client's path manager
// opens them as soon as the connection is established, often before hag
// has dialled the server); the returned func takes it off again. A plain
// TCP flow has no subflows to check.
func (g *Gateway) guardJoins(conn *net.TCPConn, cpe *config.CPE, peer netip.AddrPort, log *slog.Logger) (stop func()) {
	if len(cpe.WAN) == 0 {
		return func() {}
	}
	info, err := mptcp.Info(conn)
	if err != nil || info.Fallback {
		return func() {}
	}
	f := &joinFlow{cpe: cpe, peer: peer, conn: conn, log: log}
	g.joins.add(info.Token, f)
	g.checkSubflows(f)
	return func() { g.joins.remove(info.Token) }
}

// checkSubflows checks every subflow f has now.
func (g *Gateway) checkSubflows(f *joinFlow) {
	sfs, err := mptcp.Subflows(f.conn)
	if err != nil {
		return // the flow ended or fell back: nothing left to check
	}
	for _, s := range sfs {
		g.checkJoin(f, s.Local, s.Remote)
	}
}

// checkJoin closes the subflow local<->remote of f if remote is outside
// its CPE's wan_prefixes, counted as hag_refusals_total{reason=join_source}.
// If the kernel cannot close just that subflow, the whole connection is
// reset rather than relayed over a path hag did not admit.
func (g *Gateway) checkJoin(f *joinFlow, local, remote netip.AddrPort) {
	if joinAllowed(f.cpe, f.peer.Addr(), remote.Addr()) || !g.joins.firstRefusal(f, remote) {
		return
	}
	log := f.log.With("subflow", remote.String())
	g.refused(log, "join_source", "a subflow joined from "+remote.Addr().String()+", outside the CPE's wan_prefixes; closed")
	if err := mptcp.CloseSubflow(local, remote); err != nil && !errors.Is(err, mptcp.ErrSubflowNotFound) {
		log.Error("could not close the subflow; resetting the connection", "err", err)
		_ = f.conn.SetLinger(0)
		_ = f.conn.Close()
	}
}

// watchJoins checks each subflow that joins a guarded flow as the path
// manager reports it, until ctx ends. ready is closed once hag listens to
// the events (or failed to). Events lost to a full socket buffer are made
// up by checking every guarded flow again.
func (g *Gateway) watchJoins(ctx context.Context, ready chan<- struct{}) error {
	p, err := pm.Open()
	if err != nil {
		close(ready)
		return err
	}
	defer p.Close()
	evs, err := p.Events(ctx)
	close(ready)
	if err != nil {
		return err
	}
	for ev := range evs {
		switch ev.Type {
		case pm.EventSubEstablished:
			if f := g.joins.get(ev.Token); f != nil {
				g.checkJoin(f, ev.Local, ev.Remote)
			}
		case pm.EventLost:
			for _, f := range g.joins.all() {
				g.checkSubflows(f)
			}
		}
	}
	if ctx.Err() == nil {
		return errors.New("the path-manager event socket failed")
	}
	return nil
}
