package cpe

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"

	"hybridgw/internal/admin"
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

	// Native routes (bypass.uplink): the preferred uplink, and per uplink
	// the probe answers last seen and when their count last grew, which
	// times a failover from the dead uplink's last sign of life.
	nativePref   string
	replies      map[string]uint64
	lastReply    map[string]time.Time
	lastFailover *admin.Failover
}

type runningProber struct {
	p      *probe.Prober
	local  netip.Addr
	cancel context.CancelFunc
	done   chan struct{}
}

func newHealth(c *CPE) *health {
	return &health{c: c, wake: make(chan struct{}, 1), probers: map[string]*runningProber{}, lastRx: map[string][2]uint64{}, state: map[string]string{},
		roles: append([]config.Uplink(nil), c.cfg.Uplinks...), params: c.cfg.Policy,
		nativePref: c.cfg.Bypass.Uplink, replies: map[string]uint64{}, lastReply: map[string]time.Time{}}
}

// setNativeUplink replaces bypass.uplink (a reload) and re-decides.
func (h *health) setNativeUplink(name string) {
	h.mu.Lock()
	h.nativePref = name
	h.mu.Unlock()
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// nativePreferred is bypass.uplink as last loaded.
func (h *health) nativePreferred() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.nativePref
}

// failover is the last failover hcpe made, nil before any.
func (h *health) failover() *admin.Failover {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lastFailover == nil {
		return nil
	}
	f := *h.lastFailover
	return &f
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
	// Probers are (re)started once a second, on address changes; the
	// decision is re-made on every load sample and at once when a prober
	// reports a change.
	if pref := h.c.cfg.Bypass.Uplink; pref != "" {
		h.c.m.NativeUplink.WithLabelValues(pref).Set(1)
	}
	pt := time.NewTicker(time.Second)
	defer pt.Stop()
	lt := time.NewTicker(loadInterval)
	defer lt.Stop()
	h.ensureProbers(ctx)
	for {
		h.decide()
		select {
		case <-ctx.Done():
			return
		case <-pt.C:
			h.ensureProbers(ctx)
		case <-lt.C:
		case <-h.wake:
		}
	}
}

// loadInterval is how often the uplinks' byte counters are sampled and
// the policy re-decided: policy.overflow_after (150 ms by default) spans
// a few samples, so a download that fills DSL gets LTE within that plus
// one sample. A sample costs one RTM_GETLINK per uplink.
const loadInterval = 50 * time.Millisecond

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
	unjudged := map[string]bool{}
	dt := now.Sub(h.lastAt).Seconds()
	h.lastAt = now
	for _, u := range h.roles {
		st := policy.UplinkState{Name: u.Name, Role: policy.Role(u.Role), DownBps: int64(u.DownBps), UpBps: int64(u.UpBps)}
		if rp := h.probers[u.Name]; rp != nil {
			s := rp.p.Status()
			st.Alive, st.RTT = s.Alive, s.RTT
			if s.Replies != h.replies[u.Name] {
				h.replies[u.Name], h.lastReply[u.Name] = s.Replies, now
			}
			if s.Since.IsZero() && s.Sent < uint64(u.Probe.DownAfter+u.Probe.UpAfter) {
				// No verdict yet (an uplink starts dead and must earn its
				// answers): nothing to move routes or withdraw it on.
				unjudged[u.Name] = true
			}
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
	params := policy.Params{OverflowOn: pp.OverflowOn, OverflowOff: pp.OverflowOff, OverflowAfter: pp.OverflowAfter, ReleaseAfter: pp.ReleaseAfter, MinHold: pp.MinHold,
		RTTGuard: pp.RTTGuard, RTTGuardHysteresis: pp.RTTGuardHysteresis}
	d := policy.Decide(now, states, prev, params)
	h.decision, h.states = d, states
	h.account(d, states, dt)
	pref := h.nativePref
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

	// After the flags: an uplink reinstated now gets its endpoints back
	// with the backup flag the policy wants for it now.
	h.c.withdrawals.update(now, states, unjudged)

	if pref != "" && !unjudged[pref] {
		if to := policy.NativeUplink(pref, d, states); to != h.c.ups.native() {
			h.moveNative(now, pref, to, states)
		}
	}

	// The load state's flips, with how long the primaries had been
	// saturated when overflow engaged (policy.overflow_after plus up to one
	// sample when nothing holds it).
	for _, dir := range []struct {
		name         string
		was, is      bool
		above, since time.Time
	}{
		{"down", prev.Load.Down, d.Load.Down, prev.Load.DownAbove, prev.Load.DownSince},
		{"up", prev.Load.Up, d.Load.Up, prev.Load.UpAbove, prev.Load.UpSince},
	} {
		switch {
		case !dir.was && dir.is:
			var sat time.Duration
			if !dir.above.IsZero() {
				sat = now.Sub(dir.above)
			}
			h.c.log.Info("overflow engaged", "direction", dir.name, "saturated_for", sat.String())
		case dir.was && !dir.is:
			h.c.log.Info("overflow released", "direction", dir.name, "engaged_for", now.Sub(dir.since).String())
		}
	}

}

// moveNative points the native routes at the uplink called to, deletes
// the conntrack entries that masquerade LAN traffic behind the uplink
// left (or a running UDP stream would keep its old source address on the
// new uplink, and its answers would come back over the old one), and
// records the move: counted, logged with its timings, shown by `hcpe
// status`. A failover is timed from the left uplink's last answered
// probe, a return from the verdict that the preferred uplink is alive.
func (h *health) moveNative(now time.Time, pref, to string, states []policy.UplinkState) {
	from, addrs := h.c.ups.setNative(to)
	flushed, err := flushMasqueraded(addrs)
	if err != nil {
		h.c.log.Warn("flushing masqueraded conntrack entries of the uplink left", "uplink", from, "err", err)
	}
	reason, took := "failover", time.Duration(0)
	h.mu.Lock()
	if to == pref && h.stateOf(states, pref).Alive {
		reason = "return"
		if rp := h.probers[pref]; rp != nil {
			if st := rp.p.Status(); !st.Since.IsZero() {
				took = now.Sub(st.Since)
			}
		}
	} else if t := h.lastReply[from]; !t.IsZero() {
		took = now.Sub(t)
	}
	f := &admin.Failover{At: now, What: "native-routes", From: from, To: to, Reason: reason, TookMs: float64(took) / float64(time.Millisecond)}
	h.lastFailover = f
	h.mu.Unlock()

	m := h.c.m
	m.NativeMoves.WithLabelValues(to, reason).Inc()
	m.NativeCTFlushed.Add(float64(flushed))
	for _, u := range h.c.cfg.Uplinks {
		v := 0.0
		if u.Name == to {
			v = 1
		}
		m.NativeUplink.WithLabelValues(u.Name).Set(v)
	}
	if reason == "failover" {
		m.NativeFailover.Set(took.Seconds())
	}
	h.c.log.Info("native route moved", "from", from, "uplink", to, "reason", reason, "took", took.Round(time.Millisecond).String(),
		"conntrack_flushed", flushed)
}

func (h *health) stateOf(states []policy.UplinkState, name string) policy.UplinkState {
	for _, st := range states {
		if st.Name == name {
			return st
		}
	}
	return policy.UplinkState{}
}

// otherAlive reports whether an uplink other than name is alive by the
// probes and not withdrawn: somewhere for name's traffic to go.
func (h *health) otherAlive(name string) bool {
	h.mu.Lock()
	states := h.states
	h.mu.Unlock()
	return h.otherAliveIn(states, name)
}

func (h *health) otherAliveIn(states []policy.UplinkState, name string) bool {
	for _, st := range states {
		if st.Name != name && st.Alive && !h.c.ups.isWithdrawn(st.Name) {
			return true
		}
	}
	return false
}
