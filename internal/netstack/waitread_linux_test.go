package netstack_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"hybridgw/internal/netlab"
	"hybridgw/internal/netstack"
)

// TestWaitRead checks that WaitRead blocks while the LAN host is silent
// and returns once a Read would not block: data, FIN, reset; that a read
// deadline ends it with a timeout and Close with an error.
func TestWaitRead(t *testing.T) {
	type result struct {
		err     error
		elapsed time.Duration
	}
	cases := []struct {
		name string
		// act runs on the LAN host's socket (c) and the netstack side
		// (lan) once WaitRead has been waiting for 100 ms.
		act   func(c *net.TCPConn, lan *netstack.Conn)
		check func(t *testing.T, r result, lan *netstack.Conn)
	}{
		{"data", func(c *net.TCPConn, _ *netstack.Conn) { c.Write([]byte("x")) }, func(t *testing.T, r result, lan *netstack.Conn) {
			if r.err != nil {
				t.Fatalf("WaitRead: %v", r.err)
			}
			b := make([]byte, 4)
			if n, err := lan.Read(b); n != 1 || err != nil {
				t.Fatalf("Read after WaitRead: %d, %v", n, err)
			}
		}},
		{"fin", func(c *net.TCPConn, _ *netstack.Conn) { c.CloseWrite() }, func(t *testing.T, r result, lan *netstack.Conn) {
			if r.err != nil {
				t.Fatalf("WaitRead: %v", r.err)
			}
			if _, err := lan.Read(make([]byte, 4)); err != io.EOF {
				t.Fatalf("Read after FIN: %v, want EOF", err)
			}
		}},
		{"reset", func(c *net.TCPConn, _ *netstack.Conn) { c.SetLinger(0); c.Close() }, func(t *testing.T, r result, lan *netstack.Conn) {
			if r.err != nil {
				t.Fatalf("WaitRead: %v", r.err)
			}
			if _, err := lan.Read(make([]byte, 4)); !netstack.IsReset(err) {
				t.Fatalf("Read after RST: %v, want a reset", err)
			}
		}},
		{"deadline", func(_ *net.TCPConn, lan *netstack.Conn) { lan.SetReadDeadline(time.Unix(1, 0)) }, func(t *testing.T, r result, _ *netstack.Conn) {
			var ne net.Error
			if !errors.As(r.err, &ne) || !ne.Timeout() {
				t.Fatalf("WaitRead after a past deadline: %v, want a timeout", r.err)
			}
		}},
		{"close", func(_ *net.TCPConn, lan *netstack.Conn) { lan.Close() }, func(t *testing.T, r result, _ *netstack.Conn) {
			if !errors.Is(r.err, net.ErrClosed) {
				t.Fatalf("WaitRead after Close: %v, want net.ErrClosed", r.err)
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
			res := make(chan result, 1)
			go func() {
				t0 := time.Now()
				err := f.lan.WaitRead()
				res <- result{err, time.Since(t0)}
			}()
			select {
			case r := <-res:
				t.Fatalf("WaitRead returned %v with nothing to read", r.err)
			case <-time.After(100 * time.Millisecond):
			}
			tc.act(c, f.lan)
			select {
			case r := <-res:
				tc.check(t, r, f.lan)
			case <-time.After(5 * time.Second):
				t.Fatal("WaitRead did not return")
			}
		})
	}
}
