package netstack_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"hybridgw/internal/netlab"
	"hybridgw/internal/netstack"
	"hybridgw/internal/tun"
)

// lab is one namespace with a TUN routed for the documentation prefixes
// 203.0.113.0/24 and 2001:db8:50::/64, a netstack on it, and client source
// addresses 192.0.2.1 and 2001:db8:1::1 (plus .2 and ::2) on lo.
type lab struct {
	ns    *netlab.NS
	stack *netstack.Stack
}

var (
	dst4 = netip.MustParseAddrPort("203.0.113.7:443")
	dst6 = netip.MustParseAddrPort("[2001:db8:50::7]:443")
)

// newLab builds the lab; mkcfg gets the namespace, which Dial functions
// need to open their upstream sockets in.
func newLab(t testing.TB, mkcfg func(ns *netlab.NS) netstack.Config) *lab {
	t.Helper()
	netlab.RequireRoot(t)
	ns := netlab.NewNS(t, netlab.UniquePrefix()+"ns")
	cfg := mkcfg(ns)
	for _, args := range [][]string{
		{"ip", "addr", "add", "192.0.2.1/32", "dev", "lo"},
		{"ip", "addr", "add", "192.0.2.2/32", "dev", "lo"},
		{"ip", "-6", "addr", "add", "2001:db8:1::1/128", "dev", "lo", "nodad"},
		{"ip", "-6", "addr", "add", "2001:db8:1::2/128", "dev", "lo", "nodad"},
	} {
		if err := ns.Run(args[0], args[1:]...); err != nil {
			t.Fatal(err)
		}
	}
	var dev *tun.Device
	if err := ns.Do(func() (err error) { dev, err = tun.Open("hc0", 1500); return }); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"ip", "route", "add", "203.0.113.0/24", "dev", "hc0"},
		{"ip", "-6", "route", "add", "2001:db8:50::/64", "dev", "hc0"},
	} {
		if err := ns.Run(args[0], args[1:]...); err != nil {
			_ = dev.Close()
			t.Fatal(err)
		}
	}
	cfg.Device, cfg.MTU = dev, dev.MTU()
	s, err := netstack.New(cfg)
	if err != nil {
		_ = dev.Close()
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- s.Run(context.Background()) }()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := <-runErr; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return &lab{ns: ns, stack: s}
}

// dial connects from a kernel socket inside the namespace.
func (l *lab) dial(ctx context.Context, src netip.Addr, dst netip.AddrPort) (*net.TCPConn, error) {
	var c net.Conn
	err := l.ns.Do(func() (err error) {
		d := net.Dialer{}
		if src.IsValid() {
			d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))
		}
		c, err = d.DialContext(ctx, "tcp", dst.String())
		return err
	})
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// listen opens a listener inside the namespace.
func (l *lab) listen(t testing.TB, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := l.ns.Do(func() (err error) { ln, err = net.Listen("tcp", addr); return }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// upstreamTo returns a Dial that connects to addr inside the namespace,
// recording the FlowIDs it was asked for.
func upstreamTo(ns *netlab.NS, addr *atomic.Value, seen chan<- netstack.FlowID) func(context.Context, netstack.FlowID) (netstack.Upstream, error) {
	return func(ctx context.Context, id netstack.FlowID) (netstack.Upstream, error) {
		if seen != nil {
			seen <- id
		}
		var c net.Conn
		err := ns.Do(func() (err error) {
			c, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr.Load().(string))
			return err
		})
		if err != nil {
			return nil, err
		}
		return c.(*net.TCPConn), nil
	}
}

// relay copies both ways and passes half-closes on, as internal/relay will.
func relay(_ context.Context, lan *netstack.Conn, up netstack.Upstream) {
	var wg sync.WaitGroup
	wg.Go(func() {
		_, _ = io.Copy(up, lan)
		_ = up.(*net.TCPConn).CloseWrite()
	})
	wg.Go(func() {
		_, _ = io.Copy(lan, up)
		_ = lan.CloseWrite()
	})
	wg.Wait()
}

func serve(ln net.Listener, fn func(*net.TCPConn)) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fn(c.(*net.TCPConn))
			}()
		}
	}()
}

func TestEchoHalfClose(t *testing.T) {
	for _, tc := range []struct {
		name     string
		src      netip.Addr
		dst      netip.AddrPort
		upstream string
	}{
		{"IPv4", netip.MustParseAddr("192.0.2.1"), dst4, "127.0.0.1:0"},
		{"IPv6", netip.MustParseAddr("2001:db8:1::1"), dst6, "[::1]:0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var echoAddr, talkAddr string
			var target atomic.Value
			seen := make(chan netstack.FlowID, 4)
			l := newLab(t, func(ns *netlab.NS) netstack.Config {
				return netstack.Config{Dial: upstreamTo(ns, &target, seen), Handle: relay}
			})
			// The echo server returns everything and closes its side
			// only after the client's FIN: client-first half-close.
			echo := l.listen(t, tc.upstream)
			echoAddr = echo.Addr().String()
			serve(echo, func(c *net.TCPConn) {
				_, _ = io.Copy(c, c)
				_ = c.CloseWrite()
			})
			// The talker sends first and closes its side, then keeps
			// reading: server-first half-close.
			talk := l.listen(t, tc.upstream)
			talkAddr = talk.Addr().String()
			greeting := make([]byte, 1<<20)
			_, _ = rand.Read(greeting)
			heard := make(chan [32]byte, 1)
			serve(talk, func(c *net.TCPConn) {
				_, _ = c.Write(greeting)
				_ = c.CloseWrite()
				h := sha256.New()
				_, _ = io.Copy(h, c)
				heard <- [32]byte(h.Sum(nil))
			})

			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()

			target.Store(echoAddr)
			c, err := l.dial(ctx, tc.src, tc.dst)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			got := <-seen
			want := netstack.FlowID{Src: c.LocalAddr().(*net.TCPAddr).AddrPort(), Dst: tc.dst}
			if got != want {
				t.Fatalf("Dial saw %v, want %v", got, want)
			}
			payload := make([]byte, 8<<20)
			_, _ = rand.Read(payload)
			werr := make(chan error, 1)
			go func() {
				_, err := c.Write(payload)
				if err == nil {
					err = c.CloseWrite()
				}
				werr <- err
			}()
			back, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("reading echo: %v", err)
			}
			if err := <-werr; err != nil {
				t.Fatalf("writing: %v", err)
			}
			if sha256.Sum256(back) != sha256.Sum256(payload) {
				t.Fatalf("echo differs: got %d bytes, sent %d", len(back), len(payload))
			}

			target.Store(talkAddr)
			c2, err := l.dial(ctx, tc.src, tc.dst)
			if err != nil {
				t.Fatal(err)
			}
			defer c2.Close()
			<-seen
			first, err := io.ReadAll(c2)
			if err != nil || !bytes.Equal(first, greeting) {
				t.Fatalf("greeting: %d bytes, err %v", len(first), err)
			}
			// The server's FIN arrived; our direction is still open.
			reply := make([]byte, 3<<20)
			_, _ = rand.Read(reply)
			if _, err := c2.Write(reply); err != nil {
				t.Fatalf("writing after the server's FIN: %v", err)
			}
			_ = c2.CloseWrite()
			select {
			case h := <-heard:
				if h != sha256.Sum256(reply) {
					t.Fatal("server received different bytes")
				}
			case <-ctx.Done():
				t.Fatal("server never saw the client's FIN")
			}
			if st := l.stack.Stats(); st.Flows != 2 || st.SYNs != 2 {
				t.Errorf("stats %+v, want 2 SYNs and 2 flows", st)
			}
		})
	}
}

// firstSYNRetransmit is when Linux retransmits an unanswered SYN: its
// initial RTO, TCP_TIMEOUT_INIT.
const firstSYNRetransmit = time.Second

func TestDialFirst(t *testing.T) {
	refused := errors.New("upstream refused")
	for _, tc := range []struct {
		name    string
		dst     netip.AddrPort
		delay   time.Duration
		err     error
		wantErr error // nil: connect succeeds
	}{
		{"refused/IPv4", dst4, 0, refused, syscall.ECONNREFUSED},
		{"refused/IPv6", dst6, 0, refused, syscall.ECONNREFUSED},
		{"slow-refused/IPv4", dst4, 300 * time.Millisecond, refused, syscall.ECONNREFUSED},
		{"slow-ok/IPv4", dst4, 300 * time.Millisecond, nil, nil},
		{"slow-ok/IPv6", dst6, 300 * time.Millisecond, nil, nil},
		{"host-unreachable/IPv4", dst4, 0, &netstack.DialError{Reject: netstack.RejectHostUnreachable, Err: refused}, syscall.EHOSTUNREACH},
		{"host-unreachable/IPv6", dst6, 0, &netstack.DialError{Reject: netstack.RejectHostUnreachable, Err: refused}, syscall.EHOSTUNREACH},
		{"net-unreachable/IPv4", dst4, 0, &netstack.DialError{Reject: netstack.RejectNetUnreachable}, syscall.ENETUNREACH},
		{"prohibited/IPv6", dst6, 0, &netstack.DialError{Reject: netstack.RejectAdminProhibited}, syscall.EACCES},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t, func(*netlab.NS) netstack.Config {
				return netstack.Config{
					Dial: func(ctx context.Context, id netstack.FlowID) (netstack.Upstream, error) {
						time.Sleep(tc.delay)
						if tc.err != nil {
							return nil, tc.err
						}
						a, b := net.Pipe()
						go func() { _, _ = b.Write([]byte("hi")); b.Close() }()
						return a, nil
					},
					Handle: func(ctx context.Context, lan *netstack.Conn, up netstack.Upstream) {
						_, _ = io.Copy(lan, up)
					},
				}
			})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			start := time.Now()
			c, err := l.dial(ctx, netip.Addr{}, tc.dst)
			took := time.Since(start)
			if c != nil {
				defer c.Close()
			}
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("connect: %v", err)
				}
				if b, err := io.ReadAll(c); err != nil || string(b) != "hi" {
					t.Fatalf("read %q, %v", b, err)
				}
			} else if !errors.Is(err, tc.wantErr) {
				t.Fatalf("connect error %v, want %v", err, tc.wantErr)
			}
			// The handshake must not complete before Dial returns, and
			// the answer must come from Dial's return, not from the LAN
			// host's SYN retransmit: that goes out one initial RTO
			// (the kernel's TCP_TIMEOUT_INIT, 1 s) after its SYN, a
			// fixed time that load cannot shorten, and every Dial here
			// returns well before it.
			if took < tc.delay {
				t.Errorf("connect took %v, less than Dial's %v", took, tc.delay)
			}
			if took >= firstSYNRetransmit {
				t.Errorf("connect took %v (Dial %v): not answered before the SYN retransmit at %v", took, tc.delay, firstSYNRetransmit)
			}
		})
	}
}

func TestInFlightBounds(t *testing.T) {
	release := make(chan struct{})
	l := newLab(t, func(*netlab.NS) netstack.Config {
		return netstack.Config{
			MaxInFlight:        3,
			MaxInFlightPerHost: 2,
			Dial: func(ctx context.Context, id netstack.FlowID) (netstack.Upstream, error) {
				select {
				case <-release:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
				a, b := net.Pipe()
				go func() { b.Close() }()
				return a, nil
			},
			Handle: func(ctx context.Context, lan *netstack.Conn, up netstack.Upstream) {},
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	host1, host2 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	type result struct {
		c   *net.TCPConn
		err error
	}
	results := make(chan result, 8)
	connect := func(ctx context.Context, src netip.Addr) {
		go func() {
			c, err := l.dial(ctx, src, dst4)
			results <- result{c, err}
		}()
	}
	waitFor := func(what string, ok func(netstack.Stats) bool) {
		t.Helper()
		for !ok(l.stack.Stats()) {
			if ctx.Err() != nil {
				t.Fatalf("timed out waiting for %s: %+v", what, l.stack.Stats())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	connect(ctx, host1)
	connect(ctx, host1)
	waitFor("two handshakes in flight", func(s netstack.Stats) bool { return s.InFlight == 2 })

	// A third SYN from the same host is dropped, not answered.
	short, cancelShort := context.WithTimeout(ctx, 700*time.Millisecond)
	defer cancelShort()
	connect(short, host1)
	if r := <-results; r.err == nil {
		t.Fatal("third concurrent connect from one host succeeded")
	} else if !isTimeout(r.err) {
		t.Fatalf("third connect: %v, want a timeout (SYN dropped)", r.err)
	}
	if st := l.stack.Stats(); st.DropPerHost < 1 || st.InFlight != 2 {
		t.Fatalf("after the third SYN: %+v", st)
	}

	// Another host still gets a slot; then the global bound of 3 is full.
	connect(ctx, host2)
	waitFor("three handshakes in flight", func(s netstack.Stats) bool { return s.InFlight == 3 })
	short2, cancelShort2 := context.WithTimeout(ctx, 700*time.Millisecond)
	defer cancelShort2()
	connect(short2, host2)
	if r := <-results; !isTimeout(r.err) {
		t.Fatalf("fourth connect: %v, want a timeout (SYN dropped)", r.err)
	}
	if st := l.stack.Stats(); st.DropInFlight < 1 {
		t.Fatalf("global bound not counted: %+v", st)
	}

	close(release)
	for range 3 {
		r := <-results
		if r.err != nil {
			t.Fatalf("held connect: %v", r.err)
		}
		r.c.Close()
	}
	waitFor("no handshakes in flight", func(s netstack.Stats) bool { return s.InFlight == 0 })
	c, err := l.dial(ctx, host1, dst4)
	if err != nil {
		t.Fatalf("connect after the bound cleared: %v", err)
	}
	c.Close()
}

// TestCloseResetsFlows checks that Close ends active flows with a RST to the
// LAN host and waits for Handle to return.
func TestCloseResetsFlows(t *testing.T) {
	before := runtime.NumGoroutine()
	handled := make(chan struct{})
	returned := make(chan struct{})
	l := newLab(t, func(*netlab.NS) netstack.Config {
		return netstack.Config{
			Dial: func(ctx context.Context, id netstack.FlowID) (netstack.Upstream, error) {
				a, b := net.Pipe()
				t.Cleanup(func() { b.Close() })
				return a, nil
			},
			Handle: func(ctx context.Context, lan *netstack.Conn, up netstack.Upstream) {
				defer close(returned)
				close(handled)
				_, err := io.Copy(io.Discard, lan) // ends when Close resets lan
				_ = err
			},
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := l.dial(ctx, netip.Addr{}, dst6)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	<-handled
	if err := l.stack.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-returned:
	default:
		t.Fatal("Close returned before Handle did")
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !netstack.IsReset(err) {
		t.Fatalf("client read after Close: %v, want a reset", err)
	}
	// Everything Run started (reader, writer, handlers, gVisor's workers,
	// wireguard-go's listeners) has exited.
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines after Close, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}

// isTimeout reports a connect that timed out: depending on timing the net
// package reports the context's deadline or the socket's.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// BenchmarkThroughput moves bytes between a kernel socket and the netstack
// through the TUN, with no upstream: upload ends in a sink in Handle,
// download comes from a source in Handle. Each op is 1 MiB. The lossy case
// drops 1% of the packets gVisor sends (nft on the TUN's ingress), which is
// where gVisor's loss recovery (RACK) matters.
func BenchmarkThroughput(b *testing.B) {
	const chunk = 1 << 20
	for _, tc := range []struct {
		name string
		dir  string
		dst  netip.AddrPort
		loss bool
	}{
		{"upload/IPv4", "upload", dst4, false},
		{"upload/IPv6", "upload", dst6, false},
		{"download/IPv4", "download", dst4, false},
		{"download/IPv6", "download", dst6, false},
		{"download-loss1%/IPv4", "download", dst4, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			total := int64(b.N) * chunk
			l := newLab(b, func(*netlab.NS) netstack.Config {
				return netstack.Config{
					Dial: func(context.Context, netstack.FlowID) (netstack.Upstream, error) {
						a, _ := net.Pipe()
						return a, nil
					},
					Handle: func(_ context.Context, lan *netstack.Conn, _ netstack.Upstream) {
						if tc.dir == "upload" {
							_, _ = io.Copy(io.Discard, lan)
							return
						}
						_, _ = io.CopyN(lan, zeroReader{}, total)
						_ = lan.CloseWrite()
					},
				}
			})
			if tc.loss {
				if err := l.ns.Run("nft", "add table inet loss; "+
					"add chain inet loss pre { type filter hook prerouting priority 0; }; "+
					`add rule inet loss pre iifname "hc0" meta l4proto tcp numgen random mod 100 < 1 drop`); err != nil {
					b.Skipf("cannot emulate loss: %v", err)
				}
			}
			c, err := l.dial(context.Background(), netip.Addr{}, tc.dst)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			b.SetBytes(chunk)
			b.ResetTimer()
			start := time.Now()
			if tc.dir == "upload" {
				if _, err := io.CopyN(c, zeroReader{}, total); err != nil {
					b.Fatal(err)
				}
				_ = c.CloseWrite()
				// Handle returns after our FIN; the Stack then closes
				// lan, so EOF means everything arrived.
				if _, err := io.Copy(io.Discard, c); err != nil {
					b.Fatal(err)
				}
			} else {
				n, err := io.Copy(io.Discard, c)
				if err != nil || n != total {
					b.Fatalf("read %d of %d: %v", n, total, err)
				}
			}
			b.ReportMetric(float64(total)*8/1e6/time.Since(start).Seconds(), "Mbit/s")
		})
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestStopAccepting checks the first step of a graceful shutdown: new SYNs
// are dropped and counted, established flows carry on.
func TestStopAccepting(t *testing.T) {
	l := newLab(t, func(*netlab.NS) netstack.Config {
		return netstack.Config{
			Dial: func(context.Context, netstack.FlowID) (netstack.Upstream, error) {
				a, _ := net.Pipe()
				return a, nil
			},
			Handle: func(_ context.Context, lan *netstack.Conn, _ netstack.Upstream) {
				_, _ = io.Copy(lan, lan) // echo
			},
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := l.dial(ctx, netip.Addr{}, dst4)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	l.stack.StopAccepting()
	short, cancelShort := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancelShort()
	if _, err := l.dial(short, netip.Addr{}, dst6); !isTimeout(err) {
		t.Fatalf("connect after StopAccepting: %v, want a timeout", err)
	}
	if _, err := c.Write([]byte("still here")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 10)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "still here" {
		t.Fatalf("established flow after StopAccepting: %q, %v", b, err)
	}
	if st := l.stack.Stats(); st.DropStopped == 0 || st.Active != 1 {
		t.Fatalf("stats %+v, want DropStopped > 0 and one active flow", st)
	}
}

// TestConnAbort checks the two ways a handler can end the LAN side: Close
// delivers what was written and then a FIN, Abort sends a RST so that the
// LAN host cannot take a cut stream for a complete one.
func TestConnAbort(t *testing.T) {
	const size = 4 << 20 // more than the send buffer: some is still queued at the end
	for _, tc := range []struct {
		name  string
		abort bool
	}{
		{"close", false},
		{"abort", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t, func(*netlab.NS) netstack.Config {
				return netstack.Config{
					Dial: func(context.Context, netstack.FlowID) (netstack.Upstream, error) {
						a, b := net.Pipe()
						t.Cleanup(func() { b.Close() })
						return a, nil
					},
					Handle: func(_ context.Context, lan *netstack.Conn, _ netstack.Upstream) {
						// Write without waiting for the reader; gVisor
						// queues what the window does not take yet.
						_ = lan.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
						_, _ = lan.Write(make([]byte, size))
						if tc.abort {
							lan.Abort()
							return
						}
						_ = lan.SetWriteDeadline(time.Time{})
						_ = lan.Close()
					},
				}
			})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := l.dial(ctx, netip.Addr{}, dst4)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			// Read only after the handler has ended the connection.
			time.Sleep(500 * time.Millisecond)
			n, err := io.Copy(io.Discard, c)
			if tc.abort {
				if !errors.Is(err, syscall.ECONNRESET) {
					t.Fatalf("after Abort: read %d bytes, then %v; want ECONNRESET", n, err)
				}
				return
			}
			if err != nil || n == 0 {
				t.Fatalf("after Close: read %d bytes, then %v; want the bytes written and EOF", n, err)
			}
		})
	}
}

// TestCloseResetsUpstream: a flow still open when the Stack closes is reset
// on the upstream side too, so the server does not read a FIN and take the
// LAN host's cut upload as complete.
func TestCloseResetsUpstream(t *testing.T) {
	var target atomic.Value
	handled := make(chan struct{})
	var l *lab
	l = newLab(t, func(ns *netlab.NS) netstack.Config {
		return netstack.Config{
			Dial: upstreamTo(ns, &target, nil),
			Handle: func(ctx context.Context, lan *netstack.Conn, up netstack.Upstream) {
				close(handled)
				<-ctx.Done() // a relay that is still running at shutdown
			},
		}
	})
	ln := l.listen(t, "127.0.0.1:0")
	target.Store(ln.Addr().String())
	serverErr := make(chan error, 1)
	serve(ln, func(c *net.TCPConn) {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := io.Copy(io.Discard, c)
		serverErr <- err
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := l.dial(ctx, netip.Addr{}, dst4)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	<-handled
	if err := l.stack.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-serverErr; !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("server read after Stack.Close: %v, want ECONNRESET (nil is a FIN)", err)
	}
}
