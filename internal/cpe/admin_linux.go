package cpe

import (
	"cmp"
	"context"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netlink"

	"hybridgw/internal/admin"
	"hybridgw/internal/config"
	"hybridgw/internal/mptcp"
	"hybridgw/internal/policy"
	"hybridgw/internal/version"
)

// serveAdmin answers the admin API (internal/admin) on admin.listen until
// ctx is cancelled; "" disables it. Start it once c.ups and c.health
// exist: it reads them, c.flows and the metrics, and answers 503 until
// c.ready is closed. Run starts it beside the metrics server.
func (c *CPE) serveAdmin(ctx context.Context) error {
	if c.cfg.Admin.Listen == "" {
		<-ctx.Done()
		return nil
	}
	a := &cpeAdmin{c: c, started: time.Now(), rates: map[string][2]int64{}}
	var wg sync.WaitGroup
	rctx, stop := context.WithCancel(ctx)
	wg.Add(1)
	go func() { defer wg.Done(); a.sampleRates(rctx) }()
	defer func() { stop(); wg.Wait() }()
	return admin.Serve(ctx, c.cfg.Admin.Listen, admin.Handler(a, c.ready), c.log)
}

// Reload is `hcpe reload`: the same as SIGHUP, with the outcome answered
// to the operator instead of only logged.
func (a *cpeAdmin) Reload(context.Context) (any, error) {
	path := a.c.cfg.File()
	na, err := a.c.reload(path)
	if err != nil {
		a.c.log.Error("reload failed", "config", path, "err", err, "via", "admin API")
		return nil, err
	}
	return admin.Reloaded{Config: path, NotApplied: na}, nil
}

// cpeAdmin is hcpe's admin.Provider.
type cpeAdmin struct {
	c       *CPE
	started time.Time

	mu    sync.Mutex
	rates map[string][2]int64 // uplink → down, up bit/s over the last second
}

// sampleRates measures each uplink interface's rates once a second from
// the kernel's interface counters: all its traffic, converted or not, as
// the policy weighs it.
func (a *cpeAdmin) sampleRates(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := map[string][2]uint64{}
	lastAt := time.Now()
	for {
		now := time.Now()
		dt := now.Sub(lastAt).Seconds()
		lastAt = now
		rates := map[string][2]int64{}
		for _, u := range a.c.cfg.Uplinks {
			l, err := netlink.LinkByName(u.Interface)
			if err != nil || l.Attrs().Statistics == nil {
				delete(last, u.Name)
				continue
			}
			rx, tx := l.Attrs().Statistics.RxBytes, l.Attrs().Statistics.TxBytes
			if p, ok := last[u.Name]; ok && dt > 0 && rx >= p[0] && tx >= p[1] {
				rates[u.Name] = [2]int64{int64(float64(rx-p[0]) * 8 / dt), int64(float64(tx-p[1]) * 8 / dt)}
			}
			last[u.Name] = [2]uint64{rx, tx}
		}
		a.mu.Lock()
		a.rates = rates
		a.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// uplinkView is one uplink as the admin API shows it.
type uplinkView struct {
	name   string
	up     bool
	backup bool
	addrs  []netip.Addr
}

func (u *uplinks) views() []uplinkView {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make([]uplinkView, 0, len(u.ups))
	for _, up := range u.ups {
		v := uplinkView{name: up.cfg.Name, up: up.up, backup: up.backup}
		for a := range up.addrs {
			v.addrs = append(v.addrs, a)
		}
		slices.SortFunc(v.addrs, netip.Addr.Compare)
		out = append(out, v)
	}
	return out
}

// policyView returns the current decision and roles (which a reload
// replaces).
func (h *health) policyView() (policy.Decision, []config.Uplink) {
	h.mu.Lock()
	defer h.mu.Unlock()
	d := h.decision
	d.Uplinks = slices.Clone(d.Uplinks)
	return d, slices.Clone(h.roles)
}

// Status implements admin.Provider.
func (a *cpeAdmin) Status(context.Context) (any, error) {
	c := a.c
	ms, err := admin.Gather(c.m.Registry)
	if err != nil {
		return nil, err
	}
	d, roles := c.health.policyView()
	a.mu.Lock()
	rates := a.rates
	a.mu.Unlock()
	s := &admin.CPEStatus{
		Version: version.String(), Started: a.started, FirstUplink: d.First,
		HAG:          admin.HAGPeer{Addresses: slices.Clone(c.cfg.HAG.Addrs), Port: c.cfg.HAG.Port, CPEID: c.cfg.HAG.CPEID},
		Uplinks:      []admin.UplinkInfo{},
		LastFailover: c.health.failover(),
	}
	if c.health.nativePreferred() != "" {
		s.NativeUplink = c.ups.native()
	}
	views := c.ups.views()
	for _, cu := range c.cfg.Uplinks {
		role, down, up := cu.Role, cu.DownBps, cu.UpBps
		for _, r := range roles {
			if r.Name == cu.Name {
				role, down, up = r.Role, r.DownBps, r.UpBps
			}
		}
		u := admin.UplinkInfo{Name: cu.Name, Interface: cu.Interface, Role: role,
			NominalDownBps: int64(down), NominalUpBps: int64(up), Addresses: []netip.Addr{}}
		var v uplinkView
		for _, w := range views {
			if w.name == cu.Name {
				v = w
				u.Addresses, u.Backup = append(u.Addresses, v.addrs...), v.backup
			}
		}
		alive, _ := ms.Value("hcpe_uplink_up", "uplink", cu.Name)
		u.Alive = alive > 0
		rtt, _ := ms.Value("hcpe_uplink_rtt_seconds", "uplink", cu.Name)
		u.RTTMs = admin.Ms(time.Duration(rtt * float64(time.Second)))
		u.Loss, _ = ms.Value("hcpe_uplink_probe_loss_ratio", "uplink", cu.Name)
		bd, _ := ms.Value("hcpe_uplink_bytes_total", "uplink", cu.Name, "direction", "down")
		bu, _ := ms.Value("hcpe_uplink_bytes_total", "uplink", cu.Name, "direction", "up")
		u.BytesDown, u.BytesUp = uint64(bd), uint64(bu)
		sf, _ := ms.Value("hcpe_uplink_subflows", "uplink", cu.Name)
		u.Subflows = int(sf)
		r := rates[cu.Name]
		u.DownBps, u.UpBps = r[0], r[1]
		ud, decided := d.Get(cu.Name)
		if decided {
			u.Usable, u.Reason = ud.Usable, string(ud.Reason)
		}
		switch {
		case !v.up:
			u.State = admin.StateNoLink
		case !decided:
			u.State = admin.StateUnknown
		case !u.Alive:
			u.State = admin.StateDown
		case u.Backup:
			u.State = admin.StateBackup
		default:
			u.State = admin.StateActive
		}
		s.HAG.Reachable = s.HAG.Reachable || u.Alive
		s.Uplinks = append(s.Uplinks, u)
	}
	t := &s.Totals
	c.mu.Lock()
	t.FlowsActive = len(c.flows)
	c.mu.Unlock()
	t.Results = ms.By("hcpe_flows_total", "result")
	for r, n := range t.Results {
		if r == "ok" {
			t.FlowsOK += n
		} else {
			t.FlowsFailed += n
		}
	}
	fb, _ := ms.Value("hcpe_mptcp_fallbacks_total")
	t.Fallbacks = uint64(fb)
	if c.pool != nil {
		pi := &s.Pool
		pi.Enabled, pi.Floor, pi.Ceiling = true, c.cfg.Pool.Floor, c.cfg.Pool.Ceiling
		pi.Ready, pi.Target, pi.FlowRate = c.pool.size()
		for name, dst := range map[string]*uint64{"hcpe_pool_hits_total": &pi.Hits, "hcpe_pool_misses_total": &pi.Misses, "hcpe_pool_refills_total": &pi.Refills} {
			v, _ := ms.Value(name)
			*dst = uint64(v)
		}
		for _, n := range ms.By("hcpe_pool_discarded_total", "reason") {
			pi.Discarded += n
		}
	}
	for dir, n := range ms.By("hcpe_uplink_bytes_total", "direction") {
		if dir == "down" {
			t.BytesDown = n
		} else {
			t.BytesUp = n
		}
	}
	return s, nil
}

// Flows implements admin.Provider.
func (a *cpeAdmin) Flows(context.Context) (any, error) {
	c := a.c
	c.mu.Lock()
	flows := make([]*flow, 0, len(c.flows))
	for f := range c.flows {
		flows = append(flows, f)
	}
	c.mu.Unlock()
	backup := map[string]bool{}
	for _, v := range c.ups.views() {
		backup[v.name] = v.backup
	}
	now := time.Now()
	out := &admin.CPEFlows{Flows: make([]admin.CPEFlow, 0, len(flows))}
	for _, f := range flows {
		af := admin.CPEFlow{
			ID: f.id, Source: f.lan.Src, Destination: f.lan.Dst, Started: f.start, AgeMs: now.Sub(f.start).Milliseconds(),
			ToServer: f.ctr.AtoB.Load(), ToClient: f.ctr.BtoA.Load(), Uplink: f.uplink, MPTCP: f.mptcp, Fallback: f.fallback,
			Subflows: []admin.Subflow{},
		}
		if f.mptcp {
			// A flow that closes meanwhile has no subflows left to list.
			subs, _ := mptcp.Subflows(f.up)
			for _, sf := range subs {
				name := c.ups.nameOf(sf.Local.Addr())
				b, ok := backup[name]
				s := admin.Subflow{Uplink: name, Local: sf.Local, Remote: sf.Remote, RTTMs: admin.Ms(sf.TCP.RTT),
					BytesAcked: sf.TCP.BytesAcked, BytesReceived: sf.TCP.BytesRecv, Retrans: sf.TCP.TotalRetrans}
				if ok {
					s.Backup = &b
				}
				af.Subflows = append(af.Subflows, s)
			}
		}
		out.Flows = append(out.Flows, af)
	}
	slices.SortFunc(out.Flows, func(x, y admin.CPEFlow) int { return cmp.Compare(x.ID, y.ID) })
	return out, nil
}
