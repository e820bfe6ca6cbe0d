// Package hostkey names the unit that per-host bounds count: one IPv4
// address, or one IPv6 /64, since a host picks any address in its /64 at
// will (privacy addresses) and must not escape a bound by rotating them.
package hostkey

import "net/netip"

// Of returns a's host: its /32 for IPv4 (IPv4-mapped IPv6 included), its
// /64 for IPv6.
func Of(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}
