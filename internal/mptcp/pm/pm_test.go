package pm

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
)

// attr builds one netlink attribute: little-endian length and type (all
// Linux targets we ship are little-endian), data, padding to 4 bytes.
func attr(typ uint16, data ...byte) []byte {
	b := binary.LittleEndian.AppendUint16(nil, uint16(4+len(data)))
	b = binary.LittleEndian.AppendUint16(b, typ)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func le16(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }
func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

const nested = 0x8000 // NLA_F_NESTED

func TestEncodeAddrRequest(t *testing.T) {
	tests := []struct {
		name       string
		e          Endpoint
		withFamily bool
		want       []byte
	}{
		{
			name:       "v4 subflow, kernel picks the id",
			e:          Endpoint{Addr: netip.MustParseAddr("192.0.2.1"), IfIndex: 3, Flags: Subflow},
			withFamily: true,
			want: attr(nested|attrAddr, cat(
				attr(addrAttrFamily, le16(afInet)...),
				attr(addrAttrAddr4, 192, 0, 2, 1), // network order
				attr(addrAttrFlags, le32(uint32(Subflow))...),
				attr(addrAttrIfIdx, le32(3)...),
			)...),
		},
		{
			name:       "v6 signal with id and port (port in host order)",
			e:          Endpoint{ID: 7, Addr: netip.MustParseAddr("2001:db8:a::1"), Port: 5124, Flags: Signal | Backup},
			withFamily: true,
			want: attr(nested|attrAddr, cat(
				attr(addrAttrFamily, le16(afInet6)...),
				attr(addrAttrAddr6, netip.MustParseAddr("2001:db8:a::1").AsSlice()...),
				attr(addrAttrID, 7),
				attr(addrAttrPort, 0x04, 0x14),
				attr(addrAttrFlags, le32(uint32(Signal|Backup))...),
			)...),
		},
		{
			name:       "v4-mapped address is sent as v4",
			e:          Endpoint{Addr: netip.MustParseAddr("::ffff:198.51.100.1")},
			withFamily: true,
			want: attr(nested|attrAddr, cat(
				attr(addrAttrFamily, le16(afInet)...),
				attr(addrAttrAddr4, 198, 51, 100, 1),
			)...),
		},
		{
			name: "by id only (DEL_ADDR, SET_FLAGS by id)",
			e:    Endpoint{ID: 4, Flags: Backup},
			want: attr(nested|attrAddr, cat(
				attr(addrAttrID, 4),
				attr(addrAttrFlags, le32(uint32(Backup))...),
			)...),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := encodeAddrRequest(tt.e, tt.withFamily)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Errorf("got  % x\nwant % x", got, tt.want)
			}
		})
	}
	if _, err := encodeAddrRequest(Endpoint{}, true); err == nil {
		t.Error("encoding an endpoint without an address succeeded")
	}
}

func TestDecodeEndpoint(t *testing.T) {
	for _, e := range []Endpoint{
		{ID: 1, Addr: netip.MustParseAddr("192.0.2.1"), IfIndex: 3, Flags: Subflow},
		{ID: 255, Addr: netip.MustParseAddr("2001:db8:b::1"), Port: 443, Flags: Signal | Fullmesh | Implicit | Laminar},
		{ID: 9, Addr: netip.MustParseAddr("198.51.100.7"), Flags: Subflow | Backup},
	} {
		b, err := encodeAddrRequest(e, true)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeEndpoint(b)
		if err != nil || got != e {
			t.Errorf("decode(encode(%+v)) = %+v, %v", e, got, err)
		}
	}
	bad := []struct {
		name string
		b    []byte
		want string
	}{
		{"no address nest", attr(attrSubflows, le32(1)...), "no address attribute"},
		{"family mismatch", attr(nested|attrAddr, cat(attr(addrAttrFamily, le16(afInet6)...), attr(addrAttrAddr4, 192, 0, 2, 1))...), "does not match"},
		{"short IPv4", attr(nested|attrAddr, attr(addrAttrAddr4, 192, 0, 2)...), "IPv4 address of 3 bytes"},
		{"short IPv6", attr(nested|attrAddr, attr(addrAttrAddr6, make([]byte, 15)...)...), "IPv6 address of 15 bytes"},
		{"truncated attribute", []byte{8, 0, 1}, "decoding endpoint"},
	}
	for _, tt := range bad {
		if _, err := decodeEndpoint(tt.b); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err %v, want one containing %q", tt.name, err, tt.want)
		}
	}
}

func TestLimits(t *testing.T) {
	b, err := encodeLimits(Limits{Subflows: 4, AddAddrAccepted: 2})
	if err != nil {
		t.Fatal(err)
	}
	want := cat(attr(attrRcvAddAddrs, le32(2)...), attr(attrSubflows, le32(4)...))
	if !bytes.Equal(b, want) {
		t.Errorf("encodeLimits = % x, want % x", b, want)
	}
	if l, err := decodeLimits(want); err != nil || l != (Limits{Subflows: 4, AddAddrAccepted: 2}) {
		t.Errorf("decodeLimits = %+v, %v", l, err)
	}
	if _, err := decodeLimits([]byte{8, 0}); err == nil {
		t.Error("decodeLimits accepted a truncated attribute")
	}
}

func TestDecodeEvent(t *testing.T) {
	be16 := func(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
	tests := []struct {
		name string
		cmd  uint8
		b    []byte
		want Event
	}{
		{
			name: "sf_established v4",
			cmd:  10,
			b: cat(
				attr(evToken, le32(0xdeadbeef)...),
				attr(evFamily, le16(afInet)...),
				attr(evLocID, 1),
				attr(evRemID, 0),
				attr(evSaddr4, 198, 51, 100, 1),
				attr(evDaddr4, 192, 0, 2, 2),
				attr(evSport, be16(40000)...), // network order, unlike endpoints
				attr(evDport, be16(5124)...),
				attr(evBackup, 1),
				attr(evIfIdx, le32(3)...),
			),
			want: Event{Type: EventSubEstablished, Token: 0xdeadbeef, Family: afInet, LocalID: 1,
				Local: netip.MustParseAddrPort("198.51.100.1:40000"), Remote: netip.MustParseAddrPort("192.0.2.2:5124"),
				Backup: true, HasBackup: true, IfIndex: 3, HasIfIndex: true},
		},
		{
			name: "created v6 with a mapped v4 address, server side",
			cmd:  1,
			b: cat(
				attr(evToken, le32(7)...),
				attr(evFamily, le16(afInet6)...),
				attr(evSaddr6, netip.MustParseAddr("::ffff:192.0.2.2").AsSlice()...),
				attr(evDaddr6, netip.MustParseAddr("2001:db8:a::1").AsSlice()...),
				attr(evSport, be16(5124)...),
				attr(evDport, be16(1)...),
				attr(evServerSide, 1),
			),
			want: Event{Type: EventCreated, Token: 7, Family: afInet6,
				Local: netip.MustParseAddrPort("192.0.2.2:5124"), Remote: netip.MustParseAddrPort("[2001:db8:a::1]:1"), ServerSide: true},
		},
		{
			name: "sf_closed with error and reset reason",
			cmd:  11,
			b:    cat(attr(evToken, le32(9)...), attr(evError, 104), attr(evResetReason, le32(1)...), attr(evResetFlags, le32(2)...), attr(evFlags, le16(1)...), attr(evTimeout, le32(5)...)),
			want: Event{Type: EventSubClosed, Token: 9, Error: 104, HasErrorAttr: true, ResetReason: 1, ResetFlags: 2, Flags: 1, Timeout: 5},
		},
		{
			name: "closed",
			cmd:  3,
			b:    attr(evToken, le32(42)...),
			want: Event{Type: EventClosed, Token: 42},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeEvent(tt.cmd, tt.b)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
	for name, b := range map[string][]byte{
		"short saddr4": attr(evSaddr4, 1, 2, 3),
		"short daddr6": attr(evDaddr6, make([]byte, 4)...),
		"short port":   attr(evSport, 1),
		"truncated":    {12, 0, 1, 0},
	} {
		if _, err := decodeEvent(10, b); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}

func TestStrings(t *testing.T) {
	if got := (Subflow | Backup | Flags(1<<9)).String(); got != "subflow backup 0x200" {
		t.Errorf("Flags.String = %q", got)
	}
	if got := EventSubEstablished.String(); got != "sf_established" {
		t.Errorf("EventType.String = %q", got)
	}
	if got := EventType(99).String(); got != "event(99)" {
		t.Errorf("EventType(99).String = %q", got)
	}
}
