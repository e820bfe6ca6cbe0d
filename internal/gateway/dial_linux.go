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

// dialServer opens the plain TCP connection to the server from src. A
// client port that is taken is retried once with a kernel-chosen port:
// keeping the client's port is a courtesy to logs, not a requirement.
func dialServer(ctx context.Context, dst netip.AddrPort, src source, timeout time.Duration) (*net.TCPConn, error) {
	c, err := dialOnce(ctx, dst, src, timeout)
	if err != nil && src.Addr.Port() != 0 && errors.Is(err, unix.EADDRINUSE) {
		src.Addr = netip.AddrPortFrom(src.Addr.Addr(), 0)
		c, err = dialOnce(ctx, dst, src, timeout)
	}
	return c, err
}

func dialOnce(ctx context.Context, dst netip.AddrPort, src source, timeout time.Duration) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: timeout}
	if src.Addr.IsValid() {
		d.LocalAddr = net.TCPAddrFromAddrPort(src.Addr)
	}
	transparent := src.Transparent
	d.Control = func(network, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			if transparent {
				if network == "tcp6" {
					serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_TRANSPARENT, 1)
				} else {
					serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_TRANSPARENT, 1)
				}
				if serr != nil {
					serr = os.NewSyscallError("setsockopt IP(V6)_TRANSPARENT (needs CAP_NET_ADMIN)", serr)
				}
			}
		})
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
