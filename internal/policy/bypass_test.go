package policy

import (
	"net/netip"
	"testing"
)

func TestBypassMatch(t *testing.T) {
	b := Bypass{
		Dsts:  []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8:10::/56")},
		Ports: []PortRange{{53, 53}, {5060, 5061}},
		Srcs:  []netip.Prefix{netip.MustParsePrefix("198.51.100.7/32"), netip.MustParsePrefix("2001:db8:20::/64")},
	}
	ap := netip.MustParseAddrPort
	cases := []struct {
		src, dst string
		want     bool
	}{
		{"198.51.100.1:40000", "192.0.2.9:443", true},               // dst prefix
		{"198.51.100.1:40000", "[::ffff:192.0.2.9]:443", true},      // mapped dst
		{"[2001:db8:99::1]:40000", "[2001:db8:10:ff::1]:443", true}, // v6 dst
		{"[2001:db8:99::1]:40000", "[2001:db8:11::1]:443", false},
		{"198.51.100.1:40000", "203.0.113.1:53", true},   // port
		{"198.51.100.1:40000", "203.0.113.1:5061", true}, // range end
		{"198.51.100.1:40000", "203.0.113.1:5062", false},
		{"198.51.100.1:53", "203.0.113.1:443", false},        // source port is not a destination port
		{"198.51.100.7:40000", "203.0.113.1:443", true},      // src
		{"[::ffff:198.51.100.7]:1", "203.0.113.1:443", true}, // mapped src
		{"[2001:db8:20::5]:1", "[2001:db8:99::1]:443", true},
		{"198.51.100.8:40000", "203.0.113.1:443", false},
	}
	for _, c := range cases {
		if got := b.Match(ap(c.src), ap(c.dst)); got != c.want {
			t.Errorf("Match(%s, %s) = %v, want %v", c.src, c.dst, got, c.want)
		}
	}
	var empty Bypass
	if empty.Match(ap("198.51.100.1:1"), ap("192.0.2.1:53")) {
		t.Error("empty bypass matched")
	}
}

func BenchmarkBypassMatch(b *testing.B) {
	by := Bypass{Dsts: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}, Ports: []PortRange{{5060, 5061}}}
	src, dst := netip.MustParseAddrPort("198.51.100.1:40000"), netip.MustParseAddrPort("[2001:db8::1]:443")
	for b.Loop() {
		by.Match(src, dst)
	}
}

func TestNativeUplink(t *testing.T) {
	p := DefaultParams()
	cases := []struct {
		name      string
		preferred string
		ups       []UplinkState
		want      string
	}{
		{"none preferred", "", []UplinkState{dsl(true, 15*ms, 0, 0), lte(Overflow, true, 35*ms, 0, 0)}, ""},
		{"preferred alive", "dsl", []UplinkState{dsl(true, 15*ms, 0, 0), lte(Overflow, true, 35*ms, 0, 0)}, "dsl"},
		{"preferred alive though a backup by role", "lte", []UplinkState{dsl(true, 15*ms, 0, 0), lte(Overflow, true, 35*ms, 0, 0)}, "lte"},
		{"preferred dead: the policy's first", "dsl", []UplinkState{dsl(false, 0, 0, 0), lte(Overflow, true, 35*ms, 0, 0)}, "lte"},
		{"preferred dead: a backup standing in", "dsl", []UplinkState{dsl(false, 0, 0, 0), lte(Backup, true, 35*ms, 0, 0)}, "lte"},
		{"overflow preferred and dead: back to the primary", "lte", []UplinkState{dsl(true, 15*ms, 0, 0), lte(Overflow, false, 0, 0, 0)}, "dsl"},
		{"nothing alive: preferred", "dsl", []UplinkState{dsl(false, 0, 0, 0), lte(Overflow, false, 0, 0, 0)}, "dsl"},
		{"unknown preferred: the policy's first", "sat", []UplinkState{dsl(true, 15*ms, 0, 0), lte(Overflow, true, 35*ms, 0, 0)}, "dsl"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := Decide(t0, c.ups, Decision{}, p)
			if got := NativeUplink(c.preferred, d, c.ups); got != c.want {
				t.Errorf("NativeUplink(%q) = %q, want %q", c.preferred, got, c.want)
			}
		})
	}
}
