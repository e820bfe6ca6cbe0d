package probe

import (
	"net/netip"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	a := netip.MustParseAddrPort("198.51.100.1:4000")
	b := netip.MustParseAddrPort("198.51.100.1:4001") // same address, another CPE behind CGNAT
	c := netip.MustParseAddrPort("203.0.113.9:4000")
	l := newLimiter(10, 3, 2)
	steps := []struct {
		src  netip.AddrPort
		at   time.Duration
		want verdict
	}{
		{a, 0, allowed}, {a, 0, allowed}, {a, 0, allowed}, {a, 0, limited}, // burst 3
		{b, 0, allowed},         // its own bucket
		{a, 100 * ms, allowed},  // 10/s: one token per 100 ms
		{a, 150 * ms, limited},  //
		{c, 200 * ms, full},     // table full, first sweep finds nothing refilled
		{c, 900 * ms, full},     // no second sweep within a second
		{c, 1300 * ms, allowed}, // sweep: a and b refilled long ago (300 ms), forgotten
		{a, 1300 * ms, allowed}, // a comes back with a full bucket
		{b, 1300 * ms, full},    // but now the table is full again
		{c, 1300 * ms, allowed},
	}
	for i, s := range steps {
		if got := l.allow(s.src, s.at); got != s.want {
			t.Fatalf("step %d (%v at %v): %v, want %v", i, s.src, s.at, got, s.want)
		}
	}
}
