package linkem

import (
	"errors"
	"fmt"
	"time"
)

// DefaultQueueDelay sizes the queue when a Profile gives neither QueueBytes
// nor QueueDelay: 50 ms at the link rate is a typical access-link buffer.
const DefaultQueueDelay = 50 * time.Millisecond

// Loss models, the values of Loss.Model.
const (
	LossNone           = ""
	LossBernoulli      = "bernoulli"
	LossGilbertElliott = "gilbert-elliott"
)

// Loss describes random loss on one direction. The Gilbert-Elliott
// parameters follow netem's "loss gemodel p r 1-h 1-k".
type Loss struct {
	Model string `yaml:"model"` // LossNone, LossBernoulli or LossGilbertElliott
	// P is the loss probability per packet for "bernoulli"; for
	// "gilbert-elliott" it is the probability of moving from the good to the
	// bad state at each packet.
	P float64 `yaml:"p"`
	// R is the probability of moving from the bad back to the good state at
	// each packet ("gilbert-elliott" only). The mean burst length is 1/R.
	R float64 `yaml:"r"`
	// LossBad is the loss probability in the bad state (netem's 1-h); 0 means
	// 1, the simple Gilbert model in which every packet in a burst is lost.
	LossBad float64 `yaml:"loss_bad"`
	// LossGood is the loss probability in the good state (netem's 1-k).
	LossGood float64 `yaml:"loss_good"`
}

// Flap takes a link down for Down out of every Every, as a DSL modem that
// resyncs or a router that reboots does: the first outage starts at From
// (zero: at the first packet offered after the profile was set), the next
// Every later, and so on. Every = 0 means no flapping.
type Flap struct {
	Down  time.Duration `yaml:"down"`
	Every time.Duration `yaml:"every"`
	From  time.Time     `yaml:"-"`
}

// Profile is one direction of an emulated link.
type Profile struct {
	RateBps int64 `yaml:"rate_bps"` // 0 = unlimited
	// Burst is the token-bucket depth in bytes: how much may leave at once
	// after the link was idle. 0 means one packet, a plain serialising link.
	Burst      int           `yaml:"burst_bytes"`
	QueueBytes int           `yaml:"queue_bytes"` // tail-drop limit; 0 = derive from QueueDelay
	QueueDelay time.Duration `yaml:"queue_delay"` // queue size as time at RateBps (DefaultQueueDelay when both 0)
	Delay      time.Duration `yaml:"delay"`       // one-way propagation delay
	// Jitter adds a uniform random [-Jitter, +Jitter] to each packet's
	// delay. Unless Reorder is set, a packet never overtakes the one before
	// it (it is held back instead), so under a steady packet stream the
	// mean delay rises towards Delay+Jitter, as on a real in-order link.
	Jitter     time.Duration `yaml:"jitter"`
	Reorder    bool          `yaml:"reorder"` // let jitter reorder packets
	Loss       Loss          `yaml:"loss"`
	Down       bool          `yaml:"down"`        // drop everything entering the link
	Flap       Flap          `yaml:"flap"`        // down on a schedule (a line that resyncs)
	StripMPTCP bool          `yaml:"strip_mptcp"` // NOP out TCP option 30 (RFC 8041 §3.1 middlebox)
	Seed       int64         `yaml:"seed"`        // seeds loss and jitter; equal seeds give equal runs
}

// Validate returns every problem with the profile, each naming its field.
func (p Profile) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if p.RateBps < 0 {
		bad("rate_bps", "negative (%d)", p.RateBps)
	}
	if p.Burst < 0 {
		bad("burst_bytes", "negative (%d)", p.Burst)
	}
	if p.QueueBytes < 0 {
		bad("queue_bytes", "negative (%d)", p.QueueBytes)
	}
	if p.QueueDelay < 0 {
		bad("queue_delay", "negative (%v)", p.QueueDelay)
	}
	if p.Delay < 0 {
		bad("delay", "negative (%v)", p.Delay)
	}
	if p.Jitter < 0 {
		bad("jitter", "negative (%v)", p.Jitter)
	}
	if f := p.Flap; f.Every < 0 || f.Down < 0 || (f.Every > 0 && (f.Down == 0 || f.Down >= f.Every)) || (f.Every == 0 && f.Down != 0) {
		bad("flap", "down %v every %v: want 0 < down < every (or both 0)", f.Down, f.Every)
	}
	prob := func(field string, v float64) {
		if !(v >= 0 && v <= 1) { // also rejects NaN
			bad(field, "probability %v outside [0, 1]", v)
		}
	}
	switch p.Loss.Model {
	case LossNone:
		if p.Loss.P != 0 || p.Loss.R != 0 || p.Loss.LossBad != 0 || p.Loss.LossGood != 0 {
			bad("loss.model", "empty, but loss parameters are set")
		}
	case LossBernoulli:
		prob("loss.p", p.Loss.P)
	case LossGilbertElliott:
		prob("loss.p", p.Loss.P)
		prob("loss.r", p.Loss.R)
		prob("loss.loss_bad", p.Loss.LossBad)
		prob("loss.loss_good", p.Loss.LossGood)
	default:
		bad("loss.model", "unknown model %q (want %q, %q or empty)", p.Loss.Model, LossBernoulli, LossGilbertElliott)
	}
	return errors.Join(errs...)
}

// QueueLimit is the tail-drop limit in bytes that the profile implies, or 0
// when the link is unlimited (and so never queues).
func (p Profile) QueueLimit() int64 {
	if p.RateBps <= 0 {
		return 0
	}
	if p.QueueBytes > 0 {
		return int64(p.QueueBytes)
	}
	d := p.QueueDelay
	if d <= 0 {
		d = DefaultQueueDelay
	}
	return int64(d.Seconds() * float64(p.RateBps) / 8)
}

// Dir names one direction of a Link.
type Dir int

// The two directions of a Link.
const (
	AtoB Dir = iota
	BtoA
)

func (d Dir) String() string {
	switch d {
	case AtoB:
		return "a-to-b"
	case BtoA:
		return "b-to-a"
	}
	return fmt.Sprintf("Dir(%d)", int(d))
}

// Stats are the counters of one direction since Open. Packets and bytes are
// IP packets as they cross the link (MTU-sized, after GSO splitting).
type Stats struct {
	Packets         uint64 // forwarded to the far device
	Bytes           uint64 // forwarded IP bytes
	DroppedQueue    uint64 // tail-dropped because the queue was full
	DroppedLoss     uint64 // dropped by the loss model
	DroppedDown     uint64 // dropped because the direction was down
	DroppedOverflow uint64 // dropped because the in-flight arena was full (see Config.MaxInFlight)
	Stripped        uint64 // packets whose MPTCP options were stripped
	ReadErrors      uint64 // malformed or unsplittable reads from the near device
	WriteErrors     uint64 // failed batch writes to the far device (e.g. it is down)
	// Lateness of released packets (release time minus due time; never
	// negative: no packet leaves before its time). LateNs sums it, so
	// LateNs/Packets is the mean; LateMaxNs is the worst so far;
	// LateOver1ms counts packets released more than 1 ms late.
	LateNs, LateMaxNs, LateOver1ms uint64
}
