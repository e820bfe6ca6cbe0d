package linkem

import "encoding/binary"

// tcpOptMPTCP is the TCP option kind of every MPTCP option (RFC 8684 §3).
const tcpOptMPTCP = 30

// StripMPTCP overwrites every MPTCP option (TCP option kind 30) in an IPv4
// or IPv6 TCP packet with NOPs and patches the TCP checksum incrementally
// (RFC 1624), as the option-stripping middleboxes of RFC 8041 §3.1 do.
// Overwriting rather than removing keeps the data offset, lengths and the IP
// header untouched. It reports whether it changed the packet. Packets it
// cannot parse, non-first fragments and non-TCP packets are left alone.
func StripMPTCP(pkt []byte) bool {
	tcp := tcpSegment(pkt)
	if len(tcp) < 20 {
		return false
	}
	doff := int(tcp[12]>>4) * 4
	if doff < 20 || doff > len(tcp) {
		return false
	}
	changed := false
	for i := 20; i < doff; {
		kind := tcp[i]
		if kind == 0 { // end of option list
			break
		}
		if kind == 1 { // NOP
			i++
			continue
		}
		if i+1 >= doff {
			break
		}
		l := int(tcp[i+1])
		if l < 2 || i+l > doff {
			break // malformed: leave the rest as the endpoint will see it
		}
		if kind == tcpOptMPTCP {
			nopOut(tcp, i, i+l)
			changed = true
		}
		i += l
	}
	return changed
}

// nopOut sets tcp[s:e] to NOPs and fixes the checksum. The TCP header starts
// on an even offset of the pseudo-header sum, so the 16-bit words are
// aligned to tcp.
func nopOut(tcp []byte, s, e int) {
	as, ae := s&^1, (e+1)&^1
	old := sum16(tcp[as:ae])
	for i := s; i < e; i++ {
		tcp[i] = 1
	}
	nw := sum16(tcp[as:ae])
	// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m').
	hc := binary.BigEndian.Uint16(tcp[16:])
	acc := uint32(^hc) + uint32(^old) + uint32(nw)
	binary.BigEndian.PutUint16(tcp[16:], ^fold(acc))
}

// sum16 is the folded ones'-complement sum of b (even length).
func sum16(b []byte) uint16 {
	var acc uint32
	for i := 0; i+1 < len(b); i += 2 {
		acc += uint32(b[i])<<8 | uint32(b[i+1])
	}
	return fold(acc)
}

func fold(acc uint32) uint16 {
	for acc > 0xffff {
		acc = acc>>16 + acc&0xffff
	}
	return uint16(acc)
}

// IPv6 extension headers that may sit between the fixed header and TCP.
const (
	ipv6HopByHop = 0
	ipv6Routing  = 43
	ipv6Fragment = 44
	ipv6DestOpts = 60
	protoTCP     = 6
)

// tcpSegment returns the TCP header and payload of pkt, or nil if pkt is not
// a (first-fragment) TCP packet.
func tcpSegment(pkt []byte) []byte {
	if len(pkt) < 1 {
		return nil
	}
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) < 20 {
			return nil
		}
		ihl := int(pkt[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(pkt[2:]))
		if ihl < 20 || total < ihl || total > len(pkt) || pkt[9] != protoTCP {
			return nil
		}
		if binary.BigEndian.Uint16(pkt[6:])&0x1fff != 0 {
			return nil // not the first fragment: no TCP header here
		}
		return pkt[ihl:total]
	case 6:
		if len(pkt) < 40 {
			return nil
		}
		end := 40 + int(binary.BigEndian.Uint16(pkt[4:]))
		if end > len(pkt) {
			return nil
		}
		next, off := pkt[6], 40
		for {
			switch next {
			case protoTCP:
				return pkt[off:end]
			case ipv6HopByHop, ipv6Routing, ipv6DestOpts:
				if off+2 > end {
					return nil
				}
				next, off = pkt[off], off+(int(pkt[off+1])+1)*8
			case ipv6Fragment:
				if off+8 > end || binary.BigEndian.Uint16(pkt[off+2:])&0xfff8 != 0 {
					return nil
				}
				next, off = pkt[off], off+8
			default:
				return nil
			}
			if off > end {
				return nil
			}
		}
	}
	return nil
}
