package gateway

import (
	"net/netip"
	"testing"

	"hybridgw/internal/config"
)

func TestJoinAllowed(t *testing.T) {
	wan := &config.CPE{WAN: []netip.Prefix{netip.MustParsePrefix("2001:db8:d5::/64"), netip.MustParsePrefix("198.51.100.0/30")}}
	cookieOnly := &config.CPE{}
	peer := netip.MustParseAddr("2001:db8:d5::1")
	for _, tc := range []struct {
		name   string
		cpe    *config.CPE
		peer   netip.Addr
		remote string
		want   bool
	}{
		{"inside, IPv6", wan, peer, "2001:db8:d5::3", true},
		{"inside, IPv4 mapped", wan, peer, "::ffff:198.51.100.1", true},
		{"outside, IPv6", wan, peer, "2001:db8:d7::1", false},
		{"outside, IPv4", wan, peer, "192.0.2.1", false},
		{"the initial subflow's address", wan, netip.MustParseAddr("192.0.2.9"), "192.0.2.9", true},
		{"no wan_prefixes to check against", cookieOnly, peer, "2001:db8:d7::1", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := joinAllowed(tc.cpe, tc.peer, netip.MustParseAddr(tc.remote)); got != tc.want {
				t.Errorf("joinAllowed(%s) = %v, want %v", tc.remote, got, tc.want)
			}
		})
	}
}

// TestFirstRefusal: the scan at flow start and the path-manager event may
// both report one subflow; it is counted once.
func TestFirstRefusal(t *testing.T) {
	var j joinGuard
	f := &joinFlow{}
	j.add(7, f)
	a := netip.MustParseAddrPort("[2001:db8:d7::1]:4000")
	b := netip.MustParseAddrPort("[2001:db8:d7::1]:4001")
	if !j.firstRefusal(f, a) || j.firstRefusal(f, a) {
		t.Error("the same subflow was refused as new twice, or not at all")
	}
	if !j.firstRefusal(f, b) {
		t.Error("a second subflow from the same address was not refused as new")
	}
	if j.get(7) != f {
		t.Error("token 7 not found")
	}
	j.remove(7)
	if j.get(7) != nil || len(j.all()) != 0 {
		t.Error("token 7 still registered after remove")
	}
}
