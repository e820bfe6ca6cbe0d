package labproc

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"hybridgw/internal/netlab"
)

// DialTimeout is how long Dial waits for an answer.
const DialTimeout = 10 * time.Second

// Dial connects from inside ns, giving up after DialTimeout.
func Dial(ctx context.Context, ns *netlab.NS, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := ns.Do(func() (err error) {
		d := net.Dialer{Timeout: DialTimeout}
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// MetricsText fetches the Prometheus exposition at http://addr/metrics
// from inside ns, giving up after 5 s.
func MetricsText(ctx context.Context, ns *netlab.NS, addr string) (string, error) {
	tr := &http.Transport{DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
		return Dial(ctx, ns, network, a)
	}, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return "", err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return "", fmt.Errorf("scraping %s in %s: %w", addr, ns.Name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return "", fmt.Errorf("scraping %s in %s: %w", addr, ns.Name, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("scraping %s in %s: %s", addr, ns.Name, resp.Status)
	}
	return string(b), nil
}

// Scrape fetches the exposition at addr inside ns and picks the named
// metrics from it (Pick).
func Scrape(ctx context.Context, ns *netlab.NS, addr string, names ...string) (map[string]float64, error) {
	text, err := MetricsText(ctx, ns, addr)
	if err != nil {
		return nil, err
	}
	return Pick(text, names...), nil
}

// Servers are test servers running in this process, each listening inside
// a lab namespace. The zero value is ready; Close stops them all.
type Servers struct {
	mu     sync.Mutex
	lns    []net.Listener
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// Listen serves TCP on addr inside ns: handle runs for every connection in
// its own goroutine, and the connection is closed when it returns.
func (s *Servers) Listen(ns *netlab.NS, addr string, handle func(net.Conn)) error {
	var ln net.Listener
	if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp", addr); return }); err != nil {
		return fmt.Errorf("listening on %s in %s: %w", addr, ns.Name, err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return fmt.Errorf("listening on %s in %s: servers closed", addr, ns.Name)
	}
	s.lns = append(s.lns, ln)
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			if s.closed {
				s.mu.Unlock()
				c.Close()
				return
			}
			if s.conns == nil {
				s.conns = map[net.Conn]struct{}{}
			}
			s.conns[c] = struct{}{}
			s.wg.Add(1)
			s.mu.Unlock()
			go func() {
				defer s.wg.Done()
				defer func() {
					s.mu.Lock()
					delete(s.conns, c)
					s.mu.Unlock()
					c.Close()
				}()
				handle(c)
			}()
		}
	}()
	return nil
}

// Close stops accepting, closes every open connection and waits for the
// handlers to return.
func (s *Servers) Close() {
	s.mu.Lock()
	s.closed = true
	for _, ln := range s.lns {
		ln.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}
