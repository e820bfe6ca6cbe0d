package convert

import "time"

// maxErrorValue is the most Value an Error TLV can carry: the message is at
// most 1020 bytes, less the fixed header and the TLV's Type, Length and Code.
const maxErrorValue = MaxMsgLen - HeaderLen - 3

// NewError returns an Error TLV whose Value is the single byte v: zero for
// Not Authorized and Connection Reset, the back-off in seconds for Resource
// Exceeded and Network Failure, the ICMP code for Destination Unreachable.
func NewError(code ErrorCode, v uint8) ErrorTLV {
	return ErrorTLV{Code: code, Value: []byte{v}}
}

// NewListError returns an Error TLV carrying a list of one-byte items:
// supported versions for Unsupported Version, refused option kinds for
// Unsupported TCP Option (§6.2.8). Items beyond what fits are dropped.
func NewListError(code ErrorCode, items ...byte) ErrorTLV {
	if len(items) > maxErrorValue {
		items = items[:maxErrorValue]
	}
	return ErrorTLV{Code: code, Value: append([]byte(nil), items...)}
}

// NewEchoError returns an Error TLV in the Figure 23 format: a zero byte,
// then data. data is the offending message for Malformed Message and
// Unsupported Message, the converter's cookie for Missing Cookie. An echo
// too long to fit in one message is cut, which §6.2.8 permits implicitly
// since a 1020-byte message cannot echo itself inside 1020 bytes.
func NewEchoError(code ErrorCode, data []byte) ErrorTLV {
	if len(data) > maxErrorValue-1 {
		data = data[:maxErrorValue-1]
	}
	v := make([]byte, 1, 1+len(data))
	return ErrorTLV{Code: code, Value: append(v, data...)}
}

// byte0 is the one-byte Value most codes carry.
func (e *ErrorTLV) byte0() uint8 {
	if len(e.Value) == 0 {
		return 0
	}
	return e.Value[0]
}

// BackOff is how long to wait before asking the converter again after
// Resource Exceeded or Network Failure: the Value in seconds, 30 s when the
// Value is 0 (§6.2.8). It is 0 for every other code.
func (e *ErrorTLV) BackOff() time.Duration {
	if e.Code != ResourceExceeded && e.Code != NetworkFailure {
		return 0
	}
	s := e.byte0()
	if s == 0 {
		s = defaultBackOffSeconds
	}
	return time.Duration(s) * time.Second
}

// ICMPCode returns the ICMP code a Destination Unreachable echoes.
func (e *ErrorTLV) ICMPCode() (uint8, bool) {
	if e.Code != DestinationUnreachable {
		return 0, false
	}
	return e.byte0(), true
}

// List returns the versions of an Unsupported Version or the option kinds
// of an Unsupported TCP Option, zero padding removed (neither version 0 nor
// option kind 0 can be meant).
func (e *ErrorTLV) List() []byte {
	if e.Code != UnsupportedVersion && e.Code != UnsupportedTCPOption {
		return nil
	}
	return trimZeros(e.Value)
}

// Echo returns what follows the zero byte of a Malformed Message,
// Unsupported Message (the echoed message) or Missing Cookie (the cookie,
// with any zero padding), or nil for other codes.
func (e *ErrorTLV) Echo() []byte {
	switch e.Code {
	case MalformedMessage, UnsupportedMessage, MissingCookie:
		if len(e.Value) > 1 {
			return e.Value[1:]
		}
	}
	return nil
}

// errorCodec is the Error TLV (§6.2.8): Type, Length, Error Code, then the
// Value, at least one byte, zero-padded.
type errorCodec struct{ noCheck }

func (errorCodec) has(m Msg) bool { return m.HasError }

func (errorCodec) wireLen(m Msg) int { return pad4(3 + max(len(m.Error.Value), 1)) }

func (errorCodec) parse(m Msg, v []byte, _ int) (Msg, error) {
	m.HasError = true
	m.Error = ErrorTLV{Code: ErrorCode(v[2]), Value: v[3:len(v):len(v)]}
	return m, nil
}

func (c errorCodec) appendTo(b []byte, m Msg) []byte {
	v := m.Error.Value
	l := c.wireLen(m)
	b = append(b, byte(TypeError), byte(l/4), byte(m.Error.Code))
	if len(v) == 0 {
		b = append(b, 0)
	} else {
		b = append(b, v...)
	}
	return appendZeros(b, l-3-max(len(v), 1))
}
