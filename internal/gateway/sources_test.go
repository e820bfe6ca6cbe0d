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
