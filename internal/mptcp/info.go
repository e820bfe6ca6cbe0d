package mptcp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Kernel constants from include/uapi/linux/mptcp.h and in.h. x/sys/unix
// has IPPROTO_MPTCP and SOL_MPTCP but not the option names.
const (
	ipprotoMPTCP = 262 // IPPROTO_MPTCP
	solMPTCP     = 284 // SOL_MPTCP

	optInfo         = 1 // MPTCP_INFO: struct mptcp_info
	optTCPInfo      = 2 // MPTCP_TCPINFO: mptcp_subflow_data + tcp_info[]
	optSubflowAddrs = 3 // MPTCP_SUBFLOW_ADDRS: mptcp_subflow_data + mptcp_subflow_addrs[]
	optFullInfo     = 4 // MPTCP_FULL_INFO: struct mptcp_full_info (Linux 6.5)

	// InfoFlagFallback is set in ConnInfo.Flags when the connection fell back
	// to plain TCP (MPTCP_INFO_FLAG_FALLBACK).
	InfoFlagFallback = 1 << 0
	// InfoFlagRemoteKeyReceived (ConnInfo.Flags) is set once the peer's key arrived, i.e.
	// the MP_CAPABLE handshake completed (MPTCP_INFO_FLAG_REMOTE_KEY_RECEIVED).
	InfoFlagRemoteKeyReceived = 1 << 1

	// infoMinLen is the oldest layout (Linux 5.16) that DecodeInfo accepts:
	// everything up to mptcpi_csum_enabled.
	infoMinLen = 43
	// InfoLen is sizeof(struct mptcp_info) on Linux 6.10 and later.
	InfoLen = 96

	subflowDataLen  = 16  // sizeof(struct mptcp_subflow_data)
	sockaddrStorLen = 128 // sizeof(struct __kernel_sockaddr_storage)
	subflowAddrsLen = 2 * sockaddrStorLen
	fullInfoHdrLen  = 40 // offsetof(struct mptcp_full_info, mptcp_info)
	tcpInfoBufLen   = 512
)

// ErrFallback reports that a socket is not doing MPTCP: it fell back to plain
// TCP (the peer or a middlebox dropped MP_CAPABLE) or was never MPTCP (a
// plain TCP child of an MPTCP listener).
var ErrFallback = errors.New("mptcp: connection fell back to plain TCP")

// ErrSubflowNotFound reports that CloseSubflow found no socket with the
// given addresses: the subflow closed already.
var ErrSubflowNotFound = errors.New("mptcp: no such subflow")

// ErrMPTCPUnavailable reports that the kernel refused to create an
// IPPROTO_MPTCP socket: MPTCP is not built in (EPROTONOSUPPORT), disabled by
// net.mptcp.enabled=0 in this netns (ENOPROTOOPT), or the kernel is older
// than 5.6 (EINVAL). Dial and Listen never fall back to TCP by themselves.
var ErrMPTCPUnavailable = errors.New("mptcp: kernel refuses IPPROTO_MPTCP sockets")

// ConnInfo is the connection-level state from struct mptcp_info. Counts and
// limits are per connection; limits come from the netns path-manager limits
// at connection time. Fields the running kernel does not fill are zero; Len
// says how many bytes it returned.
type ConnInfo struct {
	// Fallback is true when the connection runs as plain TCP.
	Fallback bool

	Subflows           uint8 // extra subflows now (not counting the initial one)
	AddAddrSignal      uint8 // ADD_ADDRs sent
	AddAddrAccepted    uint8 // ADD_ADDRs accepted from the peer
	SubflowsMax        uint8 // limit on extra subflows
	AddAddrSignalMax   uint8 // signal endpoints that may be announced
	AddAddrAcceptedMax uint8 // limit on accepted ADD_ADDRs
	Flags              uint32
	Token              uint32 // local token; matches pm.Event.Token
	WriteSeq           uint64 // next data sequence number to write
	SndUna             uint64 // oldest unacknowledged data sequence number
	RcvNxt             uint64 // next data sequence number expected
	LocalAddrUsed      uint8  // local endpoints in use
	LocalAddrMax       uint8  // subflow endpoints available
	CsumEnabled        bool   // DSS checksums negotiated

	// Linux 6.5 and later. Data carried in a TFO SYN is not counted in
	// BytesSent (measured on 6.18); the subflow's TCPInfo.BytesSent has it.
	Retransmits   uint32 // data-level retransmissions
	BytesRetrans  uint64
	BytesSent     uint64
	BytesReceived uint64
	BytesAcked    uint64

	SubflowsTotal   uint8 // all subflows incl. the initial one (6.8)
	EndpLaminarMax  uint8 // 6.18
	EndpFullmeshMax uint8 // 6.19

	// Time since the last data sent/received and the last ACK (6.10).
	LastDataSent time.Duration
	LastDataRecv time.Duration
	LastAckRecv  time.Duration

	Len int
}

// DecodeInfo decodes a struct mptcp_info as returned by getsockopt(SOL_MPTCP,
// MPTCP_INFO) in host byte order (all Linux targets hybridgw ships on are
// little-endian; the byte order is a parameter so tests can say so).
func DecodeInfo(b []byte) (ConnInfo, error) {
	return decodeInfo(b, binary.NativeEndian)
}

func decodeInfo(b []byte, bo binary.ByteOrder) (ConnInfo, error) {
	if len(b) < infoMinLen {
		return ConnInfo{}, fmt.Errorf("mptcp: decoding mptcp_info: %d bytes, need at least %d", len(b), infoMinLen)
	}
	in := ConnInfo{
		Subflows:           b[0],
		AddAddrSignal:      b[1],
		AddAddrAccepted:    b[2],
		SubflowsMax:        b[3],
		AddAddrSignalMax:   b[4],
		AddAddrAcceptedMax: b[5],
		Flags:              bo.Uint32(b[8:]),
		Token:              bo.Uint32(b[12:]),
		WriteSeq:           bo.Uint64(b[16:]),
		SndUna:             bo.Uint64(b[24:]),
		RcvNxt:             bo.Uint64(b[32:]),
		LocalAddrUsed:      b[40],
		LocalAddrMax:       b[41],
		CsumEnabled:        b[42] != 0,
		Len:                len(b),
	}
	in.Fallback = in.Flags&InfoFlagFallback != 0
	if len(b) >= 80 {
		in.Retransmits = bo.Uint32(b[44:])
		in.BytesRetrans = bo.Uint64(b[48:])
		in.BytesSent = bo.Uint64(b[56:])
		in.BytesReceived = bo.Uint64(b[64:])
		in.BytesAcked = bo.Uint64(b[72:])
	}
	if len(b) >= 84 {
		in.SubflowsTotal = b[80]
		in.EndpLaminarMax = b[81]
		in.EndpFullmeshMax = b[82]
	}
	if len(b) >= InfoLen {
		in.LastDataSent = time.Duration(bo.Uint32(b[84:])) * time.Millisecond
		in.LastDataRecv = time.Duration(bo.Uint32(b[88:])) * time.Millisecond
		in.LastAckRecv = time.Duration(bo.Uint32(b[92:])) * time.Millisecond
	}
	return in, nil
}

// TCPInfo is the part of one subflow's struct tcp_info that hybridgw looks
// at. Fields the running kernel does not fill are zero.
type TCPInfo struct {
	State        uint8 // TCP_ESTABLISHED = 1, ...
	CAState      uint8 // congestion-avoidance state (Open, Disorder, CWR, Recovery, Loss)
	Retransmits  uint8 // consecutive RTO retransmissions now outstanding
	Options      uint8 // TCPI_OPT_* bits
	RTO          time.Duration
	SndMSS       uint32
	RcvMSS       uint32
	Unacked      uint32 // segments in flight
	Lost         uint32
	Retrans      uint32 // segments being retransmitted now
	RTT          time.Duration
	RTTVar       time.Duration
	SndSsthresh  uint32
	SndCwnd      uint32 // segments
	TotalRetrans uint32
	PacingRate   uint64 // bytes per second
	BytesAcked   uint64
	BytesRecv    uint64
	SegsOut      uint32
	SegsIn       uint32
	NotsentBytes uint32
	MinRTT       time.Duration
	DeliveryRate uint64 // bytes per second
	BytesSent    uint64 // including retransmissions
	BytesRetrans uint64
	Len          int
}

// tcpInfoMinLen covers the fields every supported kernel has (through
// tcpi_total_retrans).
const tcpInfoMinLen = 104

// DecodeTCPInfo decodes a struct tcp_info (include/uapi/linux/tcp.h) in
// host byte order.
func DecodeTCPInfo(b []byte) (TCPInfo, error) {
	return decodeTCPInfo(b, binary.NativeEndian)
}

func decodeTCPInfo(b []byte, bo binary.ByteOrder) (TCPInfo, error) {
	if len(b) < tcpInfoMinLen {
		return TCPInfo{}, fmt.Errorf("mptcp: decoding tcp_info: %d bytes, need at least %d", len(b), tcpInfoMinLen)
	}
	us := func(off int) time.Duration { return time.Duration(bo.Uint32(b[off:])) * time.Microsecond }
	t := TCPInfo{
		State:        b[0],
		CAState:      b[1],
		Retransmits:  b[2],
		Options:      b[5],
		RTO:          us(8),
		SndMSS:       bo.Uint32(b[16:]),
		RcvMSS:       bo.Uint32(b[20:]),
		Unacked:      bo.Uint32(b[24:]),
		Lost:         bo.Uint32(b[32:]),
		Retrans:      bo.Uint32(b[36:]),
		RTT:          us(68),
		RTTVar:       us(72),
		SndSsthresh:  bo.Uint32(b[76:]),
		SndCwnd:      bo.Uint32(b[80:]),
		TotalRetrans: bo.Uint32(b[100:]),
		Len:          len(b),
	}
	if len(b) >= 160 {
		t.PacingRate = bo.Uint64(b[104:])
		t.BytesAcked = bo.Uint64(b[120:])
		t.BytesRecv = bo.Uint64(b[128:])
		t.SegsOut = bo.Uint32(b[136:])
		t.SegsIn = bo.Uint32(b[140:])
		t.NotsentBytes = bo.Uint32(b[144:])
		t.MinRTT = us(148)
	}
	if len(b) >= 168 {
		t.DeliveryRate = bo.Uint64(b[160:])
	}
	if len(b) >= 216 {
		t.BytesSent = bo.Uint64(b[200:])
		t.BytesRetrans = bo.Uint64(b[208:])
	}
	return t, nil
}

// Subflow is one TCP subflow of an MPTCP connection.
//
// The backup flag and the path-manager endpoint id of a subflow are not in
// any SOL_MPTCP getsockopt (only in sock_diag and in pm events); watch
// pm.Event (SubEstablished, SubPriority) for them.
type Subflow struct {
	// ID is the kernel's per-connection subflow number (1 is the initial
	// subflow), not a path-manager endpoint id. Zero when the kernel lacks
	// MPTCP_FULL_INFO.
	ID uint32
	// Local and Remote are the subflow's addresses; IPv4-mapped IPv6
	// addresses (a v4 subflow of a dual-stack socket) are unmapped.
	// An IPv6 link-local address keeps its zone as the numeric scope id.
	Local, Remote netip.AddrPort
	TCP           TCPInfo
}

// DecodeSubflowAddrs decodes one struct mptcp_subflow_addrs: a local and a
// remote sockaddr, each in a 128-byte sockaddr_storage.
func DecodeSubflowAddrs(b []byte) (local, remote netip.AddrPort, err error) {
	if len(b) < subflowAddrsLen {
		return local, remote, fmt.Errorf("mptcp: decoding mptcp_subflow_addrs: %d bytes, need %d", len(b), subflowAddrsLen)
	}
	if local, err = decodeSockaddr(b[:sockaddrStorLen]); err != nil {
		return local, remote, fmt.Errorf("mptcp: decoding local address: %w", err)
	}
	if remote, err = decodeSockaddr(b[sockaddrStorLen:subflowAddrsLen]); err != nil {
		return local, remote, fmt.Errorf("mptcp: decoding remote address: %w", err)
	}
	return local, remote, nil
}

const (
	afInet  = 2
	afInet6 = 10
)

// decodeSockaddr decodes a sockaddr_in or sockaddr_in6; sa_family is in host
// byte order, the port in network byte order.
func decodeSockaddr(b []byte) (netip.AddrPort, error) {
	if len(b) < 2 {
		return netip.AddrPort{}, errors.New("sockaddr too short")
	}
	switch fam := binary.NativeEndian.Uint16(b); fam {
	case afInet:
		if len(b) < 8 {
			return netip.AddrPort{}, errors.New("sockaddr_in too short")
		}
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), binary.BigEndian.Uint16(b[2:])), nil
	case afInet6:
		if len(b) < 28 {
			return netip.AddrPort{}, errors.New("sockaddr_in6 too short")
		}
		a := netip.AddrFrom16([16]byte(b[8:24])).Unmap()
		if scope := binary.NativeEndian.Uint32(b[24:]); scope != 0 && a.Is6() {
			a = a.WithZone(fmt.Sprint(scope))
		}
		return netip.AddrPortFrom(a, binary.BigEndian.Uint16(b[2:])), nil
	default:
		return netip.AddrPort{}, fmt.Errorf("unknown address family %d", fam)
	}
}

// subflowDataHeader is struct mptcp_subflow_data as the kernel returns it.
type subflowDataHeader struct {
	num, sizeKernel, sizeUser uint32
}

func decodeSubflowDataHeader(b []byte) (subflowDataHeader, error) {
	if len(b) < subflowDataLen {
		return subflowDataHeader{}, fmt.Errorf("mptcp: decoding mptcp_subflow_data: %d bytes, need %d", len(b), subflowDataLen)
	}
	bo := binary.NativeEndian
	return subflowDataHeader{num: bo.Uint32(b[4:]), sizeKernel: bo.Uint32(b[8:]), sizeUser: bo.Uint32(b[12:])}, nil
}

// appendSubflowDataHeader builds the request header for MPTCP_TCPINFO and
// MPTCP_SUBFLOW_ADDRS: the kernel insists num_subflows and size_kernel are 0.
func appendSubflowDataHeader(b []byte, sizeUser uint32) []byte {
	bo := binary.NativeEndian
	b = bo.AppendUint32(b, subflowDataLen)
	b = bo.AppendUint32(b, 0)
	b = bo.AppendUint32(b, 0)
	return bo.AppendUint32(b, sizeUser)
}

// decodeSubflowArray splits the answer to MPTCP_TCPINFO or MPTCP_SUBFLOW_ADDRS
// into its elements, each min(size_user, size_kernel) bytes long (the
// kernel advances by size_user).
func decodeSubflowArray(b []byte) ([][]byte, error) {
	h, err := decodeSubflowDataHeader(b)
	if err != nil {
		return nil, err
	}
	elem := int(min(h.sizeUser, h.sizeKernel))
	stride := int(h.sizeUser)
	if stride == 0 {
		return nil, errors.New("mptcp: decoding subflow array: element size 0")
	}
	// The count is the kernel's, but the capacity is bounded by what the
	// buffer can hold: a corrupt count must not allocate gigabytes.
	n := min(int(h.num), max(0, (len(b)-subflowDataLen)/stride+1))
	out := make([][]byte, 0, n)
	for i := 0; i < n; i++ {
		off := subflowDataLen + i*stride
		if off+elem > len(b) {
			break // more subflows than the buffer held
		}
		out = append(out, b[off:off+elem])
	}
	return out, nil
}

// fullInfoHeader is the fixed part of struct mptcp_full_info.
type fullInfoHeader struct {
	sizeTCPInfoKernel, sizeTCPInfoUser uint32
	sizeSFInfoKernel, sizeSFInfoUser   uint32
	numSubflows, sizeArraysUser        uint32
}

func decodeFullInfoHeader(b []byte) (fullInfoHeader, error) {
	if len(b) < fullInfoHdrLen {
		return fullInfoHeader{}, fmt.Errorf("mptcp: decoding mptcp_full_info: %d bytes, need %d", len(b), fullInfoHdrLen)
	}
	bo := binary.NativeEndian
	return fullInfoHeader{
		sizeTCPInfoKernel: bo.Uint32(b[0:]),
		sizeTCPInfoUser:   bo.Uint32(b[4:]),
		sizeSFInfoKernel:  bo.Uint32(b[8:]),
		sizeSFInfoUser:    bo.Uint32(b[12:]),
		numSubflows:       bo.Uint32(b[16:]),
		sizeArraysUser:    bo.Uint32(b[20:]),
	}, nil
}

// appendFullInfoRequest builds the 40-byte request header of
// MPTCP_FULL_INFO; the two pointers are user addresses of the arrays.
func appendFullInfoRequest(b []byte, tcpInfoUser, sfInfoUser, arrays uint32, sfPtr, tcpPtr uint64) []byte {
	bo := binary.NativeEndian
	b = bo.AppendUint32(b, 0) // size_tcpinfo_kernel, set by the kernel
	b = bo.AppendUint32(b, tcpInfoUser)
	b = bo.AppendUint32(b, 0) // size_sfinfo_kernel
	b = bo.AppendUint32(b, sfInfoUser)
	b = bo.AppendUint32(b, 0) // num_subflows
	b = bo.AppendUint32(b, arrays)
	b = bo.AppendUint64(b, sfPtr)
	return bo.AppendUint64(b, tcpPtr)
}

// subflowInfoAddrsOffset is offsetof(struct mptcp_subflow_info, addrs): a
// u32 id followed by sockaddr_storage, which is aligned like a pointer, so
// the offset is 8 on 64-bit and 4 on 32-bit targets (e.g. ARM routers).
func subflowInfoAddrsOffset(ptrSize int) int { return max(4, ptrSize) }

// decodeSubflowInfo decodes one struct mptcp_subflow_info.
func decodeSubflowInfo(b []byte, ptrSize int) (id uint32, local, remote netip.AddrPort, err error) {
	off := subflowInfoAddrsOffset(ptrSize)
	if len(b) < off+subflowAddrsLen {
		return 0, local, remote, fmt.Errorf("mptcp: decoding mptcp_subflow_info: %d bytes, need %d", len(b), off+subflowAddrsLen)
	}
	id = binary.NativeEndian.Uint32(b)
	local, remote, err = DecodeSubflowAddrs(b[off:])
	return id, local, remote, err
}

// decodeFullInfoArrays decodes the two arrays MPTCP_FULL_INFO filled. The
// kernel clamps each element size to min(user, kernel) and writes it back
// into the header, and uses that as the stride, so the caller's larger
// element size is only the capacity.
func decodeFullInfoArrays(h fullInfoHeader, sfBuf, tcpBuf []byte, ptrSize int) ([]Subflow, error) {
	sfStride, tcpStride := int(h.sizeSFInfoUser), int(h.sizeTCPInfoUser)
	n := int(h.numSubflows)
	if sfStride == 0 || tcpStride == 0 {
		return nil, errors.New("mptcp: decoding MPTCP_FULL_INFO: element size 0")
	}
	// Divide rather than multiply: a corrupt count times a stride can
	// overflow and pass the check.
	if n > len(sfBuf)/sfStride || n > len(tcpBuf)/tcpStride {
		return nil, fmt.Errorf("mptcp: decoding MPTCP_FULL_INFO: %d subflows do not fit the arrays", n)
	}
	out := make([]Subflow, 0, n)
	for i := range n {
		var s Subflow
		var err error
		if s.ID, s.Local, s.Remote, err = decodeSubflowInfo(sfBuf[i*sfStride:(i+1)*sfStride], ptrSize); err != nil {
			return nil, err
		}
		if s.TCP, err = DecodeTCPInfo(tcpBuf[i*tcpStride : (i+1)*tcpStride]); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}
