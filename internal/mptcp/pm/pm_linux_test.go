package pm_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"hybridgw/internal/mptcp/pm"
	"hybridgw/internal/netlab"
)

// openIn opens a PM inside ns and closes it at cleanup.
func openIn(tb testing.TB, ns *netlab.NS) *pm.PM {
	tb.Helper()
	var p *pm.PM
	if err := ns.Do(func() error {
		var err error
		p, err = pm.Open()
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := p.Close(); err != nil {
			tb.Error(err)
		}
		if err := p.Close(); err != nil { // idempotent
			tb.Error(err)
		}
	})
	return p
}

func endpointsShown(tb testing.TB, ns *netlab.NS) []string {
	tb.Helper()
	out, err := ns.Output("ip", "mptcp", "endpoint", "show")
	if err != nil {
		tb.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l = strings.Join(strings.Fields(l), " "); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// TestRoundTrip drives every command and checks the result with iproute2.
func TestRoundTrip(t *testing.T) {
	netlab.RequireRoot(t)
	prefix := netlab.UniquePrefix()
	ns := netlab.NewNS(t, prefix+"pm")
	dev := prefix + "d0"
	if err := ns.Run("ip", "link", "add", dev, "type", "veth", "peer", "name", prefix+"d1"); err != nil { // no dummy module here
		t.Fatal(err)
	}
	// A signal endpoint with a port listens on it, so that address must exist.
	for _, args := range [][]string{
		{"ip", "addr", "add", "2001:db8:a::1/64", "dev", dev, "nodad"},
		{"ip", "link", "set", dev, "up"},
	} {
		if err := ns.Run(args[0], args[1:]...); err != nil {
			t.Fatal(err)
		}
	}
	var ifindex int
	if err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(dev)
		if err == nil {
			ifindex = ifi.Index
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	p := openIn(t, ns)

	// Limits.
	if err := p.SetLimits(pm.Limits{Subflows: 4, AddAddrAccepted: 3}); err != nil {
		t.Fatal(err)
	}
	if l, err := p.Limits(); err != nil || l != (pm.Limits{Subflows: 4, AddAddrAccepted: 3}) {
		t.Errorf("Limits = %+v, %v", l, err)
	}
	if out, _ := ns.Output("ip", "mptcp", "limits", "show"); !strings.Contains(out, "add_addr_accepted 3") || !strings.Contains(out, "subflows 4") {
		t.Errorf("ip mptcp limits show: %q", out)
	}
	if err := p.SetLimits(pm.Limits{Subflows: 9}); err == nil {
		t.Error("SetLimits accepted 9 subflows; the kernel maximum is 8")
	}

	// Add: kernel-chosen id, explicit id with a port, and a duplicate.
	v4 := pm.Endpoint{Addr: netip.MustParseAddr("192.0.2.1"), IfIndex: ifindex, Flags: pm.Subflow}
	id4, err := p.AddEndpoint(v4)
	if err != nil {
		t.Fatal(err)
	}
	v6 := pm.Endpoint{ID: 7, Addr: netip.MustParseAddr("2001:db8:a::1"), Port: 5124, IfIndex: ifindex, Flags: pm.Signal}
	if id, err := p.AddEndpoint(v6); err != nil || id != 7 {
		t.Fatalf("AddEndpoint(id 7) = %d, %v", id, err)
	}
	if _, err := p.AddEndpoint(v4); err == nil {
		t.Error("adding the same address twice succeeded")
	}
	want := []string{
		"192.0.2.1 id " + itoa(int(id4)) + " subflow dev " + dev,
		"2001:db8:a::1 port 5124 id 7 signal dev " + dev,
	}
	if got := endpointsShown(t, ns); !slices.Equal(got, want) {
		t.Errorf("ip mptcp endpoint show:\n%q\nwant\n%q", got, want)
	}
	eps, err := p.Endpoints()
	if err != nil {
		t.Fatal(err)
	}
	v4.ID = id4
	if len(eps) != 2 || eps[0] != v4 || eps[1] != v6 {
		t.Errorf("Endpoints = %+v, want %+v and %+v", eps, v4, v6)
	}
	if e, err := p.Endpoint(7); err != nil || e != v6 {
		t.Errorf("Endpoint(7) = %+v, %v", e, err)
	}

	// Backup on by id, then off by address: MP_PRIO on live subflows.
	if err := p.SetFlags(pm.Endpoint{ID: id4}, pm.Backup); err != nil {
		t.Fatal(err)
	}
	if got := endpointsShown(t, ns); len(got) < 1 || got[0] != "192.0.2.1 id "+itoa(int(id4))+" subflow backup dev "+dev {
		t.Errorf("after backup on: %q", got)
	}
	if err := p.SetFlags(pm.Endpoint{Addr: v4.Addr}, 0); err != nil {
		t.Fatal(err)
	}
	if e, err := p.Endpoint(id4); err != nil || e.Flags != pm.Subflow {
		t.Errorf("after backup off: %+v, %v; want flags subflow", e, err)
	}
	if err := p.SetFlags(pm.Endpoint{ID: 99}, pm.Backup); !errors.Is(err, pm.ErrNotFound) {
		t.Errorf("SetFlags on a missing id: %v, want ErrNotFound", err)
	}

	// Delete, delete again, flush.
	if err := p.DelEndpoint(7); err != nil {
		t.Fatal(err)
	}
	if err := p.DelEndpoint(7); !errors.Is(err, pm.ErrNotFound) {
		t.Errorf("deleting a missing endpoint: %v, want ErrNotFound", err)
	}
	if got := endpointsShown(t, ns); len(got) != 1 {
		t.Errorf("after delete: %q", got)
	}
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := endpointsShown(t, ns); len(got) != 0 {
		t.Errorf("after flush: %q", got)
	}
	if eps, err := p.Endpoints(); err != nil || len(eps) != 0 {
		t.Errorf("Endpoints after flush = %v, %v", eps, err)
	}
}

// TestEventsEnd checks that the event channel closes when ctx ends, even
// with no events.
func TestEventsEnd(t *testing.T) {
	netlab.RequireRoot(t)
	ns := netlab.NewNS(t, netlab.UniquePrefix()+"ev")
	p := openIn(t, ns)
	ctx, cancel := context.WithCancel(context.Background())
	evs, err := p.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	for range evs {
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
