package relay

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestRelayIdleHoldsNoBuffer checks that a direction waiting for input
// holds no pooled buffer: after bytes moved both ways and stopped, the
// relays of the process hold none, and a flow that moves again works. Not
// parallel: buffersOut is process-wide.
func TestRelayIdleHoldsNoBuffer(t *testing.T) {
	for _, m := range []mode{modeSplice, modeUser, modeGv} {
		t.Run(string(m), func(t *testing.T) {
			const flows = 8
			hs := make([]*harness, flows)
			for i := range hs {
				hs[i] = start(t, "tcp4", "127.0.0.1:0", m, Options{})
			}
			msg := []byte("ping")
			roundTrip := func(h *harness) {
				t.Helper()
				buf := make([]byte, len(msg))
				for _, pair := range [][2]io.ReadWriter{{h.client, h.server}, {h.server, h.client}} {
					if _, err := pair[0].Write(msg); err != nil {
						t.Fatal(err)
					}
					if _, err := io.ReadFull(pair[1], buf); err != nil {
						t.Fatal(err)
					}
				}
			}
			for _, h := range hs {
				roundTrip(h)
			}
			// The directions return their buffers right after their last
			// write; give them that instant.
			deadline := time.Now().Add(2 * time.Second)
			for buffersOut.Load() != 0 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if n := buffersOut.Load(); n != 0 {
				t.Fatalf("%d idle flows hold %d buffers, want 0", flows, n)
			}
			for _, h := range hs {
				roundTrip(h)
				h.client.CloseWrite()
				h.server.CloseWrite()
				if r := h.wait(t, 5*time.Second); r.End != ReasonEOF {
					t.Fatalf("relay ended %v (%v), want eof", r.End, r.Err)
				}
			}
			if n := buffersOut.Load(); n != 0 {
				t.Fatalf("ended relays hold %d buffers", n)
			}
		})
	}
}

// TestRelayWaitsWithoutBuffer checks the opposite case the test above
// cannot tell apart from a lucky moment: while both directions of a flow
// wait, the count is zero throughout, sampled over a while.
func TestRelayWaitsWithoutBuffer(t *testing.T) {
	start(t, "tcp4", "127.0.0.1:0", modeSplice, Options{})
	start(t, "tcp4", "127.0.0.1:0", modeGv, Options{})
	for range 50 {
		if n := buffersOut.Load(); n != 0 {
			t.Fatalf("a waiting flow holds %d buffers", n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func openFDs(tb testing.TB) int {
	tb.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		tb.Fatalf("counting descriptors: %v", err)
	}
	return len(ents)
}

// TestRelayIdleHoldsNoPipes checks that relaying between two kernel
// sockets adds no descriptor of its own to an idle flow: io.Copy's
// splice(2) would hold two pipes (4 descriptors) per flow while it waits.
// Not parallel: the descriptor table is process-wide.
func TestRelayIdleHoldsNoPipes(t *testing.T) {
	const flows = 8
	hs := make([]*harness, flows)
	for i := range hs {
		hs[i] = start(t, "tcp4", "127.0.0.1:0", modeSplice, Options{})
	}
	time.Sleep(20 * time.Millisecond)
	before := openFDs(t)
	buf := make([]byte, 64<<10)
	for _, h := range hs {
		for _, pair := range [][2]*net.TCPConn{{h.client, h.server}, {h.server, h.client}} {
			if _, err := pair[0].Write(buf); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(pair[1], buf); err != nil {
				t.Fatal(err)
			}
		}
	}
	time.Sleep(20 * time.Millisecond)
	if after := openFDs(t); after > before {
		t.Fatalf("%d idle flows that moved bytes hold %d more descriptors than before, want none", flows, after-before)
	}
}

// TestRelayIdleHoldsNoGoroutine checks that a flow between kernel sockets
// on a Poller holds no goroutine while idle: after bytes moved both ways
// and stopped, no direction runs and the process has no more goroutines
// than before the flows started (but the harness's), and the flows still
// work. Not parallel: the counts are process-wide.
func TestRelayIdleHoldsNoGoroutine(t *testing.T) {
	const flows = 50
	p := newPoller(t)
	before := runtime.NumGoroutine()
	hs := make([]*harness, flows)
	for i := range hs {
		// The harness's own goroutine waits in Relay; count with
		// goroutines, which only directions add to, and check the
		// process total against flows (one waiting harness each).
		hs[i] = start(t, "tcp4", "127.0.0.1:0", modeSplice, Options{Poller: p, IdleTimeout: time.Minute, HalfCloseTimeout: time.Minute})
	}
	msg := []byte("ping")
	buf := make([]byte, len(msg))
	for _, h := range hs {
		for _, pair := range [][2]*net.TCPConn{{h.client, h.server}, {h.server, h.client}} {
			if _, err := pair[0].Write(msg); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(pair[1], buf); err != nil {
				t.Fatal(err)
			}
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for goroutines.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := goroutines.Load(); n != 0 {
		t.Fatalf("%d idle flows hold %d direction goroutines, want 0", flows, n)
	}
	if n := runtime.NumGoroutine() - before; n > flows {
		t.Fatalf("%d idle flows added %d goroutines; want at most %d (the harness's waits)", flows, n, flows)
	}
	for _, h := range hs {
		h.client.CloseWrite()
		if _, err := io.ReadAll(h.server); err != nil {
			t.Fatal(err)
		}
		h.server.CloseWrite()
		if r := h.wait(t, 5*time.Second); r.End != ReasonEOF || r.AtoB != int64(len(msg)) || r.BtoA != int64(len(msg)) {
			t.Fatalf("relay ended %v (%v) %d/%d, want eof %d/%d", r.End, r.Err, r.AtoB, r.BtoA, len(msg), len(msg))
		}
	}
}

// lateConn is a Notifier whose data arrives exactly in the window where a
// direction has found it empty but has not parked yet: its first TryRead
// queues bytes and signals before it reports EAGAIN, so the signal reaches
// a running direction, which ignores it. Only the readiness check after
// parking can find the bytes.
type lateConn struct {
	mu      sync.Mutex
	buf     []byte
	late    []byte // delivered by the first empty TryRead
	eager   bool   // NotifyReadable signals at once when buf holds data
	notify  func()
	written bytes.Buffer
}

func (c *lateConn) TryRead(b []byte) (int, error) {
	c.mu.Lock()
	if len(c.buf) == 0 {
		if c.late != nil {
			c.buf, c.late = c.late, nil
			fn := c.notify
			c.mu.Unlock()
			fn()
			return 0, syscall.EAGAIN
		}
		c.mu.Unlock()
		return 0, syscall.EAGAIN
	}
	n := copy(b, c.buf)
	c.buf = c.buf[n:]
	c.mu.Unlock()
	return n, nil
}

func (c *lateConn) Readable() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.buf) > 0 || c.late != nil
}

func (c *lateConn) NotifyReadable(fn func()) func() {
	c.mu.Lock()
	c.notify = fn
	eager := c.eager && len(c.buf) > 0
	c.mu.Unlock()
	if eager {
		fn()
		// Give a goroutine fn may have started the time to run before
		// the registration returns, as a loaded machine does.
		time.Sleep(50 * time.Millisecond)
	}
	return func() {}
}

func (c *lateConn) Read([]byte) (int, error) { return 0, errors.New("lateConn: Read") }
func (c *lateConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.written.Write(b)
}
func (c *lateConn) CloseWrite() error                { return nil }
func (c *lateConn) Close() error                     { return nil }
func (c *lateConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *lateConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *lateConn) SetDeadline(time.Time) error      { return nil }
func (c *lateConn) SetReadDeadline(time.Time) error  { return nil }
func (c *lateConn) SetWriteDeadline(time.Time) error { return nil }

// TestRelayWakeRaces relays from a Notifier whose signal comes at the
// awkward moments, and wants its bytes at the server all the same.
//   - starting: the signal arrives while Start is still registering the
//     direction (gVisor calls back on its own goroutine as data arrives);
//     it must not start the direction before it is set up (hcpe crashed
//     so in make bench: a nil source), nor be lost.
//   - parking: bytes arrive while a direction is on its way to parking;
//     the direction looks once more after it has parked.
func TestRelayWakeRaces(t *testing.T) {
	for _, tc := range []struct {
		name string
		a    *lateConn
		want string
	}{
		{"starting", &lateConn{buf: []byte("early"), eager: true}, "early"},
		{"parking", &lateConn{late: []byte("late")}, "late"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPoller(t)
			b, server := tcpPair(t, "tcp4", "127.0.0.1:0")
			ctx, cancel := context.WithCancel(context.Background())
			res := make(chan Result, 1)
			go func() { res <- Relay(ctx, tc.a, b, Options{Poller: p}) }()
			defer func() { cancel(); <-res }()
			server.SetReadDeadline(time.Now().Add(3 * time.Second))
			got := make([]byte, len(tc.want))
			if _, err := io.ReadFull(server, got); err != nil || string(got) != tc.want {
				t.Fatalf("server read %q, %v; want %q (a wake was lost)", got, err, tc.want)
			}
		})
	}
}
