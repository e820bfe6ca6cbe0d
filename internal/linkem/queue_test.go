package linkem

import (
	"slices"
	"testing"
	"time"
)

// pkt returns a fake packet of size bytes whose first byte is tag.
func pkt(tag byte, size int) []byte {
	b := make([]byte, size)
	b[0] = tag
	return b
}

func TestDirectionReleasesInTimeOrder(t *testing.T) {
	// Packets 0-9 get 20 ms of delay; then, with reordering allowed, 10-19
	// get 5 ms and must come out first, each group in admission order.
	d := newDirection(Profile{Delay: 20 * time.Millisecond, Reorder: true}, 64, 1500)
	t0 := time.Unix(1000, 0)
	for i := range 20 {
		if i == 10 {
			d.setProfile(Profile{Delay: 5 * time.Millisecond, Reorder: true})
		}
		d.admit(t0, [][]byte{pkt(byte(i), 100+i)})
	}
	stage := make([][]byte, 4)
	for i := range stage {
		stage[i] = make([]byte, 16+1500)
	}
	out := make([][]byte, 4)
	if n, _, next := d.release(t0.Add(4*time.Millisecond), stage, 16, out); n != 0 || !next.Equal(t0.Add(5*time.Millisecond)) {
		t.Fatalf("released %d before any was due; next at +%v, want +5ms", n, next.Sub(t0))
	}
	var order []int
	for _, now := range []time.Time{t0.Add(5 * time.Millisecond), t0.Add(20 * time.Millisecond)} {
		for {
			n, bytes, _ := d.release(now, stage, 16, out)
			var sum uint64
			for _, o := range out[:n] {
				tag := int(o[16])
				if len(o)-16 != 100+tag {
					t.Fatalf("packet %d has length %d: slots mixed up", tag, len(o)-16)
				}
				sum += uint64(len(o) - 16)
				order = append(order, tag)
			}
			if sum != bytes {
				t.Fatalf("release counted %d bytes, out holds %d", bytes, sum)
			}
			if n == 0 {
				break
			}
		}
	}
	want := []int{10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
	if !slices.Equal(order, want) {
		t.Errorf("release order %v, want %v", order, want)
	}
	if len(d.free) != 64 || len(d.heap) != 0 {
		t.Errorf("after draining: %d free, %d queued", len(d.free), len(d.heap))
	}
}

func TestDirectionOverflowAndDown(t *testing.T) {
	d := newDirection(Profile{Delay: time.Second}, 4, 1500)
	now := time.Unix(1000, 0)
	d.admit(now, [][]byte{pkt(1, 100), pkt(2, 100), pkt(3, 100), pkt(4, 100), pkt(5, 100), pkt(6, 2000)})
	if s := d.stats(); s.DroppedOverflow != 2 {
		t.Errorf("overflow drops %d, want 2 (arena full, oversize): %+v", s.DroppedOverflow, s)
	}
	d.setDown(true)
	d.admit(now, [][]byte{pkt(7, 100)})
	if s := d.stats(); s.DroppedDown != 1 {
		t.Errorf("down drops %d, want 1", s.DroppedDown)
	}
}

func TestDirectionDoesNotAllocate(t *testing.T) {
	d := newDirection(Profile{RateBps: 1e9, Delay: time.Millisecond, StripMPTCP: true}, 1024, 1500)
	batch := make([][]byte, 32)
	for i := range batch {
		batch[i] = buildTCP(i%2 == 0, false, mpCapable, make([]byte, 1000))
	}
	stage := make([][]byte, 64)
	for i := range stage {
		stage[i] = make([]byte, 16+1500)
	}
	out := make([][]byte, 64)
	now := time.Unix(1000, 0)
	if a := testing.AllocsPerRun(200, func() {
		now = now.Add(time.Millisecond)
		d.admit(now, batch)
		d.release(now.Add(time.Second), stage, 16, out)
	}); a != 0 {
		t.Errorf("admit+release allocate %v times per batch", a)
	}
}

// TestDirectionNeverReleasesEarly steps a clock through a rate-limited,
// jittered stream in increments finer than the packet spacing and checks
// every released packet was due (its due time is the model's: admit time
// plus the smallest possible delay bounds it from below), and that the
// lateness counters add up to what the clock steps imply.
func TestDirectionNeverReleasesEarly(t *testing.T) {
	const delay = 10 * time.Millisecond
	d := newDirection(Profile{RateBps: 20_000_000, Delay: delay, Jitter: 2 * time.Millisecond}, 256, 1500)
	t0 := time.Unix(1000, 0)
	for i := range 100 {
		d.admit(t0.Add(time.Duration(i)*100*time.Microsecond), [][]byte{pkt(byte(i), 1400)})
	}
	stage := make([][]byte, 8)
	for i := range stage {
		stage[i] = make([]byte, 16+1500)
	}
	out := make([][]byte, 8)
	released := 0
	var wantLate uint64
	for now := t0; released < 100 && now.Before(t0.Add(time.Second)); now = now.Add(37 * time.Microsecond) {
		// Peek at the due times of what release is about to hand out.
		d.mu.Lock()
		var dues []time.Time
		for _, s := range d.heap {
			if !d.at[s].After(now) {
				dues = append(dues, d.at[s])
			}
		}
		d.mu.Unlock()
		n, _, next := d.release(now, stage, 16, out)
		if n > len(dues) {
			t.Fatalf("at +%v released %d packets, only %d were due", now.Sub(t0), n, len(dues))
		}
		if !next.IsZero() && n < len(stage) && !next.After(now) {
			t.Fatalf("at +%v next due +%v is not in the future after a partial release", now.Sub(t0), next.Sub(t0))
		}
		slices.SortFunc(dues, func(a, b time.Time) int { return a.Compare(b) })
		for _, due := range dues[:n] {
			if due.After(now) {
				t.Fatalf("packet due at +%v released at +%v", due.Sub(t0), now.Sub(t0))
			}
			wantLate += uint64(now.Sub(due))
		}
		released += n
	}
	if released != 100 {
		t.Fatalf("released %d of 100", released)
	}
	st := d.stats()
	if st.LateNs != wantLate {
		t.Errorf("LateNs %d, want %d", st.LateNs, wantLate)
	}
	if st.LateMaxNs == 0 || st.LateMaxNs > uint64(37*time.Microsecond) {
		t.Errorf("LateMaxNs %v, want in (0, 37µs] for a clock stepping by 37µs", time.Duration(st.LateMaxNs))
	}
}
