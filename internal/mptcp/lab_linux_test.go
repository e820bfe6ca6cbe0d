package mptcp_test

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"hybridgw/internal/netlab"
)

// lab is two namespaces joined by two veth pairs, "a" (the primary uplink)
// and "b" (the second one):
//
//	cli a0 192.0.2.1/30    2001:db8:a::1/64 ── srv a1 192.0.2.2/30    2001:db8:a::2/64
//	cli b0 198.51.100.1/30 2001:db8:b::1/64 ── srv b1 198.51.100.2/30 2001:db8:b::2/64
//
// with source routing in cli so b-sourced subflows leave through b0.
type lab struct {
	cli, srv *netlab.NS
	a0, b0   string // client-side device names
}

var (
	cliA4 = netip.MustParseAddr("192.0.2.1")
	srvA4 = netip.MustParseAddr("192.0.2.2")
	cliB4 = netip.MustParseAddr("198.51.100.1")
	srvB4 = netip.MustParseAddr("198.51.100.2")
	cliA6 = netip.MustParseAddr("2001:db8:a::1")
	srvA6 = netip.MustParseAddr("2001:db8:a::2")
	cliB6 = netip.MustParseAddr("2001:db8:b::1")
	srvB6 = netip.MustParseAddr("2001:db8:b::2")
)

func newLab(tb testing.TB) *lab {
	tb.Helper()
	p := netlab.UniquePrefix()
	l := &lab{cli: netlab.NewNS(tb, p+"cli"), srv: netlab.NewNS(tb, p+"srv"), a0: p + "a0", b0: p + "b0"}
	a1, b1 := p+"a1", p+"b1"
	run := func(ns *netlab.NS, args ...string) {
		tb.Helper()
		var err error
		if ns == nil {
			err = netlab.Run(args[0], args[1:]...)
		} else {
			err = ns.Run(args[0], args[1:]...)
		}
		if err != nil {
			tb.Fatal(err)
		}
	}
	for _, ns := range []*netlab.NS{l.cli, l.srv} {
		run(ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
	}
	run(nil, "ip", "link", "add", l.a0, "netns", l.cli.Name, "type", "veth", "peer", "name", a1, "netns", l.srv.Name)
	run(nil, "ip", "link", "add", l.b0, "netns", l.cli.Name, "type", "veth", "peer", "name", b1, "netns", l.srv.Name)
	addrs := []struct {
		ns   *netlab.NS
		dev  string
		a    netip.Addr
		bits int
	}{
		{l.cli, l.a0, cliA4, 30}, {l.cli, l.a0, cliA6, 64}, {l.srv, a1, srvA4, 30}, {l.srv, a1, srvA6, 64},
		{l.cli, l.b0, cliB4, 30}, {l.cli, l.b0, cliB6, 64}, {l.srv, b1, srvB4, 30}, {l.srv, b1, srvB6, 64},
	}
	for _, a := range addrs {
		args := []string{"ip", "addr", "add", netip.PrefixFrom(a.a, a.bits).String(), "dev", a.dev}
		if a.a.Is6() {
			args = append(args, "nodad")
		}
		run(a.ns, args...)
	}
	for _, d := range []struct {
		ns  *netlab.NS
		dev string
	}{{l.cli, l.a0}, {l.cli, l.b0}, {l.srv, a1}, {l.srv, b1}} {
		run(d.ns, "ip", "link", "set", d.dev, "up")
	}
	// Subflows sourced from b leave through b, whatever their destination.
	run(l.cli, "ip", "rule", "add", "from", cliB4.String(), "table", "100")
	run(l.cli, "ip", "route", "add", "default", "via", srvB4.String(), "dev", l.b0, "table", "100")
	run(l.cli, "ip", "-6", "rule", "add", "from", cliB6.String(), "table", "100")
	run(l.cli, "ip", "-6", "route", "add", "default", "via", srvB6.String(), "dev", l.b0, "table", "100")
	// Wait until no address is tentative and the links are up.
	deadline := time.Now().Add(5 * time.Second)
	for _, ns := range []*netlab.NS{l.cli, l.srv} {
		for {
			out, err := ns.Output("ip", "addr", "show")
			if err != nil {
				tb.Fatal(err)
			}
			// Until linkwatch activates a device's qdisc (it can take up to
			// a second after link-up) it is "noop", which drops packets: a
			// lost first SYN would change what the tests measure.
			if !strings.Contains(out, "tentative") && !strings.Contains(out, "LOWERLAYERDOWN") && !strings.Contains(out, "qdisc noop state UP") {
				break
			}
			if time.Now().After(deadline) {
				tb.Fatalf("addresses in %s not ready:\n%s", ns.Name, out)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// Resolve neighbours before the tests run: on a fresh veth the first
	// neighbour solicitation is sometimes lost, and a SYN held back for a
	// second behind it is retransmitted by TCP, without its data.
	for _, a := range []netip.Addr{srvA4, srvA6, srvB4, srvB6} {
		run(l.cli, "ping", "-c1", "-w5", "-q", a.String())
	}
	return l
}

// counter reads one absolute SNMP/netstat counter inside ns with nstat.
func counter(tb testing.TB, ns *netlab.NS, name string) int64 {
	tb.Helper()
	// -a absolute, -s do not touch nstat's history file, -z include zeros.
	out, err := ns.Output("nstat", "-asz", name)
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == name {
			v, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				tb.Fatalf("nstat %s: %v", name, err)
			}
			return v
		}
	}
	tb.Fatalf("nstat has no counter %s:\n%s", name, out)
	return 0
}

// capture runs tcpdump on every interface of ns while the test runs and
// logs what it saw, when MPTCP_TEST_TCPDUMP=1: the manual check that
// exactly one SYN carries the data.
func capture(tb testing.TB, ns *netlab.NS) {
	tb.Helper()
	if os.Getenv("MPTCP_TEST_TCPDUMP") != "1" {
		return
	}
	var out bytes.Buffer
	cmd := ns.Command(context.Background(), "tcpdump", "-i", "any", "-nn", "-v", "-U", "-l", "tcp")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		tb.Fatalf("starting tcpdump: %v", err)
	}
	time.Sleep(500 * time.Millisecond) // let it open the capture
	tb.Cleanup(func() {
		time.Sleep(200 * time.Millisecond)
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		tb.Logf("tcpdump in %s:\n%s", ns.Name, out.String())
	})
}
