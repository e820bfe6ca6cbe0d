package netstack

import (
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// tcpPacket builds an IPv4 or IPv6 TCP packet with a correct checksum.
func tcpPacket(src, dst netip.Addr, payload []byte) []byte {
	s, d := tcpip.AddrFromSlice(src.AsSlice()), tcpip.AddrFromSlice(dst.AsSlice())
	ipLen := header.IPv4MinimumSize
	if src.Is6() {
		ipLen = header.IPv6MinimumSize
	}
	p := make([]byte, ipLen+header.TCPMinimumSize+len(payload))
	if src.Is4() {
		ip := header.IPv4(p)
		ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(p)), TTL: 64, Protocol: uint8(header.TCPProtocolNumber), SrcAddr: s, DstAddr: d})
		ip.SetChecksum(^ip.CalculateChecksum())
	} else {
		header.IPv6(p).Encode(&header.IPv6Fields{PayloadLength: uint16(len(p) - ipLen), TransportProtocol: header.TCPProtocolNumber, HopLimit: 64, SrcAddr: s, DstAddr: d})
	}
	tcp := header.TCP(p[ipLen:])
	tcp.Encode(&header.TCPFields{SrcPort: 40000, DstPort: 443, SeqNum: 1, AckNum: 1, DataOffset: header.TCPMinimumSize, Flags: header.TCPFlagAck, WindowSize: 65535})
	copy(tcp[header.TCPMinimumSize:], payload)
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, s, d, uint16(len(tcp)))
	tcp.SetChecksum(^checksum.Checksum(tcp, xsum))
	return p
}

// TestChecksumOK covers the receive path's own verification of packets the
// kernel did not validate: a flipped bit anywhere in a TCP segment must be
// caught, since gVisor is told not to check.
func TestChecksumOK(t *testing.T) {
	v4s, v4d := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("203.0.113.7")
	v6s, v6d := netip.MustParseAddr("2001:db8:1::1"), netip.MustParseAddr("2001:db8:50::7")
	payload := make([]byte, 3000) // larger than the MTU, as after GRO
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	flip := func(p []byte, i int) []byte { p[i] ^= 0x10; return p }
	for _, tc := range []struct {
		name string
		pkt  []byte
		ok   bool
	}{
		{"IPv4 intact", tcpPacket(v4s, v4d, payload), true},
		{"IPv4 payload bit flipped", flip(tcpPacket(v4s, v4d, payload), 20+20+1234), false},
		{"IPv4 port bit flipped", flip(tcpPacket(v4s, v4d, payload), 20+1), false},
		{"IPv4 truncated", tcpPacket(v4s, v4d, payload)[:1000], false},
		{"IPv6 intact", tcpPacket(v6s, v6d, payload), true},
		{"IPv6 payload bit flipped", flip(tcpPacket(v6s, v6d, payload), 40+20+2999), false},
		{"IPv6 source bit flipped", flip(tcpPacket(v6s, v6d, payload), 8), false},
		{"IPv6 hop-by-hop header", func() []byte { p := tcpPacket(v6s, v6d, payload); p[6] = 0; return p }(), false},
		{"IPv6 UDP passes", func() []byte { p := tcpPacket(v6s, v6d, payload); p[6] = 17; return p }(), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := checksumOK(tc.pkt); got != tc.ok {
				t.Errorf("checksumOK = %v, want %v", got, tc.ok)
			}
		})
	}
}
