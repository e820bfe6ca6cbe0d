package mptcp

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
	"time"
)

var le = binary.LittleEndian

// infoBytes is a struct mptcp_info laid out by hand (Linux 6.18, 96 bytes).
func infoBytes() []byte {
	b := make([]byte, InfoLen)
	copy(b, []byte{1, 2, 3, 4, 5, 6}) // subflows .. add_addr_accepted_max
	le.PutUint32(b[8:], InfoFlagRemoteKeyReceived)
	le.PutUint32(b[12:], 0xcafe)
	le.PutUint64(b[16:], 100)
	le.PutUint64(b[24:], 90)
	le.PutUint64(b[32:], 200)
	b[40], b[41], b[42] = 1, 2, 1
	le.PutUint32(b[44:], 3)
	le.PutUint64(b[48:], 1000)
	le.PutUint64(b[56:], 2000)
	le.PutUint64(b[64:], 3000)
	le.PutUint64(b[72:], 1900)
	b[80], b[81], b[82] = 2, 0, 0
	le.PutUint32(b[84:], 10)
	le.PutUint32(b[88:], 20)
	le.PutUint32(b[92:], 30)
	return b
}

func TestDecodeInfo(t *testing.T) {
	full := ConnInfo{
		Subflows: 1, AddAddrSignal: 2, AddAddrAccepted: 3, SubflowsMax: 4, AddAddrSignalMax: 5, AddAddrAcceptedMax: 6,
		Flags: InfoFlagRemoteKeyReceived, Token: 0xcafe, WriteSeq: 100, SndUna: 90, RcvNxt: 200,
		LocalAddrUsed: 1, LocalAddrMax: 2, CsumEnabled: true,
		Retransmits: 3, BytesRetrans: 1000, BytesSent: 2000, BytesReceived: 3000, BytesAcked: 1900,
		SubflowsTotal: 2,
		LastDataSent:  10 * time.Millisecond, LastDataRecv: 20 * time.Millisecond, LastAckRecv: 30 * time.Millisecond,
		Len: 96,
	}
	// What older kernels return: a prefix of the struct.
	tests := []struct {
		name string
		n    int
		want func(ConnInfo) ConnInfo
	}{
		{"6.10+", 96, func(c ConnInfo) ConnInfo { return c }},
		{"6.8", 84, func(c ConnInfo) ConnInfo {
			c.LastDataSent, c.LastDataRecv, c.LastAckRecv, c.Len = 0, 0, 0, 84
			return c
		}},
		{"6.5", 80, func(c ConnInfo) ConnInfo {
			c.LastDataSent, c.LastDataRecv, c.LastAckRecv, c.SubflowsTotal, c.Len = 0, 0, 0, 0, 80
			return c
		}},
		{"5.16", 43, func(c ConnInfo) ConnInfo {
			return ConnInfo{Subflows: 1, AddAddrSignal: 2, AddAddrAccepted: 3, SubflowsMax: 4, AddAddrSignalMax: 5,
				AddAddrAcceptedMax: 6, Flags: c.Flags, Token: c.Token, WriteSeq: 100, SndUna: 90, RcvNxt: 200,
				LocalAddrUsed: 1, LocalAddrMax: 2, CsumEnabled: true, Len: 43}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeInfo(infoBytes()[:tt.n], le)
			if err != nil {
				t.Fatal(err)
			}
			if want := tt.want(full); got != want {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
	b := infoBytes()
	le.PutUint32(b[8:], InfoFlagFallback)
	if got, _ := decodeInfo(b, le); !got.Fallback {
		t.Error("FALLBACK flag not decoded")
	}
	for n := range infoMinLen {
		if _, err := decodeInfo(infoBytes()[:n], le); err == nil {
			t.Errorf("%d bytes decoded without error", n)
		}
	}
}

func sockaddr4(a string, port uint16) []byte {
	b := make([]byte, sockaddrStorLen)
	binary.NativeEndian.PutUint16(b, afInet)
	binary.BigEndian.PutUint16(b[2:], port)
	copy(b[4:], netip.MustParseAddr(a).AsSlice())
	return b
}

func sockaddr6(a string, port uint16, scope uint32) []byte {
	b := make([]byte, sockaddrStorLen)
	binary.NativeEndian.PutUint16(b, afInet6)
	binary.BigEndian.PutUint16(b[2:], port)
	copy(b[8:], netip.MustParseAddr(a).AsSlice())
	binary.NativeEndian.PutUint32(b[24:], scope)
	return b
}

func TestDecodeSubflowAddrs(t *testing.T) {
	tests := []struct {
		name          string
		b             []byte
		local, remote string
		err           string
	}{
		{"v4", append(sockaddr4("198.51.100.1", 40000), sockaddr4("192.0.2.2", 5124)...), "198.51.100.1:40000", "192.0.2.2:5124", ""},
		{"v6", append(sockaddr6("2001:db8:b::1", 1, 0), sockaddr6("2001:db8:a::2", 2, 0)...), "[2001:db8:b::1]:1", "[2001:db8:a::2]:2", ""},
		{"v4-mapped on a dual-stack socket", append(sockaddr6("::ffff:192.0.2.2", 5124, 0), sockaddr6("::ffff:192.0.2.1", 3, 0)...), "192.0.2.2:5124", "192.0.2.1:3", ""},
		{"link-local keeps its scope", append(sockaddr6("fe80::1", 1, 4), sockaddr6("fe80::2", 2, 4)...), "[fe80::1%4]:1", "[fe80::2%4]:2", ""},
		{"unknown family", append(make([]byte, sockaddrStorLen), sockaddr4("192.0.2.2", 1)...), "", "", "unknown address family 0"},
		{"short", sockaddr4("192.0.2.2", 1), "", "", "need 256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, r, err := DecodeSubflowAddrs(tt.b)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || l.String() != tt.local || r.String() != tt.remote {
				t.Errorf("got %v %v %v, want %s %s", l, r, err, tt.local, tt.remote)
			}
		})
	}
}

func TestDecodeSubflowArray(t *testing.T) {
	// Kernel answer to MPTCP_SUBFLOW_ADDRS with 2 subflows, caller asked for
	// 300-byte elements, kernel elements are 256: stride 256 after clamping.
	b := appendSubflowDataHeader(nil, subflowAddrsLen)
	le.PutUint32(b[4:], 2)
	le.PutUint32(b[8:], subflowAddrsLen)
	b = append(b, sockaddr4("192.0.2.1", 1)...)
	b = append(b, sockaddr4("192.0.2.2", 2)...)
	b = append(b, sockaddr4("198.51.100.1", 3)...)
	b = append(b, sockaddr4("192.0.2.2", 2)...)
	els, err := decodeSubflowArray(b)
	if err != nil || len(els) != 2 {
		t.Fatalf("got %d elements, %v", len(els), err)
	}
	if l, _, err := DecodeSubflowAddrs(els[1]); err != nil || l.String() != "198.51.100.1:3" {
		t.Errorf("second element local %v, %v", l, err)
	}
	// More subflows than the buffer held: only the ones that fit.
	le.PutUint32(b[4:], 3)
	if els, err := decodeSubflowArray(b); err != nil || len(els) != 2 {
		t.Errorf("overfull: %d elements, %v", len(els), err)
	}
	if _, err := decodeSubflowArray(b[:15]); err == nil {
		t.Error("short header decoded")
	}
}

func TestFullInfo(t *testing.T) {
	req := appendFullInfoRequest(nil, 512, 264, 9, 0x1111, 0x2222)
	if len(req) != fullInfoHdrLen {
		t.Fatalf("request header %d bytes, want %d", len(req), fullInfoHdrLen)
	}
	if le.Uint32(req[4:]) != 512 || le.Uint32(req[12:]) != 264 || le.Uint32(req[20:]) != 9 ||
		le.Uint64(req[24:]) != 0x1111 || le.Uint64(req[32:]) != 0x2222 || le.Uint32(req[0:]) != 0 || le.Uint32(req[16:]) != 0 {
		t.Errorf("request % x", req)
	}

	for _, ptr := range []int{4, 8} {
		// The kernel wrote back clamped sizes: tcp_info 248, subflow_info
		// 4+pad+256, and used them as strides.
		sfSize := subflowInfoAddrsOffset(ptr) + subflowAddrsLen
		h := fullInfoHeader{sizeTCPInfoKernel: 248, sizeTCPInfoUser: 248, sizeSFInfoKernel: uint32(sfSize), sizeSFInfoUser: uint32(sfSize), numSubflows: 2, sizeArraysUser: 9}
		sf := make([]byte, 9*sfSize)
		tcp := make([]byte, 9*512)
		for i, a := range []string{"192.0.2.1", "198.51.100.1"} {
			e := sf[i*sfSize:]
			le.PutUint32(e, uint32(i+1))
			copy(e[subflowInfoAddrsOffset(ptr):], append(sockaddr4(a, uint16(i+10)), sockaddr4("192.0.2.2", 5124)...))
			ti := tcp[i*248:]
			ti[0] = 1
			le.PutUint32(ti[68:], uint32(100*(i+1)))
		}
		got, err := decodeFullInfoArrays(h, sf, tcp, ptr)
		if err != nil || len(got) != 2 {
			t.Fatalf("ptr %d: %d subflows, %v", ptr, len(got), err)
		}
		if got[1].ID != 2 || got[1].Local.String() != "198.51.100.1:11" || got[1].Remote.String() != "192.0.2.2:5124" ||
			got[1].TCP.RTT != 200*time.Microsecond || got[0].TCP.State != 1 {
			t.Errorf("ptr %d: %+v", ptr, got)
		}
		h.numSubflows = 10
		if _, err := decodeFullInfoArrays(h, sf, tcp, ptr); err == nil {
			t.Errorf("ptr %d: more subflows than the arrays hold decoded", ptr)
		}
	}
	if _, err := decodeFullInfoHeader(make([]byte, 39)); err == nil {
		t.Error("short full_info header decoded")
	}
}

// FuzzDecode makes sure no input crashes the decoders.
func FuzzDecode(f *testing.F) {
	f.Add(infoBytes())
	f.Add(append(sockaddr6("2001:db8::1", 1, 0), sockaddr4("192.0.2.1", 2)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = DecodeInfo(b)
		_, _ = DecodeTCPInfo(b)
		_, _, _ = DecodeSubflowAddrs(b)
		if els, err := decodeSubflowArray(b); err == nil {
			for _, e := range els {
				_, _, _ = DecodeSubflowAddrs(e)
			}
		}
		if h, err := decodeFullInfoHeader(b); err == nil && h.numSubflows < 64 {
			_, _ = decodeFullInfoArrays(h, b, b, 8)
		}
	})
}
