package labdemo

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"hybridgw/internal/netlab"
)

// servers run in the srv namespace: whoami writes the peer address it saw
// and closes; stream sends bytes for a fixed time, half-closes and waits
// for the client's close. Each records the peers it saw.
type servers struct {
	dur time.Duration
	lns []net.Listener
	wg  sync.WaitGroup

	mu    sync.Mutex
	peers map[int][]netip.AddrPort // by port
	conns map[net.Conn]struct{}    // open ones, closed by close
}

func startServers(ns *netlab.NS, dur time.Duration) (*servers, error) {
	s := &servers{dur: dur, peers: map[int][]netip.AddrPort{}, conns: map[net.Conn]struct{}{}}
	for port, handle := range map[int]func(net.Conn){portWhoami: s.whoami, portStream: s.stream} {
		var ln net.Listener
		err := ns.Do(func() (err error) {
			ln, err = net.Listen("tcp", fmt.Sprintf("[::]:%d", port))
			return err
		})
		if err != nil {
			s.close()
			return nil, fmt.Errorf("server listening on :%d in %s: %w", port, ns.Name, err)
		}
		s.lns = append(s.lns, ln)
		s.wg.Go(func() {
			var cw sync.WaitGroup
			defer cw.Wait()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				ra := unmap(c.RemoteAddr().(*net.TCPAddr).AddrPort())
				s.mu.Lock()
				s.peers[port] = append(s.peers[port], ra)
				s.conns[c] = struct{}{}
				s.mu.Unlock()
				cw.Go(func() {
					defer func() {
						s.mu.Lock()
						delete(s.conns, c)
						s.mu.Unlock()
						c.Close()
					}()
					handle(c)
				})
			}
		})
	}
	return s, nil
}

// close stops accepting, closes the open connections and waits for the
// handlers.
func (s *servers) close() {
	for _, ln := range s.lns {
		ln.Close()
	}
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

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
	fmt.Fprintf(c, "%s\n", unmap(c.RemoteAddr().(*net.TCPAddr).AddrPort()))
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

// dialIn connects from inside ns.
func dialIn(ctx context.Context, ns *netlab.NS, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := ns.Do(func() (err error) {
		d := net.Dialer{Timeout: 10 * time.Second}
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
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
	url    string
	client *http.Client
}

func newScraper(ns *netlab.NS, addr string) *scraper {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			return dialIn(ctx, ns, network, a)
		},
		DisableKeepAlives: true,
	}
	return &scraper{url: "http://" + addr + "/metrics", client: &http.Client{Transport: tr, Timeout: 2 * time.Second}}
}

func (s *scraper) get(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return "", err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", s.url, resp.Status)
	}
	return string(b), nil
}
