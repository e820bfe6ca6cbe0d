package relay

import (
	"testing"
	"time"
)

func TestIdleProbeGrace(t *testing.T) {
	for _, tt := range []struct{ timeout, grace time.Duration }{
		{20 * time.Millisecond, 10 * time.Millisecond}, // floor
		{time.Second, 250 * time.Millisecond},          // a quarter
		{time.Hour, 10 * time.Second},                  // cap
	} {
		if g := newIdleProbe(tt.timeout).grace; g != tt.grace {
			t.Errorf("timeout %v: grace %v, want %v", tt.timeout, g, tt.grace)
		}
	}
}

// TestIdleProbe drives the decision through the events supervise feeds it:
// the timer (check with the quiet time), acknowledgements (ack) and a
// direction ending (complete).
func TestIdleProbe(t *testing.T) {
	const timeout = time.Second
	const grace = 250 * time.Millisecond
	type ev struct {
		check   bool
		quiet   time.Duration // check: how long the counters were quiet
		want    probeStep     // check: the step
		g       uint64        // ack: generation acknowledged
		running int           // ack, complete: directions still running
		done    bool          // ack, complete: whether the probe is complete
	}
	chk := func(quiet time.Duration, want probeStep) ev { return ev{check: true, quiet: quiet, want: want} }
	ack := func(g uint64, running int, done bool) ev { return ev{g: g, running: running, done: done} }
	cmp := func(running int, done bool) ev { return ev{g: ^uint64(0), running: running, done: done} }
	probe := func(g uint64) probeStep { return probeStep{probe: g, wait: grace} }
	idle := probeStep{idle: true}
	for _, tt := range []struct {
		name string
		evs  []ev
	}{
		{"progress re-arms for the rest", []ev{
			chk(300*time.Millisecond, probeStep{wait: 700 * time.Millisecond}),
		}},
		{"quiet starts a probe with the grace", []ev{
			chk(timeout, probe(1)),
		}},
		{"acknowledged and still quiet is idle", []ev{
			chk(timeout, probe(1)), ack(1, 2, false), ack(1, 2, true),
			chk(timeout+5*time.Millisecond, idle),
		}},
		{"progress reported by the probe cancels it", []ev{
			chk(timeout, probe(1)), ack(1, 2, false), ack(1, 2, true),
			chk(100*time.Millisecond, probeStep{wait: 900 * time.Millisecond}),
			// the next probe is a new generation
			chk(timeout, probe(2)),
		}},
		{"an abandoned probe's late ack does not count", []ev{
			chk(timeout, probe(1)), chk(0, probeStep{wait: timeout}),
			chk(timeout, probe(2)), ack(1, 2, false), ack(2, 2, false), ack(2, 2, true),
		}},
		{"grace up without acks is idle", []ev{
			chk(timeout, probe(1)), chk(timeout+grace, idle),
		}},
		{"one running direction needs one ack", []ev{
			chk(timeout, probe(1)), ack(1, 1, true),
		}},
		{"a direction ending completes the probe", []ev{
			chk(timeout, probe(1)), ack(1, 2, false), cmp(2, false), cmp(1, true),
		}},
		{"no probe, nothing to acknowledge", []ev{
			ack(0, 2, false), ack(1, 1, false), cmp(0, false),
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := newIdleProbe(timeout)
			for i, e := range tt.evs {
				switch {
				case e.check:
					if got := p.check(e.quiet); got != e.want {
						t.Fatalf("event %d: check(%v) = %+v, want %+v", i, e.quiet, got, e.want)
					}
				case e.g == ^uint64(0):
					if got := p.complete(e.running); got != e.done {
						t.Fatalf("event %d: complete(%d) = %v, want %v", i, e.running, got, e.done)
					}
				default:
					if got := p.ack(e.g, e.running); got != e.done {
						t.Fatalf("event %d: ack(%d, %d) = %v, want %v", i, e.g, e.running, got, e.done)
					}
				}
			}
		})
	}
}
