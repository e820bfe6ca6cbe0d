package mptcp_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sort"
	"syscall"
	"testing"
	"time"

	"hybridgw/internal/mptcp"
	"hybridgw/internal/mptcp/pm"
	"hybridgw/internal/netlab"
)

var families = []struct {
	name     string
	srv, cli netip.Addr // on the primary link
	cliB     netip.Addr // client address on the second link
}{
	{"IPv4", srvA4, cliA4, cliB4},
	{"IPv6", srvA6, cliA6, cliB6},
}

const convertMsg = "\x01\x06\x22\x63CONVERT-IN-SYN-HELLO" // any bytes; the codec is not under test

// listenIn opens an MPTCP TFO listener inside ns on a dual-stack port.
func listenIn(tb testing.TB, ns *netlab.NS, serverBit bool) *net.TCPListener {
	tb.Helper()
	var ln *net.TCPListener
	err := ns.Do(func() error {
		if serverBit {
			if err := mptcp.EnsureFastOpenServer(); err != nil {
				return err
			}
		}
		var err error
		ln, err = mptcp.Listen(context.Background(), "tcp", "[::]:0", mptcp.ListenOptions{})
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	return ln
}

func dialIn(tb testing.TB, ns *netlab.NS, o mptcp.DialOptions, data []byte) *net.TCPConn {
	tb.Helper()
	var c *net.TCPConn
	if err := ns.Do(func() error {
		var err error
		c, err = mptcp.Dial(context.Background(), o, data)
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

func accept(tb testing.TB, ln *net.TCPListener) *net.TCPConn {
	tb.Helper()
	if err := ln.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		tb.Fatal(err)
	}
	s, err := ln.AcceptTCP()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func readN(tb testing.TB, c net.Conn, n int) []byte {
	tb.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		tb.Fatalf("reading %d bytes: %v", n, err)
	}
	_ = c.SetReadDeadline(time.Time{})
	return b
}

func port(ln *net.TCPListener) uint16 { return uint16(ln.Addr().(*net.TCPAddr).Port) }

// TestFastOpenInSYN proves the Convert message rides in the SYN: the
// server's TFO-passive counter moves only when the SYN data was accepted.
// Without the netns server bit the data still arrives, one RTT later.
func TestFastOpenInSYN(t *testing.T) {
	netlab.RequireRoot(t)
	for _, fam := range families {
		for _, serverBit := range []bool{true, false} {
			name := fam.name + "/server-bit"
			if !serverBit {
				name = fam.name + "/no-server-bit"
			}
			t.Run(name, func(t *testing.T) {
				l := newLab(t)
				ln := listenIn(t, l.srv, serverBit)
				capture(t, l.srv)
				passive0 := counter(t, l.srv, "TcpExtTCPFastOpenPassive")
				remote := netip.AddrPortFrom(fam.srv, port(ln))
				c := dialIn(t, l.cli, mptcp.DialOptions{Remote: remote, Timeout: 5 * time.Second}, []byte(convertMsg))
				if got := c.RemoteAddr().String(); got != remote.String() {
					t.Errorf("RemoteAddr = %s, want %s", got, remote)
				}
				s := accept(t, ln)
				if got := readN(t, s, len(convertMsg)); string(got) != convertMsg {
					t.Fatalf("server read %q, want %q", got, convertMsg)
				}
				want := int64(0)
				if serverBit {
					want = 1
				}
				if d := counter(t, l.srv, "TcpExtTCPFastOpenPassive") - passive0; d != want {
					t.Errorf("TcpExtTCPFastOpenPassive rose by %d, want %d", d, want)
				}
				if !serverBit {
					// Measured on 6.18: the SYN-ACK does not acknowledge the
					// data, the client resends it with a DSS option instead of
					// the MP_CAPABLE third ACK, and the server falls back
					// (MPTcpExtMPCapableFallbackACK). So the server bit is
					// needed for MPTCP itself, not only to save a round trip.
					mp, _ := mptcp.Check(s)
					out, _ := l.srv.Output("sh", "-c", "nstat -as | grep MPTcp")
					t.Logf("without the server bit: server MPTCP %v; server counters:\n%s", mp, out)
					return
				}
				if mp, err := mptcp.Check(s); err != nil || !mp {
					t.Errorf("server Check = %v, %v; want true", mp, err)
				}
				if _, err := s.Write([]byte("OK")); err != nil {
					t.Fatal(err)
				}
				if got := readN(t, c, 2); string(got) != "OK" {
					t.Fatalf("client read %q", got)
				}
				if mp, err := mptcp.Check(c); err != nil || !mp {
					t.Errorf("client Check = %v, %v; want true", mp, err)
				}
				in, err := mptcp.Info(c)
				if err != nil {
					t.Fatal(err)
				}
				if in.Fallback || in.Flags&mptcp.InfoFlagRemoteKeyReceived == 0 || in.Token == 0 {
					t.Errorf("client Info = %+v, want MPTCP with the remote key", in)
				}
				t.Logf("client info: %+v", in)
			})
		}
	}
}

// TestSubflows adds a subflow endpoint on the second link with the pm
// client and expects a second subflow from that address.
func TestSubflows(t *testing.T) {
	netlab.RequireRoot(t)
	// The bound variant is hcpe's: the initial subflow is pinned to the
	// primary uplink by source address, device and mark, and the extra
	// subflow must still leave through the second link.
	for _, bound := range []bool{false, true} {
		for _, fam := range families {
			name := fam.name
			if bound {
				name += "/bound"
			}
			t.Run(name, func(t *testing.T) {
				testSubflows(t, fam.srv, fam.cli, fam.cliB, bound)
			})
		}
	}
}

func testSubflows(t *testing.T, srv, cli, cliB netip.Addr, bound bool) {
	l := newLab(t)
	setupSubflowEndpoint(t, l, cliB)
	ln := listenIn(t, l.srv, true)
	o := mptcp.DialOptions{Remote: netip.AddrPortFrom(srv, port(ln))}
	if bound {
		o.Local = netip.AddrPortFrom(cli, 0)
		o.BindDevice = l.a0
		o.Mark = 0x10
	}
	c := dialIn(t, l.cli, o, []byte(convertMsg))
	s := accept(t, ln)
	readN(t, s, len(convertMsg))
	if _, err := s.Write([]byte("OK")); err != nil {
		t.Fatal(err)
	}
	readN(t, c, 2)

	var sfs []mptcp.Subflow
	deadline := time.Now().Add(5 * time.Second)
	for {
		var err error
		if sfs, err = mptcp.Subflows(c); err != nil {
			t.Fatal(err)
		}
		if len(sfs) == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	var locals []string
	for _, sf := range sfs {
		locals = append(locals, sf.Local.Addr().String())
		if sf.Remote.Addr() != srv {
			t.Errorf("subflow %d remote %v, want %v", sf.ID, sf.Remote, srv)
		}
		if sf.TCP.State != 1 || sf.TCP.RTT <= 0 {
			t.Errorf("subflow %d tcp_info state %d rtt %v, want established with an RTT", sf.ID, sf.TCP.State, sf.TCP.RTT)
		}
		t.Logf("subflow %d %v -> %v rtt %v sent %d recv %d", sf.ID, sf.Local, sf.Remote, sf.TCP.RTT, sf.TCP.BytesSent, sf.TCP.BytesRecv)
	}
	legacy, err := mptcp.SubflowsLegacy(c)
	if err != nil || len(legacy) != len(sfs) {
		t.Errorf("legacy path: %d subflows (%v), want %d", len(legacy), err, len(sfs))
	}
	for i := range legacy {
		if i < len(sfs) && (legacy[i].Local != sfs[i].Local || legacy[i].Remote != sfs[i].Remote || legacy[i].TCP.State != sfs[i].TCP.State) {
			t.Errorf("legacy subflow %d = %v -> %v state %d, full info says %v -> %v state %d", i,
				legacy[i].Local, legacy[i].Remote, legacy[i].TCP.State, sfs[i].Local, sfs[i].Remote, sfs[i].TCP.State)
		}
	}
	sort.Strings(locals)
	want := []string{cli.String(), cliB.String()}
	sort.Strings(want)
	if len(locals) != 2 || locals[0] != want[0] || locals[1] != want[1] {
		t.Fatalf("subflow local addresses %v, want %v", locals, want)
	}
	in, err := mptcp.Info(c)
	if err != nil {
		t.Fatal(err)
	}
	if in.Subflows != 1 || (in.Len >= 84 && in.SubflowsTotal != 2) {
		t.Errorf("Info: %d extra subflows, %d total; want 1 and 2", in.Subflows, in.SubflowsTotal)
	}
	ss, err := mptcp.Subflows(s)
	if err != nil || len(ss) != 2 {
		t.Errorf("server sees %d subflows (%v), want 2", len(ss), err)
	}
}

// setupSubflowEndpoint sets limits on both sides and a subflow endpoint on
// the client's second link, all through the pm client.
func setupSubflowEndpoint(tb testing.TB, l *lab, addr netip.Addr) {
	tb.Helper()
	if err := l.cli.Do(func() error {
		p, err := pm.Open()
		if err != nil {
			return err
		}
		defer p.Close()
		if err := p.SetLimits(pm.Limits{Subflows: 2, AddAddrAccepted: 0}); err != nil {
			return err
		}
		ifi, err := net.InterfaceByName(l.b0)
		if err != nil {
			return err
		}
		_, err = p.AddEndpoint(pm.Endpoint{Addr: addr, IfIndex: ifi.Index, Flags: pm.Subflow})
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	if err := l.srv.Do(func() error {
		p, err := pm.Open()
		if err != nil {
			return err
		}
		defer p.Close()
		return p.SetLimits(pm.Limits{Subflows: 2})
	}); err != nil {
		tb.Fatal(err)
	}
}

// TestEvents expects created, established and sf_established for one
// connection on the client side, matched by token.
func TestEvents(t *testing.T) {
	netlab.RequireRoot(t)
	l := newLab(t)
	setupSubflowEndpoint(t, l, cliB4)
	ln := listenIn(t, l.srv, true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var p *pm.PM
	if err := l.cli.Do(func() error {
		var err error
		p, err = pm.Open()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// Events is called outside the namespace on purpose: the PM remembers it.
	evs, err := p.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ps *pm.PM
	if err := l.srv.Do(func() error {
		var err error
		ps, err = pm.Open()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	srvEvs, err := ps.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := dialIn(t, l.cli, mptcp.DialOptions{Remote: netip.AddrPortFrom(srvA4, port(ln))}, []byte(convertMsg))
	s := accept(t, ln)
	readN(t, s, len(convertMsg))
	if _, err := s.Write([]byte("OK")); err != nil {
		t.Fatal(err)
	}
	readN(t, c, 2)
	in, err := mptcp.Info(c)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[pm.EventType]pm.Event{}
	timeout := time.After(5 * time.Second)
	for seen[pm.EventSubEstablished].Type == 0 {
		select {
		case ev, ok := <-evs:
			if !ok {
				t.Fatal("event channel closed")
			}
			t.Logf("event %v: %+v", ev.Type, ev)
			if ev.Token == in.Token {
				seen[ev.Type] = ev
			}
		case <-timeout:
			t.Fatalf("timed out; saw %v", seen)
		}
	}
	for _, typ := range []pm.EventType{pm.EventCreated, pm.EventEstablished, pm.EventSubEstablished} {
		if _, ok := seen[typ]; !ok {
			t.Errorf("no %v event for token %#x", typ, in.Token)
		}
	}
	if ev := seen[pm.EventEstablished]; ev.Local.Addr() != cliA4 || ev.Remote != netip.AddrPortFrom(srvA4, port(ln)) || ev.Family != syscall.AF_INET {
		t.Errorf("established event %+v, want %v -> %v:%d", ev, cliA4, srvA4, port(ln))
	}
	if ev := seen[pm.EventSubEstablished]; ev.Local.Addr() != cliB4 || ev.Remote.Addr() != srvA4 || !ev.HasIfIndex || ev.IfIndex == 0 {
		t.Errorf("sf_established event %+v, want from %v with an ifindex", ev, cliB4)
	}
	// Marking the endpoint backup sends MP_PRIO on its live subflow; the
	// peer reports the change as sf_priority (the sender has no event).
	prioTx0 := counter(t, l.cli, "MPTcpExtMPPrioTx")
	if err := p.SetFlags(pm.Endpoint{Addr: cliB4}, pm.Subflow|pm.Backup); err != nil {
		t.Fatal(err)
	}
	for prio := false; !prio; {
		select {
		case ev := <-srvEvs:
			t.Logf("server event %v: %+v", ev.Type, ev)
			prio = ev.Type == pm.EventSubPriority && ev.Backup && ev.Remote.Addr() == cliB4
		case <-time.After(5 * time.Second):
			t.Fatal("no sf_priority event on the server after setting backup")
		}
	}
	if d := counter(t, l.cli, "MPTcpExtMPPrioTx") - prioTx0; d != 1 {
		t.Errorf("MPTcpExtMPPrioTx rose by %d, want 1", d)
	}
	// The client closing must produce closed for the token.
	c.Close()
	s.Close()
	for {
		select {
		case ev := <-evs:
			if ev.Type == pm.EventClosed && ev.Token == in.Token {
				cancel()
				for range evs { // the channel must close after cancel
				}
				return
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no closed event")
		}
	}
}

// TestRefused: a dial to a closed port fails on the first Read with
// ECONNREFUSED, after exactly one SYN (no silent plain-TCP retry).
func TestRefused(t *testing.T) {
	netlab.RequireRoot(t)
	for _, fam := range families {
		t.Run(fam.name, func(t *testing.T) {
			l := newLab(t)
			capture(t, l.srv)
			opens0 := counter(t, l.cli, "TcpActiveOpens")
			syn0 := counter(t, l.cli, "MPTcpExtMPCapableSYNTX")
			c := dialIn(t, l.cli, mptcp.DialOptions{Remote: netip.AddrPortFrom(fam.srv, 9)}, []byte(convertMsg))
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err := c.Read(make([]byte, 16))
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("first Read: %v, want ECONNREFUSED", err)
			}
			time.Sleep(200 * time.Millisecond) // room for a retry, if there were one
			if d := counter(t, l.cli, "TcpActiveOpens") - opens0; d != 1 {
				t.Errorf("TcpActiveOpens rose by %d, want 1", d)
			}
			if d := counter(t, l.cli, "MPTcpExtMPCapableSYNTX") - syn0; d != 1 {
				t.Errorf("MPTcpExtMPCapableSYNTX rose by %d, want 1", d)
			}
		})
	}
}

// TestDialNoData is the ordinary-connect path: errors come from Dial.
func TestDialNoData(t *testing.T) {
	netlab.RequireRoot(t)
	l := newLab(t)
	ln := listenIn(t, l.srv, false)
	c := dialIn(t, l.cli, mptcp.DialOptions{Remote: netip.AddrPortFrom(srvA6, port(ln)), Local: netip.AddrPortFrom(cliA6, 0)}, nil)
	if mp, err := mptcp.Check(c); err != nil || !mp {
		t.Errorf("Check = %v, %v", mp, err)
	}
	if got := c.LocalAddr().(*net.TCPAddr).AddrPort().Addr(); got != cliA6 {
		t.Errorf("LocalAddr %v, want %v", got, cliA6)
	}
	accept(t, ln)
	err := l.cli.Do(func() error {
		_, err := mptcp.Dial(context.Background(), mptcp.DialOptions{Remote: netip.AddrPortFrom(srvA6, 9)}, nil)
		return err
	})
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("Dial to a closed port without data: %v, want ECONNREFUSED", err)
	}
}

// TestFallback: against a plain TCP server the MPTCP client falls back, and
// Check/Info/Subflows say so; a plain TCP client of the MPTCP listener is
// seen as such on the server side.
func TestFallback(t *testing.T) {
	netlab.RequireRoot(t)
	for _, fam := range families {
		t.Run(fam.name, func(t *testing.T) {
			l := newLab(t)
			var plain *net.TCPListener
			if err := l.srv.Do(func() error {
				lc := net.ListenConfig{}
				lc.SetMultipathTCP(false)
				ln, err := lc.Listen(context.Background(), "tcp", "[::]:0")
				if err != nil {
					return err
				}
				plain = ln.(*net.TCPListener)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			defer plain.Close()
			c := dialIn(t, l.cli, mptcp.DialOptions{Remote: netip.AddrPortFrom(fam.srv, port(plain))}, []byte(convertMsg))
			s := accept(t, plain)
			readN(t, s, len(convertMsg))
			if _, err := s.Write([]byte("OK")); err != nil {
				t.Fatal(err)
			}
			readN(t, c, 2)
			if mp, err := mptcp.Check(c); err != nil || mp {
				t.Errorf("client Check = %v, %v; want false, nil", mp, err)
			}
			if mptcp.IsMPTCP(c) {
				t.Error("IsMPTCP = true on a fallback conn")
			}
			in, err := mptcp.Info(c)
			if !errors.Is(err, mptcp.ErrFallback) || !in.Fallback {
				t.Errorf("client Info = %+v, %v; want Fallback and ErrFallback", in, err)
			}
			if _, err := mptcp.Subflows(c); !errors.Is(err, mptcp.ErrFallback) {
				t.Errorf("Subflows: %v, want ErrFallback", err)
			}

			// A plain TCP client of the MPTCP listener.
			ln := listenIn(t, l.srv, true)
			var pc net.Conn
			if err := l.cli.Do(func() error {
				var err error
				pc, err = net.Dial("tcp", netip.AddrPortFrom(fam.srv, port(ln)).String())
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			ps := accept(t, ln)
			if mp, err := mptcp.Check(ps); err != nil || mp {
				t.Errorf("server Check of a TCP client = %v, %v; want false, nil", mp, err)
			}
			if _, err := mptcp.Info(ps); !errors.Is(err, mptcp.ErrFallback) {
				t.Errorf("server Info of a TCP client: %v, want ErrFallback", err)
			}
		})
	}
}

func TestSetNotSentLowat(t *testing.T) {
	netlab.RequireRoot(t)
	l := newLab(t)
	ln := listenIn(t, l.srv, false)
	c := dialIn(t, l.cli, mptcp.DialOptions{Remote: netip.AddrPortFrom(srvA4, port(ln))}, nil)
	if err := mptcp.SetNotSentLowat(c, 128<<10); err != nil {
		t.Fatal(err)
	}
	rc, _ := c.SyscallConn()
	var v int
	var gerr error
	_ = rc.Control(func(fd uintptr) {
		v, gerr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, 25 /* TCP_NOTSENT_LOWAT */)
	})
	if gerr != nil || v != 128<<10 {
		t.Errorf("TCP_NOTSENT_LOWAT = %d, %v; want %d", v, gerr, 128<<10)
	}
}

// TestMPTCPDisabled: with net.mptcp.enabled=0 Dial and Listen fail with
// ErrMPTCPUnavailable instead of quietly using TCP.
func TestMPTCPDisabled(t *testing.T) {
	netlab.RequireRoot(t)
	ns := netlab.NewNS(t, netlab.UniquePrefix()+"off")
	if err := ns.Run("sysctl", "-qw", "net.mptcp.enabled=0"); err != nil {
		t.Fatal(err)
	}
	err := ns.Do(func() error {
		_, err := mptcp.Dial(context.Background(), mptcp.DialOptions{Remote: netip.MustParseAddrPort("127.0.0.1:9")}, []byte(convertMsg))
		return err
	})
	if !errors.Is(err, mptcp.ErrMPTCPUnavailable) {
		t.Errorf("Dial: %v, want ErrMPTCPUnavailable", err)
	}
	t.Logf("Dial: %v", err)
	err = ns.Do(func() error {
		ln, err := mptcp.Listen(context.Background(), "tcp", "127.0.0.1:0", mptcp.ListenOptions{})
		if err == nil {
			ln.Close()
		}
		return err
	})
	if !errors.Is(err, mptcp.ErrMPTCPUnavailable) {
		t.Errorf("Listen: %v, want ErrMPTCPUnavailable", err)
	}
}
