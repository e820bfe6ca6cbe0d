package linkem

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// tcpChecksum computes the TCP checksum of seg over the pseudo-header of
// pkt's IP version, from scratch.
func tcpChecksum(pkt, seg []byte) uint16 {
	var acc uint32
	add := func(b []byte) {
		for i := 0; i < len(b); i += 2 {
			w := uint32(b[i]) << 8
			if i+1 < len(b) {
				w |= uint32(b[i+1])
			}
			acc += w
		}
	}
	if pkt[0]>>4 == 4 {
		add(pkt[12:20])
	} else {
		add(pkt[8:40])
	}
	acc += protoTCP + uint32(len(seg))
	saved := binary.BigEndian.Uint16(seg[16:])
	seg[16], seg[17] = 0, 0
	add(seg)
	binary.BigEndian.PutUint16(seg[16:], saved)
	return ^fold(acc)
}

// mpCapable is an MP_CAPABLE option as in a SYN (RFC 8684 §3.1), 12 bytes.
var mpCapable = []byte{30, 12, 0x01, 0x81, 1, 2, 3, 4, 5, 6, 7, 8}

// buildTCP returns an IPv4 or IPv6 TCP packet with the given options (padded
// to a multiple of 4 with EOL) and payload, with a correct checksum.
// hopByHop adds an IPv6 hop-by-hop header in front of TCP.
func buildTCP(v6, hopByHop bool, opts, payload []byte) []byte {
	for len(opts)%4 != 0 {
		opts = append(opts, 0)
	}
	tcp := make([]byte, 20+len(opts)+len(payload))
	binary.BigEndian.PutUint16(tcp[0:], 40000)
	binary.BigEndian.PutUint16(tcp[2:], 5201)
	binary.BigEndian.PutUint32(tcp[4:], 0x01020304)
	tcp[12] = byte((20+len(opts))/4) << 4
	tcp[13] = 0x02 // SYN
	binary.BigEndian.PutUint16(tcp[14:], 64240)
	copy(tcp[20:], opts)
	copy(tcp[20+len(opts):], payload)
	var pkt []byte
	if !v6 {
		ip := make([]byte, 20)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(tcp)))
		ip[8], ip[9] = 64, protoTCP
		copy(ip[12:], []byte{192, 0, 2, 1, 192, 0, 2, 2})
		pkt = append(ip, tcp...)
	} else {
		ip := make([]byte, 40)
		ip[0] = 0x60
		ip[6], ip[7] = protoTCP, 64
		copy(ip[8:], []byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 14: 0, 15: 1})
		copy(ip[24:], []byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 14: 0, 15: 2})
		var ext []byte
		if hopByHop {
			ip[6] = ipv6HopByHop
			ext = []byte{protoTCP, 0, 1, 4, 0, 0, 0, 0} // PadN
		}
		binary.BigEndian.PutUint16(ip[4:], uint16(len(ext)+len(tcp)))
		pkt = append(append(ip, ext...), tcp...)
	}
	seg := tcpSegment(pkt)
	binary.BigEndian.PutUint16(seg[16:], tcpChecksum(pkt, seg))
	return pkt
}

func TestStripMPTCP(t *testing.T) {
	mss := []byte{2, 4, 0x05, 0xb4}
	sackPerm := []byte{4, 2}
	ts := []byte{8, 10, 1, 2, 3, 4, 0, 0, 0, 0}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, tc := range []struct {
		name      string
		v6, hbh   bool
		opts      []byte
		wantStrip bool
	}{
		{"v4 syn", false, false, cat(mss, sackPerm, ts, []byte{1, 3, 3, 7}, mpCapable), true},
		{"v6 syn", true, false, cat(mss, sackPerm, ts, []byte{1, 3, 3, 7}, mpCapable), true},
		{"v6 hop-by-hop", true, true, cat(mss, mpCapable), true},
		// An option on an odd offset straddles 16-bit words.
		{"v4 odd offset", false, false, cat([]byte{1}, mpCapable, []byte{1, 1, 1}), true},
		{"v4 two options", false, false, cat(mpCapable, []byte{30, 4, 0x20, 0}), true},
		{"v4 none", false, false, cat(mss, sackPerm, ts), false},
		{"v6 none", true, false, cat(mss, sackPerm), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkt := buildTCP(tc.v6, tc.hbh, tc.opts, []byte("payload!x"))
			orig := bytes.Clone(pkt)
			if got := StripMPTCP(pkt); got != tc.wantStrip {
				t.Fatalf("StripMPTCP = %v, want %v", got, tc.wantStrip)
			}
			seg := tcpSegment(pkt)
			if got, want := binary.BigEndian.Uint16(seg[16:]), tcpChecksum(pkt, seg); got != want {
				t.Errorf("checksum %#04x after strip, recomputed %#04x", got, want)
			}
			if !tc.wantStrip && !bytes.Equal(pkt, orig) {
				t.Error("packet without MPTCP options changed")
			}
			// No kind 30 left, and nothing outside the options changed.
			doff := int(seg[12]>>4) * 4
			for i := 20; i < doff; {
				switch k := seg[i]; {
				case k == 0:
					i = doff
				case k == 1:
					i++
				default:
					if k == tcpOptMPTCP {
						t.Fatalf("option 30 left at %d", i)
					}
					i += int(seg[i+1])
				}
			}
			origSeg := tcpSegment(orig)
			if !bytes.Equal(seg[doff:], origSeg[doff:]) || !bytes.Equal(seg[:16], origSeg[:16]) {
				t.Error("strip changed bytes outside the options")
			}
		})
	}
}

func TestStripMPTCPIgnoresOthers(t *testing.T) {
	pkt := buildTCP(false, false, mpCapable, nil)
	// Every truncation: no panic, and (IPv4 total length now lies) no change.
	for i := range len(pkt) {
		p := bytes.Clone(pkt[:i])
		if StripMPTCP(p) {
			t.Errorf("stripped a packet truncated to %d bytes", i)
		}
	}
	udp := bytes.Clone(pkt)
	udp[9] = 17
	if StripMPTCP(udp) {
		t.Error("stripped a UDP packet")
	}
	frag := bytes.Clone(pkt)
	frag[7] = 1 // fragment offset 8
	if StripMPTCP(frag) {
		t.Error("stripped a non-first fragment")
	}
}

func FuzzStripMPTCP(f *testing.F) {
	f.Add(buildTCP(false, false, mpCapable, []byte("x")))
	f.Add(buildTCP(true, true, append([]byte{1}, mpCapable...), nil))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		seg := tcpSegment(pkt)
		valid := len(seg) >= 20 && binary.BigEndian.Uint16(seg[16:]) == tcpChecksum(pkt, seg)
		StripMPTCP(pkt)
		if valid {
			if got, want := binary.BigEndian.Uint16(seg[16:]), tcpChecksum(pkt, seg); got != want {
				t.Fatalf("valid checksum broken: %#04x, want %#04x", got, want)
			}
		}
	})
}
