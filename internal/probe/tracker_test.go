package probe

import (
	"testing"
	"time"

	"hybridgw/internal/config"
	"hybridgw/internal/policy"
)

const ms = time.Millisecond

// TestDetectionBoundDefaults states the goal: at the default probe
// settings a black-holing uplink is declared dead within one second.
func TestDetectionBoundDefaults(t *testing.T) {
	d := config.DefaultProbe()
	b := DetectionBound(d.Interval, d.Timeout, d.DownAfter)
	if b != 900*ms {
		t.Fatalf("bound %v, want 3×200ms + 300ms = 900ms", b)
	}
	if b >= time.Second {
		t.Fatalf("defaults detect a dead uplink in %v, not within 1s", b)
	}
}

// simulate runs the prober's schedule and health state machine on
// explicit times, 1 ms steps: the path answers every probe after rtt until
// it dies at die, and the function returns when the uplink was declared
// dead (or -1).
func simulate(interval, timeout time.Duration, downAfter int, rtt, die time.Duration) time.Duration {
	tr := newTracker(interval, timeout)
	h := policy.NewHealth(policy.HealthParams{DownAfter: downAfter, UpAfter: 1})
	type reply struct {
		seq uint32
		ts  uint64
		at  time.Duration
	}
	var inflight []reply
	for now := time.Duration(0); now < die+10*time.Second; now += ms {
		for len(inflight) > 0 && inflight[0].at <= now {
			if r, ok := tr.answer(inflight[0].seq, inflight[0].ts, now); ok {
				h.Success(r)
			}
			inflight = inflight[1:]
		}
		for range tr.expire(now) {
			if h.Miss() {
				return now
			}
		}
		if tr.due(now) {
			seq, ts := tr.send(now)
			if now+rtt < die { // lost if the path is dead before it is back
				inflight = append(inflight, reply{seq, ts, now + rtt})
			}
		}
	}
	return -1
}

func TestDetectionSimulated(t *testing.T) {
	cases := []struct {
		interval, timeout time.Duration
		down              int
		rtt               time.Duration
	}{
		{200 * ms, 300 * ms, 3, 20 * ms},  // defaults, DSL-like
		{200 * ms, 300 * ms, 3, 250 * ms}, // defaults, a slow LTE cell
		{100 * ms, 500 * ms, 5, 40 * ms},  // timeout longer than the interval
		{1 * time.Second, 2 * time.Second, 3, 100 * ms},
	}
	for _, c := range cases {
		bound := DetectionBound(c.interval, c.timeout, c.down)
		var worst time.Duration
		// The failure at every millisecond of a probe cycle, after warm-up.
		for off := time.Duration(0); off < c.interval; off += ms {
			die := 5*time.Second + off
			at := simulate(c.interval, c.timeout, c.down, c.rtt, die)
			if at < 0 {
				t.Fatalf("%+v: never detected a death at %v", c, die)
			}
			worst = max(worst, at-die)
		}
		if worst > bound {
			t.Errorf("%+v: worst detection %v exceeds the bound %v", c, worst, bound)
		}
		t.Logf("interval %v timeout %v down_after %d rtt %v: worst %v, bound %v", c.interval, c.timeout, c.down, c.rtt, worst, bound)
	}
}

func TestTracker(t *testing.T) {
	tr := newTracker(200*ms, 300*ms)
	if !tr.due(0) {
		t.Fatal("first probe not due at once")
	}
	s1, ts1 := tr.send(0)
	if tr.due(199*ms) || !tr.due(200*ms) || tr.deadline() != 200*ms {
		t.Fatalf("next send: deadline %v", tr.deadline())
	}
	s2, ts2 := tr.send(200 * ms)
	if tr.deadline() != 300*ms { // s1 times out before the next send
		t.Fatalf("deadline %v, want s1's timeout at 300ms", tr.deadline())
	}
	if _, ok := tr.answer(s2, ts1, 250*ms); ok {
		t.Fatal("reply with another probe's timestamp accepted")
	}
	if rtt, ok := tr.answer(s2, ts2, 250*ms); !ok || rtt != 50*ms {
		t.Fatalf("answer s2: %v %v", rtt, ok)
	}
	if _, ok := tr.answer(s2, ts2, 260*ms); ok {
		t.Fatal("duplicate reply accepted")
	}
	if n := tr.expire(299 * ms); n != 0 {
		t.Fatalf("expired %d early", n)
	}
	if n := tr.expire(300 * ms); n != 1 {
		t.Fatalf("expired %d at s1's timeout", n)
	}
	if _, ok := tr.answer(s1, ts1, 310*ms); ok {
		t.Fatal("late reply to an expired probe accepted")
	}
	// A stall: no burst of catch-up probes.
	tr.send(5 * time.Second)
	if tr.due(5*time.Second + 199*ms) {
		t.Fatal("catch-up burst after a stall")
	}
}
