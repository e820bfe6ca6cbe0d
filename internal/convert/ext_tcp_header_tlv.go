package convert

// extTCPHeaderCodec is the Extended TCP Header TLV (§6.2.6): the options of
// the server's SYN+ACK, copied with their padding.
type extTCPHeaderCodec struct{ noCheck }

func (extTCPHeaderCodec) has(m Msg) bool { return m.ExtTCPHeader != nil }

func (extTCPHeaderCodec) wireLen(m Msg) int { return opaqueLen(m.ExtTCPHeader) }

func (extTCPHeaderCodec) parse(m Msg, v []byte, _ int) (Msg, error) {
	m.ExtTCPHeader = parseOpaque(v)
	return m, nil
}

func (extTCPHeaderCodec) appendTo(b []byte, m Msg) []byte {
	return appendOpaque(b, TypeExtendedTCPHeader, m.ExtTCPHeader)
}
