package mptcp

import (
	"encoding/binary"
	"net/netip"
)

// sock_diag numbers from include/uapi/linux/sock_diag.h and inet_diag.h.
const (
	sockDestroy     = 21         // SOCK_DESTROY
	ipprotoTCP      = 6          // IPPROTO_TCP
	diagNoCookie    = 0xffffffff // INET_DIAG_NOCOOKIE: match any socket cookie
	diagReqV2Len    = 56         // sizeof(struct inet_diag_req_v2)
	diagAllStates   = 0xffffffff
	diagSockIDStart = 8 // offsetof(struct inet_diag_req_v2, id)
)

// appendDestroyRequest appends a struct inet_diag_req_v2 naming the TCP
// socket local->remote, as SOCK_DESTROY takes it:
//
//	u8 family, u8 protocol, u8 ext, u8 pad, u32 states,
//	id: be16 sport, be16 dport, be32 src[4], be32 dst[4], u32 if, u32 cookie[2]
//
// Both addresses are unmapped first: a v4 subflow of a dual-stack socket
// sits in the kernel's tables under its IPv4 addresses, and the kernel
// looks it up by the family given here.
func appendDestroyRequest(b []byte, local, remote netip.AddrPort) []byte {
	l, r := local.Addr().Unmap(), remote.Addr().Unmap()
	family := byte(afInet6)
	if l.Is4() && r.Is4() {
		family = afInet
	}
	b = append(b, family, ipprotoTCP, 0, 0)
	b = binary.NativeEndian.AppendUint32(b, diagAllStates)
	b = binary.BigEndian.AppendUint16(b, local.Port())
	b = binary.BigEndian.AppendUint16(b, remote.Port())
	for _, a := range []netip.Addr{l, r} {
		var raw [16]byte
		if family == afInet {
			v4 := a.As4()
			copy(raw[:], v4[:])
		} else {
			raw = a.As16()
		}
		b = append(b, raw[:]...)
	}
	b = binary.NativeEndian.AppendUint32(b, 0) // any interface
	b = binary.NativeEndian.AppendUint32(b, diagNoCookie)
	return binary.NativeEndian.AppendUint32(b, diagNoCookie)
}
