package policy

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

const mbit = 1_000_000

func dsl(alive bool, rtt time.Duration, rx, tx int64) UplinkState {
	return UplinkState{Name: "dsl", Role: Primary, Alive: alive, RTT: rtt, DownBps: 20 * mbit, UpBps: 5 * mbit, RxBps: rx, TxBps: tx}
}

func lte(role Role, alive bool, rtt time.Duration, rx, tx int64) UplinkState {
	return UplinkState{Name: "lte", Role: role, Alive: alive, RTT: rtt, DownBps: 40 * mbit, UpBps: 10 * mbit, RxBps: rx, TxBps: tx}
}

const ms = time.Millisecond

// step is one Decide call in a scenario; want lists each uplink as
// "name:B:reason" (backup) or "name:-:reason" (not backup).
type step struct {
	at    time.Duration
	ups   []UplinkState
	want  string
	first string
}

func (s step) check(t *testing.T, i int, d Decision) {
	t.Helper()
	var got []string
	for _, u := range d.Uplinks {
		b := "-"
		if u.Backup {
			b = "B"
		}
		if u.Usable != (!u.Backup && u.Reason != ReasonDown) {
			t.Errorf("step %d: %s usable=%v backup=%v reason=%s", i, u.Name, u.Usable, u.Backup, u.Reason)
		}
		got = append(got, fmt.Sprintf("%s:%s:%s", u.Name, b, u.Reason))
	}
	if g := strings.Join(got, " "); g != s.want {
		t.Errorf("step %d (t=%v): got  %s\n\t\t\t      want %s", i, s.at, g, s.want)
	}
	if d.First != s.first {
		t.Errorf("step %d (t=%v): first %q, want %q", i, s.at, d.First, s.first)
	}
}

func TestDecide(t *testing.T) {
	p := DefaultParams() // on 0.8, off 0.6, hold 5s, guard 150ms/50ms
	// One step stands for a load sustained since the previous one here;
	// TestOverflowAfter covers the sustains themselves.
	p.OverflowAfter, p.ReleaseAfter = 0, 0
	cases := []struct {
		name  string
		steps []step
	}{
		{"primary and idle overflow", []step{
			{0, []UplinkState{dsl(true, 15*ms, 2*mbit, 0), lte(Overflow, true, 35*ms, 0, 0)},
				"dsl:-:primary lte:B:primary-unloaded", "dsl"},
		}},
		{"overflow on download saturation, off below the off share after the hold", []step{
			{0, []UplinkState{dsl(true, 15*ms, 10*mbit, 0), lte(Overflow, true, 35*ms, 0, 0)},
				"dsl:-:primary lte:B:primary-unloaded", "dsl"},
			{time.Second, []UplinkState{dsl(true, 15*ms, 16*mbit, 0), lte(Overflow, true, 35*ms, 0, 0)}, // 0.8: on
				"dsl:-:primary lte:-:primary-saturated", "dsl"},
			// The scheduler now splits: dsl alone at 40 % but 70 % in total stays on.
			{3 * time.Second, []UplinkState{dsl(true, 15*ms, 8*mbit, 0), lte(Overflow, true, 35*ms, 6*mbit, 0)},
				"dsl:-:primary lte:-:primary-saturated", "dsl"},
			// Below 0.6 in total, but the hold (since t=1s) is not over.
			{5 * time.Second, []UplinkState{dsl(true, 15*ms, 6*mbit, 0), lte(Overflow, true, 35*ms, 5*mbit, 0)},
				"dsl:-:primary lte:-:primary-saturated", "dsl"},
			{6 * time.Second, []UplinkState{dsl(true, 15*ms, 6*mbit, 0), lte(Overflow, true, 35*ms, 5*mbit, 0)},
				"dsl:-:primary lte:B:primary-unloaded", "dsl"},
			// Saturated again 1 s later: held off until t=11s.
			{7 * time.Second, []UplinkState{dsl(true, 15*ms, 19*mbit, 0), lte(Overflow, true, 35*ms, 0, 0)},
				"dsl:-:primary lte:B:primary-unloaded", "dsl"},
			{11 * time.Second, []UplinkState{dsl(true, 15*ms, 19*mbit, 0), lte(Overflow, true, 35*ms, 0, 0)},
				"dsl:-:primary lte:-:primary-saturated", "dsl"},
		}},
		{"hysteresis band keeps the state", []step{
			{0, []UplinkState{dsl(true, 15*ms, 14*mbit, 0), lte(Overflow, true, 35*ms, 0, 0)}, // 0.7: stays off
				"dsl:-:primary lte:B:primary-unloaded", "dsl"},
			{10 * time.Second, []UplinkState{dsl(true, 15*ms, 16*mbit, 0), lte(Overflow, true, 35*ms, 0, 0)},
				"dsl:-:primary lte:-:primary-saturated", "dsl"},
			{20 * time.Second, []UplinkState{dsl(true, 15*ms, 12*mbit, 0), lte(Overflow, true, 35*ms, 0, 0)}, // 0.6: not below
				"dsl:-:primary lte:-:primary-saturated", "dsl"},
			{30 * time.Second, []UplinkState{dsl(true, 15*ms, 11*mbit, 0), lte(Overflow, true, 35*ms, 0, 0)},
				"dsl:-:primary lte:B:primary-unloaded", "dsl"},
		}},
		{"upload saturation alone turns overflow on", []step{
			{0, []UplinkState{dsl(true, 15*ms, 1*mbit, 4*mbit), lte(Overflow, true, 35*ms, 0, 0)},
				"dsl:-:primary lte:-:primary-saturated", "dsl"},
		}},
		{"primary dies: overflow at once, despite the hold", []step{
			{0, []UplinkState{dsl(true, 15*ms, 18*mbit, 0), lte(Overflow, true, 35*ms, 0, 0)},
				"dsl:-:primary lte:-:primary-saturated", "dsl"},
			{time.Second, []UplinkState{dsl(true, 15*ms, 1*mbit, 0), lte(Overflow, true, 35*ms, 0, 0)},
				"dsl:-:primary lte:-:primary-saturated", "dsl"},
			{2 * time.Second, []UplinkState{dsl(false, 15*ms, 0, 0), lte(Overflow, true, 35*ms, 0, 0)},
				"dsl:B:down lte:-:no-primary", "lte"},
		}},
		{"backup only when nothing preferred is alive", []step{
			{0, []UplinkState{dsl(true, 15*ms, 0, 0), lte(Backup, true, 35*ms, 0, 0)},
				"dsl:-:primary lte:B:standby", "dsl"},
			{100 * ms, []UplinkState{dsl(false, 15*ms, 0, 0), lte(Backup, true, 35*ms, 0, 0)},
				"dsl:B:down lte:-:failover", "lte"},
			{200 * ms, []UplinkState{dsl(true, 15*ms, 0, 0), lte(Backup, true, 35*ms, 0, 0)},
				"dsl:-:primary lte:B:standby", "dsl"},
		}},
		{"nothing alive: no first", []step{
			{0, []UplinkState{dsl(false, 0, 0, 0), lte(Backup, false, 0, 0, 0)},
				"dsl:B:down lte:B:down", ""},
		}},
		{"bonds are always used; first in input order", []step{
			{0, []UplinkState{lte(Bond, true, 35*ms, 0, 0), {Name: "dsl", Role: Bond, Alive: true, RTT: 15 * ms}},
				"lte:-:bond dsl:-:bond", "lte"},
		}},
		{"primary preferred over overflow for first even when saturated", []step{
			{0, []UplinkState{lte(Overflow, true, 35*ms, 0, 0), dsl(true, 15*ms, 19*mbit, 0)},
				"lte:-:primary-saturated dsl:-:primary", "dsl"},
		}},
		{"rtt guard demotes overflow, recovers with hysteresis after the hold", []step{
			{0, []UplinkState{dsl(true, 20*ms, 19*mbit, 0), lte(Overflow, true, 60*ms, 0, 0)},
				"dsl:-:primary lte:-:primary-saturated", "dsl"},
			{10 * time.Second, []UplinkState{dsl(true, 20*ms, 19*mbit, 0), lte(Overflow, true, 171*ms, 0, 0)}, // 151 over
				"dsl:-:primary lte:B:rtt-guard", "dsl"},
			{20 * time.Second, []UplinkState{dsl(true, 20*ms, 19*mbit, 0), lte(Overflow, true, 130*ms, 0, 0)}, // 110 over: in band
				"dsl:-:primary lte:B:rtt-guard", "dsl"},
			{30 * time.Second, []UplinkState{dsl(true, 20*ms, 19*mbit, 0), lte(Overflow, true, 120*ms, 0, 0)}, // 100 over: recovers
				"dsl:-:primary lte:-:primary-saturated", "dsl"},
			{31 * time.Second, []UplinkState{dsl(true, 20*ms, 19*mbit, 0), lte(Overflow, true, 400*ms, 0, 0)}, // held until 35s
				"dsl:-:primary lte:-:primary-saturated", "dsl"},
			{35 * time.Second, []UplinkState{dsl(true, 20*ms, 19*mbit, 0), lte(Overflow, true, 400*ms, 0, 0)},
				"dsl:-:primary lte:B:rtt-guard", "dsl"},
		}},
		{"rtt guard never demotes a primary", []step{
			{0, []UplinkState{dsl(true, 900*ms, 19*mbit, 0), lte(Overflow, true, 30*ms, 0, 0)},
				"dsl:-:primary lte:-:primary-saturated", "dsl"},
		}},
		{"rtt guard off at zero", []step{
			{0, []UplinkState{dsl(true, 10*ms, 19*mbit, 0), lte(Overflow, true, 900*ms, 0, 0)},
				"dsl:-:primary lte:-:primary-saturated", "dsl"},
		}},
		{"held demotion lifted when its reference dies", []step{
			{0, []UplinkState{{Name: "a", Role: Bond, Alive: true, RTT: 20 * ms}, {Name: "b", Role: Bond, Alive: true, RTT: 300 * ms}},
				"a:-:bond b:B:rtt-guard", "a"},
			{time.Second, []UplinkState{{Name: "a", Role: Bond, Alive: false, RTT: 20 * ms}, {Name: "b", Role: Bond, Alive: true, RTT: 300 * ms}},
				"a:B:down b:-:bond", "b"},
		}},
		{"unknown rtt is neither judged nor a reference", []step{
			{0, []UplinkState{dsl(true, 0, 0, 0), lte(Bond, true, 500*ms, 0, 0)},
				"dsl:-:primary lte:-:bond", "dsl"},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pp := p
			if c.name == "rtt guard off at zero" {
				pp.RTTGuard, pp.RTTGuardHysteresis = 0, 0
			}
			var d Decision
			for i, s := range c.steps {
				d = Decide(t0.Add(s.at), s.ups, d, pp)
				s.check(t, i, d)
			}
		})
	}
}

// TestDecideInvariants runs random sequences and checks what must always
// hold: a dead uplink is never usable nor first, First is usable, and
// while anything is alive something is usable.
func TestDecideInvariants(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	roles := []Role{Primary, Overflow, Backup, Bond}
	p := DefaultParams()
	for range 200 {
		n := 1 + r.IntN(4)
		var d Decision
		now := t0
		for range 50 {
			now = now.Add(time.Duration(r.IntN(3000)) * ms)
			ups := make([]UplinkState, n)
			for i := range ups {
				ups[i] = UplinkState{
					Name: fmt.Sprint("u", i), Role: roles[(i+r.IntN(2))%len(roles)], Alive: r.IntN(4) != 0,
					RTT: time.Duration(r.IntN(500)) * ms, DownBps: 20 * mbit, UpBps: 5 * mbit,
					RxBps: int64(r.IntN(25 * mbit)), TxBps: int64(r.IntN(6 * mbit)),
				}
			}
			d = Decide(now, ups, d, p)
			anyAlive, anyUsable := false, false
			for i, u := range d.Uplinks {
				anyAlive = anyAlive || ups[i].Alive
				anyUsable = anyUsable || u.Usable
				if !ups[i].Alive && (u.Usable || !u.Backup || d.First == u.Name) {
					t.Fatalf("dead uplink %+v in %+v", u, d)
				}
				if d.First == u.Name && !u.Usable {
					t.Fatalf("first %s not usable: %+v", u.Name, d)
				}
			}
			if anyAlive != anyUsable || anyAlive != (d.First != "") {
				t.Fatalf("alive=%v usable=%v first=%q\n%+v\n%+v", anyAlive, anyUsable, d.First, ups, d)
			}
		}
	}
}

func TestDecideDeterministic(t *testing.T) {
	ups := []UplinkState{dsl(true, 15*ms, 17*mbit, 0), lte(Overflow, true, 35*ms, 0, 0), {Name: "sat", Role: Backup, Alive: true}}
	a := Decide(t0, ups, Decision{}, DefaultParams())
	b := Decide(t0, ups, Decision{}, DefaultParams())
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("%+v\n%+v", a, b)
	}
}

func TestChanged(t *testing.T) {
	p := DefaultParams()
	d0 := Decide(t0, []UplinkState{dsl(true, 15*ms, 0, 0), lte(Overflow, true, 35*ms, 0, 0)}, Decision{}, p)
	if got := names(d0.Changed(Decision{})); got != "dsl lte" {
		t.Fatalf("first decision: changed %q, want every uplink", got)
	}
	d1 := Decide(t0.Add(time.Second), []UplinkState{dsl(true, 15*ms, 0, 0), lte(Overflow, true, 35*ms, 0, 0)}, d0, p)
	if got := names(d1.Changed(d0)); got != "" {
		t.Fatalf("nothing changed, got %q", got)
	}
	d2 := Decide(t0.Add(2*time.Second), []UplinkState{dsl(false, 15*ms, 0, 0), lte(Overflow, true, 35*ms, 0, 0)}, d1, p)
	if got := names(d2.Changed(d1)); got != "dsl lte" {
		t.Fatalf("dsl died: changed %q", got)
	}
}

func names(us []UplinkDecision) string {
	var s []string
	for _, u := range us {
		s = append(s, u.Name)
	}
	return strings.Join(s, " ")
}

func TestParamsValidate(t *testing.T) {
	if err := DefaultParams().Validate(); err != nil {
		t.Fatal(err)
	}
	bad := Params{OverflowOn: 0.5, OverflowOff: 0.7, MinHold: -1, OverflowAfter: -1, ReleaseAfter: -1, RTTGuard: 10 * ms, RTTGuardHysteresis: 20 * ms}
	err := bad.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range []string{"overflow off share", "min hold", "overflow after", "release after", "rtt guard"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%v: missing %q", err, w)
		}
	}
}

// TestOverflowAfter: the first engagement waits for OverflowAfter of
// sustained saturation and not for MinHold; a dip below the on share
// restarts the wait; a release waits for ReleaseAfter below the off share;
// a re-engagement soon after a release is still held.
func TestOverflowAfter(t *testing.T) {
	p := DefaultParams() // after 150 ms, hold 5 s
	sat := func(rx int64) []UplinkState {
		return []UplinkState{dsl(true, 15*ms, rx, 0), lte(Overflow, true, 35*ms, 0, 0)}
	}
	const off, on = "dsl:-:primary lte:B:primary-unloaded", "dsl:-:primary lte:-:primary-saturated"
	cases := []struct {
		name  string
		steps []step
	}{
		{"first engagement after 150 ms of saturation, no hold", []step{
			{0, sat(1 * mbit), off, "dsl"},
			{50 * ms, sat(19 * mbit), off, "dsl"},
			{100 * ms, sat(19 * mbit), off, "dsl"},
			{150 * ms, sat(19 * mbit), off, "dsl"},
			{200 * ms, sat(19 * mbit), on, "dsl"},
		}},
		{"first engagement at start", []step{
			{0, sat(19 * mbit), off, "dsl"},
			{149 * ms, sat(19 * mbit), off, "dsl"},
			{150 * ms, sat(19 * mbit), on, "dsl"},
		}},
		{"a burst shorter than the sustain does not engage; a dip restarts it", []step{
			{0, sat(19 * mbit), off, "dsl"},
			{100 * ms, sat(19 * mbit), off, "dsl"},
			{150 * ms, sat(10 * mbit), off, "dsl"},
			{200 * ms, sat(19 * mbit), off, "dsl"},
			{300 * ms, sat(19 * mbit), off, "dsl"},
			{350 * ms, sat(19 * mbit), on, "dsl"},
		}},
		{"release after a second below, not on a dip; re-engagement held, then at once once sustained", []step{
			{0, sat(19 * mbit), off, "dsl"},
			{150 * ms, sat(19 * mbit), on, "dsl"},
			{5150 * ms, sat(2 * mbit), on, "dsl"}, // a dip: below since 5.15 s
			{5200 * ms, sat(19 * mbit), on, "dsl"},
			{5250 * ms, sat(2 * mbit), on, "dsl"}, // below again, since 5.25 s
			{6200 * ms, sat(2 * mbit), on, "dsl"},
			{6250 * ms, sat(2 * mbit), off, "dsl"},
			{7 * time.Second, sat(19 * mbit), off, "dsl"},
			{11 * time.Second, sat(19 * mbit), off, "dsl"},
			{11250 * ms, sat(19 * mbit), on, "dsl"},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var d Decision
			for i, s := range c.steps {
				d = Decide(t0.Add(s.at), s.ups, d, p)
				s.check(t, i, d)
			}
		})
	}
}
