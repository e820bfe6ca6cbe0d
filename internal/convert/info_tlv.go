package convert

// infoCodec is the Info TLV (§6.2.3): Type, Length = 1, two Zero bytes.
type infoCodec struct{ noCheck }

func (infoCodec) has(m Msg) bool { return m.Info }

func (infoCodec) wireLen(Msg) int { return 4 }

func (infoCodec) parse(m Msg, v []byte, off int) (Msg, error) {
	if len(v) != 4 {
		return m, perr(MalformedMessage, "info.length", off+1, "Info TLV length is not 1")
	}
	// The Zero field is not checked: §6.2.3 gives it no meaning.
	m.Info = true
	return m, nil
}

func (infoCodec) appendTo(b []byte, _ Msg) []byte {
	return append(b, byte(TypeInfo), 1, 0, 0)
}
