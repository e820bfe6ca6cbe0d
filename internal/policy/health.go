package policy

import "time"

// HealthParams configures a Health.
type HealthParams struct {
	DownAfter int // consecutive misses that make a live uplink dead (K)
	UpAfter   int // consecutive answers that make a dead uplink alive (M)
	// Window is how many recent outcomes Loss covers, 1..64; 0 means
	// DefaultLossWindow.
	Window int
	// Gain is the EWMA weight of a new RTT sample, in (0, 1]; 0 means 1/8,
	// the SRTT gain of RFC 6298, which smooths one-off queueing spikes over
	// about eight probes.
	Gain float64
}

// DefaultLossWindow is 50 outcomes: 10 s at the default 200 ms probe
// interval, which resolves loss in steps of 2 %.
const DefaultLossWindow = 50

const maxLossWindow = 64 // the outcomes are bits of a uint64

// Health is one uplink's liveness, smoothed RTT and recent loss, built
// from probe outcomes. An uplink starts dead and must earn UpAfter answers:
// until the probes have spoken, nothing is known about it. The zero value
// is not usable; use NewHealth.
type Health struct {
	p      HealthParams
	alive  bool
	run    int // consecutive outcomes that disagree with alive
	srtt   time.Duration
	reseed bool   // the next sample replaces srtt instead of averaging
	hist   uint64 // bit i set: outcome i ago was a miss
	n      int    // outcomes in hist, up to Window
}

// NewHealth returns a dead uplink's Health. Values of p below 1 are taken
// as 1, except Window and Gain, whose zero means their default.
func NewHealth(p HealthParams) Health {
	p.DownAfter = max(p.DownAfter, 1)
	p.UpAfter = max(p.UpAfter, 1)
	if p.Window <= 0 {
		p.Window = DefaultLossWindow
	}
	p.Window = min(p.Window, maxLossWindow)
	if p.Gain <= 0 || p.Gain > 1 {
		p.Gain = 1.0 / 8
	}
	return Health{p: p, reseed: true}
}

// Success records an answered probe with round-trip time rtt and reports
// whether the uplink just came alive.
func (h *Health) Success(rtt time.Duration) (changed bool) {
	h.record(false)
	if h.reseed {
		// After a dead spell the old average describes another path state.
		h.srtt, h.reseed = rtt, false
	} else {
		h.srtt += time.Duration(h.p.Gain * float64(rtt-h.srtt))
	}
	if h.alive {
		h.run = 0
		return false
	}
	h.run++
	if h.run < h.p.UpAfter {
		return false
	}
	h.alive, h.run = true, 0
	return true
}

// Miss records an unanswered probe and reports whether the uplink just
// died.
func (h *Health) Miss() (changed bool) {
	h.record(true)
	if !h.alive {
		h.run = 0
		return false
	}
	h.run++
	if h.run < h.p.DownAfter {
		return false
	}
	h.alive, h.run, h.reseed = false, 0, true
	return true
}

func (h *Health) record(miss bool) {
	h.hist <<= 1
	if miss {
		h.hist |= 1
	}
	h.n = min(h.n+1, h.p.Window)
}

// Alive reports the uplink's state.
func (h *Health) Alive() bool { return h.alive }

// SRTT is the smoothed round-trip time, 0 before the first answer.
func (h *Health) SRTT() time.Duration { return h.srtt }

// Loss is the share of the last Window outcomes (fewer at the start) that
// were misses; 0 before any.
func (h *Health) Loss() float64 {
	if h.n == 0 {
		return 0
	}
	var misses int
	for i := range h.n {
		misses += int(h.hist >> i & 1)
	}
	return float64(misses) / float64(h.n)
}
