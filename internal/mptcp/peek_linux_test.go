package mptcp

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestQuietAndWaitReadable: what hcpe checks before handing out a warm
// connection and what hag waits on, over loopback TCP (the checks look at
// the socket's receive queue only, so plain TCP exercises them fully).
func TestQuietAndWaitReadable(t *testing.T) {
	tests := []struct {
		name      string
		peer      func(c net.Conn) // what the far end does
		wantQuiet bool
		wantErr   error // of WaitReadable with a 200 ms deadline
	}{
		{name: "idle", peer: func(net.Conn) {}, wantQuiet: true, wantErr: os.ErrDeadlineExceeded},
		{name: "data", peer: func(c net.Conn) { _, _ = c.Write([]byte("x")) }, wantErr: nil},
		{name: "closed", peer: func(c net.Conn) { c.Close() }, wantErr: io.EOF},
		{name: "reset", peer: func(c net.Conn) { _ = c.(*net.TCPConn).SetLinger(0); c.Close() }, wantErr: errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, s := loopbackPair(t)
			tt.peer(s)
			time.Sleep(50 * time.Millisecond) // loopback delivery
			tc := c.(*net.TCPConn)
			if got := Quiet(tc); got != tt.wantQuiet {
				t.Errorf("Quiet = %v, want %v", got, tt.wantQuiet)
			}
			_ = tc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			err := WaitReadable(tc)
			switch {
			case tt.wantErr == errAny:
				if err == nil {
					t.Error("WaitReadable = nil after a reset, want an error")
				}
			case !errors.Is(err, tt.wantErr) && err != tt.wantErr:
				t.Errorf("WaitReadable = %v, want %v", err, tt.wantErr)
			}
			if tt.name == "data" {
				// The byte is still there: WaitReadable must not consume it.
				var b [1]byte
				if n, _ := c.Read(b[:]); n != 1 || b[0] != 'x' {
					t.Errorf("after WaitReadable, read %d bytes %q, want the peer's byte", n, b[:n])
				}
			}
		})
	}
}

var errAny = errors.New("any error")

// TestPeek: Peek shows what has arrived without consuming it, says EAGAIN
// when nothing has, and 0 at EOF.
func TestPeek(t *testing.T) {
	c, s := loopbackPair(t)
	tc := c.(*net.TCPConn)
	buf := make([]byte, 8)
	if _, err := Peek(tc, buf); !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("Peek with nothing received: %v, want EAGAIN", err)
	}
	_, _ = s.Write([]byte("convert-message"))
	time.Sleep(50 * time.Millisecond) // loopback delivery
	for range 2 {                     // not consumed: the second look sees the same
		if n, err := Peek(tc, buf); err != nil || string(buf[:n]) != "convert-" {
			t.Fatalf("Peek = %q, %v; want %q", buf[:n], err, "convert-")
		}
	}
	all := make([]byte, 15)
	if _, err := io.ReadFull(tc, all); err != nil || string(all) != "convert-message" {
		t.Fatalf("read after Peek: %q, %v", all, err)
	}
	s.Close()
	time.Sleep(50 * time.Millisecond)
	if n, err := Peek(tc, buf); n != 0 || err != nil {
		t.Fatalf("Peek at EOF = %d, %v; want 0, nil", n, err)
	}
}

// loopbackPair is a connected TCP pair over loopback, closed at cleanup.
func loopbackPair(t *testing.T) (c, s net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if c, err = net.Dial("tcp", ln.Addr().String()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if s, err = ln.Accept(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return c, s
}
