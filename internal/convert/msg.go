package convert

import (
	"encoding/binary"
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
	i := tlvIndex(t)
	return i >= 0 && tlvs[i].codec.has(*m)
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
	var seen uint8 // bit i set: a tlvs[i] was seen
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
		i := tlvIndex(t)
		if i < 0 {
			return Msg{}, 0, perr(UnsupportedMessage, "tlv.type", off, "unsupported "+t.String()+" TLV")
		}
		bit := uint8(1) << i
		if seen&bit != 0 {
			return Msg{}, 0, perr(MalformedMessage, "tlv.type", off, "duplicate "+t.String()+" TLV")
		}
		seen |= bit
		if m, err = tlvs[i].codec.parse(m, b[off:off+l], off); err != nil {
			return Msg{}, 0, err
		}
		off += l
	}
	return m, n, nil
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
	for i := range tlvs {
		if c := tlvs[i].codec; c.has(*m) {
			n += c.wireLen(*m)
		}
	}
	return n
}

// encodeError reports a Msg that cannot be put on the wire; it is the sender's
// bug, so it carries no RFC code.
type encodeError struct{ field, reason string }

func (e *encodeError) Error() string { return "convert: cannot encode " + e.field + ": " + e.reason }

// Append appends the wire form of m to b, TLVs in type order. It refuses a
// message a conforming receiver would reject, so a peer never has to; on
// error b is returned unchanged.
func (m *Msg) Append(b []byte) ([]byte, error) {
	n := m.Len()
	if n > MaxMsgLen {
		return b, &encodeError{"message", "longer than 1020 bytes"}
	}
	// Every check before the first byte is written.
	for i := range tlvs {
		if c := tlvs[i].codec; c.has(*m) {
			if err := c.check(*m); err != nil {
				return b, err
			}
		}
	}
	b = append(b, Version, byte(n/4), Magic>>8, Magic&0xff)
	for i := range tlvs {
		if c := tlvs[i].codec; c.has(*m) {
			b = c.appendTo(b, *m)
		}
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
