package convert

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

// h decodes hex written the way the RFC figures are drawn: one 32-bit word
// per group, separated by spaces or '|'.
func h(tb testing.TB, s string) []byte {
	tb.Helper()
	s = strings.NewReplacer(" ", "", "|", "", "\n", "", "\t", "").Replace(s)
	b, err := hex.DecodeString(s)
	if err != nil {
		tb.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

var (
	v4dst     = netip.MustParseAddrPort("192.0.2.1:80")
	v6dst     = netip.MustParseAddrPort("[2001:db8::1]:443")
	v6client  = netip.MustParseAddrPort("[2001:db8:1::10]:54321")
	v4client  = netip.MustParseAddrPort("192.168.1.10:40000")
	mappedV4  = "00000000 00000000 0000ffff c0000201"          // ::ffff:192.0.2.1
	v6dstHex  = "20010db8 00000000 00000000 00000001"          // 2001:db8::1
	v6cltHex  = "20010db8 00010000 00000000 00000010"          // 2001:db8:1::10
	v4cltHex  = "00000000 00000000 0000ffff c0a8010a"          // ::ffff:192.168.1.10
	echoedMsg = "01022263 02010000"                            // a message with unknown TLV 2
	cookieHex = "01036370 65310000 00000000 5f5e1000 aabbccdd" // opaque to the codec
)

// vector is a message in canonical (type) order, so Append must reproduce
// the wire bytes exactly.
type vector struct {
	name string
	wire string
	msg  Msg
}

func vectors(tb testing.TB) []vector {
	tb.Helper()
	return []vector{
		// §6.1 Figure 13 alone: the success reply after a Base Connect.
		{"header only", "01012263", Msg{}},
		// §6.2.3 Figure 15.
		{"info", "01022263 01010000", Msg{Info: true}},
		// §6.2.5 Figure 17, IPv4 as ::ffff:a.b.c.d.
		{"base connect v4", "01062263 0a050050 " + mappedV4,
			Msg{Connect: Connect{Dst: v4dst}}},
		{"base connect v6", "01062263 0a0501bb " + v6dstHex,
			Msg{Connect: Connect{Dst: v6dst}}},
		// §6.2.5 Figure 18/19: empty TFO option (cookie request), padded.
		{"extended connect tfo request", "01072263 0a060050 " + mappedV4 + " 22020000",
			Msg{Connect: Connect{Dst: v4dst, Options: h(tb, "2202")}}},
		// SACK-permitted plus a TFO cookie: 12 bytes, no padding.
		{"extended connect tfo cookie", "01092263 0a0801bb " + v6dstHex + " 0402220a 01020304 05060708",
			Msg{Connect: Connect{Dst: v6dst, Options: h(tb, "0402220a0102030405060708")}}},
		// §6.2.6 Figure 20: MSS 1460 from the server's SYN+ACK.
		{"extended tcp header", "01032263 14020000 020405b4",
			Msg{ExtTCPHeader: h(tb, "020405b4")}},
		{"extended tcp header empty", "01022263 14010000",
			Msg{ExtTCPHeader: []byte{}}},
		// §6.2.4 Figure 16: MPTCP (30) and TFO (34), zero-padded.
		{"supported extensions", "01032263 15020000 1e220000",
			Msg{SupportedExt: []byte{30, 34}}},
		// §6.2.7 Figure 21 after a Connect.
		{"connect with cookie", "01082263 0a050050 " + mappedV4 + " 16020000 deadbeef",
			Msg{Connect: Connect{Dst: v4dst}, Cookie: h(tb, "deadbeef")}},
		// What hcpe sends: Connect, Cookie, Client Address (0xC0).
		{"connect cookie client v6", "01112263 0a0501bb " + v6dstHex + " 16060000 " + cookieHex + " c005d431 " + v6cltHex,
			Msg{Connect: Connect{Dst: v6dst}, Cookie: h(tb, cookieHex), ClientAddr: v6client}},
		{"connect client v4", "010b2263 0a050050 " + mappedV4 + " c0059c40 " + v4cltHex,
			Msg{Connect: Connect{Dst: v4dst}, ClientAddr: v4client}},
		// §6.2.8 Figure 22, one per code in Table 2.
		{"error unsupported version", "01022263 1e010001",
			Msg{HasError: true, Error: ErrorTLV{UnsupportedVersion, []byte{1}}}},
		{"error malformed echo", "01042263 1e030100 " + echoedMsg,
			Msg{HasError: true, Error: ErrorTLV{MalformedMessage, h(tb, "00"+echoedMsg)}}},
		{"error unsupported message", "01042263 1e030200 " + echoedMsg,
			Msg{HasError: true, Error: ErrorTLV{UnsupportedMessage, h(tb, "00"+echoedMsg)}}},
		{"error missing cookie", "01042263 1e030300 01020304 05060708",
			Msg{HasError: true, Error: ErrorTLV{MissingCookie, h(tb, "000102030405060708")}}},
		{"error not authorized", "01022263 1e012000",
			Msg{HasError: true, Error: ErrorTLV{NotAuthorized, []byte{0}}}},
		{"error unsupported tcp option", "01022263 1e012122",
			Msg{HasError: true, Error: ErrorTLV{UnsupportedTCPOption, []byte{34}}}},
		{"error resource exceeded", "01022263 1e01403c",
			Msg{HasError: true, Error: ErrorTLV{ResourceExceeded, []byte{60}}}},
		{"error network failure", "01022263 1e014100",
			Msg{HasError: true, Error: ErrorTLV{NetworkFailure, []byte{0}}}},
		{"error connection reset", "01022263 1e016000",
			Msg{HasError: true, Error: ErrorTLV{ConnectionReset, []byte{0}}}},
		{"error destination unreachable", "01022263 1e016103",
			Msg{HasError: true, Error: ErrorTLV{DestinationUnreachable, []byte{3}}}},
		// Info answered: Supported TCP Extensions with an Extended TCP Header.
		{"ext header and supported", "01052263 14020000 01010402 15020000 1e000000",
			Msg{ExtTCPHeader: h(tb, "01010402"), SupportedExt: []byte{30}}},
	}
}

func TestParseVectors(t *testing.T) {
	for _, v := range vectors(t) {
		t.Run(v.name, func(t *testing.T) {
			b := h(t, v.wire)
			m, n, err := Parse(b)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if n != len(b) {
				t.Errorf("consumed %d, want %d", n, len(b))
			}
			if !reflect.DeepEqual(m, v.msg) {
				t.Errorf("Parse =\n %+v\nwant\n %+v", m, v.msg)
			}
			got, err := v.msg.Append(nil)
			if err != nil {
				t.Fatalf("Append: %v", err)
			}
			if !bytes.Equal(got, b) {
				t.Errorf("Append = %x\nwant     %x", got, b)
			}
			if v.msg.Len() != len(b) {
				t.Errorf("Len = %d, want %d", v.msg.Len(), len(b))
			}
		})
	}
}

// Bytes after Total Length are relay data: Parse must stop at the boundary.
func TestParseLeavesTrailingBytes(t *testing.T) {
	for _, v := range vectors(t) {
		b := h(t, v.wire)
		withData := append(append([]byte(nil), b...), "GET / HTTP/1.1\r\n"...)
		_, n, err := Parse(withData)
		if err != nil || n != len(b) {
			t.Errorf("%s: Parse with trailing data = %d, %v; want %d, nil", v.name, n, err, len(b))
		}
	}
}

func TestParseEveryTruncation(t *testing.T) {
	for _, v := range vectors(t) {
		b := h(t, v.wire)
		for i := range len(b) {
			// A fresh copy with no spare capacity catches reads past len.
			p := bytes.Clone(b[:i])
			if _, n, err := Parse(p); !errors.Is(err, ErrShort) || n != 0 {
				t.Errorf("%s: Parse(first %d of %d bytes) = %d, %v; want ErrShort", v.name, i, len(b), n, err)
			}
		}
	}
}

func TestParseViolations(t *testing.T) {
	tests := []struct {
		name  string
		wire  string
		code  ErrorCode
		field string
		reset bool
	}{
		{"version 2", "02012263", UnsupportedVersion, "header.version", false},
		{"version 0 reserved", "00012263", UnsupportedVersion, "header.version", false},
		{"bad magic", "01010000", MalformedMessage, "header.magic", false},
		{"magic byte-swapped", "01016322", MalformedMessage, "header.magic", false},
		{"total length zero", "01002263", MalformedMessage, "header.total_length", true},
		{"tlv overruns total length", "01022263 0a050050 " + mappedV4, MalformedMessage, "tlv.length", false},
		{"tlv overruns by one word", "01032263 16030000 deadbeef 00000000", MalformedMessage, "tlv.length", false},
		{"zero-length tlv", "01022263 16000000", MalformedMessage, "tlv.length", false},
		{"type 0", "01022263 00010000", UnsupportedMessage, "tlv.type", false},
		{"unknown type 2", "01022263 02010000", UnsupportedMessage, "tlv.type", false},
		{"unknown private type 0xc1", "01022263 c1010000", UnsupportedMessage, "tlv.type", false},
		{"duplicate info", "01032263 01010000 01010000", MalformedMessage, "tlv.type", false},
		{"duplicate connect", "010b2263 0a050050 " + mappedV4 + " 0a050050 " + mappedV4, MalformedMessage, "tlv.type", false},
		{"duplicate error", "01032263 1e012000 1e016000", MalformedMessage, "tlv.type", false},
		{"info length 2", "01032263 01020000 00000000", MalformedMessage, "info.length", false},
		{"connect length 4", "01052263 0a040050 00000000 0000ffff c0000201", MalformedMessage, "connect.length", false},
		{"connect v4 multicast", "01062263 0a050050 00000000 00000000 0000ffff e0000001", MalformedMessage, "connect.address", false},
		{"connect v6 multicast", "01062263 0a050050 ff020000 00000000 00000000 00000001", MalformedMessage, "connect.address", false},
		{"connect v4 broadcast", "01062263 0a050050 00000000 00000000 0000ffff ffffffff", MalformedMessage, "connect.address", false},
		{"connect v4 loopback", "01062263 0a050050 00000000 00000000 0000ffff 7f000001", MalformedMessage, "connect.address", false},
		{"connect v6 loopback", "01062263 0a050050 00000000 00000000 00000000 00000001", MalformedMessage, "connect.address", false},
		{"connect v6 unspecified", "01062263 0a050050 00000000 00000000 00000000 00000000", MalformedMessage, "connect.address", false},
		{"connect v4 unspecified", "01062263 0a050050 00000000 00000000 0000ffff 00000000", MalformedMessage, "connect.address", false},
		{"connect port 0", "01062263 0a050000 " + mappedV4, MalformedMessage, "connect.port", false},
		{"connect NOP option", "01072263 0a060050 " + mappedV4 + " 01010101", MalformedMessage, "connect.options", false},
		{"connect option length 1", "01072263 0a060050 " + mappedV4 + " 22010000", MalformedMessage, "connect.options", false},
		{"connect option overruns", "01072263 0a060050 " + mappedV4 + " 22080000", MalformedMessage, "connect.options", false},
		{"connect option no length", "01072263 0a060050 " + mappedV4 + " 04030022", MalformedMessage, "connect.options", false},
		{"connect options four zero bytes", "01072263 0a060050 " + mappedV4 + " 00000000", MalformedMessage, "connect.options", false},
		{"connect options eight zero bytes", "01082263 0a070050 " + mappedV4 + " 00000000 00000000", MalformedMessage, "connect.options", false},
		{"connect option then a zero word", "01082263 0a070050 " + mappedV4 + " 22020000 00000000", MalformedMessage, "connect.options", false},
		{"connect v4 this network", "01062263 0a050050 00000000 00000000 0000ffff 00000001", MalformedMessage, "connect.address", false},
		{"connect v4 this network top", "01062263 0a050050 00000000 00000000 0000ffff 00ffffff", MalformedMessage, "connect.address", false},
		{"connect junk after padding", "01072263 0a060050 " + mappedV4 + " 22020001", MalformedMessage, "connect.options", false},
		{"client address length 6", "01072263 c0060050 " + v6cltHex + " 00000000", MalformedMessage, "client_address.length", false},
		{"client address length 4", "01052263 c0040050 00000000 00000000 00000000", MalformedMessage, "client_address.length", false},
		{"client address loopback", "01062263 c0050050 00000000 00000000 00000000 00000001", MalformedMessage, "client_address.address", false},
		{"client address port 0", "01062263 c0050000 " + v6cltHex, MalformedMessage, "client_address.port", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, n, err := Parse(h(t, tt.wire))
			if err == nil {
				t.Fatal("Parse accepted it")
			}
			if n != 0 {
				t.Errorf("consumed %d on error", n)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v (%T) is not a *ParseError", err, err)
			}
			if code, ok := CodeOf(err); !ok || code != tt.code {
				t.Errorf("CodeOf = %v, %v; want %v", code, ok, tt.code)
			}
			if pe.Field != tt.field {
				t.Errorf("Field = %q, want %q", pe.Field, tt.field)
			}
			if pe.Reset != tt.reset {
				t.Errorf("Reset = %v, want %v", pe.Reset, tt.reset)
			}
			if !strings.Contains(err.Error(), tt.field) || !strings.Contains(err.Error(), tt.code.String()) {
				t.Errorf("Error() = %q does not name the field and code", err)
			}
		})
	}
}

// Lenient where the RFC says "ignored by the receiver".
func TestParseIgnoresUnassigned(t *testing.T) {
	for _, wire := range []string{
		"01022263 0101ffff",          // Info Zero field
		"01032263 1402ffff 020405b4", // Extended TCP Header Unassigned
		"01032263 1502ffff 1e000000", // Supported TCP Extensions Unassigned
		"01032263 1602ffff deadbeef", // Cookie Zero field
	} {
		if _, _, err := Parse(h(t, wire)); err != nil {
			t.Errorf("Parse(%s): %v", wire, err)
		}
	}
}

func TestLenMatchesAppend(t *testing.T) {
	msgs := []Msg{
		{},
		{Info: true},
		{Connect: Connect{Dst: v4dst, Options: []byte{34, 2}}},
		{Connect: Connect{Dst: v6dst, Options: []byte{4, 2, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8}}},
		{Cookie: []byte{}},
		{Cookie: []byte{1, 2, 3, 4, 5}},
		{ExtTCPHeader: []byte{2, 4, 5, 0xb4, 1}},
		{SupportedExt: []byte{30}},
		{HasError: true, Error: ErrorTLV{Code: NotAuthorized}},
		{HasError: true, Error: NewEchoError(MalformedMessage, make([]byte, 2000))},
		{HasError: true, Error: NewListError(UnsupportedVersion, 1, 2)},
		{Info: true, Connect: Connect{Dst: v6dst}, Cookie: []byte("cookie"), ClientAddr: v6client},
	}
	for _, v := range vectors(t) {
		msgs = append(msgs, v.msg)
	}
	for i, m := range msgs {
		b, err := m.Append([]byte{0xee})
		if err != nil {
			t.Errorf("msg %d: Append: %v", i, err)
			continue
		}
		if len(b)-1 != m.Len() {
			t.Errorf("msg %d: Len = %d, Append wrote %d", i, m.Len(), len(b)-1)
		}
		if b[0] != 0xee {
			t.Errorf("msg %d: Append clobbered the prefix", i)
		}
		if _, n, err := Parse(b[1:]); err != nil || n != len(b)-1 {
			t.Errorf("msg %d: Parse(Append) = %d, %v", i, n, err)
		}
	}
}

func TestAppendRejects(t *testing.T) {
	tests := []struct {
		name string
		msg  Msg
	}{
		{"loopback dst", Msg{Connect: Connect{Dst: netip.MustParseAddrPort("127.0.0.1:80")}}},
		{"multicast dst", Msg{Connect: Connect{Dst: netip.MustParseAddrPort("[ff02::1]:80")}}},
		{"broadcast dst", Msg{Connect: Connect{Dst: netip.MustParseAddrPort("255.255.255.255:80")}}},
		{"zero port", Msg{Connect: Connect{Dst: netip.MustParseAddrPort("192.0.2.1:0")}}},
		{"zoned dst", Msg{Connect: Connect{Dst: netip.MustParseAddrPort("[fe80::1%eth0]:80")}}},
		{"NOP option", Msg{Connect: Connect{Dst: v4dst, Options: []byte{1, 34, 2}}}},
		{"option overruns", Msg{Connect: Connect{Dst: v4dst, Options: []byte{34, 4, 0}}}},
		{"trailing EOL", Msg{Connect: Connect{Dst: v4dst, Options: []byte{34, 2, 0}}}},
		{"unspecified client", Msg{Connect: Connect{Dst: v4dst}, ClientAddr: netip.AddrPortFrom(netip.IPv6Unspecified(), 1)}},
		{"too long", Msg{Cookie: make([]byte, MaxMsgLen)}},
		{"this-network dst", Msg{Connect: Connect{Dst: netip.MustParseAddrPort("0.1.2.3:80")}}},
		{"supported ext kind 0", Msg{SupportedExt: []byte{30, 0}}},
		{"supported ext kind 1 (NOP)", Msg{SupportedExt: []byte{1}}},
		{"supported ext kind 2 (MSS)", Msg{SupportedExt: []byte{2, 30}}},
	}
	for _, tt := range tests {
		b, err := tt.msg.Append([]byte("x"))
		if err == nil {
			t.Errorf("%s: Append accepted it: %x", tt.name, b)
		}
		if string(b) != "x" {
			t.Errorf("%s: Append changed b on error", tt.name)
		}
	}
}

func TestParseAllocs(t *testing.T) {
	b := h(t, "01112263 0a0501bb "+v6dstHex+" 16060000 "+cookieHex+" c005d431 "+v6cltHex)
	allocs := testing.AllocsPerRun(100, func() {
		if _, _, err := Parse(b); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Parse allocates %v times per run, want 0", allocs)
	}
	m, _, _ := Parse(b)
	buf := make([]byte, 0, MaxMsgLen)
	allocs = testing.AllocsPerRun(100, func() {
		if _, err := m.Append(buf[:0]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Append into a large enough buffer allocates %v times per run, want 0", allocs)
	}
}

func TestErrorTLVAccessors(t *testing.T) {
	tests := []struct {
		e       ErrorTLV
		backOff time.Duration
		icmp    int // -1: not applicable
		list    []byte
		echo    []byte
	}{
		{NewError(ResourceExceeded, 0), 30 * time.Second, -1, nil, nil},
		{NewError(ResourceExceeded, 120), 120 * time.Second, -1, nil, nil},
		{NewError(NetworkFailure, 5), 5 * time.Second, -1, nil, nil},
		{NewError(NotAuthorized, 0), 0, -1, nil, nil},
		{NewError(DestinationUnreachable, 1), 0, 1, nil, nil},
		{ErrorTLV{UnsupportedVersion, []byte{1, 2, 0, 0, 0}}, 0, -1, []byte{1, 2}, nil},
		{NewListError(UnsupportedTCPOption, 34, 30), 0, -1, []byte{34, 30}, nil},
		{NewEchoError(MissingCookie, []byte("ck")), 0, -1, nil, []byte("ck")},
		{NewEchoError(MalformedMessage, []byte{1, 1, 0x22, 0x63}), 0, -1, nil, []byte{1, 1, 0x22, 0x63}},
		{ErrorTLV{ConnectionReset, nil}, 0, -1, nil, nil},
	}
	for _, tt := range tests {
		if got := tt.e.BackOff(); got != tt.backOff {
			t.Errorf("%v: BackOff = %v, want %v", tt.e.Code, got, tt.backOff)
		}
		c, ok := tt.e.ICMPCode()
		if (tt.icmp >= 0) != ok || (ok && int(c) != tt.icmp) {
			t.Errorf("%v: ICMPCode = %d, %v; want %d", tt.e.Code, c, ok, tt.icmp)
		}
		if got := tt.e.List(); !bytes.Equal(got, tt.list) {
			t.Errorf("%v: List = %v, want %v", tt.e.Code, got, tt.list)
		}
		if got := tt.e.Echo(); !bytes.Equal(got, tt.echo) {
			t.Errorf("%v: Echo = %q, want %q", tt.e.Code, got, tt.echo)
		}
	}
	// A maximal echo still fits in one message.
	m := Msg{HasError: true, Error: NewEchoError(UnsupportedMessage, make([]byte, MaxMsgLen))}
	if b, err := m.Append(nil); err != nil || len(b) != MaxMsgLen {
		t.Errorf("maximal echo: %d bytes, %v", len(b), err)
	}
}

func TestStrings(t *testing.T) {
	for code, want := range map[ErrorCode]string{
		UnsupportedVersion: "Unsupported Version", MalformedMessage: "Malformed Message",
		UnsupportedMessage: "Unsupported Message", MissingCookie: "Missing Cookie",
		NotAuthorized: "Not Authorized", UnsupportedTCPOption: "Unsupported TCP Option",
		ResourceExceeded: "Resource Exceeded", NetworkFailure: "Network Failure",
		ConnectionReset: "Connection Reset", DestinationUnreachable: "Destination Unreachable",
		200: "ErrorCode(200)",
	} {
		if code.String() != want {
			t.Errorf("ErrorCode(%d).String() = %q, want %q", uint8(code), code.String(), want)
		}
	}
	if TypeClientAddress.String() != "Client Address" || TLVType(7).String() != "TLVType(7)" {
		t.Error("TLVType.String")
	}
}

// FuzzParse checks that Parse never panics and that whatever it accepts
// survives append → parse unchanged, with Len telling the truth.
func FuzzParse(f *testing.F) {
	for _, v := range vectors(f) {
		b, err := v.msg.Append(nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(h(f, "01022263 c1010000"))
	f.Add(h(f, "01002263"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, n, err := Parse(b)
		if err != nil {
			if n != 0 {
				t.Fatalf("consumed %d with error %v", n, err)
			}
			if !errors.Is(err, ErrShort) {
				if _, ok := CodeOf(err); !ok {
					t.Fatalf("error without a code: %v", err)
				}
			}
			return
		}
		if n < HeaderLen || n > len(b) || n > MaxMsgLen || n%4 != 0 {
			t.Fatalf("consumed %d of %d", n, len(b))
		}
		b1, err := m.Append(nil)
		if err != nil {
			t.Fatalf("Append of a parsed message: %v\n%+v", err, m)
		}
		if len(b1) != m.Len() || len(b1) > n {
			t.Fatalf("Append wrote %d, Len %d, parsed %d", len(b1), m.Len(), n)
		}
		m2, n2, err := Parse(b1)
		if err != nil {
			t.Fatalf("re-Parse: %v\n%x", err, b1)
		}
		if n2 != len(b1) {
			t.Fatalf("re-Parse consumed %d of %d", n2, len(b1))
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("unstable:\n%+v\n%+v", m, m2)
		}
		b2, err := m2.Append(nil)
		if err != nil || !bytes.Equal(b1, b2) {
			t.Fatalf("second Append differs: %v\n%x\n%x", err, b1, b2)
		}
	})
}
