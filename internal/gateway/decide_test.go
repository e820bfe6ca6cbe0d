package gateway

import (
	"net/netip"
	"testing"
	"time"

	"hybridgw/internal/config"
	"hybridgw/internal/convert"
)

// These tests pin each rule of docs/operator-guide.md ("Cookie
// authentication vs source authentication", "Egress", "What hag refuses to
// dial") to a row, so that deleting a check fails one without root.

var (
	keyA = []byte("0123456789abcdef-key-of-cpe-a")
	keyB = []byte("0123456789abcdef-key-of-cpe-b")
	keyC = []byte("0123456789abcdef-next-key-of-cpe-a")
	now  = time.Unix(1_800_000_000, 0)
)

func decideConfig() *config.HAG {
	pp := func(ss ...string) []netip.Prefix {
		var ps []netip.Prefix
		for _, s := range ss {
			ps = append(ps, netip.MustParsePrefix(s))
		}
		return ps
	}
	return &config.HAG{
		CPEs: []config.CPE{
			{ID: "both", Auth: "cookie+source", CookieKeys: []config.CPEKey{{ID: 0, Raw: keyA}, {ID: 1, Raw: keyC}},
				WAN: pp("2001:db8:d5::/64", "198.51.100.0/28"), Clients: pp("2001:db8:10::/56", "192.0.2.0/28")},
			{ID: "cookie", Auth: "cookie", CookieKeys: []config.CPEKey{{ID: 5, Raw: keyB}},
				WAN: pp("2001:db8:c0::/64"), Clients: pp("2001:db8:20::/56")},
			{ID: "src", Auth: "source",
				WAN: pp("2001:db8:5c::/64"), Clients: pp("2001:db8:30::/56")},
		},
		Egress: config.Egress{IPv6: "preserve", IPv4: "share",
			Src4: netip.MustParseAddr("203.0.113.1"), Src6: netip.MustParseAddr("2001:db8:ff::1")},
		Limits: config.HAGLimits{CookieMaxSkew: 2 * time.Minute},
	}
}

func TestAuthorize(t *testing.T) {
	dst := netip.MustParseAddrPort("[2001:db8:99::1]:443")
	other := netip.MustParseAddrPort("[2001:db8:99::2]:443")
	keyID := map[string]uint8{string(keyA): 0, string(keyB): 5, string(keyC): 1}
	cookie := func(key []byte, id string, at time.Time, d netip.AddrPort) []byte {
		c, err := convert.MakeCookie(convert.CookieKey{ID: keyID[string(key)], Secret: key}, id, at, d, netip.AddrPort{})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	withID := func(id uint8, key []byte, cpe string) []byte {
		c, err := convert.MakeCookie(convert.CookieKey{ID: id, Secret: key}, cpe, now, dst, netip.AddrPort{})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, tc := range []struct {
		name   string
		peer   string
		cookie []byte
		want   string            // CPE id; "" when refused
		code   convert.ErrorCode // when refused
		reason string            // hag_refusals_total reason, when refused
	}{
		{"cookie+source: good cookie from inside wan_prefixes", "2001:db8:d5::7", cookie(keyA, "both", now, dst), "both", 0, ""},
		{"cookie+source: the next key of a rotation", "2001:db8:d5::7", cookie(keyC, "both", now, dst), "both", 0, ""},
		{"cookie+source: good cookie from outside wan_prefixes", "2001:db8:77::7", cookie(keyA, "both", now, dst), "", convert.NotAuthorized, ""},
		{"cookie+source: v4-mapped peer inside wan_prefixes", "::ffff:198.51.100.3", cookie(keyA, "both", now, dst), "both", 0, ""},
		{"cookie+source: no cookie from inside is Missing Cookie", "2001:db8:d5::7", nil, "", convert.MissingCookie, ""},
		{"cookie: good cookie from anywhere", "2001:db8:77::7", cookie(keyB, "cookie", now, dst), "cookie", 0, ""},
		{"cookie: no cookie from its wan_prefixes is Missing Cookie", "2001:db8:c0::7", nil, "", convert.MissingCookie, ""},
		{"cookie: signed with another CPE's key", "2001:db8:c0::7", withID(5, keyA, "cookie"), "", convert.NotAuthorized, "cookie_invalid"},
		{"cookie: a key id the CPE does not have", "2001:db8:c0::7", withID(0, keyB, "cookie"), "", convert.NotAuthorized, "cookie_unknown_key"},
		{"cookie: one key's id with the other key's secret", "2001:db8:d5::7", withID(1, keyA, "both"), "", convert.NotAuthorized, "cookie_invalid"},
		{"cookie: for another destination", "2001:db8:c0::7", cookie(keyB, "cookie", now, other), "", convert.NotAuthorized, "cookie_invalid"},
		{"cookie: older than cookie_max_skew", "2001:db8:c0::7", cookie(keyB, "cookie", now.Add(-3*time.Minute), dst), "", convert.NotAuthorized, "cookie_expired"},
		{"cookie: names an unknown CPE", "2001:db8:c0::7", cookie(keyB, "nobody", now, dst), "", convert.NotAuthorized, "cookie_unknown_cpe"},
		{"source: from inside wan_prefixes without cookie", "2001:db8:5c::7", nil, "src", 0, ""},
		{"source: a cookie naming a source CPE is refused", "2001:db8:5c::7", cookie(keyA, "src", now, dst), "", convert.NotAuthorized, "cookie_unknown_cpe"},
		{"source: from outside any wan_prefixes", "2001:db8:77::7", nil, "", convert.NotAuthorized, ""},
		{"unknown source, no cookie", "203.0.113.9", nil, "", convert.NotAuthorized, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &convert.Msg{Connect: convert.Connect{Dst: dst}, Cookie: tc.cookie}
			c, ck, r := authorize(decideConfig(), netip.MustParseAddr(tc.peer), m, now)
			switch {
			case tc.want != "" && r != nil:
				t.Fatalf("refused: %v", r)
			case tc.want != "" && c.ID != tc.want:
				t.Fatalf("authorised as %q, want %q", c.ID, tc.want)
			case tc.want == "" && r == nil:
				t.Fatalf("authorised as %q, want %v", c.ID, tc.code)
			case tc.want == "" && r.code != tc.code:
				t.Fatalf("refused with %v, want %v (%s)", r.code, tc.code, r.why)
			case tc.want == "" && r.reason != tc.reason:
				t.Fatalf("refusal counted as %q, want %q (%s)", r.reason, tc.reason, r.why)
			case tc.want != "" && (ck != nil) != (tc.cookie != nil):
				t.Fatalf("verified cookie %+v for a request with cookie %x", ck, tc.cookie)
			}
		})
	}
}

func TestCheckDestination(t *testing.T) {
	own := func(a netip.Addr) bool { return a == netip.MustParseAddr("2001:db8:ff::1") }
	allow := []netip.Prefix{netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("198.51.100.0/24"),
		netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("fe80::/10")}
	deny := []netip.Prefix{netip.MustParsePrefix("198.51.100.0/25")}
	for _, tc := range []struct {
		dst    string
		reason string // "" when allowed
	}{
		// Public destinations.
		{"2a00:1450::1", ""},
		{"8.8.8.8", ""},
		{"::ffff:8.8.8.8", ""},
		{"64:ff9b::808:808", ""}, // NAT64 of a public address
		{"2002:808:808::1", ""},  // 6to4 of a public address
		{"192.31.196.1", ""},     // AS112: globally reachable, left open
		// Never opened, allow or not.
		{"::", "destination_special"},
		{"0.0.0.0", "destination_special"},
		{"127.0.0.1", "destination_special"},
		{"::1", "destination_special"},
		{"::ffff:127.0.0.1", "destination_special"},
		{"169.254.169.254", "destination_special"}, // cloud metadata
		{"fe80::1", "destination_special"},
		{"ff02::1", "destination_special"},
		{"224.0.0.1", "destination_special"},
		{"239.1.2.3", "destination_special"},
		{"255.255.255.255", "destination_special"},
		{"64:ff9b::7f00:1", "destination_special"}, // NAT64 of loopback
		// One row per special-purpose range, closed by default.
		{"0.1.2.3", "destination_special"},
		{"10.9.9.9", "destination_special"},
		{"100.64.0.1", "destination_special"},
		{"100.127.255.254", "destination_special"},
		{"172.16.0.1", "destination_special"},
		{"172.31.255.254", "destination_special"},
		{"192.0.0.9", "destination_special"},
		{"192.0.2.1", "destination_special"},
		{"192.88.99.1", "destination_special"},
		{"192.168.1.1", "destination_special"},
		{"198.18.0.1", "destination_special"},
		{"198.19.255.254", "destination_special"},
		{"203.0.113.10", "destination_special"},
		{"240.0.0.1", "destination_special"},
		{"::ffff:10.0.0.1", "destination_special"},
		{"::10.0.0.1", "destination_special"}, // IPv4-compatible
		{"64:ff9b::a00:1", "destination_special"},
		{"64:ff9b::c0a8:101", "destination_special"},
		{"64:ff9b:1::1", "destination_special"},
		{"100::1", "destination_special"},
		{"2001::1", "destination_special"},
		{"2001:2::1", "destination_special"},
		{"3fff::1", "destination_special"},
		{"5f00::1", "destination_special"},
		{"fc00::1", "destination_special"},
		{"fd12:3456::1", "destination_special"},
		{"fec0::1", "destination_special"},
		{"2002:a00:1::1", "destination_special"}, // 6to4 of private use
		// allow.destinations opens a special range, but not its neighbours.
		{"2001:db8:99::1", ""},
		{"198.51.100.200", ""},
		{"10.1.2.3", ""},
		{"10.2.0.1", "destination_special"},
		{"64:ff9b::a01:203", "destination_special"}, // allow is by destination, not by what NAT64 embeds
		// Own addresses and deny.destinations, even where allowed.
		{"2001:db8:ff::1", "destination_self"},
		{"198.51.100.5", "destination_denied"},
	} {
		t.Run(tc.dst, func(t *testing.T) {
			r := checkDestination(netip.MustParseAddr(tc.dst), own, allow, deny)
			switch {
			case tc.reason == "" && r != nil:
				t.Fatalf("refused: %v", r)
			case tc.reason != "" && r == nil:
				t.Fatalf("allowed, want refused (%s)", tc.reason)
			case r != nil && (r.reason != tc.reason || r.code != convert.NotAuthorized):
				t.Fatalf("refused %v/%s, want Not Authorized/%s (%s)", r.code, r.reason, tc.reason, r.why)
			}
		})
	}
}

func TestChooseSource(t *testing.T) {
	shared4 := netip.MustParseAddrPort("203.0.113.1:0")
	shared6 := netip.MustParseAddrPort("[2001:db8:ff::1]:0")
	preserved := func(s string) source {
		return source{Addr: netip.MustParseAddrPort(s), Transparent: true, Preserved: true}
	}
	for _, tc := range []struct {
		name    string
		v4      string // egress.ipv4 override
		peer    string
		dst     string
		client  string // Client Address TLV, "" absent
		want    source
		refused bool
	}{
		{"preserve: client address inside client_prefixes", "", "2001:db8:d5::7", "[2001:db8:99::1]:443", "[2001:db8:10::5]:4000", preserved("[2001:db8:10::5]:4000"), false},
		{"preserve: client address outside client_prefixes is refused", "", "2001:db8:d5::7", "[2001:db8:99::1]:443", "[2001:db8:20::5]:4000", source{}, true},
		{"client address of the other family falls back to shared", "", "2001:db8:d5::7", "[2001:db8:99::1]:443", "192.0.2.5:4000", source{Addr: shared6}, false},
		{"share: client address not used nor checked", "", "2001:db8:d5::7", "203.0.113.50:443", "198.51.100.200:4000", source{Addr: shared4}, false},
		{"preserve v4: client address inside", "preserve", "2001:db8:d5::7", "203.0.113.50:443", "192.0.2.5:4000", preserved("192.0.2.5:4000"), false},
		{"preserve v4: v6 client address, v4 destination falls back", "preserve", "2001:db8:d5::7", "203.0.113.50:443", "[2001:db8:10::5]:4000", source{Addr: shared4}, false},
		{"no client address: peer inside client_prefixes is preserved", "", "2001:db8:10::9", "[2001:db8:99::1]:443", "", preserved("[2001:db8:10::9]:0"), false},
		{"no client address: peer outside client_prefixes shares", "", "2001:db8:d5::7", "[2001:db8:99::1]:443", "", source{Addr: shared6}, false},
		{"no client address: peer of the other family shares", "preserve", "2001:db8:10::9", "203.0.113.50:443", "", source{Addr: shared4}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := decideConfig()
			if tc.v4 != "" {
				cfg.Egress.IPv4 = tc.v4
			}
			m := &convert.Msg{Connect: convert.Connect{Dst: netip.MustParseAddrPort(tc.dst)}}
			if tc.client != "" {
				m.ClientAddr = netip.MustParseAddrPort(tc.client)
			}
			got, r := chooseSource(cfg, &cfg.CPEs[0], netip.MustParseAddr(tc.peer), m)
			if (r != nil) != tc.refused {
				t.Fatalf("refusal %v, want refused=%v", r, tc.refused)
			}
			if r != nil && r.code != convert.NotAuthorized {
				t.Fatalf("code %v, want Not Authorized", r.code)
			}
			if got != tc.want {
				t.Fatalf("source %+v, want %+v", got, tc.want)
			}
		})
	}
}
