package cpe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"hybridgw/internal/convert"
	"hybridgw/internal/metrics"
	"hybridgw/internal/mptcp"
	"hybridgw/internal/netstack"
	"hybridgw/internal/relay"
)

// flow is one LAN connection carried to hag.
type flow struct {
	id     uint64
	lan    netstack.FlowID
	up     *net.TCPConn
	uplink string // of the initial subflow
	mptcp  bool
	// fallback is why a plain-TCP flow is plain (fallbackReason).
	fallback string
	start    time.Time
	ctr      relay.Counters

	mu   sync.Mutex
	last subflowCounts // bytes acked (up), received (down) at the last poll
}

type subflowKey struct{ local, remote netip.AddrPort }

// subflowCounts maps a flow's subflows (a handful at most) to their
// counts: a slice, because a Go map costs each of thousands of idle flows
// several hundred bytes more.
type subflowCounts []subflowCount

type subflowCount struct {
	k subflowKey
	n [2]uint64
}

func (c subflowCounts) get(k subflowKey) [2]uint64 {
	for _, e := range c {
		if e.k == k {
			return e.n
		}
	}
	return [2]uint64{}
}

func (c *subflowCounts) set(k subflowKey, n [2]uint64) {
	for i := range *c {
		if (*c)[i].k == k {
			(*c)[i].n = n
			return
		}
	}
	*c = append(*c, subflowCount{k, n})
}

// upstream is what Dial hands the netstack: the MPTCP conn and its flow.
type upstream struct {
	*net.TCPConn
	f *flow
}

// dial opens the MPTCP connection for a LAN SYN with the Convert message as
// its first bytes (in the SYN with hag.fast_open), and returns only after
// hag answered: the LAN handshake completes
// only if the server accepted. How a failure looks to the LAN host:
//
//   - Connection Reset (server refused) → RST: ECONNREFUSED, as direct;
//   - Destination Unreachable → the matching ICMP unreachable;
//   - Network Failure (hag's dial timed out) → ICMP host unreachable: an
//     error well within the connect timeout instead of minutes of SYN
//     retries for a host that will not answer;
//   - Not Authorized → ICMP administratively prohibited;
//   - hag unreachable or silent → ICMP host unreachable: the server did not
//     refuse, the path to it failed;
//   - anything else → RST.
func (c *CPE) dial(ctx context.Context, id netstack.FlowID) (netstack.Upstream, error) {
	start := time.Now()
	f := &flow{id: c.flowSeq.Add(1), lan: id, start: start}
	log := c.log.With("flow", f.id, "src", id.Src.String(), "dst", id.Dst.String())
	fail := func(result string, reject netstack.Reject, err error) (netstack.Upstream, error) {
		c.m.Flows.WithLabelValues(result).Inc()
		c.m.FlowSetup.WithLabelValues("error").Observe(time.Since(start).Seconds())
		log.Info("flow refused", "result", result, "lan_answer", reject.String(), "err", err)
		return nil, &netstack.DialError{Reject: reject, Err: err}
	}

	hag, local, uplink, ok := c.pickPath()
	if !ok {
		return fail("no_uplink", netstack.RejectNetUnreachable, errors.New("no live uplink with an address"))
	}
	f.uplink = uplink
	// Each message sent gets a fresh cookie: hag accepts a cookie once, and
	// a message that reached it on a connection given up here (a warm one
	// that stalled, a raced SYN) may have used it.
	var wire [convert.MaxMsgLen]byte
	message := func() ([]byte, error) {
		var cookie []byte
		if len(c.cfg.HAG.KeyRaw) > 0 {
			var err error
			key := convert.CookieKey{ID: uint8(c.cfg.HAG.KeyID), Secret: c.cfg.HAG.KeyRaw}
			if cookie, err = convert.MakeCookie(key, c.cfg.HAG.CPEID, time.Now(), id.Dst, id.Src); err != nil {
				return nil, err
			}
		}
		msg := convert.ConnectMsg(id.Dst, id.Src, cookie)
		b, err := msg.Append(wire[:0])
		if err != nil {
			return nil, fmt.Errorf("encoding Connect: %w", err)
		}
		return b, nil
	}
	first, err := message()
	if err != nil {
		return fail("internal", netstack.RejectReset, err)
	}
	timeout := c.cfg.HAG.ConnectTimeout
	// A warm connection saves the handshake's round trip. If it turns out
	// dead after all (hag closed it between the check and the write, or it
	// never answers), the flow dials afresh as if the pool were empty; an
	// answer from hag, a refusal included, is final.
	if w, ok := c.pool.take(); ok {
		err := c.exchangeWarm(ctx, w.conn, w.uplink, first, timeout)
		var re *convert.RemoteError
		if err == nil || errors.As(err, &re) {
			f.uplink = w.uplink
			return c.converted(f, w.conn, w.uplink, w.hag, err, id, start, log, fail)
		}
		w.conn.SetLinger(0)
		w.conn.Close()
		c.m.PoolDiscarded.WithLabelValues("dead").Inc()
		log.Info("warm connection failed before hag answered; dialling afresh", "uplink", w.uplink, "err", err)
		if first, err = message(); err != nil {
			return fail("internal", netstack.RejectReset, err)
		}
	}
	var synData []byte
	if c.cfg.HAG.FastOpen {
		synData = first
	}
	a, err := c.connect(ctx, hag, attempt{uplink: uplink, local: local}, synData, timeout)
	if err != nil {
		if errors.Is(err, mptcp.ErrMPTCPUnavailable) {
			return fail("mptcp_unavailable", netstack.RejectHostUnreachable, err)
		}
		return fail("hag_unreachable", netstack.RejectHostUnreachable, fmt.Errorf("connecting to hag %s: %w", hag, err))
	}
	if a.uplink != uplink {
		log.Info("first uplink did not answer in time; the flow starts on another", "wanted", uplink, "uplink", a.uplink,
			"race_delay", raceDelay(c.health.rtt(uplink)).String())
		uplink = a.uplink
		f.uplink = uplink
	}
	var msg1 []byte
	if !a.sent {
		// The SYN data of an attempt that lost the race may have reached
		// hag: this message gets its own cookie.
		if c.cfg.HAG.FastOpen {
			if first, err = message(); err != nil {
				a.conn.Close()
				return fail("internal", netstack.RejectReset, err)
			}
		}
		msg1 = first
	}
	err = c.exchange(ctx, a.conn, msg1, timeout)
	return c.converted(f, a.conn, uplink, hag, err, id, start, log, fail)
}

// exchange writes the Convert message (nil when it went in the SYN) and
// reads hag's reply, bounded by timeout and ctx. On error conn is left
// open for the caller to close.
func (c *CPE) exchange(ctx context.Context, conn *net.TCPConn, msg []byte, timeout time.Duration) error {
	if msg != nil {
		// Deadline setters fail only on a closed conn, and the I/O after
		// them then fails and says so; the same below.
		_ = conn.SetWriteDeadline(time.Now().Add(timeout))
		_, err := conn.Write(msg)
		_ = conn.SetWriteDeadline(time.Time{})
		if err != nil {
			return fmt.Errorf("writing the Convert message: %w", err)
		}
	}
	// A cancelled ctx (shutdown, netstack's dial timeout) must end the wait
	// for the reply too.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Unix(1, 0)) })
	_ = conn.SetReadDeadline(time.Now().Add(timeout))
	var buf [convert.MaxMsgLen]byte
	_, err := convert.ReadReply(conn, buf[:])
	stop()
	_ = conn.SetReadDeadline(time.Time{})
	return err
}

// errWarmStalled: a warm connection's Convert message was not acknowledged
// within the race delay, so its path went dead while it sat in the pool.
var errWarmStalled = errors.New("the Convert message was not acknowledged in time")

// exchangeWarm is exchange on a warm connection, which may have gone dead
// in the pool without a sign (an uplink that black-holes sends no reset).
// A fresh dial races another uplink after raceDelay; a warm connection
// gets the same bound, but only for the acknowledgement of its message:
// once hag's kernel has acknowledged it, the path is alive and the reply
// waits for hag's dial to the server, under the full timeout.
func (c *CPE) exchangeWarm(ctx context.Context, conn *net.TCPConn, uplink string, msg []byte, timeout time.Duration) error {
	start := time.Now()
	// Deadline setters fail only on a closed conn, and the I/O after them
	// then fails and says so.
	_ = conn.SetWriteDeadline(start.Add(timeout))
	_, err := conn.Write(msg)
	_ = conn.SetWriteDeadline(time.Time{})
	if err != nil {
		return fmt.Errorf("writing the Convert message: %w", err)
	}
	race := raceDelay(c.health.rtt(uplink))
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Unix(1, 0)) })
	_ = conn.SetReadDeadline(start.Add(race))
	err = mptcp.WaitReadable(conn)
	stop()
	_ = conn.SetReadDeadline(time.Time{})
	if err != nil && ctx.Err() == nil && errors.Is(err, os.ErrDeadlineExceeded) {
		n, uerr := mptcp.Unacked(conn)
		if uerr != nil {
			return uerr
		}
		if n > 0 {
			return fmt.Errorf("%w (%d bytes after %v)", errWarmStalled, n, race)
		}
		err = nil // acknowledged: hag is dialling the server
	}
	if err != nil {
		return err
	}
	return c.exchange(ctx, conn, nil, timeout-time.Since(start))
}

// converted finishes dial once hag answered (err nil) or failed.
func (c *CPE) converted(f *flow, conn *net.TCPConn, uplink string, hag netip.AddrPort, err error, id netstack.FlowID, start time.Time, log *slog.Logger, fail func(string, netstack.Reject, error) (netstack.Upstream, error)) (netstack.Upstream, error) {
	if err != nil {
		conn.SetLinger(0) // the RFC: the client resets on any error
		conn.Close()
		var re *convert.RemoteError
		if errors.As(err, &re) {
			name := metrics.Label(re.Code.String())
			c.m.ConvertErrors.WithLabelValues(name).Inc()
			return fail(name, rejectFor(re, id.Dst.Addr().Is4()), err)
		}
		return fail("hag_unreachable", netstack.RejectHostUnreachable, fmt.Errorf("waiting for hag's Convert reply via %s: %w", uplink, err))
	}
	f.up = conn
	f.mptcp, _ = mptcp.Check(conn)
	if !f.mptcp {
		f.fallback = c.fallbackReason(conn)
		c.m.Fallbacks.WithLabelValues(uplink, f.fallback).Inc()
		log.Warn("connection to hag fell back to plain TCP", "uplink", uplink, "reason", f.fallback)
	}
	c.m.Flows.WithLabelValues("ok").Inc()
	c.m.FlowSetup.WithLabelValues("ok").Observe(time.Since(start).Seconds())
	log.Debug("flow converted", "uplink", uplink, "hag", hag.String(), "mptcp", f.mptcp, "setup", time.Since(start).Round(time.Microsecond).String())
	return &upstream{TCPConn: conn, f: f}, nil
}

func rejectFor(re *convert.RemoteError, v4 bool) netstack.Reject {
	switch re.Code {
	case convert.ConnectionReset:
		return netstack.RejectReset
	case convert.DestinationUnreachable:
		code, _ := re.ICMPCode()
		switch {
		case v4 && code == 0, !v4 && code == 0:
			return netstack.RejectNetUnreachable
		case v4 && (code == 9 || code == 10 || code == 13), !v4 && code == 1:
			return netstack.RejectAdminProhibited
		}
		return netstack.RejectHostUnreachable
	case convert.NetworkFailure:
		return netstack.RejectHostUnreachable
	case convert.NotAuthorized:
		return netstack.RejectAdminProhibited
	}
	return netstack.RejectReset
}

// start relays an established flow until both sides are done, holding no
// goroutine while the flow is idle; done tells the netstack when it is over.
func (c *CPE) start(ctx context.Context, lan *netstack.Conn, up netstack.Upstream, done func()) {
	u := up.(*upstream)
	f := u.f
	c.mu.Lock()
	c.flows[f] = struct{}{}
	c.mu.Unlock()
	c.m.FlowsActive.Inc()
	relay.Start(ctx, lan, &finalPoll{TCPConn: u.TCPConn, poll: func() { _ = c.pollFlow(f) }}, relay.Options{
		IdleTimeout: c.cfg.Limits.IdleTimeout,
		IsReset:     netstack.IsReset,
		Counters:    &f.ctr,
		Poller:      c.poller,
	}, func(res relay.Result) {
		c.closed(f, res)
		done()
	})
}

// closed accounts for and logs a flow whose relay has ended.
func (c *CPE) closed(f *flow, res relay.Result) {
	c.m.FlowsActive.Dec()
	c.mu.Lock()
	delete(c.flows, f)
	c.mu.Unlock()
	c.m.FlowEnds.WithLabelValues(res.End.String()).Inc()
	attrs := []any{"flow", f.id, "src", f.lan.Src.String(), "dst", f.lan.Dst.String(), "reason", res.End.String(),
		"to_server", res.AtoB, "to_client", res.BtoA, "duration", time.Since(f.start).Round(time.Millisecond).String()}
	if res.Err != nil && res.End != relay.ReasonEOF {
		attrs = append(attrs, "err", res.Err)
	}
	c.log.Info("flow closed", attrs...)
}

// finalPoll reads the subflow counters one last time as the relay closes
// the MPTCP socket: after Close they are gone, and the last second of a
// flow would go unaccounted.
type finalPoll struct {
	*net.TCPConn
	poll func()
	once sync.Once
}

func (p *finalPoll) Close() error {
	p.once.Do(p.poll)
	return p.TCPConn.Close()
}

// Abort makes the relay's reset a RST: the wrapper hides *net.TCPConn from
// its type switch.
// SetLinger fails only on a closed conn, which has nothing left to reset.
func (p *finalPoll) Abort() { _ = p.TCPConn.SetLinger(0) }

// KernelConn lets the relay wait for the MPTCP socket on its Poller
// (relay.KernelConn): reading is the socket's own.
func (p *finalPoll) KernelConn() *net.TCPConn { return p.TCPConn }

// pollFlow adds what the flow's subflows carried since the last poll to the
// per-uplink counters. The numbers are the kernel's (tcp_info of each
// subflow), so a subflow's share is what really crossed that uplink.
// It returns the subflows it saw, for the subflow gauges.
func (c *CPE) pollFlow(f *flow) []mptcp.Subflow {
	f.mu.Lock()
	defer f.mu.Unlock()
	subs, err := mptcp.Subflows(f.up)
	if err != nil {
		// Fallback or closed: account the relay's counts to the initial
		// uplink, the only path a plain TCP connection has.
		up, down := uint64(f.ctr.AtoB.Load()), uint64(f.ctr.BtoA.Load())
		k := subflowKey{}
		last := f.last.get(k)
		if up > last[0] {
			c.m.UplinkBytes.WithLabelValues(f.uplink, "up").Add(float64(up - last[0]))
		}
		if down > last[1] {
			c.m.UplinkBytes.WithLabelValues(f.uplink, "down").Add(float64(down - last[1]))
		}
		if !f.mptcp {
			f.last.set(k, [2]uint64{max(up, last[0]), max(down, last[1])})
		}
		return nil
	}
	for _, s := range subs {
		k := subflowKey{s.Local, s.Remote}
		name := c.ups.nameOf(s.Local.Addr())
		last := f.last.get(k)
		if s.TCP.BytesAcked > last[0] {
			c.m.UplinkBytes.WithLabelValues(name, "up").Add(float64(s.TCP.BytesAcked - last[0]))
		}
		if s.TCP.BytesRecv > last[1] {
			c.m.UplinkBytes.WithLabelValues(name, "down").Add(float64(s.TCP.BytesRecv - last[1]))
		}
		f.last.set(k, [2]uint64{max(s.TCP.BytesAcked, last[0]), max(s.TCP.BytesRecv, last[1])})
	}
	return subs
}

// pollAll refreshes the per-uplink byte counters and subflow gauges.
func (c *CPE) pollAll() {
	c.mu.Lock()
	flows := make([]*flow, 0, len(c.flows))
	for f := range c.flows {
		flows = append(flows, f)
	}
	c.mu.Unlock()
	count := map[string]int{}
	for _, u := range c.cfg.Uplinks {
		count[u.Name] = 0
	}
	for _, f := range flows {
		// One MPTCP_FULL_INFO per flow serves both the byte counters and
		// the gauges.
		for _, s := range c.pollFlow(f) {
			// Established only: the kernel keeps a connection's first
			// subflow listed after it closed (a withdrawn uplink's).
			if s.TCP.State == 1 {
				count[c.ups.nameOf(s.Local.Addr())]++
			}
		}
	}
	for name, n := range count {
		c.m.Subflows.WithLabelValues(name).Set(float64(n))
	}
}
