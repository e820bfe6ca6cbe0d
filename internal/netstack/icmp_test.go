package netstack

import (
	"bytes"
	"encoding/binary"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// synV4 and synV6 are SYNs from a LAN host to 203.0.113.7:443 /
// [2001:db8:50::7]:443 with sequence number 0x01020304.
func synV4() []byte {
	b := make([]byte, 20+20)
	b[0], b[9] = 0x45, 6
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	copy(b[12:], []byte{192, 0, 2, 1})
	copy(b[16:], []byte{203, 0, 113, 7})
	tcpHdr(b[20:])
	return b
}

func synV6() []byte {
	b := make([]byte, 40+20)
	b[0], b[6], b[7] = 0x60, 6, 64
	binary.BigEndian.PutUint16(b[4:], 20)
	b[8], b[9], b[23] = 0x20, 0x01, 1 // 2001::1 is enough here
	b[24], b[25], b[39] = 0x20, 0x01, 7
	tcpHdr(b[40:])
	return b
}

func tcpHdr(t []byte) {
	binary.BigEndian.PutUint16(t[0:], 40000)
	binary.BigEndian.PutUint16(t[2:], 443)
	binary.BigEndian.PutUint32(t[4:], 0x01020304)
	t[12], t[13] = 5<<4, byte(header.TCPFlagSyn)
}

func TestUnreachable4(t *testing.T) {
	syn := synV4()
	for _, tc := range []struct {
		how  Reject
		code byte
	}{{RejectNetUnreachable, 0}, {RejectHostUnreachable, 1}, {RejectAdminProhibited, 13}} {
		b := unreachable(syn, header.IPv4ProtocolNumber, tc.how, Offset)
		if b == nil {
			t.Fatalf("%v: nil", tc.how)
		}
		ip := header.IPv4(b[Offset:])
		if !ip.IsValid(len(ip)) || !ip.IsChecksumValid() {
			t.Fatalf("%v: invalid IPv4 header", tc.how)
		}
		if ip.SourceAddress().String() != "203.0.113.7" || ip.DestinationAddress().String() != "192.0.2.1" {
			t.Errorf("%v: %v -> %v", tc.how, ip.SourceAddress(), ip.DestinationAddress())
		}
		icmp := header.ICMPv4(ip.Payload())
		if icmp.Type() != header.ICMPv4DstUnreachable || byte(icmp.Code()) != tc.code {
			t.Errorf("%v: type %d code %d", tc.how, icmp.Type(), icmp.Code())
		}
		if checksum.Checksum(icmp, 0) != 0xffff {
			t.Errorf("%v: bad ICMP checksum", tc.how)
		}
		// The quote is the IP header and the first 8 bytes of TCP, which
		// carry the sequence number the host checks.
		if !bytes.Equal(icmp.Payload(), syn[:28]) {
			t.Errorf("%v: quote %x", tc.how, icmp.Payload())
		}
	}
}

func TestUnreachable6(t *testing.T) {
	syn := synV6()
	for _, tc := range []struct {
		how  Reject
		code byte
	}{{RejectNetUnreachable, 0}, {RejectAdminProhibited, 1}, {RejectHostUnreachable, 3}} {
		b := unreachable(syn, header.IPv6ProtocolNumber, tc.how, Offset)
		if b == nil {
			t.Fatalf("%v: nil", tc.how)
		}
		ip := header.IPv6(b[Offset:])
		if !ip.IsValid(len(ip)) || ip.TransportProtocol() != header.ICMPv6ProtocolNumber {
			t.Fatalf("%v: invalid IPv6 header", tc.how)
		}
		if ip.SourceAddress() != header.IPv6(syn).DestinationAddress() || ip.DestinationAddress() != header.IPv6(syn).SourceAddress() {
			t.Errorf("%v: addresses not swapped", tc.how)
		}
		icmp := header.ICMPv6(ip.Payload())
		if icmp.Type() != header.ICMPv6DstUnreachable || byte(icmp.Code()) != tc.code {
			t.Errorf("%v: type %d code %d", tc.how, icmp.Type(), icmp.Code())
		}
		want := header.ICMPv6Checksum(header.ICMPv6ChecksumParams{
			Header: icmp[:header.ICMPv6MinimumSize], Src: ip.SourceAddress(), Dst: ip.DestinationAddress(),
			PayloadCsum: checksum.Checksum(icmp.Payload(), 0), PayloadLen: len(icmp.Payload()),
		})
		if icmp.Checksum() != want {
			t.Errorf("%v: checksum %#x, want %#x", tc.how, icmp.Checksum(), want)
		}
		if !bytes.Equal(icmp.Payload(), syn) {
			t.Errorf("%v: quote differs", tc.how)
		}
	}
	// A SYN behind an extension header cannot be quoted.
	ext := synV6()
	ext[6] = 0
	if unreachable(ext, header.IPv6ProtocolNumber, RejectHostUnreachable, Offset) != nil {
		t.Error("quoted a SYN with an extension header")
	}
}

func TestConfigValidate(t *testing.T) {
	_, err := New(Config{MaxInFlight: 10, MaxInFlightPerHost: 20})
	if err == nil {
		t.Fatal("empty config accepted")
	}
	for _, want := range []string{"Device is required", "MTU 0", "Dial is required", "exactly one of Handle and Start", "MaxInFlightPerHost 20 exceeds"} {
		if !bytes.Contains([]byte(err.Error()), []byte(want)) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}
