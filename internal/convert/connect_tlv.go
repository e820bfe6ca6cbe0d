package convert

// connectCodec is the Connect TLV (§6.2.5): Type, Length, Remote Peer
// Port, the 128-bit address, then for an Extended Connect the TCP options,
// zero-padded.
type connectCodec struct{}

func (connectCodec) has(m Msg) bool { return m.Connect.Dst.IsValid() }

func (connectCodec) wireLen(m Msg) int { return 20 + pad4(len(m.Connect.Options)) }

func (connectCodec) parse(m Msg, v []byte, off int) (Msg, error) {
	if len(v) < 20 {
		return m, perr(MalformedMessage, "connect.length", off+1, "Connect TLV shorter than 5 words")
	}
	dst, err := parseAddrPort(v[2:4], v[4:20], "connect", off)
	if err != nil {
		return m, err
	}
	opts, err := trimOptions(v[20:], off+20)
	if err != nil {
		return m, err
	}
	m.Connect = Connect{Dst: dst, Options: opts}
	return m, nil
}

func (connectCodec) check(m Msg) error {
	if err := checkAddrPort(m.Connect.Dst, "connect"); err != nil {
		return err
	}
	if end, reason := scanOptions(m.Connect.Options); reason != "" || end != len(m.Connect.Options) {
		if reason == "" {
			reason = "zero byte inside the options"
		}
		return &encodeError{"connect.options", reason}
	}
	return nil
}

func (c connectCodec) appendTo(b []byte, m Msg) []byte {
	b = appendAddrPort(append(b, byte(TypeConnect), byte(c.wireLen(m)/4)), m.Connect.Dst)
	return appendPadded(b, m.Connect.Options)
}

// trimOptions validates the TCP Options field of an Extended Connect
// (§6.2.5 Figure 19) and returns it without the zero padding, nil if empty.
func trimOptions(b []byte, off int) ([]byte, error) {
	end, reason := scanOptions(b)
	if reason != "" {
		return nil, perr(MalformedMessage, "connect.options", off+end, reason)
	}
	if len(b)-end >= 4 {
		// Padding only reaches the next 32-bit boundary (§6.2.5): four
		// zero bytes or more are not a Base Connect in disguise.
		return nil, perr(MalformedMessage, "connect.options", off+end, "padding beyond the next 32-bit boundary")
	}
	if end == 0 {
		return nil, nil
	}
	return b[:end:end], nil
}

// scanOptions walks Kind/Length options and returns where the options end
// (the first EOL, which must start zero padding only) or why they are bad.
func scanOptions(b []byte) (int, string) {
	i := 0
	for i < len(b) {
		switch b[i] {
		case 0:
			for j := i; j < len(b); j++ {
				if b[j] != 0 {
					return j, "non-zero byte after the option padding"
				}
			}
			return i, ""
		case 1:
			return i, "NOP option not allowed"
		}
		if i+1 >= len(b) {
			return i, "TCP option without length"
		}
		l := int(b[i+1])
		if l < 2 {
			return i, "TCP option length below 2"
		}
		if l > len(b)-i {
			return i, "TCP option overruns the Connect TLV"
		}
		i += l
	}
	return i, ""
}
