package convert

import (
	"errors"
	"strconv"
)

// ErrorCode is the Error Code of an Error TLV (RFC 8803 §6.2.8, Table 2).
// The range says whose fault it is: 0–31 message validation, 32–63 client,
// 64–95 converter, 96–127 destination server.
type ErrorCode uint8

const (
	UnsupportedVersion     ErrorCode = 0  // Value: supported versions, one byte each
	MalformedMessage       ErrorCode = 1  // Value: 0, then an echo of the message
	UnsupportedMessage     ErrorCode = 2  // Value: 0, then an echo of the message
	MissingCookie          ErrorCode = 3  // Value: 0, then the converter's cookie
	NotAuthorized          ErrorCode = 32 // Value: 0
	UnsupportedTCPOption   ErrorCode = 33 // Value: the refused option kinds
	ResourceExceeded       ErrorCode = 64 // Value: back-off in seconds, 0 = at least 30 s
	NetworkFailure         ErrorCode = 65 // Value: back-off in seconds, 0 = at least 30 s
	ConnectionReset        ErrorCode = 96 // Value: 0
	DestinationUnreachable ErrorCode = 97 // Value: the ICMP code
)

// String returns the RFC's name for c.
func (c ErrorCode) String() string {
	switch c {
	case UnsupportedVersion:
		return "Unsupported Version"
	case MalformedMessage:
		return "Malformed Message"
	case UnsupportedMessage:
		return "Unsupported Message"
	case MissingCookie:
		return "Missing Cookie"
	case NotAuthorized:
		return "Not Authorized"
	case UnsupportedTCPOption:
		return "Unsupported TCP Option"
	case ResourceExceeded:
		return "Resource Exceeded"
	case NetworkFailure:
		return "Network Failure"
	case ConnectionReset:
		return "Connection Reset"
	case DestinationUnreachable:
		return "Destination Unreachable"
	}
	return "ErrorCode(" + strconv.Itoa(int(c)) + ")"
}

// ErrShort reports that b ends before the message its header announces.
// It is not a protocol violation: a stream reader should read more.
var ErrShort = errors.New("convert: message truncated")

// ParseError is a protocol violation found while decoding or validating a
// message. Code is what a converter answers with in its Error TLV.
type ParseError struct {
	Code   ErrorCode
	Field  string // what was wrong, e.g. "header.magic" or "connect.address"
	Reason string
	Offset int // byte offset of the offending TLV or field in the message
	// Reset is set where the RFC wants the connection reset rather than
	// answered (Total Length 0, §6.1).
	Reset bool
}

func (e *ParseError) Error() string {
	return "convert: " + e.Field + " at offset " + strconv.Itoa(e.Offset) + ": " +
		e.Reason + " (" + e.Code.String() + ")"
}

// ConvertCode lets CodeOf find the code through wrapping.
func (e *ParseError) ConvertCode() ErrorCode { return e.Code }

// CodeOf returns the Error Code that err stands for: for a *ParseError or a
// cookie rejection, the code to answer with; for a *RemoteError, the code the
// converter sent. ok is false for everything else (I/O errors, ErrShort).
func CodeOf(err error) (code ErrorCode, ok bool) {
	var c interface{ ConvertCode() ErrorCode }
	if errors.As(err, &c) {
		return c.ConvertCode(), true
	}
	return 0, false
}

func perr(code ErrorCode, field string, off int, reason string) error {
	return &ParseError{Code: code, Field: field, Offset: off, Reason: reason}
}
