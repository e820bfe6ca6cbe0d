package tun

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"hybridgw/internal/netlab"
)

// steerLab is lan -- router -- up. The router has the TUN and the steering;
// up owns every "Internet" address (203.0.113.7, 198.51.100.7 and their v6
// twins) and answers natively on TCP 22 and 80 and UDP 53, so that whatever
// is not steered visibly reaches a native route.
type steerLab struct {
	lan, router, up *netlab.NS
	dev             *Device
	closing         chan struct{} // closed before the TUN is

	mu   sync.Mutex
	seen map[string]int // "tcp 203.0.113.7:443" -> packets read from the TUN
}

func run(t testing.TB, ns *netlab.NS, cmds ...string) {
	t.Helper()
	for _, c := range cmds {
		args := strings.Fields(c)
		if err := ns.Run(args[0], args[1:]...); err != nil {
			t.Fatal(err)
		}
	}
}

func newSteerLab(t *testing.T) *steerLab {
	netlab.RequireRoot(t)
	p := netlab.UniquePrefix()
	l := &steerLab{
		lan:     netlab.NewNS(t, p+"lan"),
		router:  netlab.NewNS(t, p+"rtr"),
		up:      netlab.NewNS(t, p+"up"),
		seen:    map[string]int{},
		closing: make(chan struct{}),
	}
	for _, ns := range []*netlab.NS{l.lan, l.router, l.up} {
		run(t, ns, "sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0")
	}
	run(t, l.router, "sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1")
	if err := netlab.Run("ip", "link", "add", "lan0", "netns", l.lan.Name, "type", "veth", "peer", "name", "rlan", "netns", l.router.Name); err != nil {
		t.Fatal(err)
	}
	if err := netlab.Run("ip", "link", "add", "rup", "netns", l.router.Name, "type", "veth", "peer", "name", "up0", "netns", l.up.Name); err != nil {
		t.Fatal(err)
	}
	run(t, l.lan,
		"ip addr add 192.0.2.2/25 dev lan0",
		"ip addr add 192.0.2.3/25 dev lan0",
		"ip -6 addr add 2001:db8:1::2/64 dev lan0 nodad",
		"ip link set lan0 up",
		"ip route add default via 192.0.2.1",
		"ip -6 route add default via 2001:db8:1::1")
	run(t, l.router,
		"ip addr add 192.0.2.1/25 dev rlan",
		"ip -6 addr add 2001:db8:1::1/64 dev rlan nodad",
		"ip addr add 192.0.2.129/25 dev rup",
		"ip -6 addr add 2001:db8:2::1/64 dev rup nodad",
		"ip link set rlan up",
		"ip link set rup up",
		"ip route add default via 192.0.2.130",
		"ip -6 route add default via 2001:db8:2::2")
	run(t, l.up,
		"ip addr add 192.0.2.130/25 dev up0",
		"ip -6 addr add 2001:db8:2::2/64 dev up0 nodad",
		"ip link set up0 up",
		"ip addr add 203.0.113.7/32 dev lo",
		"ip addr add 198.51.100.7/32 dev lo",
		"ip -6 addr add 2001:db8:50::7/128 dev lo nodad",
		"ip -6 addr add 2001:db8:51::7/128 dev lo nodad",
		"ip route add 192.0.2.0/25 via 192.0.2.129",
		"ip -6 route add 2001:db8:1::/64 via 2001:db8:2::1")

	for _, a := range []string{"203.0.113.7:22", "198.51.100.7:80", "[2001:db8:50::7]:22", "[2001:db8:51::7]:80"} {
		var ln net.Listener
		if err := l.up.Do(func() (err error) { ln, err = net.Listen("tcp", a); return }); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				_, _ = c.Write([]byte("native"))
				c.Close()
			}
		}()
	}
	for _, a := range []string{"203.0.113.7:53", "[2001:db8:50::7]:53"} {
		var pc net.PacketConn
		if err := l.up.Do(func() (err error) { pc, err = net.ListenPacket("udp", a); return }); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		go func() {
			b := make([]byte, 1500)
			for {
				_, from, err := pc.ReadFrom(b)
				if err != nil {
					return
				}
				_, _ = pc.WriteTo([]byte("native"), from)
			}
		}()
	}

	if err := l.router.Do(func() (err error) { l.dev, err = Open("hc0", 1500); return }); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		close(l.closing)
		if err := l.dev.Close(); err != nil {
			t.Errorf("closing TUN: %v", err)
		}
		wg.Wait()
	})
	wg.Go(l.record)
	return l
}

// record reads the TUN and counts what arrives, by protocol and destination.
func (l *steerLab) record() {
	n := l.dev.BatchSize()
	bufs := make([][]byte, n)
	sizes := make([]int, n)
	for i := range bufs {
		bufs[i] = make([]byte, 1500)
	}
	for {
		cnt, err := l.dev.Read(bufs, sizes, 0)
		for i := range cnt {
			if k := describe(bufs[i][:sizes[i]]); k != "" {
				l.mu.Lock()
				l.seen[k]++
				l.mu.Unlock()
			}
		}
		if err != nil {
			select {
			case <-l.closing:
				return
			default:
			}
		}
	}
}

func (l *steerLab) count(key string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seen[key]
}

// describe renders a packet as "tcp 203.0.113.7:443".
func describe(b []byte) string {
	var proto byte
	var dst netip.Addr
	var l4 []byte
	switch {
	case len(b) >= 20 && b[0]>>4 == 4:
		ihl := int(b[0]&0xf) * 4
		proto, dst, l4 = b[9], netip.AddrFrom4([4]byte(b[16:20])), b[ihl:]
	case len(b) >= 40 && b[0]>>4 == 6:
		proto, dst, l4 = b[6], netip.AddrFrom16([16]byte(b[24:40])), b[40:]
	default:
		return ""
	}
	name := map[byte]string{unix.IPPROTO_TCP: "tcp", unix.IPPROTO_UDP: "udp"}[proto]
	if name == "" || len(l4) < 4 {
		return fmt.Sprintf("proto%d %v", proto, dst)
	}
	return fmt.Sprintf("%s %v", name, netip.AddrPortFrom(dst, uint16(l4[2])<<8|uint16(l4[3])))
}

func (l *steerLab) steering() *Steering {
	return &Steering{
		Namespace:   l.router.Path(),
		LANs:        []string{"rlan"},
		Device:      "hc0",
		Table:       100,
		Priority:    1000,
		BypassDst:   []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8:51::/64")},
		BypassSrc:   []netip.Prefix{netip.MustParsePrefix("192.0.2.3/32")},
		BypassPorts: []PortRange{{22, 22}},
	}
}

// exchange connects (or sends, for udp) from the lan namespace and returns
// what the far end said.
func (l *steerLab) exchange(network string, src netip.Addr, dst netip.AddrPort) (string, error) {
	var c net.Conn
	err := l.lan.Do(func() (err error) {
		d := net.Dialer{Timeout: time.Second}
		if src.IsValid() {
			if network == "udp" {
				d.LocalAddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0))
			} else {
				d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))
			}
		}
		c, err = d.Dial(network, dst.String())
		return err
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if network == "udp" {
		if _, err := c.Write([]byte("hello")); err != nil {
			return "", err
		}
		b := make([]byte, 64)
		n, err := c.Read(b)
		return string(b[:n]), err
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

// ourState lists the rules and routes tagged RouteProtocol in the router.
func (l *steerLab) ourState(t *testing.T) []string {
	t.Helper()
	ns, err := netns.GetFromPath(l.router.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var out []string
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		rules, err := h.RuleList(fam)
		if err != nil {
			t.Fatal(err)
		}
		for i := range rules {
			if rules[i].Protocol == RouteProtocol || rules[i].Table == 100 {
				out = append(out, describeRule(&rules[i]))
			}
		}
		routes, err := h.RouteListFiltered(fam, &netlink.Route{Table: 100}, netlink.RT_FILTER_TABLE)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range routes {
			out = append(out, "route "+r.String())
		}
	}
	return out
}

func TestSteering(t *testing.T) {
	l := newSteerLab(t)
	s := l.steering()
	if err := s.Install(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Remove() })
	// IPv4: nop, dst, src and port bypass, steering; IPv6 the same without
	// the (IPv4) src bypass; a default route per family.
	if got := l.ourState(t); len(got) != 5+4+2 {
		t.Fatalf("installed %d rules and routes, want 11: %q", len(got), got)
	}

	for _, fam := range []struct {
		name                        string
		steered, bypassDst, bypPort netip.AddrPort
		udp                         netip.AddrPort
	}{
		{"IPv4", netip.MustParseAddrPort("203.0.113.7:443"), netip.MustParseAddrPort("198.51.100.7:80"),
			netip.MustParseAddrPort("203.0.113.7:22"), netip.MustParseAddrPort("203.0.113.7:53")},
		{"IPv6", netip.MustParseAddrPort("[2001:db8:50::7]:443"), netip.MustParseAddrPort("[2001:db8:51::7]:80"),
			netip.MustParseAddrPort("[2001:db8:50::7]:22"), netip.MustParseAddrPort("[2001:db8:50::7]:53")},
	} {
		t.Run(fam.name, func(t *testing.T) {
			// Steered: the SYN enters the TUN (nothing answers it here).
			if _, err := l.exchange("tcp", netip.Addr{}, fam.steered); err == nil {
				t.Errorf("TCP to %v was answered; it should have gone into the TUN", fam.steered)
			}
			if n := l.count("tcp " + fam.steered.String()); n == 0 {
				t.Errorf("no SYN to %v entered the TUN", fam.steered)
			}
			for _, tc := range []struct {
				what    string
				network string
				dst     netip.AddrPort
			}{
				{"bypassed prefix", "tcp", fam.bypassDst},
				{"bypassed port", "tcp", fam.bypPort},
				{"UDP", "udp", fam.udp},
			} {
				got, err := l.exchange(tc.network, netip.Addr{}, tc.dst)
				if err != nil || got != "native" {
					t.Errorf("%s %v: got %q, %v; want the native answer", tc.what, tc.dst, got, err)
				}
				if n := l.count(tc.network + " " + tc.dst.String()); n != 0 {
					t.Errorf("%s %v: %d packets entered the TUN", tc.what, tc.dst, n)
				}
			}
		})
	}
	t.Run("bypassed source", func(t *testing.T) {
		dst := netip.MustParseAddrPort("203.0.113.7:8443")
		_, err := l.exchange("tcp", netip.MustParseAddr("192.0.2.3"), dst)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("TCP from the bypassed source: %v, want ECONNREFUSED from the native server", err)
		}
		if n := l.count("tcp " + dst.String()); n != 0 {
			t.Errorf("%d packets from the bypassed source entered the TUN", n)
		}
	})

	if err := s.Remove(); err != nil {
		t.Fatal(err)
	}
	if left := l.ourState(t); len(left) != 0 {
		t.Fatalf("after Remove: %q", left)
	}
	if err := s.Remove(); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
	// Unsteered now: the native server refuses port 443.
	if _, err := l.exchange("tcp", netip.Addr{}, netip.MustParseAddrPort("203.0.113.7:443")); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("after Remove, TCP to 203.0.113.7:443: %v, want ECONNREFUSED from the native server", err)
	}
}

func TestCleanStale(t *testing.T) {
	l := newSteerLab(t)
	crashed := l.steering()
	if err := crashed.Install(); err != nil {
		t.Fatal(err)
	}
	// Crash: the process forgets everything without Remove.
	crashed.state.h.Close()
	crashed = nil
	installed := l.ourState(t)
	if len(installed) == 0 {
		t.Fatal("nothing installed")
	}

	// A new run can install over the leftovers...
	next := l.steering()
	if err := next.Install(); err != nil {
		t.Fatalf("Install over a crashed run's state: %v", err)
	}
	if got := l.ourState(t); len(got) != len(installed) {
		t.Fatalf("after reinstall %d entries, want %d (no duplicates):\n%q", len(got), len(installed), got)
	}
	next.state.h.Close()
	next.state = nil // crash again

	// ...and CleanStale alone removes them.
	if err := l.steering().CleanStale(); err != nil {
		t.Fatal(err)
	}
	if left := l.ourState(t); len(left) != 0 {
		t.Fatalf("after CleanStale: %q", left)
	}
}

func TestSteeringValidate(t *testing.T) {
	bad := &Steering{Table: 254, Priority: 32765, BypassPorts: []PortRange{{10, 5}},
		BypassDst: []netip.Prefix{{}}}
	err := bad.validate()
	if err == nil {
		t.Fatal("invalid steering accepted")
	}
	for _, want := range []string{"no LAN", "no TUN", "table 254", "priority 32765", "port range 10-5", "prefix invalid"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if err := (&Steering{LANs: []string{"br-lan"}, Device: "hc0", Table: 100, Priority: 1000}).validate(); err != nil {
		t.Errorf("valid steering rejected: %v", err)
	}
}
