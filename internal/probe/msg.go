package probe

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"hash"
)

// Wire constants; see the package doc.
const (
	Magic    = 0x6870
	Version  = 1
	MACLen   = 16
	MaxIDLen = 64
	fixedLen = 2 + 1 + 1 + 4 + 8 + 1
	MinLen   = fixedLen + 1 + MACLen
	MaxLen   = fixedLen + MaxIDLen + MACLen
	macLabel = "hybridgw probe v1"
)

// Type tells a request from a reply.
type Type uint8

// The message types.
const (
	Request Type = 1
	Reply   Type = 2
)

// Parse errors.
var (
	ErrShort   = errors.New("probe: message truncated")
	ErrMagic   = errors.New("probe: bad magic")
	ErrVersion = errors.New("probe: unsupported version")
	ErrType    = errors.New("probe: unknown message type")
	ErrIDLen   = errors.New("probe: CPE ID length outside 1..64")
	ErrMAC     = errors.New("probe: MAC does not verify")
)

// Msg is one probe message. After Parse, CPEID aliases the parsed buffer.
type Msg struct {
	Type      Type
	Seq       uint32
	Timestamp uint64
	CPEID     []byte

	signed []byte // after Parse: the bytes the MAC covers
	mac    []byte // after Parse: the MAC as received
}

// Parse reads one message from the start of b and returns it with the
// number of bytes it took. It checks structure only; call Verify with the
// key of the CPE that m.CPEID names before trusting anything in it.
func Parse(b []byte) (Msg, int, error) {
	if len(b) < MinLen {
		return Msg{}, 0, ErrShort
	}
	if binary.BigEndian.Uint16(b) != Magic {
		return Msg{}, 0, ErrMagic
	}
	if b[2] != Version {
		return Msg{}, 0, ErrVersion
	}
	t := Type(b[3])
	if t != Request && t != Reply {
		return Msg{}, 0, ErrType
	}
	idLen := int(b[fixedLen-1])
	if idLen == 0 || idLen > MaxIDLen {
		return Msg{}, 0, ErrIDLen
	}
	n := fixedLen + idLen + MACLen
	if len(b) < n {
		return Msg{}, 0, ErrShort
	}
	return Msg{
		Type:      t,
		Seq:       binary.BigEndian.Uint32(b[4:]),
		Timestamp: binary.BigEndian.Uint64(b[8:]),
		CPEID:     b[fixedLen : fixedLen+idLen],
		signed:    b[:n-MACLen],
		mac:       b[n-MACLen : n],
	}, n, nil
}

// Len is the encoded length of m.
func (m *Msg) Len() int { return fixedLen + len(m.CPEID) + MACLen }

// Append appends m, signed with key, to b.
func (m *Msg) Append(b []byte, key []byte) ([]byte, error) {
	if m.Type != Request && m.Type != Reply {
		return b, ErrType
	}
	if len(m.CPEID) == 0 || len(m.CPEID) > MaxIDLen {
		return b, ErrIDLen
	}
	if len(key) == 0 {
		// An empty key would make every MAC computable by anyone.
		return b, errors.New("probe: empty key")
	}
	start := len(b)
	b = binary.BigEndian.AppendUint16(b, Magic)
	b = append(b, Version, byte(m.Type))
	b = binary.BigEndian.AppendUint32(b, m.Seq)
	b = binary.BigEndian.AppendUint64(b, m.Timestamp)
	b = append(b, byte(len(m.CPEID)))
	b = append(b, m.CPEID...)
	return appendMAC(b, b[start:], key), nil
}

// Verify reports whether a parsed m carries a valid MAC under key. An
// empty key never verifies.
func (m *Msg) Verify(key []byte) bool {
	if len(key) == 0 || m.mac == nil {
		return false
	}
	var buf [sha256.Size]byte
	return hmac.Equal(m.mac, computeMAC(buf[:0], m.signed, key))
}

func appendMAC(b, signed, key []byte) []byte {
	var buf [sha256.Size]byte
	return append(b, computeMAC(buf[:0], signed, key)...)
}

func computeMAC(dst, signed, key []byte) []byte {
	var h hash.Hash = hmac.New(sha256.New, key)
	h.Write([]byte(macLabel))
	h.Write(signed)
	return h.Sum(dst)[:MACLen]
}
