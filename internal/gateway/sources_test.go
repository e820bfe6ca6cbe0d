package gateway

import (
	"net/netip"
	"testing"
)

func TestSourceSlots(t *testing.T) {
	s := newSourceSlots(2)
	take := func(a string) func() { return s.take(netip.MustParseAddr(a)) }
	r1, r2 := take("2001:db8:1::1"), take("2001:db8:1::ffff") // same /64
	if r1 == nil || r2 == nil {
		t.Fatal("first two from one /64 refused")
	}
	if take("2001:db8:1::2") != nil {
		t.Error("a third from the same /64 was admitted")
	}
	if take("2001:db8:1:1::1") == nil || take("198.51.100.1") == nil || take("198.51.100.2") == nil {
		t.Error("another /64 or another IPv4 address was refused")
	}
	if take("::ffff:198.51.100.1") == nil || take("198.51.100.1") != nil {
		t.Error("a v4-mapped address is not counted as its IPv4 address")
	}
	r1()
	r1() // a second release frees nothing more
	if take("2001:db8:1::3") == nil {
		t.Error("release did not free the slot")
	}
	if take("2001:db8:1::4") != nil {
		t.Error("a double release freed two slots")
	}
	r2()
	s.mu.Lock()
	n := len(s.n)
	s.mu.Unlock()
	if n != 4 { // 2001:db8:1::/64 (one left), 2001:db8:1:1::/64, two IPv4
		t.Errorf("%d sources tracked, want 4", n)
	}
}

// TestPoolGate: waiting warm-pool connections are bounded per IPv4 address
// or IPv6 /64 and in all, and a slot comes back when its connection leaves.
func TestPoolGate(t *testing.T) {
	var p poolGate
	a := netip.MustParseAddr("2001:db8:d5::1")
	rotated := netip.MustParseAddr("2001:db8:d5::ffff") // same /64
	other := netip.MustParseAddr("2001:db8:d6::1")
	v4 := netip.MustParseAddr("198.51.100.1")
	for _, step := range []struct {
		addr  netip.Addr
		leave bool
		want  string
	}{
		{addr: a, want: ""},
		{addr: rotated, want: ""},
		{addr: a, want: "pool_per_cpe"}, // 2 per /64, whatever the address in it
		{addr: other, want: ""},         // total 3
		{addr: v4, want: "pool_total"},  // total is 3
		{addr: rotated, leave: true},    // back to 2 in all, 1 in the /64
		{addr: v4, want: ""},            // total 3 again
		{addr: a, want: "pool_total"},   // its /64 has room, the total has not
	} {
		if step.leave {
			p.leave(step.addr)
			continue
		}
		if got := p.enter(step.addr, 2, 3); got != step.want {
			t.Fatalf("enter(%v) = %q, want %q (waiting %v, total %d)", step.addr, got, step.want, p.waiting, p.total)
		}
	}
}
