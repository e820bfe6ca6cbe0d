package cpe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"hybridgw/internal/mptcp"
)

// Race delays: how long a new flow's handshake with hag may take on the
// policy's uplink before another uplink is tried beside it. A healthy
// uplink answers the SYN in one RTT; three leave room for a loaded queue.
const (
	raceDelayMin     = 150 * time.Millisecond
	raceDelayMax     = time.Second
	raceDelayUnknown = 300 * time.Millisecond // no probe RTT yet
)

func raceDelay(rtt time.Duration) time.Duration {
	if rtt <= 0 {
		return raceDelayUnknown
	}
	return min(max(3*rtt, raceDelayMin), raceDelayMax)
}

// attempt is one MPTCP handshake with hag over one uplink.
type attempt struct {
	uplink string
	local  netip.Addr
	sent   bool // the Convert message went in the SYN
	conn   *net.TCPConn
	err    error
}

// connect opens the MPTCP connection to hag whose first subflow leaves on
// first (the policy's uplink). If that handshake has not completed within
// the uplink's race delay, or failed, the next alive uplink is tried
// beside it, and the first to complete wins: Happy Eyeballs (RFC 8305)
// across uplinks instead of address families. An uplink that starts to
// black-hole is declared dead only after the probes' misses (about a
// second); a flow opened meanwhile would otherwise wait for SYN
// retransmissions over it until hag.connect_timeout. Only the handshake
// is raced, never hag's connection to the server, so a slow server is
// not dialled twice. synData (the Convert message, with hag.fast_open)
// goes in the first attempt's SYN only.
func (c *CPE) connect(ctx context.Context, hag netip.AddrPort, first attempt, synData []byte, timeout time.Duration) (attempt, error) {
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	results := make(chan attempt)
	pending := 0
	tried := map[string]bool{}
	start := func(a attempt, data []byte) {
		pending++
		tried[a.uplink] = true
		a.sent = data != nil
		go func() {
			a.conn, a.err = mptcp.Dial(actx, mptcp.DialOptions{Remote: hag, Local: netip.AddrPortFrom(a.local, 0), Timeout: timeout}, data)
			if a.err == nil && data != nil {
				// With SYN data, Dial returns before the handshake ends.
				if a.err = mptcp.WaitEstablished(actx, a.conn); a.err != nil {
					a.conn.Close()
					a.conn = nil
				}
			}
			if a.err != nil {
				a.err = fmt.Errorf("via %s from %s: %w", a.uplink, a.local, a.err)
			}
			results <- a
		}()
	}
	// next starts the next untried alive uplink with an address of hag's
	// family; false when there is none.
	next := func() bool {
		local, name, ok := c.ups.source(hag.Addr().Is6(), "", func(n string) bool { return !tried[n] && c.health.alive(n) })
		if !ok {
			return false
		}
		start(attempt{uplink: name, local: local}, nil)
		return true
	}
	start(first, synData)
	timer := time.NewTimer(raceDelay(c.health.rtt(first.uplink)))
	defer timer.Stop()
	var errs []error
	var won attempt
	for pending > 0 {
		select {
		case r := <-results:
			pending--
			if r.err == nil && won.conn == nil {
				won = r
				cancel() // the others' dials return now
				continue
			}
			if r.conn != nil { // a loser that completed too
				// Fails only on a closed conn: nothing to reset then.
				_ = r.conn.SetLinger(0)
				r.conn.Close()
			}
			if r.err != nil && !errors.Is(r.err, context.Canceled) {
				errs = append(errs, r.err)
			}
			if won.conn == nil && actx.Err() == nil && next() {
				timer.Reset(raceDelay(0))
			}
		case <-timer.C:
			if won.conn == nil && next() {
				timer.Reset(raceDelay(0))
			}
		}
	}
	if won.conn == nil {
		if len(errs) == 0 {
			errs = append(errs, actx.Err())
		}
		return attempt{}, errors.Join(errs...)
	}
	if won.uplink != first.uplink {
		c.m.FlowRaces.WithLabelValues(won.uplink).Inc()
	}
	return won, nil
}
