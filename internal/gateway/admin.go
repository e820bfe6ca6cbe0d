package gateway

import (
	"cmp"
	"context"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"hybridgw/internal/admin"
	"hybridgw/internal/mptcp"
	"hybridgw/internal/relay"
	"hybridgw/internal/version"
)

// registry is what hag's admin API knows beyond the metrics: the flows
// being relayed and what was seen of each CPE. The zero value is ready.
type registry struct {
	mu    sync.Mutex
	flows map[*trackedFlow]struct{}
	cpes  map[string]*cpeSeen
}

// trackedFlow is one relayed flow as serve knows it.
type trackedFlow struct {
	id        uint64
	cpe       string
	peer      netip.AddrPort // the CPE's end of the initial subflow
	client    netip.AddrPort // the LAN host the Convert message named
	dst, src  netip.AddrPort // the server, and hag's end towards it
	preserved bool
	mptcp     bool
	conn      *net.TCPConn
	ctr       *relay.Counters
	start     time.Time
}

// cpeSeen counts one CPE's flows since start.
type cpeSeen struct {
	flows              uint64
	active             int
	last               time.Time
	toServer, toClient int64 // of its finished flows
}

// track registers a flow from the start of its relay; the returned func
// unregisters it and adds its bytes to its CPE's.
func (r *registry) track(f trackedFlow) (untrack func()) {
	f.start = time.Now()
	tf := &f
	r.mu.Lock()
	if r.flows == nil {
		r.flows, r.cpes = map[*trackedFlow]struct{}{}, map[string]*cpeSeen{}
	}
	r.flows[tf] = struct{}{}
	cs := r.cpes[f.cpe]
	if cs == nil {
		cs = &cpeSeen{}
		r.cpes[f.cpe] = cs
	}
	cs.flows++
	cs.active++
	cs.last = f.start
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		delete(r.flows, tf)
		cs.active--
		cs.last = time.Now()
		cs.toServer += tf.ctr.AtoB.Load()
		cs.toClient += tf.ctr.BtoA.Load()
	}
}

// snapshot copies the live flows and per-CPE records.
func (r *registry) snapshot() ([]*trackedFlow, map[string]cpeSeen, map[string][]*trackedFlow) {
	r.mu.Lock()
	defer r.mu.Unlock()
	flows := make([]*trackedFlow, 0, len(r.flows))
	byCPE := map[string][]*trackedFlow{}
	for f := range r.flows {
		flows = append(flows, f)
		byCPE[f.cpe] = append(byCPE[f.cpe], f)
	}
	cpes := make(map[string]cpeSeen, len(r.cpes))
	for id, c := range r.cpes {
		cpes[id] = *c
	}
	return flows, cpes, byCPE
}

// serveAdmin answers the admin API (internal/admin) on admin.listen until
// ctx is cancelled; "" disables it. It answers 503 until the listeners
// are up.
func (g *Gateway) serveAdmin(ctx context.Context) error {
	return admin.Serve(ctx, g.cfg().Admin.Listen, admin.Handler(&hagAdmin{g: g, started: time.Now()}, g.ready), g.log)
}

// hagAdmin is hag's admin.Provider.
type hagAdmin struct {
	g       *Gateway
	started time.Time
}

// Status implements admin.Provider.
func (a *hagAdmin) Status(context.Context) (any, error) {
	g := a.g
	ms, err := admin.Gather(g.m.Registry)
	if err != nil {
		return nil, err
	}
	s := &admin.HAGStatus{Version: version.String(), Started: a.started, Listeners: []admin.Listener{}, CPEs: []admin.CPESeen{}}
	for _, ad := range g.addrs {
		s.Listeners = append(s.Listeners, admin.Listener{Address: ad.String(), Protocols: []string{"mptcp", "probes"}})
	}
	_, cpes, byCPE := g.reg.snapshot()
	seen := func(id string) admin.CPESeen {
		c := cpes[id]
		out := admin.CPESeen{ID: id, FlowsActive: c.active, Flows: c.flows, ToServer: c.toServer, ToClient: c.toClient}
		if !c.last.IsZero() {
			last := c.last
			if c.active > 0 {
				last = time.Now()
			}
			out.LastSeen = &last
		}
		for _, f := range byCPE[id] {
			out.ToServer += f.ctr.AtoB.Load()
			out.ToClient += f.ctr.BtoA.Load()
			if p := f.peer.Addr(); !slices.Contains(out.Peers, p) {
				out.Peers = append(out.Peers, p)
			}
		}
		slices.SortFunc(out.Peers, netip.Addr.Compare)
		return out
	}
	for _, c := range g.cfg().CPEs {
		cs := seen(c.ID)
		cs.Auth, cs.Configured = c.Auth, true
		s.CPEs = append(s.CPEs, cs)
		delete(cpes, c.ID)
	}
	for id := range cpes {
		s.CPEs = append(s.CPEs, seen(id))
	}
	slices.SortStableFunc(s.CPEs, func(x, y admin.CPESeen) int {
		if x.Configured != y.Configured {
			if x.Configured {
				return -1
			}
			return 1
		}
		return 0
	})
	s.Flows = admin.HAGFlowCounts{
		Active: g.activeFlows(), HandshakesInFlight: g.handshakes.Load(),
		ToServer: int64(g.bytes("to_server")), ToClient: int64(g.bytes("to_client")),
		Results: ms.By("hag_flows_total", "result"),
	}
	fb, _ := ms.Value("hag_mptcp_fallbacks_total")
	s.Errors = admin.HAGErrors{
		ConvertErrors:  ms.By("hag_convert_errors_total", "code"),
		LimitHits:      ms.By("hag_limit_hits_total", "limit"),
		FlowEnds:       ms.By("hag_flow_ends_total", "reason"),
		MPTCPFallbacks: uint64(fb),
	}
	return s, nil
}

// Flows implements admin.Provider.
func (a *hagAdmin) Flows(context.Context) (any, error) {
	flows, _, _ := a.g.reg.snapshot()
	now := time.Now()
	out := &admin.HAGFlows{Flows: make([]admin.HAGFlow, 0, len(flows))}
	for _, f := range flows {
		af := admin.HAGFlow{
			ID: f.id, CPE: f.cpe, Peer: f.peer, Client: f.client, Destination: f.dst, Source: f.src, Preserved: f.preserved,
			Started: f.start, AgeMs: now.Sub(f.start).Milliseconds(), ToServer: f.ctr.AtoB.Load(), ToClient: f.ctr.BtoA.Load(),
			MPTCP: f.mptcp, Subflows: []admin.Subflow{},
		}
		if f.mptcp {
			// A flow that closes meanwhile has no subflows left to list.
			subs, _ := mptcp.Subflows(f.conn)
			for _, sf := range subs {
				af.Subflows = append(af.Subflows, admin.Subflow{Local: sf.Local, Remote: sf.Remote, RTTMs: admin.Ms(sf.TCP.RTT),
					BytesAcked: sf.TCP.BytesAcked, BytesReceived: sf.TCP.BytesRecv, Retrans: sf.TCP.TotalRetrans})
			}
		}
		out.Flows = append(out.Flows, af)
	}
	slices.SortFunc(out.Flows, func(x, y admin.HAGFlow) int { return cmp.Compare(x.ID, y.ID) })
	return out, nil
}
