package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultPort is the suggested UDP port of hag's probe server: the Convert
// port number, on UDP, so one firewall hole per protocol suffices.
const DefaultPort = 5124

// Server defaults.
const (
	// DefaultRate is replies per second per source: four times a prober
	// at the default 200 ms interval.
	DefaultRate = 20
	// DefaultBurst lets a restarted prober or a reordering path through.
	DefaultBurst = 20
	// DefaultMaxSources bounds the rate limiter's table (about 100 bytes
	// an entry): two uplinks each for tens of thousands of CPEs.
	DefaultMaxSources = 1 << 17
)

// Server answers hcpe's probes on hag. Set Keys; the other fields have
// defaults. A Server may serve several sockets at once; each has its own
// rate limiter.
type Server struct {
	// Keys returns a CPE's keys (two during a key rotation; a request
	// verifies under any, and its reply is signed with that one); requests
	// from unknown CPEs or CPEs without a key are dropped.
	Keys func(cpeID string) [][]byte
	// Rate and Burst limit replies per source address and port; 0 means
	// DefaultRate, DefaultBurst.
	Rate  float64
	Burst int
	// MaxSources bounds the sources tracked by each socket's limiter; a
	// new source beyond it is not answered. 0 means DefaultMaxSources.
	MaxSources int

	requests, replies, malformed, unknownCPE, badMAC, rateLimited, sourcesFull, errs atomic.Uint64
}

// Stats counts what a Server did, since it was made.
type Stats struct {
	Requests    uint64 // datagrams received
	Replies     uint64 // replies sent
	Malformed   uint64 // not exactly one well-formed request
	UnknownCPE  uint64
	BadMAC      uint64
	RateLimited uint64
	SourcesFull uint64 // dropped because the limiter's table was full
	Errors      uint64 // socket errors other than shutdown
}

// Stats returns the counters; safe from any goroutine.
func (s *Server) Stats() Stats {
	return Stats{
		Requests: s.requests.Load(), Replies: s.replies.Load(), Malformed: s.malformed.Load(),
		UnknownCPE: s.unknownCPE.Load(), BadMAC: s.badMAC.Load(), RateLimited: s.rateLimited.Load(),
		SourcesFull: s.sourcesFull.Load(), Errors: s.errs.Load(),
	}
}

// Serve answers probes on c until ctx ends, then returns nil; it returns an
// error only when c fails for good (closed, for instance). It does not
// close c. Serve's goroutine and the one that interrupts its read when
// ctx ends have both exited when it returns.
func (s *Server) Serve(ctx context.Context, c *net.UDPConn) error {
	if s.Keys == nil {
		return errors.New("probe: Server.Keys is nil")
	}
	rate, burst, maxSrc := s.Rate, s.Burst, s.MaxSources
	if rate <= 0 {
		rate = DefaultRate
	}
	if burst <= 0 {
		burst = DefaultBurst
	}
	if maxSrc <= 0 {
		maxSrc = DefaultMaxSources
	}
	lim := newLimiter(rate, burst, maxSrc)
	start := time.Now()
	// A previous Serve on c leaves the past deadline that stopped it.
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		return fmt.Errorf("probe: serve: %w", err)
	}

	// Shutdown: ctx ends → a past read deadline → ReadFrom returns → the
	// loop sees ctx.Err() → the watcher is told to exit and waited for.
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-ctx.Done():
			// Fails only if c is closed, which ends the Read too.
			_ = c.SetReadDeadline(time.Unix(1, 0))
		case <-done:
		}
	})
	defer func() {
		close(done)
		wg.Wait()
	}()

	buf := make([]byte, MaxLen+1) // one more: a longer datagram is malformed
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("probe: serve: %w", err)
			}
			// Transient (ICMP errors reported on the socket, ENOBUFS):
			// count and keep serving.
			s.errs.Add(1)
			continue
		}
		s.requests.Add(1)
		reply, ok := s.answer(buf[:n], from, lim, time.Since(start))
		if !ok {
			continue
		}
		if _, err := c.WriteToUDPAddrPort(reply, from); err != nil {
			s.errs.Add(1)
			continue
		}
		s.replies.Add(1)
	}
}

// answer validates one datagram and turns it into the reply, in place: the
// reply has the request's length, so the server never amplifies.
func (s *Server) answer(b []byte, from netip.AddrPort, lim *limiter, now time.Duration) ([]byte, bool) {
	m, n, err := Parse(b)
	if err != nil || n != len(b) || m.Type != Request {
		s.malformed.Add(1)
		return nil, false
	}
	keys := s.Keys(string(m.CPEID))
	var key []byte
	for _, k := range keys {
		if len(k) > 0 && m.Verify(k) {
			key = k
			break
		}
	}
	switch {
	case len(keys) == 0:
		s.unknownCPE.Add(1)
		return nil, false
	case key == nil:
		s.badMAC.Add(1)
		return nil, false
	}
	// Limit after authenticating: only valid probes cost a reply, and a
	// flood of forgeries cannot use up a real CPE's allowance.
	switch lim.allow(from, now) {
	case limited:
		s.rateLimited.Add(1)
		return nil, false
	case full:
		s.sourcesFull.Add(1)
		return nil, false
	}
	r := Msg{Type: Reply, Seq: m.Seq, Timestamp: m.Timestamp, CPEID: m.CPEID}
	out, err := r.Append(b[:0], key) // same length; CPEID is read before it is overwritten
	if err != nil || len(out) != len(b) {
		return nil, false
	}
	return out, true
}
