package mptcp_test

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"hybridgw/internal/mptcp"
	"hybridgw/internal/netlab"
)

// TestListenerOptionsInherited: what ListenOptions sets once on the
// listening socket, every accepted connection has, MPTCP and plain TCP
// clients alike (but TCP_NOTSENT_LOWAT, which a plain TCP child does not
// inherit), without the net package setting it per Accept; and the
// backlog is the one asked for.
func TestListenerOptionsInherited(t *testing.T) {
	netlab.RequireRoot(t)
	l := newLab(t)
	var ln *net.TCPListener
	opts := mptcp.ListenOptions{FastOpen: mptcp.FastOpenOff, Backlog: 777, KeepAlive: 33 * time.Second, NotSentLowat: 77777, ResetOnClose: true}
	if err := l.srv.Do(func() (err error) {
		ln, err = mptcp.Listen(context.Background(), "tcp", "[::]:0", opts)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	out, err := l.srv.Output("ss", "-Hltn", "sport", "= :"+strconv.Itoa(int(port(ln))))
	if err != nil {
		t.Fatal(err)
	}
	// A listener's Send-Q column is its backlog.
	if f := strings.Fields(out); len(f) < 3 || f[2] != "777" {
		t.Errorf("listener backlog: ss says %q, want Send-Q 777", out)
	}
	for _, c := range []struct {
		name  string
		mptcp bool
		dst   netip.Addr
	}{{"MPTCP v4", true, srvA4}, {"MPTCP v6", true, srvA6}, {"TCP v4", false, srvA4}} {
		t.Run(c.name, func(t *testing.T) {
			if c.mptcp {
				dialIn(t, l.cli, mptcp.DialOptions{Remote: netip.AddrPortFrom(c.dst, port(ln))}, nil)
			} else {
				err := l.cli.Do(func() error {
					tc, err := net.Dial("tcp", netip.AddrPortFrom(c.dst, port(ln)).String())
					if err == nil {
						t.Cleanup(func() { tc.Close() })
					}
					return err
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			s := accept(t, ln)
			if got := mptcp.IsMPTCP(s); got != c.mptcp {
				t.Fatalf("accepted MPTCP = %v, want %v", got, c.mptcp)
			}
			rc, _ := s.SyscallConn()
			_ = rc.Control(func(fd uintptr) {
				for _, o := range []struct {
					name       string
					level, opt int
					want       int
				}{
					{"SO_KEEPALIVE", unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
					{"TCP_KEEPIDLE", unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 33},
					{"TCP_KEEPINTVL", unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 33},
					{"TCP_NOTSENT_LOWAT", unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, 77777},
				} {
					if o.opt == unix.TCP_NOTSENT_LOWAT && !c.mptcp {
						continue // not inherited by a plain TCP child (ListenOptions)
					}
					if v, err := unix.GetsockoptInt(int(fd), o.level, o.opt); err != nil || v != o.want {
						t.Errorf("%s = %d, %v; want %d", o.name, v, err, o.want)
					}
				}
				if lg, err := unix.GetsockoptLinger(int(fd), unix.SOL_SOCKET, unix.SO_LINGER); err != nil || lg.Onoff != 1 || lg.Linger != 0 {
					t.Errorf("SO_LINGER = %+v, %v; want on, 0 s", lg, err)
				}
			})
		})
	}
}
