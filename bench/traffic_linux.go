package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"hybridgw/internal/labproc"
	"hybridgw/internal/netlab"
)

// The test servers speak a one-byte protocol: the client's first byte says
// what it wants.
const (
	cmdDownload = 'D' // the server sends until the connection breaks
	cmdTTFB     = 'T' // 99 more request bytes; the server answers respLen bytes and closes
	cmdIdle     = 'I' // the server answers one byte, then waits for EOF
	benchPort   = 9000
)

// servers are the bench's test servers, each listening inside one of the
// lab's namespaces.
type servers struct {
	buf []byte // what downloads send, over and over
	labproc.Servers
}

func newServers(seed uint64) *servers {
	buf := make([]byte, 256<<10)
	r := rand.New(rand.NewPCG(seed, 0x6265))
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	return &servers{buf: buf}
}

// listen starts a server on addr inside ns.
func (s *servers) listen(ns *netlab.NS, addr string) error { return s.Listen(ns, addr, s.serve) }

func (s *servers) serve(c net.Conn) {
	var cmd [reqLen]byte
	if _, err := io.ReadFull(c, cmd[:1]); err != nil {
		return
	}
	switch cmd[0] {
	case cmdDownload:
		for {
			if _, err := c.Write(s.buf); err != nil {
				return
			}
		}
	case cmdTTFB:
		if _, err := io.ReadFull(c, cmd[1:]); err != nil {
			return
		}
		_, _ = c.Write(s.buf[:respLen])
	case cmdIdle:
		if _, err := c.Write(cmd[:1]); err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, c)
	}
}

// close stops every server and closes every connection they hold.
func (s *servers) close() { s.Close() }

// dialIn connects from inside ns.
func dialIn(ctx context.Context, ns *netlab.NS, dst netip.AddrPort) (*net.TCPConn, error) {
	c, err := labproc.Dial(ctx, ns, "tcp", dst.String())
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// transfer is what one download received.
type transfer struct {
	Samples []sample
	Err     error
}

// download asks dst for a bulk download from inside ns and reads until
// start+dur; every read is timed relative to start.
func download(ctx context.Context, ns *netlab.NS, dst netip.AddrPort, start time.Time, dur time.Duration) transfer {
	var t transfer
	t.Samples = make([]sample, 0, 4096)
	c, err := dialIn(ctx, ns, dst)
	if err != nil {
		t.Err = fmt.Errorf("connecting to %s: %w", dst, err)
		return t
	}
	defer c.Close()
	end := start.Add(dur)
	stop := context.AfterFunc(ctx, func() { _ = c.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := c.Write([]byte{cmdDownload}); err != nil {
		t.Err = fmt.Errorf("asking %s for a download: %w", dst, err)
		return t
	}
	_ = c.SetReadDeadline(end)
	buf := make([]byte, 128<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			t.Samples = append(t.Samples, sample{At: time.Since(start), N: n})
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil {
				break
			}
			if ctx.Err() != nil {
				t.Err = ctx.Err()
			} else {
				t.Err = fmt.Errorf("reading from %s after %v: %w", dst, time.Since(start).Round(time.Millisecond), err)
			}
			break
		}
	}
	// Whatever is still queued is dropped with a reset: the server learns
	// at once that the download is over.
	_ = c.SetLinger(0)
	return t
}

// downloads runs n downloads side by side with a common start.
func downloads(ctx context.Context, ns *netlab.NS, dst netip.AddrPort, n int, dur time.Duration) ([]sample, []transfer) {
	start := time.Now()
	res := make([]transfer, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { res[i] = download(ctx, ns, dst, start, dur) })
	}
	wg.Wait()
	sets := make([][]sample, n)
	for i, r := range res {
		sets[i] = r.Samples
	}
	return merge(sets...), res
}

// ttfb times one small exchange: connect, send a 100-byte request, and
// the first byte of the 1000-byte answer. port is the client's local port
// (the server closes first, so the client keeps no TIME_WAIT for it).
func ttfb(ctx context.Context, ns *netlab.NS, dst netip.AddrPort) (connect, first time.Duration, port uint16, err error) {
	start := time.Now()
	c, err := dialIn(ctx, ns, dst)
	if err != nil {
		return 0, 0, 0, err
	}
	defer c.Close()
	port = localPort(c)
	connect = time.Since(start)
	_ = c.SetDeadline(start.Add(10 * time.Second))
	var req [reqLen]byte
	req[0] = cmdTTFB
	copy(req[1:], "GET /small HTTP/1.1\r\nHost: server\r\n\r\n")
	if _, err := c.Write(req[:]); err != nil {
		return connect, 0, port, err
	}
	var resp [respLen]byte
	if _, err := io.ReadFull(c, resp[:1]); err != nil {
		return connect, 0, port, fmt.Errorf("waiting for the first byte: %w", err)
	}
	first = time.Since(start)
	if _, err := io.ReadFull(c, resp[1:]); err != nil {
		return connect, first, port, fmt.Errorf("reading the answer: %w", err)
	}
	return connect, first, port, nil
}

func localPort(c net.Conn) uint16 {
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok {
		return uint16(a.Port)
	}
	return 0
}

// openIdle opens n connections that stay open and idle once the server
// has answered over each one (so each is established end to end), at most
// conc at a time.
func openIdle(ctx context.Context, ns *netlab.NS, dst netip.AddrPort, n, conc int) ([]net.Conn, error) {
	conns := make([]net.Conn, 0, n)
	var mu sync.Mutex
	var firstErr error
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	for range n {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := dialIn(ctx, ns, dst)
			if err == nil {
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				var b [1]byte
				if _, err = c.Write([]byte{cmdIdle}); err == nil {
					_, err = io.ReadFull(c, b[:])
				}
				_ = c.SetDeadline(time.Time{})
				if err != nil {
					c.Close()
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			conns = append(conns, c)
		})
	}
	wg.Wait()
	if len(conns) < n {
		return conns, fmt.Errorf("opened %d of %d idle flows: %v", len(conns), n, firstErr)
	}
	return conns, nil
}
