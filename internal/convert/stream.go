package convert

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
)

// ReadMsg reads exactly one Convert message from r: the fixed header, then
// the rest of the Total Length, never a byte more, because relay data
// follows on the same stream. buf is used if it holds MaxMsgLen bytes
// (otherwise one is allocated); the Msg and raw alias it. raw is what was
// read, also on a *ParseError, so a converter can echo it (§6.2.8).
//
// A stream that ends before the first byte returns io.EOF; one that ends
// inside the message returns an error wrapping io.ErrUnexpectedEOF.
func ReadMsg(r io.Reader, buf []byte) (m Msg, raw []byte, err error) {
	if len(buf) < MaxMsgLen {
		buf = make([]byte, MaxMsgLen)
	}
	if _, err := io.ReadFull(r, buf[:HeaderLen]); err != nil {
		if errors.Is(err, io.EOF) {
			// Unwrapped: a peer that closes before sending anything is a
			// normal end that callers compare against io.EOF.
			return Msg{}, nil, err
		}
		return Msg{}, nil, fmt.Errorf("convert: reading header: %w", err)
	}
	n, err := ParseHeader(buf)
	if err != nil {
		// A bad header leaves the length unknown: read nothing more.
		return Msg{}, buf[:HeaderLen], err
	}
	if _, err := io.ReadFull(r, buf[HeaderLen:n]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Msg{}, nil, fmt.Errorf("convert: reading %d-byte message: %w", n, err)
	}
	m, _, err = Parse(buf[:n])
	return m, buf[:n], err
}

// WriteMsg writes m to w in one Write, so that a TFO connect carries the
// whole message in its SYN.
func WriteMsg(w io.Writer, m *Msg) error {
	var a [MaxMsgLen]byte
	b, err := m.Append(a[:0])
	if err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("convert: writing message: %w", err)
	}
	return nil
}

// ConnectMsg builds the message hcpe sends first: a Base Connect to dst, the
// Client Address TLV when client is valid, and a Cookie TLV when cookie is
// not nil.
func ConnectMsg(dst, client netip.AddrPort, cookie []byte) Msg {
	return Msg{Connect: Connect{Dst: dst}, ClientAddr: client, Cookie: cookie}
}

// RemoteError is an Error TLV the converter answered with. The client must
// reset the connection (§6.2.8); the methods of ErrorTLV say what next
// (BackOff, ICMPCode, Echo for a Missing Cookie's cookie).
type RemoteError struct {
	ErrorTLV
}

func (e *RemoteError) Error() string {
	s := "convert: converter answered " + e.Code.String()
	switch e.Code {
	case ResourceExceeded, NetworkFailure:
		s += ", back off " + e.BackOff().String()
	case DestinationUnreachable:
		c, _ := e.ICMPCode()
		s += ", ICMP code " + strconv.Itoa(int(c))
	}
	return s
}

// ConvertCode makes CodeOf report the converter's code.
func (e *RemoteError) ConvertCode() ErrorCode { return e.Code }

// ReadReply reads the converter's answer to a Connect and classifies it:
// success (header only, or with Extended TCP Header / Supported TCP
// Extensions) returns the Msg; an Error TLV returns a *RemoteError holding
// its own copy of the Value; a reply carrying client-only TLVs is a
// *ParseError. Any error means the client resets the connection.
func ReadReply(r io.Reader, buf []byte) (Msg, error) {
	m, _, err := ReadMsg(r, buf)
	if err != nil {
		return Msg{}, err
	}
	if m.HasError {
		e := m.Error
		e.Value = append([]byte(nil), e.Value...)
		return m, &RemoteError{e}
	}
	for _, t := range [...]TLVType{TypeInfo, TypeConnect, TypeCookie, TypeClientAddress} {
		if m.Has(t) {
			return Msg{}, perr(UnsupportedMessage, "reply", HeaderLen, t.String()+" TLV in a converter reply")
		}
	}
	return m, nil
}

// CheckRequest applies the converter's rules for a message from a client:
// only client TLVs (Info, Connect, Cookie, Client Address), and either a
// Connect or an Info to act on. A Client Address without a Connect has
// nothing to qualify, so it is Malformed.
func CheckRequest(m *Msg) error {
	for _, t := range [...]TLVType{TypeExtendedTCPHeader, TypeSupportedTCPExt, TypeError} {
		if m.Has(t) {
			return perr(UnsupportedMessage, "request", HeaderLen, t.String()+" TLV from a client")
		}
	}
	if !m.Has(TypeConnect) {
		if m.Has(TypeClientAddress) {
			return perr(MalformedMessage, "request", HeaderLen, "Client Address TLV without Connect")
		}
		if !m.Info {
			return perr(MalformedMessage, "request", HeaderLen, "neither Connect nor Info")
		}
	}
	return nil
}

// ReadRequest is ReadMsg followed by CheckRequest, what hag runs first on an
// accepted connection. Feed a failure and raw to ErrorReply.
func ReadRequest(r io.Reader, buf []byte) (Msg, []byte, error) {
	m, raw, err := ReadMsg(r, buf)
	if err != nil {
		return Msg{}, raw, err
	}
	if err := CheckRequest(&m); err != nil {
		return Msg{}, raw, err
	}
	return m, raw, nil
}

// ErrorReply builds the Error message a converter sends for err, echoing
// raw (the bytes read) where §6.2.8 asks for it. ok is false when err
// carries no code or the RFC wants a reset instead (Total Length 0): the
// caller then just resets.
func ErrorReply(err error, raw []byte) (m Msg, ok bool) {
	var pe *ParseError
	if errors.As(err, &pe) && pe.Reset {
		return Msg{}, false
	}
	code, ok := CodeOf(err)
	if !ok {
		return Msg{}, false
	}
	var e ErrorTLV
	switch code {
	case UnsupportedVersion:
		e = NewListError(code, Version)
	case MalformedMessage, UnsupportedMessage:
		e = NewEchoError(code, raw)
	default:
		e = NewError(code, 0)
	}
	return Msg{HasError: true, Error: e}, true
}
