package mptcp

import (
	"net/netip"
	"syscall"
	"time"
)

// ControlFunc sets extra socket options, in the form net.Dialer.Control and
// net.ListenConfig.Control use. It runs on the MPTCP socket after the
// package's own options and before bind.
type ControlFunc func(network, address string, c syscall.RawConn) error

// ListenOptions configures Listen.
type ListenOptions struct {
	// FastOpenQueue is the TCP_FASTOPEN queue length: how many connections
	// whose SYN carried data may wait for Accept before further data-SYNs
	// are answered as ordinary SYNs. Zero means DefaultFastOpenQueue.
	FastOpenQueue int
	// FastOpen chooses whether the listener accepts data in the SYN, and
	// on what proof of the source address (see FastOpenMode).
	FastOpen FastOpenMode
	// Control hooks run in order on the listening socket.
	Control []ControlFunc

	// Backlog, if positive, is the listen backlog: how many connections
	// whose handshake completed may wait for Accept, which also bounds
	// the SYN queue. The kernel caps it at net.core.somaxconn of the
	// namespace. Zero takes somaxconn (the net package's choice).
	Backlog int

	// The options below are set once on the listening socket and every
	// accepted connection inherits them from it, TCP and MPTCP alike
	// (tested in TestListenerOptionsInherited): the net package would
	// otherwise spend four setsockopt calls on keepalive per Accept.

	// KeepAlive is the keepalive idle time and probe interval of accepted
	// connections, as net.ListenConfig.KeepAlive: zero means 15 s,
	// negative turns keepalive off. The probe count is the kernel's
	// (net.ipv4.tcp_keepalive_probes, 9 by default, as the net package's).
	KeepAlive time.Duration
	// NotSentLowat, if positive, is TCP_NOTSENT_LOWAT of accepted MPTCP
	// connections (see SetNotSentLowat). A plain TCP client's connection
	// does not inherit it (Linux 6.18): set it on those with
	// SetNotSentLowat.
	NotSentLowat int
	// ResetOnClose makes accepted connections close with a RST (SO_LINGER
	// 0) until their owner sets SO_LINGER otherwise: a connection the
	// process did not finish, down to one the kernel closes because the
	// process died, is reset, never ended with a FIN that would present
	// it as complete.
	ResetOnClose bool
}

// FastOpenMode is how a listener treats data in a SYN.
type FastOpenMode int

const (
	// FastOpenNoCookie keeps SYN data without an RFC 7413 cookie. The
	// source address is then unproven when Accept returns: a blind spoofer
	// can have its payload read. Only for closed labs; callers that face
	// the Internet choose FastOpenOff or FastOpenCookie.
	FastOpenNoCookie FastOpenMode = iota
	// FastOpenOff: no TCP_FASTOPEN at all; Accept returns after the third
	// ACK and SYN data is acknowledged only after it.
	FastOpenOff
	// FastOpenCookie keeps SYN data only with a valid RFC 7413 cookie,
	// which the client can hold only if it received an earlier SYN-ACK at
	// its address.
	FastOpenCookie
)

// DefaultFastOpenQueue is the TCP_FASTOPEN queue length Listen uses when
// ListenOptions.FastOpenQueue is zero; it matches the default somaxconn.
const DefaultFastOpenQueue = 4096

// DialOptions configures Dial.
type DialOptions struct {
	// Remote is the hag's address. Required.
	Remote netip.AddrPort
	// Local, if valid, is bound before connecting: the initial subflow
	// leaves from this uplink address. Port 0 lets the kernel pick one.
	Local netip.AddrPort
	// Mark, if non-zero, is set as SO_MARK (policy routing per uplink);
	// it needs CAP_NET_ADMIN. MPTCP copies it to the extra subflows too, so
	// mark-based rules must not override the per-uplink source rules.
	Mark int
	// BindDevice, if set, is set as SO_BINDTODEVICE. It pins the initial
	// subflow; extra subflows still leave through their endpoint's device
	// (tested: a subflow endpoint on another link works with it set).
	BindDevice string
	// Timeout bounds Dial itself: the socket setup and the write of
	// firstData, and, when firstData is empty, the whole handshake. With
	// firstData the handshake completes after Dial returns; bound it with
	// a read deadline on the first Read. Zero means no limit beyond ctx.
	Timeout time.Duration
	// Control hooks run in order on the socket before bind and connect.
	Control []ControlFunc
}
