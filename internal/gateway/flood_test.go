//go:build linux

package gateway_test

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"hybridgw/internal/netlab"
)

// TestSourceFlood is issue 14's item 2: one host opens 2000 connections
// to hag's port and sends nothing (or only the first byte of a Convert
// message), and a configured CPE still opens flows in the same second.
// hag's bounds per source do it: silent connections wait as warm-pool
// connections under limits.pool_per_cpe per IPv4 address or IPv6 /64, and
// the rest are closed at once; connections that started a message hold a
// handshake slot under limits.handshakes_per_source, and the rest are
// answered Resource Exceeded. handshakes_in_flight is 1024 here (the
// default), so without the bound per source the 2000 would take every
// slot. And an unauthenticated connection holds its slot only for a
// short, configured time: every one of the 2000 is closed by hag within
// pool_idle or convert_read_timeout (2 s each here) plus a margin.
func TestSourceFlood(t *testing.T) {
	netlab.RequireRoot(t)
	const flood = 2000
	attacker := netip.MustParseAddr("2001:db8:d9::66") // outside every CPE's prefixes
	for _, tc := range []struct {
		name   string
		first  []byte
		reason string   // the refusal the flood is counted under
		edits  []string // to hagConfig
	}{
		{"silent", nil, "pool_limit", nil},
		// hag may accept a connection before its byte arrives and hold
		// it as a pooled one until it does; with room in the pool every
		// flood connection reaches the handshake bounds either way.
		{"first byte only", []byte{1}, "handshake_limit_source", []string{"pool_per_cpe: 16", "pool_per_cpe: 4096"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp := newTopo(t)
			netlab.ServeTCP(t, tp.srv, "[::]:8086", func(c net.Conn) { io.Copy(c, c) })
			if err := tp.cpe.Run("ip", "addr", "add", attacker.String()+"/64", "dev", "dsl", "nodad"); err != nil {
				t.Fatal(err)
			}
			if err := tp.hag.Run("ip", "-6", "route", "add", "2001:db8:d9::/64", "dev", "dsl"); err != nil {
				t.Fatal(err)
			}
			startHagListen(t, tp, "", append([]string{"handshakes_in_flight: 2000", "handshakes_in_flight: 1024"}, tc.edits...)...)

			conns := make([]*net.TCPConn, 0, flood)
			t.Cleanup(func() {
				for _, c := range conns {
					c.Close()
				}
			})
			start := time.Now()
			err := tp.cpe.Do(func() error {
				d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(attacker, 0)), Timeout: 5 * time.Second}
				for range flood {
					c, err := d.Dial("tcp6", netip.AddrPortFrom(hagV6, hagPort).String())
					if err != nil {
						return err
					}
					conns = append(conns, c.(*net.TCPConn))
					if tc.first != nil {
						if _, err := c.Write(tc.first); err != nil {
							return err
						}
					}
				}
				return nil
			})
			if err != nil {
				t.Fatalf("after %d connections from %v: %v", len(conns), attacker, err)
			}
			flooded := time.Now()
			t.Logf("%d connections from %v in %v", flood, attacker, flooded.Sub(start).Round(time.Millisecond))

			// The CPE's flows, in the same second.
			dst := netip.AddrPortFrom(srvV6, 8086)
			for i := range 3 {
				c := tp.dial(t, hagV6, request(t, dst, clientV6, testKey))
				if code := readReply(t, c); code != -1 {
					t.Fatalf("CPE flow %d during the flood: Convert error %d", i, code)
				}
				c.Close()
			}
			if d := time.Since(flooded); d > time.Second {
				t.Errorf("the CPE's 3 flows took %v after the flood, want them within the second", d.Round(time.Millisecond))
			}
			// Silent connections are refused once hag's firstByteGrace (250 ms) has
			// passed without a byte (they may be a request on its way).
			n := refusals(t, tp, tc.reason)
			for wait := time.Now().Add(2 * time.Second); n < flood/2 && time.Now().Before(wait); n = refusals(t, tp, tc.reason) {
				time.Sleep(50 * time.Millisecond)
			}
			if n < flood/2 {
				t.Errorf("hag_refusals_total{reason=%q} = %d, want most of the %d", tc.reason, n, flood)
			}

			// Every flood connection is closed by hag within its 2 s
			// (pool_idle or convert_read_timeout), plus a margin for a busy
			// machine: a read ends in EOF or a reset, not in our deadline.
			deadline := flooded.Add(2*time.Second + 2*time.Second)
			var held atomic.Int64
			var wg sync.WaitGroup
			for _, c := range conns {
				wg.Go(func() {
					_ = c.SetReadDeadline(deadline)
					if _, err := io.Copy(io.Discard, c); errors.Is(err, os.ErrDeadlineExceeded) {
						held.Add(1)
					}
				})
			}
			wg.Wait()
			if n := held.Load(); n > 0 {
				t.Errorf("%d of %d flood connections still open %v after the flood", n, flood, time.Since(flooded).Round(time.Millisecond))
			}
		})
	}
}

// TestBurstNotPooled: a burst of new flows from one CPE whose Convert
// messages arrive just after hag accepted their connections is served,
// not refused as a full warm pool. hag counts a connection under
// pool_per_cpe only once it has stayed silent for a short grace; before,
// figure 7 of make bench saw new flows refused so at 2400 flows/s.
func TestBurstNotPooled(t *testing.T) {
	netlab.RequireRoot(t)
	tp := newTopo(t)
	netlab.ServeTCP(t, tp.srv, "[::]:8087", func(c net.Conn) { io.Copy(c, c) })
	startHagListen(t, tp, "", "pool_per_cpe: 16", "pool_per_cpe: 4", "flows_per_cpe: 8", "flows_per_cpe: 64")
	const burst = 12 // three times pool_per_cpe
	conns := make([]*net.TCPConn, burst)
	for i := range conns {
		conns[i] = tp.dial(t, hagV6, nil) // established, nothing sent yet
	}
	time.Sleep(20 * time.Millisecond) // hag has accepted them and found nothing to read
	dst := netip.AddrPortFrom(srvV6, 8087)
	for i, c := range conns {
		if _, err := c.Write(request(t, dst, clientV6, testKey)); err != nil {
			t.Fatalf("flow %d of the burst: writing its request: %v", i, err)
		}
	}
	for i, c := range conns {
		if code := readReply(t, c); code != -1 {
			t.Errorf("flow %d of the burst: Convert error %d", i, code)
		}
	}
	if n := refusals(t, tp, "pool_limit"); n != 0 {
		t.Errorf("hag_refusals_total{reason=\"pool_limit\"} = %d for a burst of requests, want 0", n)
	}
}
