package policy

import (
	"errors"
	"fmt"
	"time"
)

// Role is what an uplink is for; the values are the config's role names.
type Role string

// The roles (see the package doc).
const (
	Primary  Role = "primary"
	Overflow Role = "overflow"
	Backup   Role = "backup"
	Bond     Role = "bond"
)

// rank orders roles for first subflows: the links meant to carry traffic
// before those that only help out.
func (r Role) rank() int {
	switch r {
	case Primary, Bond:
		return 0
	case Overflow:
		return 1
	}
	return 2
}

// preferred roles are the ones a backup uplink stands in for.
func (r Role) preferred() bool { return r == Primary || r == Overflow || r == Bond }

// UplinkState is what the caller knows about one uplink now.
type UplinkState struct {
	Name  string
	Role  Role
	Alive bool          // the health state machine's verdict
	RTT   time.Duration // smoothed probe RTT; 0 when unknown
	// Nominal rates in bit/s, from the config.
	DownBps, UpBps int64
	// Measured rates in bit/s over the last interval, on the interface
	// (all traffic: bypassed and UDP traffic use the same capacity).
	// Rx is received (downstream), Tx sent (upstream).
	RxBps, TxBps int64
}

// Params tunes Decide. DefaultParams explains the suggested values.
type Params struct {
	// OverflowOn and OverflowOff are shares of the primaries' nominal rate:
	// overflow uplinks are put to work when the load reaches OverflowOn in
	// either direction and released when it falls below OverflowOff in
	// both. 0 < OverflowOff <= OverflowOn.
	OverflowOn, OverflowOff float64
	// OverflowAfter is how long the load must stay at or above OverflowOn
	// before overflow uplinks are put to work: it tells a transfer that
	// fills the primaries from a burst that only touches the threshold.
	// The first engagement waits only for it, not for MinHold, so a
	// download gets the overflow uplink within OverflowAfter (plus one load
	// sample) of saturating the primaries. 0 engages on the first sample.
	OverflowAfter time.Duration
	// ReleaseAfter is how long the load must stay below OverflowOff before
	// overflow uplinks are released: a transfer's short dips (a loss
	// recovery, a pause between two requests) must not release LTE under
	// it.
	ReleaseAfter time.Duration
	// MinHold is the least time between two flips of the same load or
	// RTT-guard state, against flapping. Liveness is never held: a dead
	// uplink is dropped at once, and a stand-in takes over at once.
	MinHold time.Duration
	// RTTGuard demotes an overflow or bond uplink whose RTT exceeds the
	// best live uplink's by more than this (RFC 8157 §4.7); 0 disables it.
	RTTGuard time.Duration
	// RTTGuardHysteresis: a demoted uplink recovers when its RTT is within
	// RTTGuard-RTTGuardHysteresis of the best. 0 <= it <= RTTGuard.
	RTTGuardHysteresis time.Duration
}

// DefaultParams are the suggested settings:
//
//   - OverflowOn 0.8: a link above 80 % of its sync rate already queues,
//     and the measured rate lags demand by one interval; OverflowOff 0.6
//     leaves a gap wide enough that moving load between links does not
//     cross both thresholds.
//   - OverflowAfter 150 ms: with hcpe's 50 ms load samples, three
//     samples in a row at 80 %; a page's burst rarely fills DSL that long,
//     while a download gets LTE within 200 ms of filling DSL (a later
//     start costs the bulk transfer LTE's whole rate meanwhile).
//   - ReleaseAfter 1 s: well above a loss recovery's dip, well below the
//     pause that ends a transfer.
//   - MinHold 5 s: a new LTE subflow needs a few RTTs of slow start to be
//     worth having, and one page load should not toggle MP_PRIO twice.
//   - RTTGuard 150 ms with 50 ms hysteresis: within RFC 8157's 0–1000 ms
//     range; beyond about 150 ms of difference the receive buffer and
//     head-of-line blocking cost more than the slower link adds, while
//     LTE's usual 20–60 ms over DSL must not trip it.
func DefaultParams() Params {
	return Params{
		OverflowOn:         0.8,
		OverflowOff:        0.6,
		OverflowAfter:      150 * time.Millisecond,
		ReleaseAfter:       time.Second,
		MinHold:            5 * time.Second,
		RTTGuard:           150 * time.Millisecond,
		RTTGuardHysteresis: 50 * time.Millisecond,
	}
}

// Validate returns every problem with p.
func (p Params) Validate() error {
	var errs []error
	if !(p.OverflowOff > 0 && p.OverflowOff <= p.OverflowOn) {
		errs = append(errs, fmt.Errorf("policy: overflow off share %v must be above 0 and at most the on share %v", p.OverflowOff, p.OverflowOn))
	}
	if p.MinHold < 0 {
		errs = append(errs, fmt.Errorf("policy: min hold %v is negative", p.MinHold))
	}
	if p.OverflowAfter < 0 || p.ReleaseAfter < 0 {
		errs = append(errs, fmt.Errorf("policy: overflow after %v or release after %v is negative", p.OverflowAfter, p.ReleaseAfter))
	}
	if p.RTTGuard < 0 || p.RTTGuardHysteresis < 0 || p.RTTGuardHysteresis > p.RTTGuard {
		errs = append(errs, fmt.Errorf("policy: rtt guard %v with hysteresis %v: need 0 <= hysteresis <= guard", p.RTTGuard, p.RTTGuardHysteresis))
	}
	return errors.Join(errs...)
}

// Reason says why an uplink got its flags, for logs.
type Reason string

// The reasons.
const (
	ReasonDown      Reason = "down"              // not alive: backup, never a first subflow
	ReasonPrimary   Reason = "primary"           // primary: always used
	ReasonBond      Reason = "bond"              // bond: always used
	ReasonIdle      Reason = "primary-unloaded"  // overflow: primaries below their share
	ReasonSaturated Reason = "primary-saturated" // overflow: primaries at their share
	ReasonNoPrimary Reason = "no-primary"        // overflow: no primary alive
	ReasonStandby   Reason = "standby"           // backup: a preferred uplink is alive
	ReasonFailover  Reason = "failover"          // backup: no preferred uplink is alive
	ReasonRTTGuard  Reason = "rtt-guard"         // overflow/bond: RTT too far above the best
)

// UplinkDecision is Decide's verdict on one uplink.
type UplinkDecision struct {
	Name string
	// Backup is the MPTCP backup flag its endpoint should carry (MP_PRIO):
	// neither side sends on it while a non-backup subflow is usable.
	Backup bool
	// Usable: alive and not backup, so it may carry a new flow's first
	// subflow (MP_CAPABLE has no backup bit, so a first subflow on a
	// backup uplink would carry data until demoted).
	Usable bool
	Reason Reason

	// Guard state, carried to the next Decide.
	RTTDemoted bool
	RTTSince   time.Time // when RTTDemoted last flipped
}

// Load is the hysteresis state of the primaries' load, per direction.
type Load struct {
	Down, Up           bool // at or above OverflowOn, not yet below OverflowOff
	DownSince, UpSince time.Time
	// DownAbove and UpAbove: while off, when the share last reached
	// OverflowOn and has stayed there since (zero when it is below); while
	// on, when it last fell below OverflowOff and has stayed there.
	DownAbove, UpAbove time.Time
}

// Decision is the outcome of Decide; pass it back as prev next time.
type Decision struct {
	At      time.Time
	Uplinks []UplinkDecision // in the order of Decide's input
	// First is the live uplink new flows' first subflow should leave on:
	// the first usable one in role order primary/bond, overflow, backup,
	// then input order. "" when no uplink is alive.
	First string
	Load  Load
}

// Get returns the decision for the uplink called name.
func (d *Decision) Get(name string) (UplinkDecision, bool) {
	for _, u := range d.Uplinks {
		if u.Name == name {
			return u, true
		}
	}
	return UplinkDecision{}, false
}

// Changed lists the uplinks whose Backup flag differs from prev, or that
// prev did not know: the endpoints that need SET_FLAGS.
func (d *Decision) Changed(prev Decision) []UplinkDecision {
	var out []UplinkDecision
	for _, u := range d.Uplinks {
		if p, ok := prev.Get(u.Name); !ok || p.Backup != u.Backup {
			out = append(out, u)
		}
	}
	return out
}

// Decide computes every uplink's flags from their state now and the
// previous decision (the zero Decision at start). It is deterministic:
// the same arguments give the same Decision.
func Decide(now time.Time, ups []UplinkState, prev Decision, p Params) Decision {
	d := Decision{At: now, Uplinks: make([]UplinkDecision, len(ups))}
	held := func(since time.Time) bool { return !since.IsZero() && now.Sub(since) < p.MinHold }

	// Load of the primaries. Overflow traffic counts too: once the overflow
	// uplink is in use the scheduler splits the demand across both, so the
	// primary alone would look unloaded and overflow would flap off and on.
	// Load falls below OverflowOff only when everything would fit again.
	var nomDown, nomUp, rx, tx int64
	var primaryAlive, preferredAlive bool
	for _, u := range ups {
		if !u.Alive {
			continue
		}
		switch u.Role {
		case Primary:
			primaryAlive = true
			nomDown += u.DownBps
			nomUp += u.UpBps
			rx += u.RxBps
			tx += u.TxBps
		case Overflow:
			rx += u.RxBps
			tx += u.TxBps
		}
		preferredAlive = preferredAlive || u.Role.preferred()
	}
	d.Load = prev.Load
	if primaryAlive {
		d.Load.Down, d.Load.DownSince, d.Load.DownAbove = hysteresis(prev.Load.Down, prev.Load.DownSince, prev.Load.DownAbove, share(rx, nomDown), p, held, now)
		d.Load.Up, d.Load.UpSince, d.Load.UpAbove = hysteresis(prev.Load.Up, prev.Load.UpSince, prev.Load.UpAbove, share(tx, nomUp), p, held, now)
	}
	saturated := d.Load.Down || d.Load.Up

	// The RTT guard's reference: the best live uplink that may carry data.
	var best time.Duration
	for _, u := range ups {
		if u.Alive && u.Role.preferred() && u.RTT > 0 && (best == 0 || u.RTT < best) {
			best = u.RTT
		}
	}

	for i, u := range ups {
		ud := UplinkDecision{Name: u.Name}
		if pu, ok := prev.Get(u.Name); ok {
			ud.RTTDemoted, ud.RTTSince = pu.RTTDemoted, pu.RTTSince
		}
		// The guard never demotes a primary: a loaded primary's RTT grows
		// with its own queue, and demoting it would push everything onto
		// the link the operator wants used least.
		if u.Alive && (u.Role == Overflow || u.Role == Bond) && p.RTTGuard > 0 && u.RTT > 0 && best > 0 {
			want := ud.RTTDemoted
			if !want && u.RTT > best+p.RTTGuard {
				want = true
			} else if want && u.RTT <= best+p.RTTGuard-p.RTTGuardHysteresis {
				want = false
			}
			// The best uplink recovers at once: it is the reference.
			if want != ud.RTTDemoted && (!held(ud.RTTSince) || u.RTT == best) {
				ud.RTTDemoted, ud.RTTSince = want, now
			}
		}

		switch {
		case !u.Alive:
			// Backup too, so that a black-holing link that returns before
			// the probes say so carries nothing until it is trusted again.
			ud.Backup, ud.Reason = true, ReasonDown
		case u.Role == Primary:
			ud.Reason = ReasonPrimary
		case u.Role == Bond:
			ud.Reason = ReasonBond
		case u.Role == Overflow && !primaryAlive:
			ud.Reason = ReasonNoPrimary
		case u.Role == Overflow && saturated:
			ud.Reason = ReasonSaturated
		case u.Role == Overflow:
			ud.Backup, ud.Reason = true, ReasonIdle
		case preferredAlive:
			ud.Backup, ud.Reason = true, ReasonStandby
		default:
			ud.Reason = ReasonFailover
		}
		if u.Alive && ud.RTTDemoted && (u.Role == Overflow || u.Role == Bond) {
			ud.Backup, ud.Reason = true, ReasonRTTGuard
		}
		ud.Usable = u.Alive && !ud.Backup
		d.Uplinks[i] = ud
	}

	// The guard only prefers one live uplink over another; it must never
	// leave live uplinks and nothing usable (a held demotion whose
	// reference just died). Lift its demotions then, hold or not.
	if d.pick(ups) == "" && preferredAlive {
		for i := range d.Uplinks {
			ud := &d.Uplinks[i]
			if ud.Reason == ReasonRTTGuard {
				ud.RTTDemoted, ud.RTTSince = false, now
				ud.Backup, ud.Usable = false, true
				ud.Reason = ReasonBond
				if ups[i].Role == Overflow {
					ud.Reason = ReasonNoPrimary
				}
			}
		}
	}
	d.First = d.pick(ups)
	return d
}

// pick returns the usable uplink of best rank, earliest in input order.
func (d *Decision) pick(ups []UplinkState) string {
	first, rank := "", 3
	for i, u := range ups {
		if d.Uplinks[i].Usable && u.Role.rank() < rank {
			first, rank = u.Name, u.Role.rank()
		}
	}
	return first
}

// hysteresis advances one direction's load state: on once the share has
// stayed at or above OverflowOn for OverflowAfter, off once it has stayed
// below OverflowOff for ReleaseAfter; neither within MinHold of the last
// flip. cross is when the share crossed the threshold that would flip the
// state and has stayed beyond it (zero when it has not).
func hysteresis(on bool, since, cross time.Time, share float64, p Params, held func(time.Time) bool, now time.Time) (bool, time.Time, time.Time) {
	if on {
		if share >= p.OverflowOff {
			return true, since, time.Time{}
		}
		if cross.IsZero() {
			cross = now
		}
		if now.Sub(cross) < p.ReleaseAfter || held(since) {
			return true, since, cross
		}
		return false, now, time.Time{}
	}
	above := cross
	if share < p.OverflowOn {
		return false, since, time.Time{}
	}
	if above.IsZero() {
		above = now
	}
	if now.Sub(above) < p.OverflowAfter || held(since) {
		return false, since, above
	}
	return true, now, time.Time{}
}

// share is used/nominal; a primary without a nominal rate never saturates.
func share(used, nominal int64) float64 {
	if nominal <= 0 {
		return 0
	}
	return float64(used) / float64(nominal)
}
