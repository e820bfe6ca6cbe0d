package cpe

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"

	"hybridgw/internal/config"
	"hybridgw/internal/policy"
	"hybridgw/internal/probe"
)

// health runs one prober per uplink and turns their verdicts, the uplinks'
// roles and their measured load into a policy.Decision, which it applies
// through the path manager (backup flags, i.e. MP_PRIO) and which decides
// where each new flow's first subflow leaves. Without a cookie key there is
// nothing to authenticate probes with: every uplink with an address is then
// taken as alive.
type health struct {
	c    *CPE
	wake chan struct{}

	mu       sync.Mutex
	roles    []config.Uplink // roles and nominal rates, replaced on reload
	params   config.Policy
	decision policy.Decision
	states   []policy.UplinkState // what decision was made from: liveness, RTT, load
	state    map[string]string    // uplink → active, backup or down, for the metrics
	probers  map[string]*runningProber
	lastRx   map[string][2]uint64
	lastAt   time.Time
}

type runningProber struct {
	p      *probe.Prober
	local  netip.Addr
	cancel context.CancelFunc
	done   chan struct{}
}

func newHealth(c *CPE) *health {
	return &health{c: c, wake: make(chan struct{}, 1), probers: map[string]*runningProber{}, lastRx: map[string][2]uint64{}, state: map[string]string{},
		roles: append([]config.Uplink(nil), c.cfg.Uplinks...), params: c.cfg.Policy}
}

// setPolicy replaces the roles, nominal rates and thresholds (a reload)
// and re-decides at once; liveness and load history are kept, so a reload
// does not flap anything.
func (h *health) setPolicy(ups []config.Uplink, p config.Policy) {
	h.mu.Lock()
	h.roles = append([]config.Uplink(nil), ups...)
	h.params = p
	h.mu.Unlock()
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// first is the uplink the policy wants new flows to start on ("" when
// none is known alive yet: hcpe then tries in config order).
func (h *health) first() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.decision.First
}

func (h *health) usable(name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.decision.First == "" {
		return true
	}
	d, ok := h.decision.Get(name)
	return ok && d.Usable
}

// alive reports whether the probes last found the uplink alive (before
// the first decision, every uplink is).
func (h *health) alive(name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.states == nil {
		return true
	}
	for _, st := range h.states {
		if st.Name == name {
			return st.Alive
		}
	}
	return false
}

// rtt is the uplink's smoothed probe RTT to hag, 0 when unknown.
func (h *health) rtt(name string) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, st := range h.states {
		if st.Name == name {
			return st.RTT
		}
	}
	return 0
}

func (h *health) run(ctx context.Context) {
	defer func() {
		for _, rp := range h.probers {
			rp.cancel()
			<-rp.done
		}
	}()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		h.ensureProbers(ctx)
		h.decide()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-h.wake:
		}
	}
}

// ensureProbers keeps one prober per uplink, bound to the uplink's current
// address of the family of hag's first address; an address change (LTE
// renumbering) restarts it.
func (h *health) ensureProbers(ctx context.Context) {
	cfg := h.c.cfg
	if len(cfg.HAG.KeyRaw) == 0 || len(cfg.HAG.Addrs) == 0 {
		return
	}
	for _, u := range cfg.Uplinks {
		var local netip.Addr
		var remote netip.AddrPort
		for _, hag := range cfg.HAG.Addrs {
			if a, ok := h.c.ups.addrOf(u.Name, hag.Is6()); ok {
				local, remote = a, netip.AddrPortFrom(hag, uint16(cfg.HAG.Port))
				break
			}
		}
		rp := h.probers[u.Name]
		if rp != nil && rp.local == local {
			continue
		}
		if rp != nil {
			rp.cancel()
			<-rp.done
			h.mu.Lock()
			delete(h.probers, u.Name)
			h.mu.Unlock()
		}
		if !local.IsValid() {
			continue
		}
		p, err := probe.NewProber(probe.Config{
			Uplink: u.Name, Local: local, Remote: remote, CPEID: cfg.HAG.CPEID, Key: cfg.HAG.KeyRaw,
			Interval: u.Probe.Interval, Timeout: u.Probe.Timeout, DownAfter: u.Probe.DownAfter, UpAfter: u.Probe.UpAfter,
			OnChange: func(s probe.Status) {
				h.c.log.Info("uplink health changed", "uplink", s.Uplink, "alive", s.Alive, "rtt", s.RTT.String(), "loss", s.Loss)
				select {
				case h.wake <- struct{}{}:
				default:
				}
			},
		})
		if err != nil {
			h.c.log.Error("starting health probes", "uplink", u.Name, "err", err)
			continue
		}
		pctx, cancel := context.WithCancel(ctx)
		rp = &runningProber{p: p, local: local, cancel: cancel, done: make(chan struct{})}
		go func() { defer close(rp.done); _ = p.Run(pctx) }()
		h.mu.Lock()
		h.probers[u.Name] = rp
		h.mu.Unlock()
		h.c.log.Info("probing uplink", "uplink", u.Name, "from", local.String(), "to", remote.String())
	}
}

// account feeds the state metrics: each uplink's state (active, backup,
// down), the time spent in the one it had since the last decision, its
// changes, and whether it is an overflow uplink in use because the
// primaries are saturated. Called with h.mu held.
func (h *health) account(d policy.Decision, states []policy.UplinkState, dt float64) {
	m := h.c.m
	for i, ud := range d.Uplinks {
		now := "active"
		switch {
		case !states[i].Alive:
			now = "down"
		case ud.Backup:
			now = "backup"
		}
		was, seen := h.state[ud.Name]
		if seen && dt > 0 {
			m.UplinkStateSeconds.WithLabelValues(ud.Name, was).Add(dt)
		}
		if was != now {
			m.UplinkStateChanges.WithLabelValues(ud.Name, now).Inc()
			h.state[ud.Name] = now
		}
		o := 0.0
		if ud.Reason == policy.ReasonSaturated {
			o = 1
		}
		m.OverflowActive.WithLabelValues(ud.Name).Set(o)
	}
}

func (h *health) decide() {
	cfg := h.c.cfg
	now := time.Now()
	h.mu.Lock()
	states := make([]policy.UplinkState, 0, len(h.roles))
	dt := now.Sub(h.lastAt).Seconds()
	h.lastAt = now
	for _, u := range h.roles {
		st := policy.UplinkState{Name: u.Name, Role: policy.Role(u.Role), DownBps: int64(u.DownBps), UpBps: int64(u.UpBps)}
		if rp := h.probers[u.Name]; rp != nil {
			s := rp.p.Status()
			st.Alive, st.RTT = s.Alive, s.RTT
			h.c.m.UplinkRTT.WithLabelValues(u.Name).Set(s.RTT.Seconds())
			h.c.m.UplinkLoss.WithLabelValues(u.Name).Set(s.Loss)
		} else if len(cfg.HAG.KeyRaw) == 0 {
			_, st.Alive = h.c.ups.addrOf(u.Name, true)
			if !st.Alive {
				_, st.Alive = h.c.ups.addrOf(u.Name, false)
			}
		}
		// The load the policy weighs is all traffic on the interface, by
		// the kernel's counters: hcpe's flows and what is routed natively.
		if l, err := netlink.LinkByName(u.Interface); err == nil && l.Attrs().Statistics != nil {
			rx, tx := l.Attrs().Statistics.RxBytes, l.Attrs().Statistics.TxBytes
			if last, ok := h.lastRx[u.Name]; ok && dt > 0 && rx >= last[0] && tx >= last[1] {
				st.RxBps = int64(float64(rx-last[0]) * 8 / dt)
				st.TxBps = int64(float64(tx-last[1]) * 8 / dt)
			}
			h.lastRx[u.Name] = [2]uint64{rx, tx}
		}
		b := 0.0
		if st.Alive {
			b = 1
		}
		h.c.m.UplinkUp.WithLabelValues(u.Name).Set(b)
		states = append(states, st)
	}
	prev := h.decision
	pp := h.params
	params := policy.Params{OverflowOn: pp.OverflowOn, OverflowOff: pp.OverflowOff, MinHold: pp.MinHold,
		RTTGuard: pp.RTTGuard, RTTGuardHysteresis: pp.RTTGuardHysteresis}
	d := policy.Decide(now, states, prev, params)
	h.decision, h.states = d, states
	h.account(d, states, dt)
	h.mu.Unlock()

	for _, ud := range d.Changed(prev) {
		if err := h.c.ups.setBackup(ud.Name, ud.Backup); err != nil {
			h.c.log.Warn("changing the uplink's backup flag", "uplink", ud.Name, "err", err)
		}
		b := 0.0
		if ud.Backup {
			b = 1
		}
		h.c.m.UplinkBackup.WithLabelValues(ud.Name).Set(b)
		h.c.log.Info("uplink policy", "uplink", ud.Name, "backup", ud.Backup, "usable", ud.Usable, "reason", string(ud.Reason), "first", d.First)
	}
}
