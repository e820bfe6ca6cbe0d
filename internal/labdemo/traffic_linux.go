package labdemo

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"hybridgw/internal/labproc"
	"hybridgw/internal/netlab"
)

// servers run in the srv namespace: whoami writes the peer address it saw
// and closes; stream sends bytes for a fixed time, half-closes and waits
// for the client's close. Each records the peers it saw.
type servers struct {
	dur time.Duration
	srv labproc.Servers

	mu    sync.Mutex
	peers map[int][]netip.AddrPort // by port
}

func startServers(ns *netlab.NS, dur time.Duration) (*servers, error) {
	s := &servers{dur: dur, peers: map[int][]netip.AddrPort{}}
	for port, handle := range map[int]func(net.Conn){portWhoami: s.whoami, portStream: s.stream} {
		err := s.srv.Listen(ns, fmt.Sprintf("[::]:%d", port), func(c net.Conn) {
			s.mu.Lock()
			s.peers[port] = append(s.peers[port], netlab.PeerOf(c))
			s.mu.Unlock()
			handle(c)
		})
		if err != nil {
			s.close()
			return nil, fmt.Errorf("server: %w", err)
		}
	}
	return s, nil
}

// close stops accepting, closes the open connections and waits for the
// handlers.
func (s *servers) close() { s.srv.Close() }

// peer returns the first peer the server on port saw.
func (s *servers) peer(port int) (netip.AddrPort, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.peers[port]) == 0 {
		return netip.AddrPort{}, false
	}
	return s.peers[port][0], true
}

func (s *servers) whoami(c net.Conn) {
	// Deadline setters fail only on a closed conn, and the I/O after them
	// then fails; the same throughout this file.
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "%s\n", netlab.PeerOf(c))
}

func (s *servers) stream(c net.Conn) {
	buf := make([]byte, 128<<10)
	for i := range buf {
		buf[i] = byte(i*7 + i>>8) // not all zeros, in case anything compresses
	}
	_ = c.SetWriteDeadline(time.Now().Add(s.dur))
	for {
		if _, err := c.Write(buf); err != nil {
			break
		}
	}
	_ = c.SetWriteDeadline(time.Time{})
	_ = c.(*net.TCPConn).CloseWrite()
	// The client closes once it read everything.
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, _ = io.Copy(io.Discard, c)
}

func dialIn(ctx context.Context, ns *netlab.NS, network, addr string) (net.Conn, error) {
	return labproc.Dial(ctx, ns, network, addr)
}

// whoami asks the server which address it sees us as, from the LAN client.
func whoami(ctx context.Context, lan *netlab.NS, server netip.Addr) (netip.AddrPort, error) {
	c, err := dialIn(ctx, lan, "tcp", netip.AddrPortFrom(server, portWhoami).String())
	if err != nil {
		return netip.AddrPort{}, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("reading the server's answer: %w", err)
	}
	return netip.ParseAddrPort(strings.TrimSpace(line))
}

// download is the client side of the stream: it counts what it reads.
type download struct {
	bytes       atomic.Uint64
	first, last time.Time // of the first byte and of EOF
}

// run reads the stream to EOF. ctx aborts it.
func (d *download) run(ctx context.Context, c net.Conn) error {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	buf := make([]byte, 256<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if d.first.IsZero() {
				d.first = time.Now()
			}
			d.bytes.Add(uint64(n))
		}
		if errors.Is(err, io.EOF) {
			d.last = time.Now()
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			return fmt.Errorf("after %d bytes: %w", d.bytes.Load(), err)
		}
	}
}

// scraper fetches a Prometheus exposition from addr inside ns.
type scraper struct {
	ns   *netlab.NS
	addr string
}

func newScraper(ns *netlab.NS, addr string) *scraper { return &scraper{ns, addr} }

// get gives up after 2 s: the demo samples every second.
func (s *scraper) get(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return labproc.MetricsText(ctx, s.ns, s.addr)
}
