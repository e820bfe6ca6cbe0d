package convert

// clientAddrCodec is hybridgw's Client Address TLV (private use, see the
// package doc): Type, Length = 5, Source Port, the 128-bit address.
type clientAddrCodec struct{}

func (clientAddrCodec) has(m Msg) bool { return m.ClientAddr.IsValid() }

func (clientAddrCodec) wireLen(Msg) int { return 20 }

func (clientAddrCodec) parse(m Msg, v []byte, off int) (Msg, error) {
	if len(v) != 20 {
		return m, perr(MalformedMessage, "client_address.length", off+1, "Client Address TLV length is not 5")
	}
	src, err := parseAddrPort(v[2:4], v[4:20], "client_address", off)
	if err != nil {
		return m, err
	}
	m.ClientAddr = src
	return m, nil
}

func (clientAddrCodec) check(m Msg) error { return checkAddrPort(m.ClientAddr, "client_address") }

func (clientAddrCodec) appendTo(b []byte, m Msg) []byte {
	return appendAddrPort(append(b, byte(TypeClientAddress), 5), m.ClientAddr)
}
