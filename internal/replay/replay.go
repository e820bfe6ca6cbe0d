// Package replay remembers the cookies a converter accepted, so that each
// is accepted once. A cookie is valid only while its issue time lies within
// the skew window of the converter's clock, so it needs remembering only
// until then: entries are kept in buckets by issue time and a bucket is
// dropped whole once everything in it has expired, at most once a second.
//
// Memory is bounded by a number of entries. Only cookies that verified are
// added (a forger cannot add any), and hag adds them only after a CPE's
// new-flow rate limit admitted the flow, so each CPE holds at most its
// burst plus its rate times the window; when the bound is reached anyway,
// Add says Full and the caller refuses the flow (and counts it) rather than
// forget a cookie that could then be replayed.
package replay

import (
	"sync"
	"time"
)

// Result is what Add did.
type Result int

const (
	Fresh    Result = iota // not seen before; now remembered
	Replayed               // seen before within the window
	Full                   // not seen, but the filter is at its bound: not remembered
)

func (r Result) String() string {
	switch r {
	case Fresh:
		return "fresh"
	case Replayed:
		return "replayed"
	}
	return "full"
}

// maxBuckets bounds the buckets a window is cut into, so pruning costs
// the same whatever the window.
const maxBuckets = 64

// Filter is a set of cookie tags with their issue times. The zero value
// is not usable; call New.
type Filter struct {
	mu      sync.Mutex
	limit   int
	window  int64 // seconds
	width   int64 // seconds of issue time per bucket
	n       int
	buckets map[int64]map[uint64]struct{} // issue time / width → tags
	pruned  int64                         // unix second of the last prune
}

// New returns a filter that holds at most limit tags and forgets a tag once
// its issue time lies more than window in the past.
func New(limit int, window time.Duration) *Filter {
	f := &Filter{buckets: map[int64]map[uint64]struct{}{}}
	f.width = max(1, int64(window/time.Second)/maxBuckets)
	f.Configure(limit, window)
	return f
}

// Configure changes the bound and the window (a reload). The window only
// grows: a tag forgotten under a shorter window could be replayed under a
// longer one, and a tag kept longer than needed costs only memory that
// the bound already limits. A smaller bound takes effect for new tags;
// nothing already remembered is dropped early.
func (f *Filter) Configure(limit int, window time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.limit = limit
	f.window = max(f.window, int64(window/time.Second))
}

// Add remembers tag, issued at unix second issued, unless it is already
// remembered or the filter is full.
func (f *Filter) Add(tag uint64, issued int64, now time.Time) Result {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.prune(now.Unix())
	k := floorDiv(issued, f.width)
	b := f.buckets[k]
	if _, ok := b[tag]; ok {
		return Replayed
	}
	if f.n >= f.limit {
		return Full
	}
	if b == nil {
		b = map[uint64]struct{}{}
		f.buckets[k] = b
	}
	b[tag] = struct{}{}
	f.n++
	return Fresh
}

// Seen reports whether tag, issued at issued, is remembered.
func (f *Filter) Seen(tag uint64, issued int64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.buckets[floorDiv(issued, f.width)][tag]
	return ok
}

// Len is the number of tags remembered.
func (f *Filter) Len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

// prune drops the buckets whose newest issue time lies more than the
// window before now; it runs at most once per second of now.
func (f *Filter) prune(now int64) {
	if now == f.pruned {
		return
	}
	f.pruned = now
	for k, b := range f.buckets {
		if newest := (k+1)*f.width - 1; now-newest > f.window {
			f.n -= len(b)
			delete(f.buckets, k)
		}
	}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
