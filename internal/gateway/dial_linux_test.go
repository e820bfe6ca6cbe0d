package gateway

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"hybridgw/internal/convert"
	"hybridgw/internal/netlab"
)

// TestDialRefusalDescriptors: a dial that fails because hag is out of
// descriptors is answered with the converter's resource error and counted
// as such, not as a Network Failure blamed on the path. The error is
// wrapped the way net.Dialer returns it.
func TestDialRefusalDescriptors(t *testing.T) {
	dst := netip.MustParseAddr("2001:db8:99::1")
	for _, errno := range []unix.Errno{unix.EMFILE, unix.ENFILE} {
		err := fmt.Errorf("dialling: %w", &net.OpError{Op: "socket", Net: "tcp6", Err: os.NewSyscallError("socket", errno)})
		r := dialRefusal(err, dst)
		if r.code != convert.ResourceExceeded || r.reason != "descriptors" {
			t.Errorf("%v: %v/%q, want Resource Exceeded/descriptors", errno, r.code, r.reason)
		}
	}
	if r := dialRefusal(fmt.Errorf("dialling: %w", os.NewSyscallError("connect", unix.ECONNREFUSED)), dst); r.reason != "" {
		t.Errorf("a refused connect counted as %q", r.reason)
	}
}

// TestDialServerOptions: the connection to the server carries, from
// before connect, what the flow needs: a reset on close until the relay
// ends it cleanly, keepalive, TCP_NOTSENT_LOWAT; and a source address
// without a port gets its port at connect (IP_BIND_ADDRESS_NO_PORT). The
// address the server sees, transparent dials and refusals are TestHAG's.
func TestDialServerOptions(t *testing.T) {
	netlab.RequireRoot(t)
	ns := netlab.NewNS(t, netlab.UniquePrefix()+"dial")
	if err := ns.Run("ip", "link", "set", "lo", "up"); err != nil {
		t.Fatal(err)
	}
	err := ns.Do(func() error {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer ln.Close()
		dst := ln.Addr().(*net.TCPAddr).AddrPort()
		src := source{Addr: netip.MustParseAddrPort("127.0.0.1:0")}
		c, err := dialServer(context.Background(), dst, src, dialOptions{timeout: time.Second, notSentLowat: 65432})
		if err != nil {
			return err
		}
		defer c.Close()
		rc, _ := c.SyscallConn()
		return rc.Control(func(fd uintptr) {
			for _, o := range []struct {
				name       string
				level, opt int
				want       int
			}{
				{"SO_KEEPALIVE", unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
				{"TCP_KEEPIDLE", unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, serverKeepAlive},
				{"TCP_KEEPINTVL", unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, serverKeepAlive},
				{"TCP_NOTSENT_LOWAT", unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, 65432},
				{"TCP_NODELAY", unix.IPPROTO_TCP, unix.TCP_NODELAY, 1},
				{"IP_BIND_ADDRESS_NO_PORT", unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1},
			} {
				if v, err := unix.GetsockoptInt(int(fd), o.level, o.opt); err != nil || v != o.want {
					t.Errorf("%s = %d, %v; want %d", o.name, v, err, o.want)
				}
			}
			if lg, err := unix.GetsockoptLinger(int(fd), unix.SOL_SOCKET, unix.SO_LINGER); err != nil || lg.Onoff != 1 || lg.Linger != 0 {
				t.Errorf("SO_LINGER = %+v, %v; want on, 0 s", lg, err)
			}
		})
	})
	if err != nil {
		t.Fatal(err)
	}
}
