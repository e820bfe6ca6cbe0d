package mptcp

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
)

// TestDestroyRequest checks the struct inet_diag_req_v2 layout that
// SOCK_DESTROY takes, field by field.
func TestDestroyRequest(t *testing.T) {
	ne := binary.NativeEndian
	for _, tc := range []struct {
		name          string
		local, remote string
		family        byte
		src, dst      []byte
	}{
		{"IPv6", "[2001:db8:d5::2]:5124", "[2001:db8:d7::1]:40000", afInet6,
			netip.MustParseAddr("2001:db8:d5::2").AsSlice(), netip.MustParseAddr("2001:db8:d7::1").AsSlice()},
		{"IPv4, mapped as a dual-stack socket reports it", "[::ffff:198.51.100.2]:5124", "[::ffff:192.0.2.1]:40000", afInet,
			append([]byte{198, 51, 100, 2}, make([]byte, 12)...), append([]byte{192, 0, 2, 1}, make([]byte, 12)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := appendDestroyRequest(nil, netip.MustParseAddrPort(tc.local), netip.MustParseAddrPort(tc.remote))
			if len(b) != diagReqV2Len {
				t.Fatalf("request is %d bytes, want %d", len(b), diagReqV2Len)
			}
			if b[0] != tc.family || b[1] != ipprotoTCP || ne.Uint32(b[4:]) != diagAllStates {
				t.Errorf("header % x: want family %d, protocol TCP, all states", b[:8], tc.family)
			}
			id := b[diagSockIDStart:]
			if sp, dp := binary.BigEndian.Uint16(id[0:]), binary.BigEndian.Uint16(id[2:]); sp != 5124 || dp != 40000 {
				t.Errorf("ports %d -> %d, want 5124 -> 40000 (big-endian)", sp, dp)
			}
			if !bytes.Equal(id[4:20], tc.src) || !bytes.Equal(id[20:36], tc.dst) {
				t.Errorf("addresses % x -> % x, want % x -> % x", id[4:20], id[20:36], tc.src, tc.dst)
			}
			if ne.Uint32(id[36:]) != 0 || ne.Uint32(id[40:]) != diagNoCookie || ne.Uint32(id[44:]) != diagNoCookie {
				t.Errorf("interface and cookie % x, want 0 and no cookie", id[36:48])
			}
		})
	}
}
