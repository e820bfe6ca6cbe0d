package gateway

import "net/netip"

// specialRange is one entry of the IANA IPv4 and IPv6 Special-Purpose
// Address Registries (RFC 6890 and updates) that a converter facing the
// Internet must not dial unless the operator opens it: most are not
// globally reachable, so a request for them is an attempt to reach the
// operator's own networks through hag.
type specialRange struct {
	p    netip.Prefix
	name string
}

// specialRanges leaves out the registry's globally reachable entries
// (AS112 192.31.196.0/24 and 192.175.48.0/24, AMT 192.52.193.0/24, PCP and
// TURN anycast): they are ordinary Internet services. Loopback, link-local,
// multicast, broadcast and unspecified are refused before this table and
// cannot be opened by allow.destinations.
var specialRanges = func() []specialRange {
	rs := []struct{ p, name string }{
		{"0.0.0.0/8", "this network"},
		{"10.0.0.0/8", "private use"},
		{"100.64.0.0/10", "shared address space"},
		{"172.16.0.0/12", "private use"},
		{"192.0.0.0/24", "IETF protocol assignments"},
		{"192.0.2.0/24", "documentation"},
		{"192.88.99.0/24", "6to4 relay anycast (deprecated)"},
		{"192.168.0.0/16", "private use"},
		{"198.18.0.0/15", "benchmarking"},
		{"198.51.100.0/24", "documentation"},
		{"203.0.113.0/24", "documentation"},
		{"240.0.0.0/4", "reserved"},
		{"::/96", "IPv4-compatible (deprecated)"},
		{"64:ff9b:1::/48", "local-use NAT64"},
		{"100::/64", "discard-only"},
		{"2001::/23", "IETF protocol assignments"},
		{"2001:db8::/32", "documentation"},
		{"3fff::/20", "documentation"},
		{"5f00::/16", "SRv6 SIDs"},
		{"fc00::/7", "unique local"},
		{"fec0::/10", "site-local (deprecated)"},
	}
	out := make([]specialRange, len(rs))
	for i, r := range rs {
		out[i] = specialRange{netip.MustParsePrefix(r.p), r.name}
	}
	return out
}()

var (
	nat64WKP = netip.MustParsePrefix("64:ff9b::/96")
	sixTo4   = netip.MustParsePrefix("2002::/16")
)

// embeddedV4 returns the IPv4 address a NAT64 well-known-prefix or 6to4
// address leads to: the NAT64 or the 6to4 relay dials it on hag's behalf,
// so it is checked as if hag dialled it itself.
func embeddedV4(a netip.Addr) (netip.Addr, bool) {
	b := a.As16()
	switch {
	case nat64WKP.Contains(a):
		return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}), true
	case sixTo4.Contains(a):
		return netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}), true
	}
	return netip.Addr{}, false
}

// hardSpecial names the classes no allow list opens: hag dialling them
// reaches hag's own host or its link, never a server.
func hardSpecial(a netip.Addr) string {
	switch {
	case !a.IsValid() || a.IsUnspecified():
		return "unspecified"
	case a.IsLoopback():
		return "loopback"
	case a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast():
		return "link-local"
	case a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "multicast or broadcast"
	}
	return ""
}

// specialPurpose says which special-purpose class dst (unmapped) is in, ""
// when none, and whether allow can open it.
func specialPurpose(dst netip.Addr) (name string, hard bool) {
	if n := hardSpecial(dst); n != "" {
		return n, true
	}
	if v4, ok := embeddedV4(dst); ok {
		if n, h := specialPurpose(v4); n != "" {
			return "translated to " + v4.String() + ", " + n, h
		}
		return "", false
	}
	for _, r := range specialRanges {
		if r.p.Contains(dst) {
			return r.name, false
		}
	}
	return "", false
}
