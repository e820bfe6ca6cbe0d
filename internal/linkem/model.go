package linkem

import (
	"math/rand/v2"
	"time"
)

// Verdict is what the model did with a packet.
type Verdict uint8

// Verdicts returned by Model.Enqueue.
const (
	Forward   Verdict = iota // leaves the far end at the returned time
	DropQueue                // tail drop: the queue was full
	DropLoss                 // lost on the wire
	DropDown                 // the link was down
)

func (v Verdict) String() string {
	switch v {
	case Forward:
		return "forward"
	case DropQueue:
		return "drop-queue"
	case DropLoss:
		return "drop-loss"
	case DropDown:
		return "drop-down"
	}
	return "verdict?"
}

// Model is one direction of a link, with no I/O: the caller says when a
// packet arrives and the model says when it leaves the far end. Packets must
// be offered in arrival order with non-decreasing now. A Model is not safe
// for concurrent use; the forwarder serialises access.
//
// The pipeline for a packet is: down check → queue admission (tail drop) →
// serialisation at the rate (token bucket) → loss → propagation delay and
// jitter. Loss comes after the queue because a packet lost on the wire has
// still used the link's capacity, as on a real radio or DSL line.
type Model struct {
	p          Profile
	queueLimit int64         // bytes, 0 = no queue (unlimited rate)
	burst      time.Duration // token-bucket depth as time at the rate
	rng        rand.PCG

	txFree      time.Time // when the link will have sent everything admitted
	lastRelease time.Time // latest release time handed out, for in-order delivery
	geBad       bool      // Gilbert-Elliott state
	flapFrom    time.Time // start of the first outage of the flap schedule
}

// NewModel returns a model of an idle link with profile p. Invalid values
// are clamped; use Profile.Validate to reject them instead.
func NewModel(p Profile) *Model {
	m := &Model{}
	m.rng.Seed(uint64(p.Seed), uint64(p.Seed)^0x9e3779b97f4a7c15)
	m.apply(p)
	return m
}

// Profile returns the current profile.
func (m *Model) Profile() Profile { return m.p }

// SetProfile changes the profile from the next packet on. Packets already
// admitted keep the times they were given; the queue backlog, the in-order
// release horizon and the Gilbert-Elliott state carry over, so a change
// mid-stream behaves like reconfiguring a live link. The random stream is
// reseeded only if Seed changes.
func (m *Model) SetProfile(p Profile) {
	if p.Seed != m.p.Seed {
		m.rng.Seed(uint64(p.Seed), uint64(p.Seed)^0x9e3779b97f4a7c15)
	}
	m.apply(p)
}

func (m *Model) apply(p Profile) {
	p.RateBps = max(p.RateBps, 0)
	p.Burst = max(p.Burst, 0)
	p.Delay = max(p.Delay, 0)
	p.Jitter = max(p.Jitter, 0)
	if p.Flap != m.p.Flap || p.Flap.Every == 0 {
		m.flapFrom = p.Flap.From
	}
	m.p = p
	m.queueLimit = p.QueueLimit()
	m.burst = 0
	if p.RateBps > 0 {
		m.burst = m.txTime(p.Burst)
	}
	if p.Loss.Model != LossGilbertElliott {
		m.geBad = false
	}
}

// flapping reports whether the flap schedule has the link down at now.
func (m *Model) flapping(now time.Time) bool {
	f := m.p.Flap
	if f.Every <= 0 {
		return false
	}
	if m.flapFrom.IsZero() {
		m.flapFrom = now
	}
	since := now.Sub(m.flapFrom)
	return since >= 0 && since%f.Every < f.Down
}

// txTime is how long size bytes take to serialise at the rate.
func (m *Model) txTime(size int) time.Duration {
	return time.Duration(int64(size) * 8 * int64(time.Second) / m.p.RateBps)
}

// Enqueue offers a packet of size bytes arriving at now. For Forward it
// returns when the packet's last bit leaves the far end of the link.
func (m *Model) Enqueue(now time.Time, size int) (time.Time, Verdict) {
	if m.p.Down || m.flapping(now) {
		return time.Time{}, DropDown
	}
	dep := now
	if m.p.RateBps > 0 {
		// Token bucket expressed in virtual time: txFree is when the link
		// is next free; letting it lag now by up to burst is the same as
		// holding burst bytes of tokens.
		start := m.txFree
		if floor := now.Add(-m.burst); start.Before(floor) {
			start = floor
		}
		if backlog := start.Sub(now); backlog > 0 {
			queued := int64(backlog.Seconds() * float64(m.p.RateBps) / 8)
			if queued+int64(size) > m.queueLimit {
				return time.Time{}, DropQueue
			}
		}
		m.txFree = start.Add(m.txTime(size))
		if m.txFree.After(dep) {
			dep = m.txFree
		}
	}
	if m.lost() {
		return time.Time{}, DropLoss
	}
	rel := dep.Add(m.p.Delay)
	if j := m.p.Jitter; j > 0 {
		rel = rel.Add(time.Duration((2*m.unit() - 1) * float64(j)))
		if rel.Before(dep) {
			rel = dep // delay cannot go negative
		}
	}
	if !m.p.Reorder && rel.Before(m.lastRelease) {
		rel = m.lastRelease
	}
	if rel.After(m.lastRelease) {
		m.lastRelease = rel
	}
	return rel, Forward
}

// unit returns a uniform float in [0, 1).
func (m *Model) unit() float64 {
	return float64(m.rng.Uint64()>>11) / (1 << 53)
}

func (m *Model) lost() bool {
	l := &m.p.Loss
	switch l.Model {
	case LossBernoulli:
		return l.P > 0 && m.unit() < l.P
	case LossGilbertElliott:
		// Transition first, then lose according to the new state (as
		// netem does).
		if m.geBad {
			if m.unit() < l.R {
				m.geBad = false
			}
		} else if m.unit() < l.P {
			m.geBad = true
		}
		p := l.LossGood
		if m.geBad {
			p = l.LossBad
			if p == 0 {
				p = 1
			}
		}
		return p > 0 && m.unit() < p
	}
	return false
}
