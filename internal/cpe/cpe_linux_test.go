package cpe

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"syscall"
	"testing"
	"time"

	"hybridgw/internal/config"
	"hybridgw/internal/convert"
	"hybridgw/internal/netstack"
	"hybridgw/internal/relay"
)

func TestRejectFor(t *testing.T) {
	tests := []struct {
		code convert.ErrorCode
		v    uint8
		v4   bool
		want netstack.Reject
	}{
		{convert.ConnectionReset, 0, true, netstack.RejectReset},
		{convert.DestinationUnreachable, 0, true, netstack.RejectNetUnreachable},
		{convert.DestinationUnreachable, 1, true, netstack.RejectHostUnreachable},
		{convert.DestinationUnreachable, 13, true, netstack.RejectAdminProhibited},
		{convert.DestinationUnreachable, 0, false, netstack.RejectNetUnreachable},
		{convert.DestinationUnreachable, 1, false, netstack.RejectAdminProhibited},
		{convert.DestinationUnreachable, 3, false, netstack.RejectHostUnreachable},
		{convert.NetworkFailure, 1, false, netstack.RejectHostUnreachable},
		{convert.NotAuthorized, 0, true, netstack.RejectAdminProhibited},
		{convert.ResourceExceeded, 5, true, netstack.RejectReset},
		{convert.MalformedMessage, 0, true, netstack.RejectReset},
	}
	for _, tc := range tests {
		re := &convert.RemoteError{ErrorTLV: convert.NewError(tc.code, tc.v)}
		if got := rejectFor(re, tc.v4); got != tc.want {
			t.Errorf("%s value %d v4=%v: %s, want %s", tc.code, tc.v, tc.v4, got, tc.want)
		}
	}
}

func TestReloadChanges(t *testing.T) {
	base := func() *config.HCPE {
		c := config.DefaultHCPE()
		c.LAN.Interfaces = []string{"lan"}
		c.Uplinks = []config.Uplink{{Name: "dsl", Interface: "dsl", Role: "primary"}, {Name: "lte", Interface: "lte", Role: "overflow"}}
		c.HAG.Addresses = []string{"198.51.100.100"}
		return c
	}
	tests := []struct {
		name   string
		edit   func(*config.HCPE)
		needs  []string
		bypass bool
	}{
		{"nothing", func(*config.HCPE) {}, nil, false},
		{"roles and policy are live", func(c *config.HCPE) { c.Uplinks[1].Role = "bond"; c.Policy.OverflowOn = 0.9 }, nil, false},
		{"bypass is live", func(c *config.HCPE) { c.Bypass.PortRanges = []config.PortRange{{Lo: 22, Hi: 22}} }, nil, true},
		{"bypass prefix", func(c *config.HCPE) { c.Bypass.Dsts = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")} }, nil, true},
		{"bypass uplink is live", func(c *config.HCPE) { c.Bypass.Uplink = "lte" }, nil, true},
		{"tun needs a restart", func(c *config.HCPE) { c.TUN.MTU = 1400 }, []string{"tun"}, false},
		{"an uplink's interface", func(c *config.HCPE) { c.Uplinks[0].Interface = "eth1" }, []string{"uplinks[0]"}, false},
		{"uplink count", func(c *config.HCPE) { c.Uplinks = c.Uplinks[:1] }, []string{"uplinks (count)"}, false},
		{"hag and limits", func(c *config.HCPE) { c.HAG.Port = 1; c.Limits.Flows = 1 }, []string{"hag", "limits"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			old, nw := base(), base()
			tc.edit(nw)
			if got := restartOnly(old, nw); !slices.Equal(got, tc.needs) {
				t.Errorf("restartOnly = %v, want %v", got, tc.needs)
			}
			if got := !sameBypass(old.Bypass, nw.Bypass); got != tc.bypass {
				t.Errorf("bypass changed = %v, want %v", got, tc.bypass)
			}
		})
	}
}

func TestRaceDelay(t *testing.T) {
	for _, tc := range []struct {
		rtt, want time.Duration
	}{
		{0, raceDelayUnknown},
		{15 * time.Millisecond, raceDelayMin},
		{100 * time.Millisecond, 300 * time.Millisecond},
		{time.Second, raceDelayMax},
	} {
		if got := raceDelay(tc.rtt); got != tc.want {
			t.Errorf("raceDelay(%v) = %v, want %v", tc.rtt, got, tc.want)
		}
	}
}

// TestFinalPollAbort: the wrapper hides *net.TCPConn from the relay's type
// switch, so without its Abort a reset from the LAN side would reach hag as
// a FIN. Abort then Close must send a RST and still poll the counters once.
func TestFinalPollAbort(t *testing.T) {
	for _, tc := range []struct {
		name    string
		abort   bool
		wantRST bool
	}{
		{"close sends FIN", false, false},
		{"abort sends RST", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			c, err := net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
			if err != nil {
				t.Fatal(err)
			}
			peer, err := ln.AcceptTCP()
			if err != nil {
				c.Close()
				t.Fatal(err)
			}
			defer peer.Close()
			polls := 0
			p := &finalPoll{TCPConn: c, poll: func() { polls++ }}
			var _ relay.Aborter = p
			if tc.abort {
				p.Abort()
			}
			p.Close()
			p.Close()
			if polls != 1 {
				t.Errorf("polled %d times, want 1", polls)
			}
			_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = peer.Read(make([]byte, 1))
			if got := errors.Is(err, syscall.ECONNRESET); got != tc.wantRST || (!tc.wantRST && err != io.EOF) {
				t.Errorf("peer read: %v; want reset %v", err, tc.wantRST)
			}
		})
	}
}
