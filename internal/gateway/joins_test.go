//go:build linux

package gateway_test

import (
	"context"
	"io"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"hybridgw/internal/mptcp"
	"hybridgw/internal/netlab"
)

// TestJoinSource: a client whose initial subflow comes from the CPE's
// wan_prefixes (2001:db8:d5::/64) adds a subflow from inside them and one
// from outside (2001:db8:d7::1). hag closes the outside one, counts it
// once in hag_refusals_total{reason=join_source}, and the flow goes on
// over the other two. The joins come from the client's in-kernel path
// manager: "before" has the endpoints in place when the connection opens,
// so the joins race hag's dial to the server and are mostly caught by the
// check at flow start; "after" adds the outside endpoint once the flow is
// relayed, so only the path-manager event can catch it.
func TestJoinSource(t *testing.T) {
	netlab.RequireRoot(t)
	var (
		primary = netip.MustParseAddr("2001:db8:d5::1")
		inside  = netip.MustParseAddr("2001:db8:d5::3")
		outside = netip.MustParseAddr("2001:db8:d7::1")
	)
	for _, tc := range []struct {
		name string
		late bool
	}{
		{name: "before"},
		{name: "after", late: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp := newTopo(t)
			netlab.ServeTCP(t, tp.srv, "[::]:8085", func(c net.Conn) { io.Copy(c, c) })
			must := func(ns *netlab.NS, args ...string) {
				t.Helper()
				if err := ns.Run("ip", args...); err != nil {
					t.Fatal(err)
				}
			}
			must(tp.cpe, "addr", "add", inside.String()+"/64", "dev", "dsl", "nodad")
			must(tp.cpe, "addr", "add", outside.String()+"/64", "dev", "dsl", "nodad")
			// hag has no default route: reach the outside prefix on the link.
			must(tp.hag, "-6", "route", "add", "2001:db8:d7::/64", "dev", "dsl")
			must(tp.cpe, "mptcp", "limits", "set", "subflow", "4", "add_addr_accepted", "0")
			must(tp.hag, "mptcp", "limits", "set", "subflow", "4", "add_addr_accepted", "0")
			endpoint := func(a netip.Addr) { must(tp.cpe, "mptcp", "endpoint", "add", a.String(), "dev", "dsl", "subflow") }
			endpoint(inside)
			if !tc.late {
				endpoint(outside)
			}
			startHag(t, tp)

			var c *net.TCPConn
			dst := netip.AddrPortFrom(srvV6, 8085)
			if err := tp.cpe.Do(func() (err error) {
				c, err = mptcp.Dial(context.Background(), mptcp.DialOptions{Remote: netip.AddrPortFrom(hagV6, hagPort),
					Local: netip.AddrPortFrom(primary, 0), Timeout: 5 * time.Second}, nil)
				if err == nil {
					_, err = c.Write(request(t, dst, clientV6, testKey))
				}
				return err
			}); err != nil {
				t.Fatalf("dialing hag: %v", err)
			}
			t.Cleanup(func() { c.Close() })
			if code := readReply(t, c); code != -1 {
				t.Fatalf("request refused with code %d", code)
			}
			echo := func(msg string) {
				t.Helper()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := c.Write([]byte(msg)); err != nil {
					t.Fatalf("writing through the flow: %v", err)
				}
				got := make([]byte, len(msg))
				if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
					t.Fatalf("echo through the flow: %q, %v", got, err)
				}
			}
			echo("before the joins")
			if tc.late {
				// The inside join first, so the outside one meets a
				// registered flow.
				waitSubflows(t, c, []netip.Addr{primary, inside})
				endpoint(outside)
			}

			// The outside subflow must show up (the kernel accepted the
			// join) and then go, while the inside one stays.
			want := []netip.Addr{primary, inside}
			deadline := time.Now().Add(5 * time.Second)
			for {
				n := refusals(t, tp, "join_source")
				got := subflowSources(t, c)
				if n == 1 && slices.Equal(got, want) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("subflows from %v and join_source refusals %d; want subflows from %v and 1 refusal", got, n, want)
				}
				time.Sleep(50 * time.Millisecond)
			}
			echo("after the outside subflow was closed")
			// The client's path manager does not retry the endpoint, and
			// hag counts the subflow once.
			time.Sleep(time.Second)
			if n := refusals(t, tp, "join_source"); n != 1 {
				t.Errorf("join_source refusals = %d a second later, want 1", n)
			}
			if got := subflowSources(t, c); !slices.Equal(got, want) {
				t.Errorf("subflows from %v a second later, want %v", got, want)
			}
		})
	}
}

// subflowSources lists the local addresses of c's live subflows, sorted.
func subflowSources(t *testing.T, c *net.TCPConn) []netip.Addr {
	t.Helper()
	sfs, err := mptcp.Subflows(c)
	if err != nil {
		t.Fatalf("listing subflows: %v", err)
	}
	var out []netip.Addr
	for _, s := range sfs {
		if s.TCP.State == 1 { // TCP_ESTABLISHED; a reset one lingers closed
			out = append(out, s.Local.Addr())
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

func waitSubflows(t *testing.T, c *net.TCPConn, want []netip.Addr) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := subflowSources(t, c)
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("subflows from %v, want %v", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
