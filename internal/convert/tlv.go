package convert

import "strconv"

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

// tlvs is every TLV type the codec understands, in type order: Append
// writes them in this order, and a type's index is its bit in Parse's
// duplicate check. What the codec knows about one TLV (which Msg field
// shows it, its length, parse, checks and append) is its tlvCodec, one file
// per TLV (info_tlv.go, connect_tlv.go, ...), as quic-go keeps one frame
// per file. A new TLV is a row here, a Msg field and a file.
var tlvs = [...]struct {
	typ   TLVType
	name  string
	codec tlvCodec
}{
	{TypeInfo, "Info", infoCodec{}},
	{TypeConnect, "Connect", connectCodec{}},
	{TypeExtendedTCPHeader, "Extended TCP Header", extTCPHeaderCodec{}},
	{TypeSupportedTCPExt, "Supported TCP Extensions", supportedExtCodec{}},
	{TypeCookie, "Cookie", cookieCodec{}},
	{TypeError, "Error", errorCodec{}},
	{TypeClientAddress, "Client Address", clientAddrCodec{}},
}

// Parse keeps the seen types in a uint8: this fails to compile when the
// table outgrows it.
var _ [8 - len(tlvs)]struct{}

// tlvCodec is one TLV's wire format. Msg is passed by value: an interface
// call makes the compiler assume its pointer arguments escape, and a *Msg
// would then cost Parse a heap allocation (TestParseAllocs).
type tlvCodec interface {
	// has reports whether m carries the TLV; how presence shows depends on
	// the field (see Msg).
	has(m Msg) bool
	// wireLen is the TLV's length in bytes when present, header and
	// padding included.
	wireLen(m Msg) int
	// parse decodes the framed TLV v found at offset off of the message
	// and returns m with it set. Parse has checked the framing: v holds
	// the Type and Length bytes and is a non-zero multiple of 4 bytes.
	parse(m Msg, v []byte, off int) (Msg, error)
	// check refuses a TLV that a conforming receiver would reject, so that
	// Append fails before it writes anything.
	check(m Msg) error
	// appendTo appends the TLV to b; check has passed.
	appendTo(b []byte, m Msg) []byte
}

// tlvIndex returns t's index in tlvs, or -1 for a type the codec does not
// understand.
func tlvIndex(t TLVType) int {
	for i := range tlvs {
		if tlvs[i].typ == t {
			return i
		}
	}
	return -1
}

func (t TLVType) String() string {
	if i := tlvIndex(t); i >= 0 {
		return tlvs[i].name
	}
	return "TLVType(" + strconv.Itoa(int(t)) + ")"
}

// The Extended TCP Header, Supported TCP Extensions and Cookie TLVs share
// one layout: Type, Length, two ignored bytes, then a zero-padded value.

func opaqueLen(v []byte) int { return 4 + pad4(len(v)) }

// parseOpaque returns the value of such a TLV, padding included; the two
// bytes after Length are ignored on receipt (§6.2.4, §6.2.6, §6.2.7).
func parseOpaque(v []byte) []byte { return v[4:len(v):len(v)] }

func appendOpaque(b []byte, t TLVType, v []byte) []byte {
	return appendPadded(append(b, byte(t), byte(opaqueLen(v)/4), 0, 0), v)
}

// noCheck is for TLVs whose every value can be sent.
type noCheck struct{}

func (noCheck) check(Msg) error { return nil }
