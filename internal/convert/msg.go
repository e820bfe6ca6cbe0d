package convert

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
)

const (
	Version   = 1      // the only version RFC 8803 defines (§6.1)
	Magic     = 0x2263 // §6.1
	HeaderLen = 4
	// MaxMsgLen is the largest message: Total Length is 8 bits of words.
	MaxMsgLen = 255 * 4

	// A Resource Exceeded or Network Failure with a zero Value means "at
	// least 30 seconds" (§6.2.8).
	defaultBackOffSeconds = 30
)

// TLVType is a Convert TLV type (§6.2.2 Table 1, §10.2.2).
type TLVType uint8

const (
	TypeInfo              TLVType = 0x01
	TypeConnect           TLVType = 0x0A
	TypeExtendedTCPHeader TLVType = 0x14
	TypeSupportedTCPExt   TLVType = 0x15
	TypeCookie            TLVType = 0x16
	TypeError             TLVType = 0x1E
	// TypeClientAddress is hybridgw's private-use TLV (see the package doc).
	TypeClientAddress TLVType = 0xC0
)

func (t TLVType) String() string {
	switch t {
	case TypeInfo:
		return "Info"
	case TypeConnect:
		return "Connect"
	case TypeExtendedTCPHeader:
		return "Extended TCP Header"
	case TypeSupportedTCPExt:
		return "Supported TCP Extensions"
	case TypeCookie:
		return "Cookie"
	case TypeError:
		return "Error"
	case TypeClientAddress:
		return "Client Address"
	}
	return "TLVType(" + strconv.Itoa(int(t)) + ")"
}

// Msg is one Convert message: the fixed header and the TLVs it frames.
// Each TLV is present at most once (§6.2.1); how presence is shown depends on
// the field, and Has answers it uniformly. Slices alias the parsed buffer.
type Msg struct {
	// Info is the Info TLV (§6.2.3).
	Info bool
	// Connect is present when Connect.Dst is valid (§6.2.5).
	Connect Connect
	// ExtTCPHeader holds the server's SYN+ACK options (§6.2.6) including
	// any padding; nil means absent, empty means present without options.
	ExtTCPHeader []byte
	// SupportedExt lists TCP option kinds (§6.2.4), padding removed; nil
	// means absent.
	SupportedExt []byte
	// Cookie is the opaque cookie (§6.2.7) including the zero padding the
	// wire adds; nil means absent.
	Cookie []byte
	// HasError says whether Error is present: every code, including 0, is
	// meaningful, so presence cannot be read off the value.
	HasError bool
	Error    ErrorTLV
	// ClientAddr is hybridgw's Client Address TLV; present when valid.
	ClientAddr netip.AddrPort
}

// Connect is the Connect TLV (§6.2.5).
type Connect struct {
	// Dst is the remote peer; IPv4 addresses are unmapped (4 bytes).
	Dst netip.AddrPort
	// Options holds the TCP options of an Extended Connect as on the wire
	// (Kind, Length, Value ...), without the trailing zero padding. nil
	// for a Base Connect.
	Options []byte
}

// ErrorTLV is the Error TLV (§6.2.8).
type ErrorTLV struct {
	Code ErrorCode
	// Value is every byte after the code up to the end of the TLV, padding
	// included; the accessor methods interpret it per code.
	Value []byte
}

// Has reports whether m carries a TLV of type t.
func (m *Msg) Has(t TLVType) bool {
	switch t {
	case TypeInfo:
		return m.Info
	case TypeConnect:
		return m.Connect.Dst.IsValid()
	case TypeExtendedTCPHeader:
		return m.ExtTCPHeader != nil
	case TypeSupportedTCPExt:
		return m.SupportedExt != nil
	case TypeCookie:
		return m.Cookie != nil
	case TypeError:
		return m.HasError
	case TypeClientAddress:
		return m.ClientAddr.IsValid()
	}
	return false
}

// ParseHeader validates the fixed header at the start of b and returns the
// message length in bytes. It lets a stream reader learn how much to read
// without reading past the message.
func ParseHeader(b []byte) (int, error) {
	if len(b) < HeaderLen {
		return 0, ErrShort
	}
	// Magic first: with a wrong magic these bytes are not Convert at all, so
	// answering Unsupported Version would invite a pointless retry.
	if binary.BigEndian.Uint16(b[2:]) != Magic {
		return 0, perr(MalformedMessage, "header.magic", 2, "magic number is not 0x2263")
	}
	if b[0] != Version {
		return 0, perr(UnsupportedVersion, "header.version", 0, "unsupported version "+strconv.Itoa(int(b[0])))
	}
	if b[1] == 0 {
		return 0, &ParseError{Code: MalformedMessage, Field: "header.total_length", Offset: 1,
			Reason: "total length is zero", Reset: true}
	}
	return int(b[1]) * 4, nil
}

// Parse decodes the Convert message at the start of b and returns it with
// the number of bytes it occupies; bytes after that belong to the relay.
// It returns ErrShort if b ends inside the message and a *ParseError for
// any violation. The Msg aliases b.
func Parse(b []byte) (Msg, int, error) {
	var m Msg
	n, err := ParseHeader(b)
	if err != nil {
		return Msg{}, 0, err
	}
	if len(b) < n {
		return Msg{}, 0, ErrShort
	}
	var seen uint8
	for off := HeaderLen; off < n; {
		// off and n are multiples of 4, so a whole TLV header is here.
		t := TLVType(b[off])
		l := int(b[off+1]) * 4
		if t == 0 {
			// §6.2.2: type 0 is answered with Unsupported Message.
			return Msg{}, 0, perr(UnsupportedMessage, "tlv.type", off, "reserved TLV type 0")
		}
		if l == 0 {
			return Msg{}, 0, perr(MalformedMessage, "tlv.length", off+1, "zero-length "+t.String()+" TLV")
		}
		if l > n-off {
			return Msg{}, 0, perr(MalformedMessage, "tlv.length", off+1, t.String()+" TLV overruns total length")
		}
		bit := typeBit(t)
		if bit == 0 {
			return Msg{}, 0, perr(UnsupportedMessage, "tlv.type", off, "unsupported "+t.String()+" TLV")
		}
		if seen&bit != 0 {
			return Msg{}, 0, perr(MalformedMessage, "tlv.type", off, "duplicate "+t.String()+" TLV")
		}
		seen |= bit
		if err := m.parseTLV(t, b[off:off+l], off); err != nil {
			return Msg{}, 0, err
		}
		off += l
	}
	return m, n, nil
}

// typeBit gives each known type a bit for duplicate detection; 0 means the
// type is not one this codec understands.
func typeBit(t TLVType) uint8 {
	switch t {
	case TypeInfo:
		return 1 << 0
	case TypeConnect:
		return 1 << 1
	case TypeExtendedTCPHeader:
		return 1 << 2
	case TypeSupportedTCPExt:
		return 1 << 3
	case TypeCookie:
		return 1 << 4
	case TypeError:
		return 1 << 5
	case TypeClientAddress:
		return 1 << 6
	}
	return 0
}

// parseTLV decodes one framed TLV v (header included) found at offset off.
func (m *Msg) parseTLV(t TLVType, v []byte, off int) error {
	switch t {
	case TypeInfo:
		if len(v) != 4 {
			return perr(MalformedMessage, "info.length", off+1, "Info TLV length is not 1")
		}
		// The Zero field is not checked: §6.2.3 gives it no meaning.
		m.Info = true
	case TypeConnect:
		if len(v) < 20 {
			return perr(MalformedMessage, "connect.length", off+1, "Connect TLV shorter than 5 words")
		}
		dst, err := parseAddrPort(v[2:4], v[4:20], "connect", off)
		if err != nil {
			return err
		}
		opts, err := trimOptions(v[20:], off+20)
		if err != nil {
			return err
		}
		m.Connect = Connect{Dst: dst, Options: opts}
	case TypeExtendedTCPHeader:
		// The Unassigned field is ignored on receipt (§6.2.6).
		m.ExtTCPHeader = v[4:len(v):len(v)]
	case TypeSupportedTCPExt:
		// Kind 0 is EOL, never a supported extension, so trailing zeros are
		// padding (§6.2.4).
		m.SupportedExt = trimZeros(v[4:len(v):len(v)])
		for i, k := range m.SupportedExt {
			// Kinds 1 and 2 MUST NOT appear (§6.2.4); a 0 before the
			// padding is an EOL in the middle of the list. Append refuses
			// the same kinds, so what parses re-encodes.
			if k <= 2 {
				return perr(MalformedMessage, "supported_ext.kind", off+4+i, "Supported TCP Extensions lists kind 0, 1 or 2")
			}
		}
	case TypeCookie:
		m.Cookie = v[4:len(v):len(v)]
	case TypeError:
		m.HasError = true
		m.Error = ErrorTLV{Code: ErrorCode(v[2]), Value: v[3:len(v):len(v)]}
	case TypeClientAddress:
		if len(v) != 20 {
			return perr(MalformedMessage, "client_address.length", off+1, "Client Address TLV length is not 5")
		}
		src, err := parseAddrPort(v[2:4], v[4:20], "client_address", off)
		if err != nil {
			return err
		}
		m.ClientAddr = src
	}
	return nil
}

func parseAddrPort(port, addr []byte, field string, off int) (netip.AddrPort, error) {
	a := netip.AddrFrom16([16]byte(addr)).Unmap()
	if reason := badAddr(a); reason != "" {
		return netip.AddrPort{}, perr(MalformedMessage, field+".address", off+4, reason)
	}
	p := binary.BigEndian.Uint16(port)
	if p == 0 {
		return netip.AddrPort{}, perr(MalformedMessage, field+".port", off+2, "port is zero")
	}
	return netip.AddrPortFrom(a, p), nil
}

// badAddr says why a is unusable as a Connect or client address (§6.2.5,
// RFC 6890), or "" if it is fine. a must already be unmapped.
func badAddr(a netip.Addr) string {
	switch {
	case a.IsUnspecified():
		return "unspecified address"
	case a.Is4() && a.As4()[0] == 0:
		// 0.0.0.0/8, "this network" (RFC 6890): never a destination.
		return "address in 0.0.0.0/8"
	case a.IsLoopback():
		return "loopback address"
	case a.IsMulticast():
		return "multicast address"
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "broadcast address"
	}
	return ""
}

// trimOptions validates the TCP Options field of an Extended Connect
// (§6.2.5 Figure 19) and returns it without the zero padding, nil if empty.
func trimOptions(b []byte, off int) ([]byte, error) {
	end, reason := scanOptions(b)
	if reason != "" {
		return nil, perr(MalformedMessage, "connect.options", off+end, reason)
	}
	if len(b)-end >= 4 {
		// Padding only reaches the next 32-bit boundary (§6.2.5): four
		// zero bytes or more are not a Base Connect in disguise.
		return nil, perr(MalformedMessage, "connect.options", off+end, "padding beyond the next 32-bit boundary")
	}
	if end == 0 {
		return nil, nil
	}
	return b[:end:end], nil
}

// scanOptions walks Kind/Length options and returns where the options end
// (the first EOL, which must start zero padding only) or why they are bad.
func scanOptions(b []byte) (int, string) {
	i := 0
	for i < len(b) {
		switch b[i] {
		case 0:
			for j := i; j < len(b); j++ {
				if b[j] != 0 {
					return j, "non-zero byte after the option padding"
				}
			}
			return i, ""
		case 1:
			return i, "NOP option not allowed"
		}
		if i+1 >= len(b) {
			return i, "TCP option without length"
		}
		l := int(b[i+1])
		if l < 2 {
			return i, "TCP option length below 2"
		}
		if l > len(b)-i {
			return i, "TCP option overruns the Connect TLV"
		}
		i += l
	}
	return i, ""
}

func trimZeros(b []byte) []byte {
	for len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	return b
}

func pad4(n int) int { return (n + 3) &^ 3 }

// Len returns the length of m on the wire, the number of bytes Append adds.
func (m *Msg) Len() int {
	n := HeaderLen
	if m.Info {
		n += 4
	}
	if m.Connect.Dst.IsValid() {
		n += 20 + pad4(len(m.Connect.Options))
	}
	if m.ExtTCPHeader != nil {
		n += 4 + pad4(len(m.ExtTCPHeader))
	}
	if m.SupportedExt != nil {
		n += 4 + pad4(len(m.SupportedExt))
	}
	if m.Cookie != nil {
		n += 4 + pad4(len(m.Cookie))
	}
	if m.HasError {
		n += pad4(3 + max(len(m.Error.Value), 1))
	}
	if m.ClientAddr.IsValid() {
		n += 20
	}
	return n
}

// encodeError reports a Msg that cannot be put on the wire; it is the sender's
// bug, so it carries no RFC code.
type encodeError struct{ field, reason string }

func (e *encodeError) Error() string { return "convert: cannot encode " + e.field + ": " + e.reason }

// Append appends the wire form of m to b, TLVs in type order. It refuses a
// message a conforming receiver would reject, so a peer never has to.
func (m *Msg) Append(b []byte) ([]byte, error) {
	n := m.Len()
	if n > MaxMsgLen {
		return b, &encodeError{"message", "longer than 1020 bytes"}
	}
	if m.Connect.Dst.IsValid() {
		if err := checkAddrPort(m.Connect.Dst, "connect"); err != nil {
			return b, err
		}
		if end, reason := scanOptions(m.Connect.Options); reason != "" || end != len(m.Connect.Options) {
			if reason == "" {
				reason = "zero byte inside the options"
			}
			return b, &encodeError{"connect.options", reason}
		}
	}
	for _, k := range m.SupportedExt {
		if k <= 2 {
			// EOL, NOP and MSS are never listed (§6.2.4); a zero would
			// also read as padding.
			return b, &encodeError{"supported_ext", fmt.Sprintf("TCP option kind %d is not allowed", k)}
		}
	}
	if m.ClientAddr.IsValid() {
		if err := checkAddrPort(m.ClientAddr, "client_address"); err != nil {
			return b, err
		}
	}
	b = append(b, Version, byte(n/4), Magic>>8, Magic&0xff)
	if m.Info {
		b = append(b, byte(TypeInfo), 1, 0, 0)
	}
	if m.Connect.Dst.IsValid() {
		l := 20 + pad4(len(m.Connect.Options))
		b = appendAddrPort(append(b, byte(TypeConnect), byte(l/4)), m.Connect.Dst)
		b = appendPadded(b, m.Connect.Options)
	}
	if m.ExtTCPHeader != nil {
		b = appendPadded(append(b, byte(TypeExtendedTCPHeader), byte(1+pad4(len(m.ExtTCPHeader))/4), 0, 0), m.ExtTCPHeader)
	}
	if m.SupportedExt != nil {
		b = appendPadded(append(b, byte(TypeSupportedTCPExt), byte(1+pad4(len(m.SupportedExt))/4), 0, 0), m.SupportedExt)
	}
	if m.Cookie != nil {
		b = appendPadded(append(b, byte(TypeCookie), byte(1+pad4(len(m.Cookie))/4), 0, 0), m.Cookie)
	}
	if m.HasError {
		v := m.Error.Value
		l := pad4(3 + max(len(v), 1))
		b = append(b, byte(TypeError), byte(l/4), byte(m.Error.Code))
		if len(v) == 0 {
			b = append(b, 0)
		} else {
			b = append(b, v...)
		}
		b = appendZeros(b, l-3-max(len(v), 1))
	}
	if m.ClientAddr.IsValid() {
		b = appendAddrPort(append(b, byte(TypeClientAddress), 5), m.ClientAddr)
	}
	return b, nil
}

func checkAddrPort(ap netip.AddrPort, field string) error {
	a := ap.Addr()
	if a.Zone() != "" {
		return &encodeError{field + ".address", "address has a zone"}
	}
	if reason := badAddr(a.Unmap()); reason != "" {
		return &encodeError{field + ".address", reason}
	}
	if ap.Port() == 0 {
		return &encodeError{field + ".port", "port is zero"}
	}
	return nil
}

// appendAddrPort writes Port(16) then the 128-bit address; As16 maps IPv4
// to ::ffff:a.b.c.d as §6.2.5 requires.
func appendAddrPort(b []byte, ap netip.AddrPort) []byte {
	b = binary.BigEndian.AppendUint16(b, ap.Port())
	a := ap.Addr().As16()
	return append(b, a[:]...)
}

func appendPadded(b, v []byte) []byte {
	return appendZeros(append(b, v...), pad4(len(v))-len(v))
}

func appendZeros(b []byte, n int) []byte {
	for range n {
		b = append(b, 0)
	}
	return b
}
