package convert

import "strconv"

// supportedExtCodec is the Supported TCP Extensions TLV (§6.2.4): one byte
// per TCP option kind, zero-padded.
type supportedExtCodec struct{}

func (supportedExtCodec) has(m Msg) bool { return m.SupportedExt != nil }

func (supportedExtCodec) wireLen(m Msg) int { return opaqueLen(m.SupportedExt) }

func (supportedExtCodec) parse(m Msg, v []byte, off int) (Msg, error) {
	// Kind 0 is EOL, never a supported extension, so trailing zeros are
	// padding (§6.2.4).
	m.SupportedExt = trimZeros(parseOpaque(v))
	for i, k := range m.SupportedExt {
		// Kinds 1 and 2 MUST NOT appear (§6.2.4); a 0 before the padding
		// is an EOL in the middle of the list. check refuses the same
		// kinds, so what parses re-encodes.
		if k <= 2 {
			return m, perr(MalformedMessage, "supported_ext.kind", off+4+i, "Supported TCP Extensions lists kind 0, 1 or 2")
		}
	}
	return m, nil
}

func (supportedExtCodec) check(m Msg) error {
	for _, k := range m.SupportedExt {
		if k <= 2 {
			// EOL, NOP and MSS are never listed (§6.2.4); a zero would
			// also read as padding.
			return &encodeError{"supported_ext", "TCP option kind " + strconv.Itoa(int(k)) + " is not allowed"}
		}
	}
	return nil
}

func (supportedExtCodec) appendTo(b []byte, m Msg) []byte {
	return appendOpaque(b, TypeSupportedTCPExt, m.SupportedExt)
}
