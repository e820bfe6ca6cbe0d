package probe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"hybridgw/internal/policy"
)

// Config configures a Prober for one uplink.
type Config struct {
	Uplink string // name, for Status
	// Local is the uplink's source address, which the socket binds so that
	// source routing sends probes out of that uplink. The zero Addr lets
	// routing choose (tests only: it measures whichever path routing picks).
	Local netip.Addr
	// Device optionally pins the socket to the uplink's interface
	// (SO_BINDTODEVICE; Linux, CAP_NET_RAW).
	Device string
	Remote netip.AddrPort // hag's probe address
	CPEID  string
	Key    []byte

	Interval  time.Duration // between probes
	Timeout   time.Duration // an unanswered probe is a miss after this
	DownAfter int           // consecutive misses before the uplink is dead
	UpAfter   int           // consecutive answers before it is alive again
	// LossWindow is how many recent probes Status.Loss covers; 0 means
	// policy.DefaultLossWindow.
	LossWindow int

	// OnChange, if set, is called from Run's goroutine each time the uplink
	// comes alive or dies. It must return quickly: probes wait for it.
	OnChange func(Status)
}

// Status is a Prober's view of its uplink.
type Status struct {
	Uplink  string
	Alive   bool
	Since   time.Time     // when Alive last changed; zero before the first change
	RTT     time.Duration // smoothed (EWMA, gain 1/8); 0 before the first answer
	LastRTT time.Duration
	Loss    float64 // share of the last LossWindow probes unanswered
	Sent    uint64
	Replies uint64 // answers that matched an outstanding probe in time
	// LastErr is the latest socket error (bind, send or receive), kept
	// for the operator: a send error still counts as a miss.
	LastErr error
}

// Prober probes one uplink until its context ends.
type Prober struct {
	cfg Config
	id  []byte

	mu sync.Mutex
	st Status
}

// NewProber validates c and returns a Prober; it starts nothing.
func NewProber(c Config) (*Prober, error) {
	var errs []error
	if !c.Remote.IsValid() || c.Remote.Port() == 0 {
		errs = append(errs, fmt.Errorf("probe: remote %v is not an address and port", c.Remote))
	}
	if c.Local.IsValid() && c.Remote.IsValid() && c.Local.Unmap().Is4() != c.Remote.Addr().Unmap().Is4() {
		errs = append(errs, fmt.Errorf("probe: local %v and remote %v differ in family", c.Local, c.Remote))
	}
	if len(c.CPEID) == 0 || len(c.CPEID) > MaxIDLen {
		errs = append(errs, fmt.Errorf("probe: CPE ID length %d outside 1..%d", len(c.CPEID), MaxIDLen))
	}
	if len(c.Key) == 0 {
		errs = append(errs, errors.New("probe: key is empty"))
	}
	if c.Interval <= 0 || c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("probe: interval %v and timeout %v must be positive", c.Interval, c.Timeout))
	}
	if c.DownAfter < 1 || c.UpAfter < 1 {
		errs = append(errs, fmt.Errorf("probe: down_after %d and up_after %d must be at least 1", c.DownAfter, c.UpAfter))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	c.Key = bytes.Clone(c.Key)
	return &Prober{cfg: c, id: []byte(c.CPEID), st: Status{Uplink: c.Uplink}}, nil
}

// Status returns the current view; safe to call from any goroutine.
func (p *Prober) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st
}

// Run probes until ctx ends and returns nil then; call it once. It uses
// two goroutines, both gone when it returns: its own, which sends, reads
// replies (with read deadlines at the next send or timeout) and feeds the
// health state machine, and one that interrupts a pending read when ctx
// ends. The socket is opened lazily and reopened after an error, so an
// uplink whose address is not there yet simply counts misses.
func (p *Prober) Run(ctx context.Context) error {
	start := time.Now() // monotonic: the wire timestamps are offsets from it
	clock := func() time.Duration { return time.Since(start) }
	tr := newTracker(p.cfg.Interval, p.cfg.Timeout)
	h := policy.NewHealth(policy.HealthParams{DownAfter: p.cfg.DownAfter, UpAfter: p.cfg.UpAfter, Window: p.cfg.LossWindow})

	// Shutdown: ctx ends → the watcher sets a past read deadline on the
	// current socket → the loop's Read returns → the loop sees ctx.Err(),
	// closes the socket and tells the watcher to exit → Run waits for it.
	var (
		connMu sync.Mutex
		conn   *net.UDPConn
	)
	setConn := func(c *net.UDPConn) {
		connMu.Lock()
		conn = c
		connMu.Unlock()
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-ctx.Done():
			connMu.Lock()
			if conn != nil {
				// Fails only if conn is closed, which ends the Read too.
				_ = conn.SetReadDeadline(time.Unix(1, 0))
			}
			connMu.Unlock()
		case <-done:
		}
	})
	defer func() {
		close(done)
		wg.Wait()
		if conn != nil {
			conn.Close()
		}
	}()

	buf := make([]byte, MaxLen+1) // one more: a longer datagram is not ours
	out := make([]byte, 0, MaxLen)
	for ctx.Err() == nil {
		now := clock()
		for range tr.expire(now) {
			p.observe(&h, false, 0)
		}
		if tr.due(now) {
			seq, ts := tr.send(now)
			p.mu.Lock()
			p.st.Sent++
			p.mu.Unlock()
			if conn == nil {
				c, err := p.dial(ctx)
				if err != nil {
					p.setErr(err)
					continue // the probe stays outstanding and becomes a miss
				}
				setConn(c)
			}
			m := Msg{Type: Request, Seq: seq, Timestamp: ts, CPEID: p.id}
			out, _ = m.Append(out[:0], p.cfg.Key) // NewProber validated id and key
			if _, err := conn.Write(out); err != nil {
				p.setErr(fmt.Errorf("probe: send: %w", err))
			}
			continue
		}
		wake := start.Add(tr.deadline())
		if conn == nil {
			t := time.NewTimer(time.Until(wake))
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
			continue
		}
		if err := conn.SetReadDeadline(wake); err != nil {
			p.setErr(fmt.Errorf("probe: %w", err))
		}
		if ctx.Err() != nil { // the watcher may have fired before SetReadDeadline
			break
		}
		n, err := conn.Read(buf)
		if err != nil {
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
			case errors.Is(err, syscall.ECONNREFUSED):
				// An ICMP error for an earlier probe: the probe is lost,
				// which its timeout already accounts for.
				p.setErr(fmt.Errorf("probe: receive: %w", err))
			default:
				p.setErr(fmt.Errorf("probe: receive: %w", err))
				conn.Close()
				setConn(nil)
			}
			continue
		}
		m, used, err := Parse(buf[:n])
		if err != nil || used != n || m.Type != Reply || !bytes.Equal(m.CPEID, p.id) || !m.Verify(p.cfg.Key) {
			continue
		}
		if rtt, ok := tr.answer(m.Seq, m.Timestamp, clock()); ok {
			p.observe(&h, true, rtt)
		}
	}
	return nil
}

// dial opens the uplink's connected UDP socket: connected, so the kernel
// drops datagrams from anyone but hag and reports ICMP errors.
func (p *Prober) dial(ctx context.Context) (*net.UDPConn, error) {
	d := net.Dialer{Control: bindToDevice(p.cfg.Device)}
	if p.cfg.Local.IsValid() {
		d.LocalAddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.cfg.Local, 0))
	}
	c, err := d.DialContext(ctx, "udp", p.cfg.Remote.String())
	if err != nil {
		return nil, fmt.Errorf("probe: open socket from %v to %v: %w", p.cfg.Local, p.cfg.Remote, err)
	}
	return c.(*net.UDPConn), nil
}

func (p *Prober) setErr(err error) {
	p.mu.Lock()
	p.st.LastErr = err
	p.mu.Unlock()
}

func (p *Prober) observe(h *policy.Health, ok bool, rtt time.Duration) {
	var changed bool
	if ok {
		changed = h.Success(rtt)
	} else {
		changed = h.Miss()
	}
	p.mu.Lock()
	st := &p.st
	st.Alive, st.RTT, st.Loss = h.Alive(), h.SRTT(), h.Loss()
	if ok {
		st.LastRTT = rtt
		st.Replies++
	}
	if changed {
		st.Since = time.Now()
	}
	snap := *st
	p.mu.Unlock()
	if changed && p.cfg.OnChange != nil {
		p.cfg.OnChange(snap)
	}
}
