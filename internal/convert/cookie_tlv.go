package convert

// cookieCodec is the Cookie TLV (§6.2.7): an opaque cookie, zero-padded;
// cookie.go has what hybridgw puts inside it.
type cookieCodec struct{ noCheck }

func (cookieCodec) has(m Msg) bool { return m.Cookie != nil }

func (cookieCodec) wireLen(m Msg) int { return opaqueLen(m.Cookie) }

func (cookieCodec) parse(m Msg, v []byte, _ int) (Msg, error) {
	m.Cookie = parseOpaque(v)
	return m, nil
}

func (cookieCodec) appendTo(b []byte, m Msg) []byte {
	return appendOpaque(b, TypeCookie, m.Cookie)
}
