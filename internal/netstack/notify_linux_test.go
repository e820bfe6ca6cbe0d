package netstack_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"hybridgw/internal/netlab"
	"hybridgw/internal/netstack"
	rl "hybridgw/internal/relay"
)

// TestNotify checks the relay.Notifier side of a Conn: while the LAN host
// is silent, TryRead says EAGAIN, Readable is false and no notification
// comes; once a read would not block (data, FIN, reset, abort) the
// callback fires, Readable is true and TryRead returns what Read would.
func TestNotify(t *testing.T) {
	cases := []struct {
		name string
		// act runs on the LAN host's socket (c) and the netstack side
		// (lan) once the Conn has been quiet for 100 ms.
		act   func(c *net.TCPConn, lan *netstack.Conn)
		check func(t *testing.T, n int, err error)
	}{
		{"data", func(c *net.TCPConn, _ *netstack.Conn) { c.Write([]byte("x")) }, func(t *testing.T, n int, err error) {
			if n != 1 || err != nil {
				t.Fatalf("TryRead after data: %d, %v", n, err)
			}
		}},
		{"fin", func(c *net.TCPConn, _ *netstack.Conn) { c.CloseWrite() }, func(t *testing.T, n int, err error) {
			if err != io.EOF {
				t.Fatalf("TryRead after FIN: %d, %v, want EOF", n, err)
			}
		}},
		{"reset", func(c *net.TCPConn, _ *netstack.Conn) { c.SetLinger(0); c.Close() }, func(t *testing.T, n int, err error) {
			if !netstack.IsReset(err) {
				t.Fatalf("TryRead after RST: %d, %v, want a reset", n, err)
			}
		}},
		// The netstack's shutdown aborts flows from outside the relay.
		{"abort", func(_ *net.TCPConn, lan *netstack.Conn) { lan.Abort() }, func(t *testing.T, n int, err error) {
			if err == nil || errors.Is(err, syscall.EAGAIN) {
				t.Fatalf("TryRead after Abort: %d, %v, want an error", n, err)
			}
		}},
	}
	type flow struct {
		lan  *netstack.Conn
		done chan struct{}
	}
	flows := make(chan flow, 1)
	l := newLab(t, func(*netlab.NS) netstack.Config {
		return netstack.Config{
			Dial: func(ctx context.Context, id netstack.FlowID) (netstack.Upstream, error) {
				a, b := net.Pipe()
				t.Cleanup(func() { b.Close() })
				return a, nil
			},
			Handle: func(ctx context.Context, lan *netstack.Conn, up netstack.Upstream) {
				f := flow{lan, make(chan struct{})}
				flows <- f
				<-f.done
				lan.Close()
			},
		}
	})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := l.dial(ctx, netip.Addr{}, dst4)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			f := <-flows
			defer close(f.done)
			notified := make(chan struct{}, 1)
			stop := f.lan.NotifyReadable(func() {
				select {
				case notified <- struct{}{}:
				default:
				}
			})
			defer stop()
			buf := make([]byte, 4)
			if n, err := f.lan.TryRead(buf); !errors.Is(err, syscall.EAGAIN) || f.lan.Readable() {
				t.Fatalf("silent LAN host: TryRead %d, %v, Readable %v; want EAGAIN, false", n, err, f.lan.Readable())
			}
			select {
			case <-notified:
				t.Fatal("notified with nothing to read")
			case <-time.After(100 * time.Millisecond):
			}
			tc.act(c, f.lan)
			select {
			case <-notified:
			case <-time.After(5 * time.Second):
				t.Fatal("no notification")
			}
			deadline := time.Now().Add(time.Second)
			for !f.lan.Readable() && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if !f.lan.Readable() {
				t.Fatal("notified, but not Readable")
			}
			n, err := f.lan.TryRead(buf)
			tc.check(t, n, err)
		})
	}
}

// TestIdleFlowsHoldNoGoroutine relays LAN flows through the Stack with
// Config.Start and rl.Start on a Poller, as hcpe does, and checks that
// idle flows hold no goroutine (the handler's returns, both directions
// park), and that they still carry bytes both ways and close cleanly.
func TestIdleFlowsHoldNoGoroutine(t *testing.T) {
	const flows = 40
	p := runPoller(t)
	ends := make(chan rl.Result, flows)
	var target atomic.Value
	l := newLab(t, func(ns *netlab.NS) netstack.Config {
		return netstack.Config{
			Dial: upstreamTo(ns, &target, nil),
			Start: func(ctx context.Context, lan *netstack.Conn, up netstack.Upstream, done func()) {
				rl.Start(ctx, lan, up.(*net.TCPConn), rl.Options{IsReset: netstack.IsReset, Poller: p}, func(r rl.Result) {
					ends <- r
					done()
				})
			},
		}
	})
	ln := l.listen(t, "127.0.0.1:0")
	target.Store(ln.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	servers := make([]*net.TCPConn, flows)
	clients := make([]*net.TCPConn, flows)
	before := runtime.NumGoroutine()
	for i := range flows {
		c, err := l.dial(ctx, netip.Addr{}, dst4)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		clients[i], servers[i] = c, s.(*net.TCPConn)
	}
	roundTrip := func(i int) {
		t.Helper()
		buf := make([]byte, 4)
		for _, pair := range [][2]*net.TCPConn{{clients[i], servers[i]}, {servers[i], clients[i]}} {
			if _, err := pair[0].Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			pair[1].SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(pair[1], buf); err != nil || string(buf) != "ping" {
				t.Fatalf("flow %d: read %q, %v", i, buf, err)
			}
		}
	}
	for i := range flows {
		roundTrip(i)
	}
	// Handler goroutines and directions that just moved bytes end within
	// moments; then only what does not grow with flows is left.
	var added int
	for range 200 {
		if added = runtime.NumGoroutine() - before; added < flows/4 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if added >= flows/4 {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d idle flows added %d goroutines, want none per flow\n%s", flows, added, buf[:runtime.Stack(buf, true)])
	}
	for i := range flows {
		roundTrip(i)
		clients[i].CloseWrite()
		if b, err := io.ReadAll(servers[i]); err != nil || len(b) != 0 {
			t.Fatalf("flow %d: server read to EOF %q, %v", i, b, err)
		}
		servers[i].CloseWrite()
		if b, err := io.ReadAll(clients[i]); err != nil || len(b) != 0 {
			t.Fatalf("flow %d: client read to EOF %q, %v", i, b, err)
		}
		select {
		case r := <-ends:
			if r.End != rl.ReasonEOF || r.AtoB != 8 || r.BtoA != 8 {
				t.Fatalf("relay ended %v (%v) %d/%d, want eof 8/8", r.End, r.Err, r.AtoB, r.BtoA)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("flow %d: relay did not end", i)
		}
	}
}

// TestRelayStreams streams both ways at once through the Stack and a relay
// on a Poller, in small writes, so that bytes often arrive just as a
// direction finds its source empty and parks: a wake lost in that window
// stalls the stream. The bytes must arrive intact.
func TestRelayStreams(t *testing.T) {
	p := runPoller(t)
	var target atomic.Value
	l := newLab(t, func(ns *netlab.NS) netstack.Config {
		return netstack.Config{
			Dial: upstreamTo(ns, &target, nil),
			Start: func(ctx context.Context, lan *netstack.Conn, up netstack.Upstream, done func()) {
				rl.Start(ctx, lan, up.(*net.TCPConn), rl.Options{IsReset: netstack.IsReset, Poller: p}, func(rl.Result) { done() })
			},
		}
	})
	ln := l.listen(t, "127.0.0.1:0")
	target.Store(ln.Addr().String())
	const size, chunk = 4 << 20, 700
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := l.dial(ctx, netip.Addr{}, dst4)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	deadline := time.Now().Add(15 * time.Second)
	c.SetDeadline(deadline)
	s.SetDeadline(deadline)
	send := func(w *net.TCPConn, seed byte) {
		b := make([]byte, chunk)
		for off := 0; off < size; off += chunk {
			for i := range b {
				b[i] = byte(off+i) ^ seed
			}
			if _, err := w.Write(b[:min(chunk, size-off)]); err != nil {
				t.Errorf("write: %v", err)
				return
			}
		}
		w.CloseWrite()
	}
	check := func(r *net.TCPConn, seed byte) error {
		got, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		if len(got) != size {
			return fmt.Errorf("got %d bytes, want %d", len(got), size)
		}
		for i, v := range got {
			if v != byte(i)^seed {
				return fmt.Errorf("byte %d corrupted", i)
			}
		}
		return nil
	}
	errs := make(chan error, 2)
	go send(c, 1)
	go send(s.(*net.TCPConn), 2)
	go func() { errs <- check(s.(*net.TCPConn), 1) }()
	go func() { errs <- check(c, 2) }()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// runPoller runs a relay Poller for the test.
func runPoller(t *testing.T) *rl.Poller {
	t.Helper()
	p, err := rl.NewPoller()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Run() }()
	t.Cleanup(func() {
		p.Close()
		if err := <-done; err != nil {
			t.Errorf("Poller.Run: %v", err)
		}
	})
	return p
}
