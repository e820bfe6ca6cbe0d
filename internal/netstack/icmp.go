package netstack

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// unreachable builds the ICMP or ICMPv6 destination-unreachable error for a
// SYN (syn is its IP header followed by its TCP header), from the address
// the SYN was sent to, back to its sender, with headroom bytes in front. The
// quote includes the SYN's sequence number, which the LAN host's kernel
// checks before it fails the connect. It returns nil when syn cannot be
// quoted.
func unreachable(syn []byte, proto tcpip.NetworkProtocolNumber, how Reject, headroom int) []byte {
	switch proto {
	case header.IPv4ProtocolNumber:
		return unreachable4(syn, how, headroom)
	case header.IPv6ProtocolNumber:
		return unreachable6(syn, how, headroom)
	}
	return nil
}

func unreachable4(syn []byte, how Reject, headroom int) []byte {
	if len(syn) < header.IPv4MinimumSize {
		return nil
	}
	ihl := int(syn[0]&0xf) * 4
	if ihl < header.IPv4MinimumSize || len(syn) < ihl+8 {
		return nil
	}
	var code byte
	switch how {
	case RejectNetUnreachable:
		code = 0 // net unreachable -> ENETUNREACH
	case RejectHostUnreachable:
		code = 1 // host unreachable -> EHOSTUNREACH
	case RejectAdminProhibited:
		code = 13 // communication administratively prohibited -> EHOSTUNREACH
	}
	// RFC 792: the original IP header plus the first 64 bits of its data.
	quote := syn[:ihl+8]
	total := header.IPv4MinimumSize + header.ICMPv4MinimumSize + len(quote)
	b := make([]byte, headroom+total)
	ip := b[headroom:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(total))
	ip[8] = 64 // TTL
	ip[9] = byte(header.ICMPv4ProtocolNumber)
	copy(ip[12:16], syn[16:20]) // from the SYN's destination
	copy(ip[16:20], syn[12:16]) // to its source
	binary.BigEndian.PutUint16(ip[10:], ^checksum.Checksum(ip[:header.IPv4MinimumSize], 0))
	icmp := ip[header.IPv4MinimumSize:]
	icmp[0] = byte(header.ICMPv4DstUnreachable)
	icmp[1] = code
	copy(icmp[header.ICMPv4MinimumSize:], quote)
	binary.BigEndian.PutUint16(icmp[2:], ^checksum.Checksum(icmp, 0))
	return b
}

func unreachable6(syn []byte, how Reject, headroom int) []byte {
	// Only a SYN whose next header is TCP can be quoted as the kernel
	// expects; extension headers are not kept.
	if len(syn) < header.IPv6MinimumSize+8 || syn[6] != byte(header.TCPProtocolNumber) {
		return nil
	}
	var code byte
	switch how {
	case RejectNetUnreachable:
		code = 0 // no route to destination -> ENETUNREACH
	case RejectAdminProhibited:
		code = 1 // administratively prohibited -> EACCES
	case RejectHostUnreachable:
		code = 3 // address unreachable -> EHOSTUNREACH
	}
	// RFC 4443: as much of the packet as fits in the minimum MTU; the SYN's
	// headers always do.
	quote := syn
	plen := header.ICMPv6MinimumSize + len(quote)
	b := make([]byte, headroom+header.IPv6MinimumSize+plen)
	ip := b[headroom:]
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(plen))
	ip[6] = byte(header.ICMPv6ProtocolNumber)
	ip[7] = 64                 // hop limit
	copy(ip[8:24], syn[24:40]) // from the SYN's destination
	copy(ip[24:40], syn[8:24]) // to its source
	icmp := ip[header.IPv6MinimumSize:]
	icmp[0] = byte(header.ICMPv6DstUnreachable)
	icmp[1] = code
	copy(icmp[header.ICMPv6MinimumSize:], quote)
	// Checksum over the pseudo-header (RFC 8200 section 8.1) and the message.
	var pseudo [40]byte
	copy(pseudo[0:32], ip[8:40])
	binary.BigEndian.PutUint32(pseudo[32:], uint32(plen))
	pseudo[39] = byte(header.ICMPv6ProtocolNumber)
	binary.BigEndian.PutUint16(icmp[2:], ^checksum.Checksum(icmp, checksum.Checksum(pseudo[:], 0)))
	return b
}
