package gateway

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"hybridgw/internal/convert"
)

// dialOptions are the socket options of every connection to a server.
type dialOptions struct {
	timeout      time.Duration
	notSentLowat int // TCP_NOTSENT_LOWAT; 0 leaves the kernel's
}

// dialServer opens the plain TCP connection to the server from src. A
// client port that is taken is retried once with a kernel-chosen port:
// keeping the client's port is a courtesy to logs, not a requirement.
func dialServer(ctx context.Context, dst netip.AddrPort, src source, o dialOptions) (*net.TCPConn, error) {
	c, err := dialOnce(ctx, dst, src, o)
	if err != nil && src.Addr.Port() != 0 && errors.Is(err, unix.EADDRINUSE) {
		src.Addr = netip.AddrPortFrom(src.Addr.Addr(), 0)
		c, err = dialOnce(ctx, dst, src, o)
	}
	return c, err
}

// serverKeepAlive is the keepalive idle time and probe interval of server
// connections, the net package's default; the probe count is the
// kernel's (9 by default, as the net package's).
const serverKeepAlive = 15

// dialOnce connects with net.Dialer to a literal address (one address: no
// parallel or fallback dials, no resolver), every socket option set
// before connect in one Control: per flow these setsockopt calls, a
// few microseconds each, are most of what a dial costs hag beyond the
// connect itself (make bench figure 7). Set there: keepalive (the Dialer's
// own would add SO_KEEPCNT), SO_LINGER 0 so that the connection closes
// with a reset until the relay has ended it cleanly (a dead hag resets,
// never ends a cut stream with a FIN), TCP_NOTSENT_LOWAT, and for a
// client address IP(V6)_TRANSPARENT; with a local address and no port,
// IP_BIND_ADDRESS_NO_PORT, so that connect picks the port from the whole
// 4-tuple space rather than bind from the address's ports alone.
func dialOnce(ctx context.Context, dst netip.AddrPort, src source, o dialOptions) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: o.timeout, KeepAlive: -1}
	if src.Addr.IsValid() {
		d.LocalAddr = net.TCPAddrFromAddrPort(src.Addr)
	}
	transparent, noPort := src.Transparent, src.Addr.IsValid() && src.Addr.Port() == 0
	d.Control = func(network, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = setServerOptions(int(fd), network == "tcp6", transparent, noPort, o) })
		if err != nil {
			return err
		}
		return serr
	}
	network := "tcp6"
	if dst.Addr().Is4() {
		network = "tcp4"
	}
	c, err := d.DialContext(ctx, network, dst.String())
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

func setServerOptions(fd int, v6, transparent, noPort bool, o dialOptions) error {
	set := func(level, name, v int, what string) error {
		if err := unix.SetsockoptInt(fd, level, name, v); err != nil {
			return os.NewSyscallError("setsockopt "+what, err)
		}
		return nil
	}
	if transparent {
		var err error
		if v6 {
			err = set(unix.IPPROTO_IPV6, unix.IPV6_TRANSPARENT, 1, "IPV6_TRANSPARENT (needs CAP_NET_ADMIN)")
		} else {
			err = set(unix.IPPROTO_IP, unix.IP_TRANSPARENT, 1, "IP_TRANSPARENT (needs CAP_NET_ADMIN)")
		}
		if err != nil {
			return err
		}
	}
	if noPort {
		if err := set(unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1, "IP_BIND_ADDRESS_NO_PORT"); err != nil {
			return err
		}
	}
	if err := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1}); err != nil {
		return os.NewSyscallError("setsockopt SO_LINGER", err)
	}
	if o.notSentLowat > 0 {
		if err := set(unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, o.notSentLowat, "TCP_NOTSENT_LOWAT"); err != nil {
			return err
		}
	}
	if err := set(unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1, "SO_KEEPALIVE"); err != nil {
		return err
	}
	if err := set(unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, serverKeepAlive, "TCP_KEEPIDLE"); err != nil {
		return err
	}
	return set(unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, serverKeepAlive, "TCP_KEEPINTVL")
}

// timeoutBackOff is the Value sent with Network Failure for a dial that
// timed out: short, because one silent server says nothing about others.
const timeoutBackOff = 1

// dialRefusal maps a failed dial to the Convert error the RFC asks for:
//   - RST from the server → Connection Reset (96);
//   - an ICMP hard error → Destination Unreachable (97) with the ICMP code
//     the kernel reported (net/host unreachable, administratively
//     prohibited);
//   - no answer at all → Network Failure (65). Not 97: no ICMP arrived, and
//     97's Value would be an invented code.
func dialRefusal(err error, dst netip.Addr) *refusal {
	v6 := dst.Is6() && !dst.Is4In6()
	unreach := func(v4code, v6code uint8) *refusal {
		r := refuse(convert.DestinationUnreachable, "server unreachable: "+err.Error())
		if v6 {
			r.tlv = convert.NewError(convert.DestinationUnreachable, v6code)
		} else {
			r.tlv = convert.NewError(convert.DestinationUnreachable, v4code)
		}
		return r
	}
	var ne net.Error
	switch {
	case errors.Is(err, unix.EMFILE), errors.Is(err, unix.ENFILE):
		// hag, not the server, is out of descriptors: say so with the
		// converter's resource code so the client backs off, instead of a
		// Network Failure that blames the path.
		r := refuse(convert.ResourceExceeded, "out of file descriptors: "+err.Error())
		r.tlv = convert.NewError(convert.ResourceExceeded, timeoutBackOff)
		r.reason = "descriptors"
		return r
	case errors.Is(err, unix.ECONNREFUSED):
		return refuse(convert.ConnectionReset, "server refused: "+err.Error())
	case errors.Is(err, unix.ENETUNREACH):
		return unreach(0, 0) // net unreachable / no route to destination
	case errors.Is(err, unix.EHOSTUNREACH):
		return unreach(1, 3) // host unreachable / address unreachable
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return unreach(13, 1) // communication administratively prohibited
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		r := refuse(convert.NetworkFailure, "server did not answer: "+err.Error())
		r.tlv = convert.NewError(convert.NetworkFailure, timeoutBackOff)
		return r
	}
	r := refuse(convert.NetworkFailure, "dial failed: "+err.Error())
	r.tlv = convert.NewError(convert.NetworkFailure, timeoutBackOff)
	return r
}
