package probe

import "time"

// tracker is the prober's schedule, pure so that the detection-time
// arithmetic can be tested with explicit times: when to send, which probes
// are outstanding, which of them have timed out. Times are offsets on the
// prober's monotonic clock.
type tracker struct {
	interval, timeout time.Duration
	next              time.Duration // when the next probe is due
	seq               uint32
	out               []pending // outstanding, oldest first
}

type pending struct {
	seq  uint32
	sent time.Duration
}

func newTracker(interval, timeout time.Duration) *tracker {
	// At most timeout/interval+1 probes are outstanding at once.
	return &tracker{interval: interval, timeout: timeout, out: make([]pending, 0, int(timeout/interval)+2)}
}

func (t *tracker) due(now time.Duration) bool { return now >= t.next }

// send records a probe sent now and returns its sequence number and
// timestamp.
func (t *tracker) send(now time.Duration) (uint32, uint64) {
	t.seq++
	t.out = append(t.out, pending{t.seq, now})
	t.next += t.interval
	if t.next <= now {
		// Fell behind (a stalled process): resume the cadence from now
		// rather than sending a burst.
		t.next = now + t.interval
	}
	return t.seq, uint64(now)
}

// expire drops the probes whose answer is overdue at now and returns how
// many there were: each is a miss.
func (t *tracker) expire(now time.Duration) int {
	n := 0
	for n < len(t.out) && now >= t.out[n].sent+t.timeout {
		n++
	}
	t.out = append(t.out[:0], t.out[n:]...)
	return n
}

// answer matches a reply and returns the probe's RTT. Replies to unknown,
// expired or already answered probes, or whose echoed timestamp is not
// the one sent, are not answers.
func (t *tracker) answer(seq uint32, ts uint64, now time.Duration) (time.Duration, bool) {
	for i, p := range t.out {
		if p.seq == seq && uint64(p.sent) == ts {
			t.out = append(t.out[:i], t.out[i+1:]...)
			return now - p.sent, true
		}
	}
	return 0, false
}

// deadline is when something next happens without a reply: a send or a
// timeout.
func (t *tracker) deadline() time.Duration {
	d := t.next
	if len(t.out) > 0 {
		d = min(d, t.out[0].sent+t.timeout)
	}
	return d
}

// DetectionBound is the longest a Prober takes to declare a path dead
// after it stops answering (see the package doc): the downAfter-th lost
// probe leaves at most downAfter intervals after the failure and is
// counted a miss one timeout later.
func DetectionBound(interval, timeout time.Duration, downAfter int) time.Duration {
	return time.Duration(downAfter)*interval + timeout
}
