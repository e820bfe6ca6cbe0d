package mptcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// replaceWithMPTCP swaps the TCP socket the net package created at fd for an
// IPPROTO_MPTCP socket of the same family, at the same descriptor number.
//
// Why not build the socket ourselves and net.FileConn it: a TFO client
// socket is still in SYN-SENT when Dial returns, getpeername fails then, and
// FileConn would give a *net.TCPConn whose RemoteAddr is nil for its whole
// life. Why not SetMultipathTCP: it retries as plain TCP on any error. The
// net package calls Control before bind, connect/listen and registering fd
// with the poller, so replacing the socket there (dup3 is atomic and closes
// the TCP socket) leaves net with a fully set-up MPTCP conn: addresses,
// deadlines, context cancellation and *net.OpError all work as usual.
func replaceWithMPTCP(fd int) error {
	family, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return fmt.Errorf("reading socket family: %w", err)
	}
	// Options the net package has already set on the socket it made.
	v6only := -1
	if family == unix.AF_INET6 {
		if v6only, err = unix.GetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY); err != nil {
			return fmt.Errorf("reading IPV6_V6ONLY: %w", err)
		}
	}
	reuse, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR)
	if err != nil {
		return fmt.Errorf("reading SO_REUSEADDR: %w", err)
	}
	s, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, ipprotoMPTCP)
	if err != nil {
		if errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.ENOPROTOOPT) || errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("%w: socket: %w", ErrMPTCPUnavailable, err)
		}
		return fmt.Errorf("creating MPTCP socket: %w", err)
	}
	defer unix.Close(s)
	if v6only >= 0 {
		if err := unix.SetsockoptInt(s, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, v6only); err != nil {
			return fmt.Errorf("setting IPV6_V6ONLY: %w", err)
		}
	}
	if err := unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_REUSEADDR, reuse); err != nil {
		return fmt.Errorf("setting SO_REUSEADDR: %w", err)
	}
	if err := unix.Dup3(s, fd, unix.O_CLOEXEC); err != nil {
		return fmt.Errorf("installing MPTCP socket: %w", err)
	}
	return nil
}

// control runs fn on the raw socket and returns the first error from either.
func control(c syscall.RawConn, fn func(fd int) error) error {
	var ferr error
	if err := c.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// sockopt is one step of socket setup, run on the descriptor from the
// Control hook of net.Dialer or net.ListenConfig, before bind. Listen and
// Dial compose the steps a call needs from the constructors below.
type sockopt func(fd int) error

// useMPTCP comes first: the options after it must land on the MPTCP socket.
func useMPTCP() sockopt { return replaceWithMPTCP }

// setInt sets an integer option; name is what an error calls it.
func setInt(level, opt, v int, name string) sockopt {
	return func(fd int) error {
		if err := unix.SetsockoptInt(fd, level, opt, v); err != nil {
			return fmt.Errorf("setting %s: %w", name, err)
		}
		return nil
	}
}

// fastOpenListen lets a listener keep data from up to qlen SYNs waiting
// for Accept.
func fastOpenListen(qlen int) sockopt {
	return setInt(unix.IPPROTO_TCP, unix.TCP_FASTOPEN, qlen, "TCP_FASTOPEN")
}

// fastOpenNoCookie takes SYN data without a TFO cookie (RFC 8803 App.
// A.2): on a listener the source is unproven until the third ACK; on a
// client no cookie is asked for, so the first SYN carries the data.
func fastOpenNoCookie() sockopt {
	return setInt(unix.IPPROTO_TCP, unix.TCP_FASTOPEN_NO_COOKIE, 1, "TCP_FASTOPEN_NO_COOKIE")
}

// fastOpenConnect makes connect only record the destination; the first
// write sends SYN+data.
func fastOpenConnect() sockopt {
	return setInt(unix.IPPROTO_TCP, unix.TCP_FASTOPEN_CONNECT, 1, "TCP_FASTOPEN_CONNECT (needs net.ipv4.tcp_fastopen & 1)")
}

// mark sets SO_MARK for policy routing per uplink.
func mark(m int) sockopt {
	return setInt(unix.SOL_SOCKET, unix.SO_MARK, m, fmt.Sprintf("SO_MARK %#x", m))
}

// bindDevice pins the initial subflow to dev.
func bindDevice(dev string) sockopt {
	return func(fd int) error {
		if err := unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, dev); err != nil {
			return fmt.Errorf("binding to device %s: %w", dev, err)
		}
		return nil
	}
}

// bindAddressNoPort defers the choice of a local port from bind to
// connect, where the kernel can pick from the whole 4-tuple space.
func bindAddressNoPort() sockopt {
	return setInt(unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1, "IP_BIND_ADDRESS_NO_PORT")
}

// controlFunc runs opts in order on the socket, then the caller's hooks.
func controlFunc(opts []sockopt, hooks []ControlFunc) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		if err := control(c, func(fd int) error {
			for _, o := range opts {
				if err := o(fd); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
		for _, fn := range hooks {
			if err := fn(network, address, c); err != nil {
				return err
			}
		}
		return nil
	}
}

// Listen opens an MPTCP listener; o.FastOpen says whether and on what
// proof it accepts data in the SYN (the zero value, FastOpenNoCookie, takes
// it without a cookie, RFC 8803 App. A.2). network is "tcp", "tcp4" or
// "tcp6", addr as for net.Listen ("[::]:5124" is dual-stack).
//
// The netns must also allow server-side TFO (EnsureFastOpenServer); without
// it the SYN data costs one extra round trip and the connection falls back
// to plain TCP (see the package doc).
// Clients that do not speak MPTCP are accepted as plain TCP conns; Check
// tells them apart. Listen never falls back to a TCP listener: if the kernel
// refuses MPTCP the error wraps ErrMPTCPUnavailable.
func Listen(ctx context.Context, network, addr string, o ListenOptions) (*net.TCPListener, error) {
	qlen := o.FastOpenQueue
	if qlen == 0 {
		qlen = DefaultFastOpenQueue
	}
	if qlen < 0 {
		return nil, fmt.Errorf("mptcp: listen %s %s: negative FastOpenQueue %d", network, addr, qlen)
	}
	opts := []sockopt{useMPTCP()}
	if o.FastOpen != FastOpenOff {
		opts = append(opts, fastOpenListen(qlen))
	}
	if o.FastOpen == FastOpenNoCookie {
		opts = append(opts, fastOpenNoCookie())
	}
	lc := net.ListenConfig{Control: controlFunc(opts, o.Control)}
	// Pin the choice: we install the MPTCP socket ourselves, and the net
	// package must not try (and silently give up) on its own.
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("mptcp: listening on %s %s: %w", network, addr, err)
	}
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		ln.Close()
		return nil, fmt.Errorf("mptcp: listening on %s %s: got %T, not a TCP listener", network, addr, ln)
	}
	return tl, nil
}

// Dial opens an MPTCP connection to o.Remote with TCP Fast Open and without
// a cookie, so firstData (the Convert message) is carried by the MP_CAPABLE
// SYN itself: no TFO option, no extra round trip, one SYN.
//
// With firstData, Dial returns as soon as the SYN is sent: the handshake
// has not completed, and its failure (ECONNREFUSED when hag is not
// listening, ETIMEDOUT, EHOSTUNREACH from ICMP) is returned by the first
// Read, as is the answer from hag. Use a read deadline on it. Whether MPTCP
// was negotiated is known only after that Read succeeded (see Check). If
// firstData does not fit one segment the rest is sent after the handshake
// and Dial waits for it.
//
// With empty firstData it is an ordinary connect and Dial returns after
// the handshake, errors included.
//
// Dial never falls back to plain TCP by itself: if the kernel refuses MPTCP
// sockets the error wraps ErrMPTCPUnavailable, and the caller decides.
// TCP_FASTOPEN_CONNECT needs bit 0x1 in net.ipv4.tcp_fastopen (the default).
func Dial(ctx context.Context, o DialOptions, firstData []byte) (*net.TCPConn, error) {
	if !o.Remote.IsValid() || o.Remote.Port() == 0 {
		return nil, fmt.Errorf("mptcp: dial: invalid remote address %v", o.Remote)
	}
	remote := netipToTCPAddr(o.Remote)
	d := net.Dialer{Timeout: o.Timeout}
	if o.Local.IsValid() {
		if o.Local.Addr().Unmap().Is4() != o.Remote.Addr().Unmap().Is4() {
			return nil, fmt.Errorf("mptcp: dial %v: local address %v is of another family", o.Remote, o.Local)
		}
		d.LocalAddr = netipToTCPAddr(o.Local)
	}
	d.SetMultipathTCP(false) // see Listen
	tfo := len(firstData) > 0
	opts := []sockopt{useMPTCP()}
	if o.Mark != 0 {
		opts = append(opts, mark(o.Mark))
	}
	if o.BindDevice != "" {
		opts = append(opts, bindDevice(o.BindDevice))
	}
	if o.Local.IsValid() && o.Local.Port() == 0 {
		opts = append(opts, bindAddressNoPort())
	}
	if tfo {
		opts = append(opts, fastOpenConnect(), fastOpenNoCookie())
	}
	d.Control = controlFunc(opts, o.Control)
	network := "tcp4"
	if !o.Remote.Addr().Unmap().Is4() {
		network = "tcp6"
	}
	c, err := d.DialContext(ctx, network, remote.String())
	if err != nil {
		return nil, fmt.Errorf("mptcp: %w", err)
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("mptcp: dial %v: got %T, not a TCP conn", o.Remote, c)
	}
	if !tfo {
		return tc, nil
	}
	deadline, ok := ctx.Deadline()
	if o.Timeout > 0 {
		if t := time.Now().Add(o.Timeout); !ok || t.Before(deadline) {
			deadline, ok = t, true
		}
	}
	if ok {
		if err := tc.SetWriteDeadline(deadline); err != nil {
			tc.Close()
			return nil, fmt.Errorf("mptcp: dial %v: setting write deadline: %w", o.Remote, err)
		}
	}
	// Fails only if tc is closed, which ends the Write too.
	stop := context.AfterFunc(ctx, func() { _ = tc.SetWriteDeadline(time.Unix(1, 0)) })
	_, werr := tc.Write(firstData)
	if !stop() && werr == nil {
		werr = ctx.Err()
	}
	if werr == nil {
		werr = tc.SetWriteDeadline(time.Time{})
	}
	if werr != nil {
		tc.Close()
		if ctx.Err() != nil {
			werr = errors.Join(ctx.Err(), werr)
		}
		return nil, fmt.Errorf("mptcp: dial %v: sending the SYN data: %w", o.Remote, werr)
	}
	return tc, nil
}

// SetNotSentLowat sets TCP_NOTSENT_LOWAT on conn: the socket reports
// writable only while less than bytes are queued unsent, which bounds what
// a relay buffers in the kernel behind a slow path. MPTCP supports it.
func SetNotSentLowat(conn *net.TCPConn, bytes int) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("mptcp: setting TCP_NOTSENT_LOWAT: %w", err)
	}
	if err := control(rc, func(fd int) error {
		return unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, bytes)
	}); err != nil {
		return fmt.Errorf("mptcp: setting TCP_NOTSENT_LOWAT %d: %w", bytes, err)
	}
	return nil
}

// fastOpenSysctl is per network namespace and also governs IPv6.
const fastOpenSysctl = "/proc/sys/net/ipv4/tcp_fastopen"

// EnsureFastOpenServer makes sure the current thread's network namespace
// accepts TFO SYN data on listeners: it ORs the server bit 0x2 into
// net.ipv4.tcp_fastopen if it is missing (a new netns starts with 1, client
// only). Without the bit the kernel ignores SYN data even on a listener with
// TCP_FASTOPEN_NO_COOKIE, and MPTCP connections opened with data in the SYN
// fall back to TCP. Needs CAP_NET_ADMIN; call it from the goroutine (locked
// thread) that is in the target netns: /proc/sys/net follows the thread.
func EnsureFastOpenServer() error {
	b, err := os.ReadFile(fastOpenSysctl)
	if err != nil {
		return fmt.Errorf("mptcp: reading sysctl net.ipv4.tcp_fastopen: %w", err)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 0, 32)
	if err != nil {
		return fmt.Errorf("mptcp: parsing sysctl net.ipv4.tcp_fastopen %q: %w", b, err)
	}
	if v&0x2 != 0 {
		return nil
	}
	nv := strconv.FormatUint(v|0x2, 10)
	if err := os.WriteFile(fastOpenSysctl, []byte(nv), 0); err != nil {
		return fmt.Errorf("mptcp: TFO server needs sysctl net.ipv4.tcp_fastopen=%s (is %d): %w", nv, v, err)
	}
	return nil
}

// getsockopt reads a SOL_MPTCP option into buf (which is also the input for
// options that take one) and returns the length the kernel reports.
func getsockopt(fd, name int, buf []byte) (int, error) {
	l := uint32(len(buf))
	var p unsafe.Pointer
	if len(buf) > 0 {
		p = unsafe.Pointer(&buf[0])
	}
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), solMPTCP, uintptr(name), uintptr(p), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return 0, e
	}
	return int(l), nil
}

// isFallbackErr reports the errno a SOL_MPTCP getsockopt returns on a
// socket that is plain TCP: the call lands in ip_getsockopt (EOPNOTSUPP) or
// ipv6_getsockopt (ENOPROTOOPT).
func isFallbackErr(err error) bool {
	return errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOPROTOOPT)
}

// Check reports whether conn is running MPTCP. false with a nil error is a
// fallback (or a plain TCP conn from an MPTCP listener): count it.
//
// When the answer is final: on the hag side, at Accept (the handshake is
// complete). On a TFO client from Dial with firstData the socket is still in
// SYN-SENT when Dial returns and reports MPTCP until the SYN-ACK shows
// otherwise, so call Check after the first successful Read. A connection can
// also fall back later (e.g. a middlebox breaking DSS checksums or the
// infinite mapping), which a second Check at close would see.
func Check(conn *net.TCPConn) (bool, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return false, fmt.Errorf("mptcp: checking for fallback: %w", err)
	}
	var proto int
	err = control(rc, func(fd int) error {
		var err error
		if proto, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL); err != nil || proto != ipprotoMPTCP {
			return err
		}
		// A zero-length MPTCP_INFO is the kernel's cheap fallback probe.
		_, err = getsockopt(fd, optInfo, nil)
		return err
	})
	switch {
	case err == nil:
		return proto == ipprotoMPTCP, nil
	case isFallbackErr(err):
		return false, nil
	}
	return false, fmt.Errorf("mptcp: checking for fallback: %w", err)
}

// IsMPTCP is Check without the error: false also when the check failed.
func IsMPTCP(conn *net.TCPConn) bool {
	ok, err := Check(conn)
	return ok && err == nil
}

// Info reads MPTCP_INFO from conn. On a connection that fell back to (or
// always was) plain TCP it returns ConnInfo{Fallback: true} and ErrFallback.
func Info(conn *net.TCPConn) (ConnInfo, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return ConnInfo{}, fmt.Errorf("mptcp: reading MPTCP_INFO: %w", err)
	}
	buf := make([]byte, 2*InfoLen) // room for fields of kernels newer than ours
	var n int
	err = control(rc, func(fd int) error {
		var err error
		n, err = getsockopt(fd, optInfo, buf)
		return err
	})
	if isFallbackErr(err) {
		return ConnInfo{Fallback: true}, ErrFallback
	}
	if err != nil {
		return ConnInfo{}, fmt.Errorf("mptcp: reading MPTCP_INFO: %w", err)
	}
	return DecodeInfo(buf[:n])
}

// maxSubflows is the most subflows one MPTCP connection can have: the
// initial one plus MPTCP_PM_ADDR_MAX (8) extra; Subflows grows past it if a
// future kernel allows more.
const maxSubflows = 9

// Subflows lists conn's subflows with their addresses and tcp_info, using
// MPTCP_FULL_INFO (one consistent snapshot, Linux 6.5+), or, on older
// kernels, MPTCP_SUBFLOW_ADDRS and MPTCP_TCPINFO (two snapshots that may
// disagree if a subflow comes or goes in between). A plain TCP conn gives
// ErrFallback.
func Subflows(conn *net.TCPConn) ([]Subflow, error) {
	mp, err := Check(conn)
	if err != nil {
		return nil, err
	}
	if !mp {
		return nil, ErrFallback
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("mptcp: listing subflows: %w", err)
	}
	var out []Subflow
	err = control(rc, func(fd int) error {
		var err error
		out, err = fullInfo(fd)
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) {
			out, err = subflowsOld(fd)
		}
		return err
	})
	if isFallbackErr(err) {
		return nil, ErrFallback
	}
	if err != nil {
		return nil, fmt.Errorf("mptcp: listing subflows: %w", err)
	}
	return out, nil
}

var ptrSize = int(unsafe.Sizeof(uintptr(0)))

// fullInfoScratch holds the arrays the kernel fills for maxSubflows
// subflows. hcpe polls every flow every few seconds; fresh arrays per call
// were 13 % of its heap with 1,000 idle flows (make bench figure 5), all of
// it garbage a moment later. A cache, not state: fullInfo decodes what it
// needs before it puts the arrays back.
var fullInfoScratch = sync.Pool{New: func() any {
	sfSize := subflowInfoAddrsOffset(ptrSize) + subflowAddrsLen
	return &[2][]byte{make([]byte, maxSubflows*sfSize), make([]byte, maxSubflows*tcpInfoBufLen)}
}}

func fullInfo(fd int) ([]Subflow, error) {
	sfSize := subflowInfoAddrsOffset(ptrSize) + subflowAddrsLen
	scratch := fullInfoScratch.Get().(*[2][]byte)
	defer fullInfoScratch.Put(scratch)
	for n := maxSubflows; ; n *= 2 {
		sfBuf, tcpBuf := scratch[0], scratch[1]
		if n > maxSubflows {
			sfBuf, tcpBuf = make([]byte, n*sfSize), make([]byte, n*tcpInfoBufLen)
		}
		// A kernel with shorter structs leaves their tails alone; they
		// must read as zero, as in fresh arrays.
		clear(sfBuf)
		clear(tcpBuf)
		// The kernel writes through pointers inside the request; pin
		// the arrays so they cannot move while it does.
		var pin runtime.Pinner
		pin.Pin(&sfBuf[0])
		pin.Pin(&tcpBuf[0])
		req := appendFullInfoRequest(make([]byte, 0, fullInfoHdrLen+2*InfoLen),
			tcpInfoBufLen, uint32(sfSize), uint32(n),
			uint64(uintptr(unsafe.Pointer(&sfBuf[0]))), uint64(uintptr(unsafe.Pointer(&tcpBuf[0]))))
		req = req[:cap(req)]
		_, err := getsockopt(fd, optFullInfo, req)
		pin.Unpin()
		if err != nil {
			return nil, err
		}
		h, err := decodeFullInfoHeader(req)
		if err != nil {
			return nil, err
		}
		if h.numSubflows > uint32(n) {
			continue // subflows appeared since the last try
		}
		return decodeFullInfoArrays(h, sfBuf, tcpBuf, ptrSize)
	}
}

func subflowsOld(fd int) ([]Subflow, error) {
	for n := maxSubflows; ; n *= 2 {
		addrs := appendSubflowDataHeader(make([]byte, 0, subflowDataLen+n*subflowAddrsLen), subflowAddrsLen)
		addrs = addrs[:cap(addrs)]
		l, err := getsockopt(fd, optSubflowAddrs, addrs)
		if err != nil {
			return nil, fmt.Errorf("MPTCP_SUBFLOW_ADDRS: %w", err)
		}
		as, err := decodeSubflowArray(addrs[:l])
		if err != nil {
			return nil, err
		}
		infos := appendSubflowDataHeader(make([]byte, 0, subflowDataLen+n*tcpInfoBufLen), tcpInfoBufLen)
		infos = infos[:cap(infos)]
		if l, err = getsockopt(fd, optTCPInfo, infos); err != nil {
			return nil, fmt.Errorf("MPTCP_TCPINFO: %w", err)
		}
		ts, err := decodeSubflowArray(infos[:l])
		if err != nil {
			return nil, err
		}
		if h, _ := decodeSubflowDataHeader(addrs); int(h.num) > n {
			continue
		}
		out := make([]Subflow, 0, len(as))
		for i, a := range as {
			var s Subflow
			if s.Local, s.Remote, err = DecodeSubflowAddrs(a); err != nil {
				return nil, err
			}
			if i < len(ts) {
				if s.TCP, err = DecodeTCPInfo(ts[i]); err != nil {
					return nil, err
				}
			}
			out = append(out, s)
		}
		return out, nil
	}
}

func netipToTCPAddr(ap netip.AddrPort) *net.TCPAddr {
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
}
