// Package trim hands a daemon's freed memory back to the kernel soon after
// many of its flows have closed.
//
// Go returns freed heap and goroutine stacks to the kernel only gradually,
// and collects only when the heap grows again: make bench figure 5 saw
// hcpe's RSS stay at 74 MB (22 MB before 1,000 idle flows opened) 3 s after
// all of them closed, and hag's at 37 MB (13 MB). An operator reading RSS
// after a wave of flows would see a leak that is not one. A forced
// collection and release (runtime/debug.FreeOSMemory) costs one collection
// of what is left, a few milliseconds when most flows are gone.
package trim

import "runtime/debug"

// Trimmer decides when to release memory from the number of open flows,
// observed periodically by one goroutine. The zero value is not useful:
// set MinDrop.
type Trimmer struct {
	// MinDrop is how many flows must have closed since the peak before a
	// release is worth a forced collection.
	MinDrop int

	peak int
	free func() // debug.FreeOSMemory; tests count calls instead
}

// Observe takes the number of open flows now and releases memory when at
// least MinDrop flows, and at least half of the peak, have closed since the
// peak (or the last release). It reports whether it released.
func (t *Trimmer) Observe(open int) bool {
	if open > t.peak {
		t.peak = open
		return false
	}
	if t.peak-open < t.MinDrop || open > t.peak/2 {
		return false
	}
	if t.free != nil {
		t.free()
	} else {
		debug.FreeOSMemory()
	}
	t.peak = open
	return true
}
