package policy

import "time"

// StallParams tunes Stalled. DefaultStallParams explains the values.
type StallParams struct {
	// After is the least time the connection's data sequence must stand
	// still before a subflow is blamed; RTTs raises it to that many of the
	// blamed subflow's RTT, so a slow path is given its round trip.
	After time.Duration
	RTTs  float64
	// Slack is the sampling interval: a stall is seen up to one sample
	// late, so a subflow silent for Slack less than the stall still fits.
	Slack time.Duration
	// Active bounds how long before the stall a blamed subflow may have
	// fallen silent: one silent for longer was idle (a backup), not the
	// path that swallowed the missing data.
	Active time.Duration
	// Learn: a subflow is blamed only once it has carried data for this
	// long; a path just put to work (overflow engaging, a join after a
	// reinstatement) pauses while the sender's scheduler finds its pace.
	Learn time.Duration
}

// DefaultStallParams: After 30 ms and 2 RTTs: the lab's DSL (15 ms RTT) is
// blamed 30 ms into a stall, LTE (35 ms) after 70 ms; on a live path data
// arrives every millisecond or so while the connection is busy, so 30 ms
// of silence during a stall is not jitter. A dead path costs a running
// transfer this, plus RM_ADDR's trip to hag and the reinjected data's
// trip back over the live path, instead of hag's retransmission timeout
// (at least 200 ms plus RTT, then backed off). Slack 10 ms is hcpe's
// sample interval; Active 300 ms covers the live path's extra delay;
// Learn 1 s.
func DefaultStallParams() StallParams {
	return StallParams{After: 30 * time.Millisecond, RTTs: 2, Slack: 10 * time.Millisecond, Active: 300 * time.Millisecond, Learn: time.Second}
}

// SubflowView is one subflow of a connection at one sample.
type SubflowView struct {
	Uplink    string
	RTT       time.Duration // smoothed; 0 when unknown
	SinceData time.Duration // since data last arrived on it
	SinceAck  time.Duration // since an ACK last arrived on it
	Unacked   uint32        // segments it has in flight
	// Received and Acked: it has carried data each way since it was
	// established. A subflow that never did (a fresh join, an idle
	// backup) cannot have lost the data a stall waits for.
	Received, Acked bool
}

// ConnView is one MPTCP connection at one sample: its data-level sequence
// numbers and its subflows.
type ConnView struct {
	RcvNxt, SndUna, WriteSeq uint64
	Subflows                 []SubflowView
}

// StallTrack is what Stalled remembers of a connection between samples;
// the zero value is a fresh connection.
type StallTrack struct {
	RcvNxt, SndUna     uint64
	RcvSince, SndSince time.Time // when each last moved (or had nothing to move)
	// Carrying: per uplink, since when its subflow has been seen carrying
	// data (absent: not seen yet).
	Carrying map[string]time.Time
}

// Stalled advances t with the sample c taken at now and returns the
// uplinks whose subflows hold the connection up, with how long it has
// been held.
//
// Receiving: the next in-order data (RcvNxt) has not arrived for a while,
// data still arrives on another uplink's subflow (the sender is sending;
// what it sent there waits behind a hole), and this uplink's subflow,
// which has carried data for a while (Learn), fell silent about when the
// stall began: the hole is data this path lost.
// Sending is the mirror: nothing acknowledged at the data level while
// data is outstanding, ACKs still arriving on another uplink, and this
// uplink's subflow has data in flight and no ACK since about the stall's
// start. The kernel's own remedy is the subflow's retransmission timeout;
// a caller that acts on this is faster by the RTO minus After.
func Stalled(t StallTrack, now time.Time, c ConnView, p StallParams) (StallTrack, []string, time.Duration) {
	if t.RcvSince.IsZero() || c.RcvNxt != t.RcvNxt {
		t.RcvNxt, t.RcvSince = c.RcvNxt, now
	}
	if t.SndSince.IsZero() || c.SndUna != t.SndUna || c.WriteSeq == c.SndUna {
		t.SndUna, t.SndSince = c.SndUna, now
	}
	seen := map[string]time.Time{}
	for _, s := range c.Subflows {
		if s.Received || s.Acked {
			since, ok := t.Carrying[s.Uplink]
			if !ok {
				since = now
			}
			seen[s.Uplink] = since
		}
	}
	t.Carrying = seen
	rcv, snd := now.Sub(t.RcvSince), now.Sub(t.SndSince)
	var out []string
	var held time.Duration
	blame := func(u string, d time.Duration) {
		held = max(held, d)
		for _, o := range out {
			if o == u {
				return
			}
		}
		out = append(out, u)
	}
	for _, s := range c.Subflows {
		if since, ok := t.Carrying[s.Uplink]; !ok || now.Sub(since) < p.Learn {
			continue
		}
		after := max(p.After, time.Duration(p.RTTs*float64(s.RTT)))
		live := func(fresh func(o SubflowView) bool) bool {
			for _, o := range c.Subflows {
				if o.Uplink != s.Uplink && fresh(o) {
					return true
				}
			}
			return false
		}
		if rcv >= after && s.Received && s.SinceData+p.Slack >= rcv && s.SinceData <= rcv+p.Active &&
			live(func(o SubflowView) bool { return o.SinceData < rcv }) {
			blame(s.Uplink, rcv)
		}
		if snd >= after && s.Acked && s.Unacked > 0 && s.SinceAck+p.Slack >= snd && s.SinceAck <= snd+p.Active &&
			live(func(o SubflowView) bool { return o.SinceAck < snd }) {
			blame(s.Uplink, snd)
		}
	}
	return t, out, held
}
