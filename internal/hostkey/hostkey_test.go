package hostkey

import (
	"net/netip"
	"testing"
)

func TestOf(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{"192.0.2.7", "192.0.2.7/32"},
		{"::ffff:192.0.2.7", "192.0.2.7/32"},
		{"2001:db8:1::1", "2001:db8:1::/64"},
		{"2001:db8:1::ffff:1:2", "2001:db8:1::/64"},
		{"2001:db8:1:2::1", "2001:db8:1:2::/64"},
	} {
		if got := Of(netip.MustParseAddr(tc.addr)); got != netip.MustParsePrefix(tc.want) {
			t.Errorf("Of(%s) = %v, want %s", tc.addr, got, tc.want)
		}
	}
}
