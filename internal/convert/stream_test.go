package convert

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"reflect"
	"testing"
	"testing/iotest"
)

const relayData = "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"

// ReadMsg must leave every relay byte in the stream, however the reader
// splits its data.
func TestReadMsgDoesNotOverRead(t *testing.T) {
	for _, v := range vectors(t) {
		wire := h(t, v.wire)
		for _, wrap := range []struct {
			name string
			fn   func(io.Reader) io.Reader
		}{
			{"plain", func(r io.Reader) io.Reader { return r }},
			{"one byte", iotest.OneByteReader},
			{"half", iotest.HalfReader},
		} {
			src := bytes.NewReader(append(bytes.Clone(wire), relayData...))
			m, raw, err := ReadMsg(wrap.fn(src), nil)
			if err != nil {
				t.Fatalf("%s/%s: ReadMsg: %v", v.name, wrap.name, err)
			}
			if !bytes.Equal(raw, wire) {
				t.Errorf("%s/%s: raw = %x, want %x", v.name, wrap.name, raw, wire)
			}
			if !reflect.DeepEqual(m, v.msg) {
				t.Errorf("%s/%s: got %+v, want %+v", v.name, wrap.name, m, v.msg)
			}
			rest, _ := io.ReadAll(src)
			if string(rest) != relayData {
				t.Errorf("%s/%s: relay data left = %q, want %q", v.name, wrap.name, rest, relayData)
			}
		}
	}
}

func TestReadMsgErrors(t *testing.T) {
	connect := h(t, "01062263 0a050050 "+mappedV4)
	tests := []struct {
		name     string
		in       []byte
		wantErr  error      // checked with errors.Is, if set
		wantCode *ErrorCode // checked with CodeOf, if set
		left     int        // bytes that must remain unread
	}{
		{"empty", nil, io.EOF, nil, 0},
		{"partial header", connect[:3], io.ErrUnexpectedEOF, nil, 0},
		{"partial body", connect[:10], io.ErrUnexpectedEOF, nil, 0},
		// With a bad header the length means nothing: read no further.
		{"bad version", append(h(t, "02062263"), connect[4:]...), nil, ptr(UnsupportedVersion), 20},
		{"bad magic", append(h(t, "01060000"), connect[4:]...), nil, ptr(MalformedMessage), 20},
		{"zero total length", append(h(t, "01002263"), connect[4:]...), nil, ptr(MalformedMessage), 20},
		{"bad tlv", h(t, "01022263 00010000 ffff"), nil, ptr(UnsupportedMessage), 2},
	}
	for _, tt := range tests {
		src := bytes.NewReader(tt.in)
		_, _, err := ReadMsg(src, make([]byte, MaxMsgLen))
		if err == nil {
			t.Errorf("%s: no error", tt.name)
			continue
		}
		if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.wantErr)
		}
		if tt.wantCode != nil {
			if code, ok := CodeOf(err); !ok || code != *tt.wantCode {
				t.Errorf("%s: CodeOf(%v) = %v, %v; want %v", tt.name, err, code, ok, *tt.wantCode)
			}
		}
		if src.Len() != tt.left {
			t.Errorf("%s: %d bytes left unread, want %d", tt.name, src.Len(), tt.left)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestWriteMsgConnectRoundTrip(t *testing.T) {
	m := ConnectMsg(v6dst, v6client, []byte("a cookie"))
	var buf bytes.Buffer
	if err := WriteMsg(&buf, &m); err != nil {
		t.Fatal(err)
	}
	got, _, err := ReadRequest(&buf, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Connect.Dst != v6dst || got.ClientAddr != v6client || string(got.Cookie) != "a cookie" {
		t.Errorf("got %+v", got)
	}
	// Without the optional TLVs: a plain RFC 8803 Base Connect.
	m = ConnectMsg(v4dst, netip.AddrPort{}, nil)
	buf.Reset()
	if err := WriteMsg(&buf, &m); err != nil {
		t.Fatal(err)
	}
	if want := h(t, "01062263 0a050050 "+mappedV4); !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("base connect = %x, want %x", buf.Bytes(), want)
	}
	bad := ConnectMsg(netip.MustParseAddrPort("127.0.0.1:1"), netip.AddrPort{}, nil)
	if err := WriteMsg(&buf, &bad); err == nil {
		t.Error("WriteMsg accepted a loopback Connect")
	}
}

func TestReadReply(t *testing.T) {
	tests := []struct {
		name    string
		wire    string
		code    int // -1: success
		ext     []byte
		backOff string
	}{
		{"header only", "01012263", -1, nil, ""},
		{"extended tcp header", "01032263 14020000 020405b4", -1, h(t, "020405b4"), ""},
		{"not authorized", "01022263 1e012000", int(NotAuthorized), nil, ""},
		{"resource exceeded default", "01022263 1e014000", int(ResourceExceeded), nil, "30s"},
		{"network failure 10s", "01022263 1e01410a", int(NetworkFailure), nil, "10s"},
		{"destination unreachable", "01022263 1e016101", int(DestinationUnreachable), nil, ""},
		{"connection reset", "01022263 1e016000", int(ConnectionReset), nil, ""},
	}
	for _, tt := range tests {
		src := bytes.NewReader(append(h(t, tt.wire), relayData...))
		m, err := ReadReply(src, nil)
		if tt.code < 0 {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			}
			if !bytes.Equal(m.ExtTCPHeader, tt.ext) {
				t.Errorf("%s: ExtTCPHeader = %x, want %x", tt.name, m.ExtTCPHeader, tt.ext)
			}
		} else {
			var re *RemoteError
			if !errors.As(err, &re) {
				t.Fatalf("%s: err = %v, want *RemoteError", tt.name, err)
			}
			if re.Code != ErrorCode(tt.code) {
				t.Errorf("%s: Code = %v", tt.name, re.Code)
			}
			if code, _ := CodeOf(err); code != ErrorCode(tt.code) {
				t.Errorf("%s: CodeOf = %v", tt.name, code)
			}
			if tt.backOff != "" && re.BackOff().String() != tt.backOff {
				t.Errorf("%s: BackOff = %v, want %s", tt.name, re.BackOff(), tt.backOff)
			}
			if re.Error() == "" {
				t.Errorf("%s: empty Error()", tt.name)
			}
		}
		if src.Len() != len(relayData) {
			t.Errorf("%s: ReadReply consumed relay data", tt.name)
		}
	}
	// A converter never sends client TLVs; the client resets.
	for _, wire := range []string{"01022263 01010000", "01062263 0a050050 " + mappedV4} {
		_, err := ReadReply(bytes.NewReader(h(t, wire)), nil)
		var pe *ParseError
		if !errors.As(err, &pe) || pe.Code != UnsupportedMessage {
			t.Errorf("reply %s: err = %v, want Unsupported Message", wire, err)
		}
	}
	// The RemoteError must not alias the caller's buffer.
	buf := make([]byte, MaxMsgLen)
	_, err := ReadReply(bytes.NewReader(h(t, "01022263 1e016103")), buf)
	clear(buf)
	if c, _ := err.(*RemoteError).ICMPCode(); c != 3 {
		t.Errorf("ICMP code after buffer reuse = %d, want 3", c)
	}
}

func TestCheckRequest(t *testing.T) {
	tests := []struct {
		name string
		msg  Msg
		code int // -1: accepted
	}{
		{"connect", Msg{Connect: Connect{Dst: v4dst}}, -1},
		{"info", Msg{Info: true}, -1},
		{"everything a client sends", Msg{Info: true, Connect: Connect{Dst: v6dst}, Cookie: []byte{1}, ClientAddr: v6client}, -1},
		{"header only", Msg{}, int(MalformedMessage)},
		{"client address alone", Msg{ClientAddr: v6client}, int(MalformedMessage)},
		{"cookie alone", Msg{Cookie: []byte{1}}, int(MalformedMessage)},
		{"error from client", Msg{Connect: Connect{Dst: v4dst}, HasError: true}, int(UnsupportedMessage)},
		{"ext header from client", Msg{Connect: Connect{Dst: v4dst}, ExtTCPHeader: []byte{}}, int(UnsupportedMessage)},
		{"supported ext from client", Msg{Info: true, SupportedExt: []byte{30}}, int(UnsupportedMessage)},
	}
	for _, tt := range tests {
		err := CheckRequest(&tt.msg)
		code, ok := CodeOf(err)
		switch {
		case tt.code < 0 && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.code >= 0 && (!ok || code != ErrorCode(tt.code)):
			t.Errorf("%s: CodeOf(%v) = %v, %v; want %v", tt.name, err, code, ok, ErrorCode(tt.code))
		}
	}
}

func TestErrorReply(t *testing.T) {
	read := func(wire string) ([]byte, error) {
		_, raw, err := ReadRequest(bytes.NewReader(h(t, wire)), nil)
		return raw, err
	}
	// Unsupported Message echoes the request (Figure 23).
	raw, err := read("01022263 02010000")
	m, ok := ErrorReply(err, raw)
	if !ok || m.Error.Code != UnsupportedMessage || !bytes.Equal(m.Error.Echo(), h(t, "01022263 02010000")) {
		t.Errorf("unknown TLV: %v, %+v", ok, m)
	}
	// Unsupported Version lists ours.
	raw, err = read("07012263")
	m, ok = ErrorReply(err, raw)
	if !ok || m.Error.Code != UnsupportedVersion || !bytes.Equal(m.Error.List(), []byte{Version}) {
		t.Errorf("version: %v, %+v", ok, m)
	}
	// Total Length 0 is answered by a reset, not an Error TLV.
	raw, err = read("01002263")
	if _, ok := ErrorReply(err, raw); ok {
		t.Error("Total Length 0 got an Error TLV")
	}
	// Cookie rejections are Not Authorized with Value 0.
	m, ok = ErrorReply(ErrCookieBadMAC, nil)
	if !ok || m.Error.Code != NotAuthorized || !bytes.Equal(m.Error.Value, []byte{0}) {
		t.Errorf("cookie: %v, %+v", ok, m)
	}
	// I/O errors carry no code.
	if _, ok := ErrorReply(io.ErrUnexpectedEOF, nil); ok {
		t.Error("I/O error got an Error TLV")
	}
	// Every reply is itself a valid message.
	b, err := m.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ReadReply(bytes.NewReader(b), nil); err == nil {
		t.Error("Error reply read back as success")
	}
}
