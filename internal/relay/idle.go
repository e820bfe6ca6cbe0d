package relay

import "time"

// idleProbe decides when a quiet flow is idle. The counters alone cannot
// tell: a direction blocked in a long Read has moved nothing only if it
// has not yet reported what it read, so when the counters have been quiet
// for the timeout the supervisor probes (see supervise) and decides again
// once every running direction has acknowledged the probe, or when the
// grace is up. The type holds only that decision; supervise owns the
// timer, the conns and the channel the acknowledgements arrive on.
type idleProbe struct {
	timeout time.Duration
	// grace bounds the wait for acknowledgements: a direction blocked
	// writing cannot acknowledge and after grace counts as idle.
	grace time.Duration
	// gen is the probe in progress, 0 when none; lastGen makes
	// generations unique, so a late acknowledgement of an abandoned probe
	// cannot count towards a new one.
	gen, lastGen uint64
	acked        int
}

// probeStep is what the supervisor does after a check: end the flow as
// idle, or re-arm its timer for wait and, when probe is not 0, publish
// that generation and interrupt both reads.
type probeStep struct {
	idle  bool
	probe uint64
	wait  time.Duration
}

func newIdleProbe(timeout time.Duration) idleProbe {
	return idleProbe{timeout: timeout, grace: min(max(timeout/4, 10*time.Millisecond), 10*time.Second)}
}

// check decides, given how long the counters have been quiet; it runs when
// the timer fires or when the probe is complete.
func (p *idleProbe) check(quiet time.Duration) probeStep {
	if quiet < p.timeout {
		// Progress since the timer was set: no probe, wait for the rest.
		p.gen = 0
		return probeStep{wait: p.timeout - quiet}
	}
	if p.gen == 0 {
		p.lastGen++
		p.gen = p.lastGen
		p.acked = 0
		return probeStep{probe: p.gen, wait: p.grace}
	}
	// Still quiet after the probe was acknowledged or its grace ran out.
	return probeStep{idle: true}
}

// ack counts a direction's acknowledgement of probe g and reports whether
// the probe is now complete, with running directions left to hear from.
func (p *idleProbe) ack(g uint64, running int) bool {
	if g == 0 || g != p.gen {
		return false
	}
	p.acked++
	return p.acked >= running
}

// complete reports whether a probe is in progress and every one of the
// running directions has acknowledged it; a direction that ended owes none.
func (p *idleProbe) complete(running int) bool {
	return p.gen != 0 && p.acked >= running
}
