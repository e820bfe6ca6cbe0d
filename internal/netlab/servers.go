package netlab

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// The test servers the root and end-to-end tests run in a lab's server
// namespace, and the deterministic byte streams they check transfers with.

// ServeTCP accepts TCP connections on addr inside ns and runs handle for
// each in its own goroutine (handle's conn is closed after it returns)
// until the test ends; cleanup closes the listener and waits for every
// handler.
func ServeTCP(tb testing.TB, ns *NS, addr string, handle func(net.Conn)) {
	tb.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp", addr); return }); err != nil {
		tb.Fatalf("test server on %s in %s: %v", addr, ns.Name, err)
	}
	var wg sync.WaitGroup
	tb.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); defer c.Close(); handle(c) }()
		}
	}()
}

// PeerOf is the address a server saw a connection come from (unmapped).
func PeerOf(c net.Conn) netip.AddrPort {
	ra := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	return netip.AddrPortFrom(ra.Addr().Unmap(), ra.Port())
}

// EchoHash reads to EOF and answers "<peer addr> <sha256 hex>": a client
// that half-closes first can check the bytes it sent and the source
// address the server saw.
func EchoHash(c net.Conn) {
	h := sha256.New()
	if _, err := io.Copy(h, c); err != nil {
		return
	}
	fmt.Fprintf(c, "%s %x", PeerOf(c), h.Sum(nil))
}

// SourceRequest asks a SendSeeded server for n bytes of the stream seed.
func SourceRequest(n, seed uint64) []byte {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], n)
	binary.BigEndian.PutUint64(b[8:], seed)
	return b[:]
}

// SendSeeded reads a SourceRequest, sends the bytes and half-closes, so the
// server's FIN comes first while the client's direction stays open. It
// returns the hash of what it sent.
func SendSeeded(c net.Conn) ([]byte, error) { return SendSeededPaced(c, 0) }

// SendSeededPaced is SendSeeded at bps bits per second at most (0: as fast
// as the connection takes it): a sender that does not fill the path, as
// a video stream would not.
func SendSeededPaced(c net.Conn, bps float64) ([]byte, error) {
	var hdr [16]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return nil, fmt.Errorf("reading the request: %w", err)
	}
	n, seed := binary.BigEndian.Uint64(hdr[:8]), binary.BigEndian.Uint64(hdr[8:])
	h := sha256.New()
	w := io.MultiWriter(c, h)
	if bps <= 0 {
		if _, err := io.CopyN(w, Seeded(seed), int64(n)); err != nil {
			return nil, fmt.Errorf("sending %d bytes: %w", n, err)
		}
	} else {
		src, buf, start := Seeded(seed), make([]byte, 16<<10), time.Now()
		for sent := uint64(0); sent < n; {
			k := min(uint64(len(buf)), n-sent)
			if _, err := io.ReadFull(src, buf[:k]); err != nil {
				return nil, err
			}
			if _, err := w.Write(buf[:k]); err != nil {
				return nil, fmt.Errorf("sending %d bytes at %.0f bit/s: %w", n, bps, err)
			}
			sent += k
			// Sleep until the schedule catches up, not a fixed gap per
			// write: timer overshoot does not accumulate.
			if d := time.Duration(float64(sent) * 8 / bps * float64(time.Second)); d > time.Since(start) {
				time.Sleep(d - time.Since(start))
			}
		}
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return nil, fmt.Errorf("half-closing: %w", err)
	}
	return h.Sum(nil), nil
}

// Seeded is the deterministic byte stream of seed (ChaCha8), so a test can
// check a transfer of any size without holding it in memory.
func Seeded(seed uint64) io.Reader {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	return bufio.NewReaderSize(readerFunc(rand.NewChaCha8(key).Read), 64<<10)
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(b []byte) (int, error) { return f(b) }
