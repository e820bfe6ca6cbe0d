package relay

import "time"

// idleGrace is how long past the idle timeout a direction that holds bytes
// it is writing may take before the flow counts as idle: progress inside a
// write is invisible, and a receiver that drains one buffer slower than
// this is as good as gone.
func idleGrace(timeout time.Duration) time.Duration {
	return min(max(timeout/4, 10*time.Millisecond), 10*time.Second)
}

// idleDecision decides, when the idle timer fires, given how long the
// counters have been quiet and whether a direction is busy (holds bytes it
// has read and not yet written): the flow is idle, or the timer is re-armed
// for wait. A direction parked or waiting for input holds no bytes, so a
// quiet flow with no busy direction is idle at once.
func idleDecision(timeout, quiet time.Duration, busy bool) (wait time.Duration, idle bool) {
	switch {
	case quiet < timeout:
		return timeout - quiet, false
	case busy && quiet < timeout+idleGrace(timeout):
		return timeout + idleGrace(timeout) - quiet, false
	}
	return 0, true
}
