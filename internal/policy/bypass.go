package policy

import "net/netip"

// PortRange is an inclusive range of destination ports.
type PortRange struct{ Lo, Hi uint16 }

// Bypass selects LAN flows that are routed natively instead of converted.
// A flow matches when any one list matches it: a destination prefix, a
// destination port range, or a source prefix. The lists are alternatives,
// as the entries of an RFC 8157 filter list are, so an empty list simply
// contributes nothing.
type Bypass struct {
	Dsts  []netip.Prefix
	Ports []PortRange
	Srcs  []netip.Prefix
}

// Match reports whether the flow from src to dst bypasses conversion.
// IPv4-mapped IPv6 addresses match IPv4 prefixes: a dual-stack socket may
// report either form for the same host.
func (b *Bypass) Match(src, dst netip.AddrPort) bool {
	d, s := dst.Addr().Unmap(), src.Addr().Unmap()
	for _, p := range b.Dsts {
		if p.Contains(d) {
			return true
		}
	}
	for _, r := range b.Ports {
		if dst.Port() >= r.Lo && dst.Port() <= r.Hi {
			return true
		}
	}
	for _, p := range b.Srcs {
		if p.Contains(s) {
			return true
		}
	}
	return false
}

// NativeUplink is the uplink what the LAN sends natively (non-TCP and
// bypassed TCP) should leave on: preferred (bypass.uplink) while it is
// alive; else the decision's first uplink, the live one new flows start
// on; else, with nothing alive, preferred still, since there is nowhere
// better to send. "" when no uplink is preferred (the router's own
// routing decides).
func NativeUplink(preferred string, d Decision, ups []UplinkState) string {
	if preferred == "" {
		return ""
	}
	for _, u := range ups {
		if u.Name == preferred && u.Alive {
			return preferred
		}
	}
	if d.First != "" {
		return d.First
	}
	return preferred
}
