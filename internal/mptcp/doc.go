// Package mptcp opens Linux-kernel Multipath TCP sockets the way hybridgw
// needs them and reads their state: a TCP Fast Open listener for hag that
// accepts the RFC 8803 Convert message inside the SYN without a TFO cookie,
// a dialer for hcpe that puts that message into the MP_CAPABLE SYN, and
// decoders for the SOL_MPTCP getsockopts (MPTCP_INFO, MPTCP_FULL_INFO).
// The path-manager netlink client lives in the sub-package pm.
//
// Sockets are created with IPPROTO_MPTCP directly instead of through
// net.Dialer.SetMultipathTCP: the standard library silently retries a failed
// MPTCP dial as plain TCP on any error, which doubles the SYNs and hides both
// the failure and the fallback. Here an unavailable MPTCP is an error
// (ErrMPTCPUnavailable) and a fallback is something the caller counts
// (Check, Info). The MPTCP socket is swapped in from the net package's
// Control hook, so the result is still an ordinary *net.TCPConn with its
// addresses, deadlines and errors (see replaceWithMPTCP).
//
// # TCP Fast Open requirements (verified on Linux 6.18)
//
// Client: TCP_FASTOPEN_CONNECT needs bit 0x1 of the netns sysctl
// net.ipv4.tcp_fastopen (the default, 1); TCP_FASTOPEN_NO_COOKIE on the
// socket then sends the data in the very first SYN with no TFO option at all.
//
// Server: TCP_FASTOPEN (a queue length) and TCP_FASTOPEN_NO_COOKIE on the
// listener are not enough. The kernel keeps SYN data only when the netns
// sysctl net.ipv4.tcp_fastopen has the server bit 0x2, which is off by
// default (a new netns starts at 1). Without it the SYN-ACK acknowledges
// only the SYN and the client resends the data after the handshake, and on
// Linux 6.18 that resend carries a DSS option instead of the MP_CAPABLE
// third ACK, so the server falls back to plain TCP
// (MPTcpExtMPCapableFallbackACK): the bit is needed for MPTCP itself, not
// only to save the round trip. EnsureFastOpenServer sets it; with it no
// cookie or TFO option is involved at all (nstat TcpExtTCPFastOpenPassive
// counts each accepted SYN payload).
//
// The same resend path is taken when the first SYN is lost and
// retransmitted (the retransmission carries no data), so a connection
// whose SYN was lost ends up as plain TCP (MPTcpExtMPCapableDataFallback);
// Check reports it.
//
// # Pure decoders
//
// The getsockopt buffers are decoded by functions that take []byte
// (DecodeInfo, DecodeTCPInfo, DecodeSubflowAddrs) so they are tested
// without root; only the *_linux.go files make system calls.
package mptcp
