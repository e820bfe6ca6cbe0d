package linkem

import (
	"sync"
	"sync/atomic"
	"time"
)

// direction is the OS-independent state of one direction of a Link: the
// model, the packets in flight and the counters. The forwarding loop calls
// admit for each batch it reads and release when its timer fires; both take
// mu once per batch, not once per packet, and mu is also what SetProfile
// and Stats callers contend on.
//
// Packets in flight (queued or propagating) are copied into a fixed arena of
// slots, ordered by release time in a binary heap of slot indices. Without
// reordering the release times never decrease, so the heap degenerates to a
// FIFO; with reordering it sorts. Nothing here allocates after newDirection.
type direction struct {
	mu    sync.Mutex
	model *Model

	slotSize int
	arena    []byte      // len(free)+len(heap) == number of slots
	lens     []int32     // per slot: packet length
	at       []time.Time // per slot: release time
	seq      []uint64    // per slot: admission order, breaks ties in at
	nextSeq  uint64
	free     []int32 // stack of free slot indices
	heap     []int32 // slot indices, min-heap on (at, seq)

	ctr counters
}

type counters struct {
	packets, bytes                              atomic.Uint64
	dropQueue, dropLoss, dropDown, dropOverflow atomic.Uint64
	stripped, readErrors, writeErrors           atomic.Uint64
	lateNs, lateMaxNs, lateOver1ms              atomic.Uint64
}

func newDirection(p Profile, slots, slotSize int) *direction {
	d := &direction{
		model:    NewModel(p),
		slotSize: slotSize,
		// The arena is large but only the slots actually used are ever
		// touched, so idle links cost little resident memory.
		arena: make([]byte, slots*slotSize),
		lens:  make([]int32, slots),
		at:    make([]time.Time, slots),
		seq:   make([]uint64, slots),
		free:  make([]int32, slots),
		heap:  make([]int32, 0, slots),
	}
	for i := range d.free {
		d.free[i] = int32(slots - 1 - i)
	}
	return d
}

func (d *direction) profile() Profile {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.model.Profile()
}

func (d *direction) setProfile(p Profile) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.model.SetProfile(p)
}

func (d *direction) setDown(down bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p := d.model.Profile()
	p.Down = down
	d.model.SetProfile(p)
}

func (d *direction) stats() Stats {
	c := &d.ctr
	return Stats{
		Packets:         c.packets.Load(),
		Bytes:           c.bytes.Load(),
		DroppedQueue:    c.dropQueue.Load(),
		DroppedLoss:     c.dropLoss.Load(),
		DroppedDown:     c.dropDown.Load(),
		DroppedOverflow: c.dropOverflow.Load(),
		Stripped:        c.stripped.Load(),
		ReadErrors:      c.readErrors.Load(),
		WriteErrors:     c.writeErrors.Load(),
		LateNs:          c.lateNs.Load(),
		LateMaxNs:       c.lateMaxNs.Load(),
		LateOver1ms:     c.lateOver1ms.Load(),
	}
}

// admit runs a batch of packets that arrived at now through the model and
// keeps the survivors until their release time.
func (d *direction) admit(now time.Time, pkts [][]byte) {
	var nQueue, nLoss, nDown, nOver, nStrip uint64
	d.mu.Lock()
	strip := d.model.p.StripMPTCP
	for _, pkt := range pkts {
		rel, v := d.model.Enqueue(now, len(pkt))
		switch v {
		case DropQueue:
			nQueue++
			continue
		case DropLoss:
			nLoss++
			continue
		case DropDown:
			nDown++
			continue
		}
		if len(d.free) == 0 || len(pkt) > d.slotSize {
			nOver++
			continue
		}
		s := d.free[len(d.free)-1]
		d.free = d.free[:len(d.free)-1]
		buf := d.slot(s)
		copy(buf, pkt)
		if strip && StripMPTCP(buf[:len(pkt)]) {
			nStrip++
		}
		d.lens[s] = int32(len(pkt))
		d.at[s] = rel
		d.seq[s] = d.nextSeq
		d.nextSeq++
		d.push(s)
	}
	d.mu.Unlock()
	c := &d.ctr
	addNonZero(&c.dropQueue, nQueue)
	addNonZero(&c.dropLoss, nLoss)
	addNonZero(&c.dropDown, nDown)
	addNonZero(&c.dropOverflow, nOver)
	addNonZero(&c.stripped, nStrip)
}

// release copies every packet due at now, in release order and at most
// len(stage) of them, into stage[i][off:], and sets out[i] to
// stage[i][:off+len]. It returns how many it released and when the next
// packet is due (zero if none is left), at which time the caller must call
// it again. A packet due after now is never released; how late each
// released one is goes into the lateness counters.
func (d *direction) release(now time.Time, stage [][]byte, off int, out [][]byte) (n int, bytes uint64, next time.Time) {
	var lateSum, lateMax, over uint64
	defer func() {
		c := &d.ctr
		addNonZero(&c.lateNs, lateSum)
		addNonZero(&c.lateOver1ms, over)
		for cur := c.lateMaxNs.Load(); lateMax > cur && !c.lateMaxNs.CompareAndSwap(cur, lateMax); cur = c.lateMaxNs.Load() {
		}
	}()
	d.mu.Lock()
	defer d.mu.Unlock()
	for n < len(stage) && len(d.heap) > 0 {
		s := d.heap[0]
		if d.at[s].After(now) {
			break
		}
		late := uint64(now.Sub(d.at[s]))
		lateSum += late
		lateMax = max(lateMax, late)
		if late > uint64(time.Millisecond) {
			over++
		}
		d.pop()
		l := int(d.lens[s])
		out[n] = stage[n][:off+l]
		copy(out[n][off:], d.slot(s)[:l])
		bytes += uint64(l)
		d.free = append(d.free, s)
		n++
	}
	if len(d.heap) > 0 {
		next = d.at[d.heap[0]]
	}
	return n, bytes, next
}

// held returns how many packets the direction holds (queued or propagating).
func (d *direction) held() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.heap)
}

func (d *direction) slot(s int32) []byte {
	o := int(s) * d.slotSize
	return d.arena[o : o+d.slotSize : o+d.slotSize]
}

func (d *direction) less(i, j int) bool {
	a, b := d.heap[i], d.heap[j]
	if !d.at[a].Equal(d.at[b]) {
		return d.at[a].Before(d.at[b])
	}
	return d.seq[a] < d.seq[b]
}

func (d *direction) push(s int32) {
	d.heap = append(d.heap, s)
	for i := len(d.heap) - 1; i > 0; {
		p := (i - 1) / 2
		if !d.less(i, p) {
			break
		}
		d.heap[i], d.heap[p] = d.heap[p], d.heap[i]
		i = p
	}
}

func (d *direction) pop() {
	last := len(d.heap) - 1
	d.heap[0] = d.heap[last]
	d.heap = d.heap[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < last && d.less(l, m) {
			m = l
		}
		if r < last && d.less(r, m) {
			m = r
		}
		if m == i {
			return
		}
		d.heap[i], d.heap[m] = d.heap[m], d.heap[i]
		i = m
	}
}

// addNonZero skips the atomic add, and the cache-line traffic it causes
// with Stats readers, when there is nothing to add.
func addNonZero(c *atomic.Uint64, n uint64) {
	if n > 0 {
		c.Add(n)
	}
}
