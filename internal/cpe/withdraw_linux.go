package cpe

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"hybridgw/internal/mptcp"
	"hybridgw/internal/policy"
)

// withdrawals decides when an uplink's MPTCP endpoints are withdrawn and
// reinstated (uplinks.withdraw, reinstate). Two signals withdraw one:
//
//   - a stall (watchStalls): a running connection waits on data the
//     uplink's subflow lost while another uplink still delivers; acted on
//     at once, tens of milliseconds into the stall, before the probes can
//     know;
//   - the probes declaring it dead.
//
// Either way only while another uplink is alive and not withdrawn: with
// nowhere to move to, a connection is better off waiting. The probes
// declaring it alive again reinstate it; a stall withdrawal that the
// probes have not confirmed is undone after unconfirmedAfter.
type withdrawals struct {
	c  *CPE
	mu sync.Mutex // serialises the decisions below
	wd map[string]*withdrawal
}

type withdrawal struct {
	at        time.Time
	by        string // stall, probes
	confirmed bool   // the probes found it dead since
	held      time.Duration
}

func newWithdrawals(c *CPE) *withdrawals { return &withdrawals{c: c, wd: map[string]*withdrawal{}} }

// stalled withdraws the uplink a running flow is stalled on; first are
// the subflows over it that the watcher knows of, aborted first.
func (w *withdrawals) stalled(name string, flow uint64, held time.Duration, first []subflowKey) {
	w.c.m.UplinkStalls.WithLabelValues(name).Inc()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.wd[name] != nil || !w.c.health.otherAlive(name) {
		return
	}
	w.withdrawLocked(name, "stall", held, first, "flow", flow)
}

// update applies the probes' verdicts (from health.decide).
func (w *withdrawals) update(now time.Time, states []policy.UplinkState, unjudged map[string]bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, st := range states {
		wd := w.wd[st.Name]
		switch {
		case !st.Alive && unjudged[st.Name]:
		case !st.Alive && wd != nil:
			wd.confirmed = true
		case !st.Alive && w.c.health.otherAliveIn(states, st.Name):
			w.withdrawLocked(st.Name, "probes", 0, nil)
		case st.Alive && wd != nil && (wd.by == "probes" || wd.confirmed):
			w.reinstateLocked(now, st.Name, "alive")
		case st.Alive && wd != nil && now.Sub(wd.at) >= w.unconfirmedAfter(st.Name):
			w.reinstateLocked(now, st.Name, "unconfirmed")
		}
	}
}

// unconfirmedAfter is how long a stall withdrawal stands while the probes
// still find the uplink alive: long enough for hag to have moved what was
// in flight, short enough that a false alarm (a path that merely paused)
// costs the uplink's subflows a restart and little else. A dead uplink
// gets a join attempt that goes nowhere until the probes withdraw it.
func (w *withdrawals) unconfirmedAfter(string) time.Duration { return 300 * time.Millisecond }

func (w *withdrawals) withdrawLocked(name, by string, held time.Duration, first []subflowKey, args ...any) {
	t0 := time.Now()
	aborted, ok, err := w.c.ups.withdraw(name, first)
	if !ok {
		return
	}
	w.wd[name] = &withdrawal{at: t0, by: by, held: held}
	w.c.m.UplinkWithdrawals.WithLabelValues(name, by).Inc()
	w.c.m.SubflowsAborted.WithLabelValues(name).Add(float64(aborted))
	log := w.c.log.With("uplink", name, "by", by, "stalled_for", held.String(), "subflows_aborted", aborted, "took", time.Since(t0).String())
	if err != nil {
		log.Warn("uplink withdrawn, with errors", append(args, "err", err)...)
		return
	}
	log.Info("uplink withdrawn: its subflows closed, hag told to reinject on the others", args...)
}

func (w *withdrawals) reinstateLocked(now time.Time, name, reason string) {
	wd := w.wd[name]
	delete(w.wd, name)
	ok, err := w.c.ups.reinstate(name)
	if !ok {
		return
	}
	w.c.m.UplinkReinstatements.WithLabelValues(name, reason).Inc()
	log := w.c.log.With("uplink", name, "reason", reason, "withdrawn_by", wd.by, "withdrawn_for", now.Sub(wd.at).Round(time.Millisecond).String())
	if err != nil {
		log.Warn("uplink reinstated, with errors", "err", err)
		return
	}
	log.Info("uplink reinstated: live flows regain a subflow on it")
}

// watchStalls samples the busiest flows every stallInterval and reports
// an uplink their connections stall on (policy.Stalled). Which flows are
// busy is re-read every busyInterval from the relay's byte counters, so
// idle flows cost nothing.
func (c *CPE) watchStalls(ctx context.Context) {
	sample := time.NewTicker(stallInterval)
	defer sample.Stop()
	p := policy.DefaultStallParams()
	p.Slack = stallInterval
	busy := map[*flow]*watched{}
	lastBytes := map[*flow]int64{}
	nextPick := time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-sample.C:
		}
		now := time.Now()
		if now.After(nextPick) {
			nextPick = now.Add(busyInterval)
			busy = c.pickBusy(busy, lastBytes)
		}
		for f, w := range busy {
			v, subs, ok := c.connView(f)
			if !ok {
				continue
			}
			var blamed []string
			var held time.Duration
			w.track, blamed, held = policy.Stalled(w.track, now, v, p)
			if d := now.Sub(w.track.RcvSince); d >= p.After && c.log.Enabled(ctx, slog.LevelDebug) {
				c.log.Debug("flow stalled", "flow", f.id, "for", d.String(), "view", fmt.Sprintf("%+v", v), "blamed", blamed)
			}
			w.subs = subs
			for _, u := range blamed {
				if c.ups.isWithdrawn(u) {
					continue
				}
				// The busy flows' subflows over u, as last sampled: aborted
				// before the endpoint goes, so that their RM_ADDR leaves on
				// a live subflow.
				var first []subflowKey
				for _, o := range busy {
					for _, k := range o.subs {
						if c.ups.nameOf(k.local.Addr()) == u {
							first = append(first, k)
						}
					}
				}
				c.withdrawals.stalled(u, f.id, held, first)
			}
		}
	}
}

// watched is a busy flow's stall tracking and its subflows last seen.
type watched struct {
	track policy.StallTrack
	subs  []subflowKey
}

// Stall sampling: every 10 ms, the 16 flows that moved the most bytes in
// the last 250 ms. One sample is two getsockopts per flow.
const (
	stallInterval = 10 * time.Millisecond
	busyInterval  = 250 * time.Millisecond
	busyMax       = 16
)

// pickBusy returns the MPTCP flows that moved bytes since the last pick,
// the busiest first, at most busyMax; a flow kept from before keeps its
// tracking state. last holds each flow's byte count at the last pick.
func (c *CPE) pickBusy(prev map[*flow]*watched, last map[*flow]int64) map[*flow]*watched {
	c.mu.Lock()
	flows := make([]*flow, 0, len(c.flows))
	for f := range c.flows {
		flows = append(flows, f)
	}
	c.mu.Unlock()
	type cand struct {
		f *flow
		d int64
	}
	var cs []cand
	seen := make(map[*flow]bool, len(flows))
	for _, f := range flows {
		b := f.ctr.AtoB.Load() + f.ctr.BtoA.Load()
		seen[f] = true
		if d := b - last[f]; d > 0 && f.mptcp {
			cs = append(cs, cand{f, d})
		}
		last[f] = b
	}
	for f := range last {
		if !seen[f] {
			delete(last, f)
		}
	}
	slices.SortFunc(cs, func(a, b cand) int { return cmp.Compare(b.d, a.d) })
	out := make(map[*flow]*watched, min(len(cs), busyMax))
	for _, x := range cs[:min(len(cs), busyMax)] {
		if w := prev[x.f]; w != nil {
			out[x.f] = w
		} else {
			out[x.f] = &watched{}
		}
	}
	return out
}

// connView reads one flow's MPTCP connection for policy.Stalled, and the
// addresses of its established subflows.
func (c *CPE) connView(f *flow) (policy.ConnView, []subflowKey, bool) {
	if !f.mptcp {
		return policy.ConnView{}, nil, false
	}
	info, err := mptcp.Info(f.up)
	if err != nil {
		return policy.ConnView{}, nil, false
	}
	subs, err := mptcp.Subflows(f.up)
	if err != nil {
		return policy.ConnView{}, nil, false
	}
	v := policy.ConnView{RcvNxt: info.RcvNxt, SndUna: info.SndUna, WriteSeq: info.WriteSeq}
	var keys []subflowKey
	for _, s := range subs {
		if s.TCP.State != 1 { // TCP_ESTABLISHED
			continue
		}
		v.Subflows = append(v.Subflows, policy.SubflowView{Uplink: c.ups.nameOf(s.Local.Addr()), RTT: s.TCP.RTT,
			SinceData: s.TCP.LastDataRecv, SinceAck: s.TCP.LastAckRecv, Unacked: s.TCP.Unacked,
			Received: s.TCP.BytesRecv > 0, Acked: s.TCP.BytesAcked > 1})
		keys = append(keys, subflowKey{s.Local, s.Remote})
	}
	return v, keys, true
}
