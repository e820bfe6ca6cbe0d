package netlab

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ping sends three pings from ns to dst, optionally from a source address
// or device, and fails the test unless one is answered within 2 s.
func ping(t *testing.T, ns *NS, dst netip.Addr, src string) {
	t.Helper()
	args := []string{"-n", "-q", "-c", "3", "-i", "0.05", "-W", "2"}
	if src != "" {
		args = append(args, "-I", src)
	}
	args = append(args, dst.String())
	if _, err := ns.Output("ping", args...); err != nil {
		t.Errorf("%s: ping %s from %q: %v", ns.Name, dst, src, err)
	}
}

func TestTopology(t *testing.T) {
	lab := New(t, Options{})
	p := lab.Plan
	cases := []struct {
		name string
		ns   *NS
		dst  netip.Addr
		src  string
	}{
		{"lan→cpe v4", lab.LAN, p.CPELAN4, ""},
		{"lan→cpe v6", lab.LAN, p.CPELAN6, ""},
		{"lan→srv v4 (masqueraded over dsl)", lab.LAN, p.Server4, ""},
		{"lan→srv v6 (routed, client address kept)", lab.LAN, p.Server6, ""},
		{"lan→hag service v4", lab.LAN, p.Service4, ""},
		{"lan→hag service v6", lab.LAN, p.Service6, ""},
		{"cpe→hag dsl v4", lab.CPE, p.DSL.HAG4, ""},
		{"cpe→hag dsl v6", lab.CPE, p.DSL.HAG6, ""},
		{"cpe→hag lte v4", lab.CPE, p.LTE.HAG4, ""},
		{"cpe→hag lte v6", lab.CPE, p.LTE.HAG6, ""},
		{"cpe→service v4 via dsl", lab.CPE, p.Service4, p.DSL.CPE4.String()},
		{"cpe→service v6 via dsl", lab.CPE, p.Service6, p.DSL.CPE6.String()},
		{"cpe→service v4 via lte", lab.CPE, p.Service4, p.LTE.CPE4.String()},
		{"cpe→service v6 via lte", lab.CPE, p.Service6, p.LTE.CPE6.String()},
		{"cpe→srv v4", lab.CPE, p.Server4, ""},
		{"cpe→srv v6", lab.CPE, p.Server6, ""},
		{"hag→srv v4", lab.HAG, p.Server4, ""},
		{"hag→srv v6", lab.HAG, p.Server6, ""},
		{"hag→client v6 (delegated prefix)", lab.HAG, p.Client6, ""},
		{"srv→client v6 (return route to the delegated prefix)", lab.SRV, p.Client6, ""},
		{"srv→cpe lan v6", lab.SRV, p.CPELAN6, ""},
	}
	var wg sync.WaitGroup
	for _, c := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ping(t, c.ns, c.dst, c.src)
		}()
	}
	wg.Wait()

	// Source routing: what leaves from the lte address goes over lte.
	out, err := lab.CPE.Output("ip", "route", "get", Service4, "from", CPELTE4)
	if err != nil || !strings.Contains(out, "dev lte") {
		t.Errorf("cpe: route from %s to %s: %q, %v; want dev lte", CPELTE4, Service4, out, err)
	}
	for _, ns := range lab.Namespaces() {
		out, err := ns.Output("ip", "-o", "addr", "show", "tentative")
		if err != nil || strings.TrimSpace(out) != "" {
			t.Errorf("%s: tentative addresses %q, %v", ns.Name, out, err)
		}
		for _, k := range []string{"net/mptcp/enabled", "net/ipv6/conf/all/accept_dad"} {
			var b []byte
			_ = ns.Do(func() (err error) { b, err = os.ReadFile("/proc/sys/" + k); return })
			want := map[string]string{"net/mptcp/enabled": "1", "net/ipv6/conf/all/accept_dad": "0"}[k]
			if strings.TrimSpace(string(b)) != want {
				t.Errorf("%s: %s = %q, want %s", ns.Name, k, b, want)
			}
		}
	}
}

// TestTwoLabsAndLeftovers runs two labs with different prefixes at once,
// checks each works on its own, closes them and checks nothing of theirs
// remains: no namespace, no device in the root namespace, no forwarder.
func TestTwoLabsAndLeftovers(t *testing.T) {
	RequireRoot(t)
	before := rootLinks(t)
	goroutines := runtime.NumGoroutine()
	var labs []*Lab
	for i := 0; i < 2; i++ {
		// Build, not New: this test closes them itself and then checks.
		lab, err := Build(t.Context(), Options{Prefix: UniquePrefix()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = lab.Close() })
		labs = append(labs, lab)
	}
	if labs[0].Prefix == labs[1].Prefix {
		t.Fatalf("same prefix twice: %s", labs[0].Prefix)
	}
	for _, lab := range labs {
		ping(t, lab.LAN, lab.Plan.Server4, "")
		ping(t, lab.SRV, lab.Plan.Client6, "")
	}
	// A link set down in one lab does not touch the other.
	labs[0].DSL.SetDown(true)
	if _, err := labs[0].CPE.Output("ping", "-n", "-q", "-c", "2", "-i", "0.1", "-W", "1", HAGDSL4); err == nil {
		t.Errorf("%s: ping over a dsl link that is down succeeded", labs[0].Prefix)
	}
	ping(t, labs[1].CPE, labs[1].Plan.DSL.HAG4, "")
	labs[0].DSL.SetDown(false)
	ping(t, labs[0].CPE, labs[0].Plan.DSL.HAG4, "")

	for _, lab := range labs {
		if err := lab.Close(); err != nil {
			t.Errorf("closing %s: %v", lab.Prefix, err)
		}
		if err := lab.Close(); err != nil {
			t.Errorf("second Close of %s: %v", lab.Prefix, err)
		}
		left, err := Leftovers(lab.Prefix)
		if err != nil || len(left) != 0 {
			t.Errorf("%s: namespaces left: %v, %v", lab.Prefix, left, err)
		}
	}
	if after := rootLinks(t); after != before {
		t.Errorf("root namespace devices changed:\nbefore %s\nafter  %s", before, after)
	}
	// The forwarders are goroutines of this process; Close waited for
	// them. No child process is left either.
	for deadline := time.Now().Add(2 * time.Second); runtime.NumGoroutine() > goroutines && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > goroutines {
		t.Errorf("%d goroutines after Close, %d before Build", n, goroutines)
	}
	if kids := children(t); kids != "" {
		t.Errorf("child processes left: %s", kids)
	}
}

func rootLinks(t *testing.T) string {
	out, err := exec1("ip", "-o", "link", "show")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			names = append(names, strings.TrimSuffix(f[1], ":"))
		}
	}
	return strings.Join(names, " ")
}

// children lists this process's child processes.
func children(t *testing.T) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", os.Getpid(), os.Getpid()))
	if err != nil {
		t.Logf("cannot list children: %v", err)
		return ""
	}
	// Other tasks (threads) may have started children too.
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", os.Getpid()))
	s := strings.TrimSpace(string(b))
	for _, e := range ents {
		c, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", os.Getpid(), e.Name()))
		if x := strings.TrimSpace(string(c)); x != "" && !strings.Contains(s, x) {
			s += " " + x
		}
	}
	return strings.TrimSpace(s)
}

func exec1(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).Output()
	return string(out), err
}

// TestLinkDownStallsTCP sets a link down under a TCP transfer: nothing
// arrives while it is down (once what was already in flight has drained),
// and the transfer resumes when it comes back.
func TestLinkDownStallsTCP(t *testing.T) {
	lab := New(t, Options{})
	var ln net.Listener
	if err := lab.HAG.Do(func() (err error) { ln, err = net.Listen("tcp", net.JoinHostPort(HAGDSL4, "0")); return }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var c net.Conn
	if err := lab.CPE.Do(func() (err error) { c, err = net.Dial("tcp", ln.Addr().String()); return }); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	go func() {
		buf := make([]byte, 64<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}()
	var got atomic.Int64
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := rc.Read(buf)
			got.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	time.Sleep(time.Second)
	if got.Load() == 0 {
		t.Fatal("nothing arrived before the link went down")
	}
	lab.DSL.SetDown(true)
	// What is already past the queue still arrives: up to the queue's
	// 50 ms plus the 7.5 ms delay.
	time.Sleep(300 * time.Millisecond)
	stalled := got.Load()
	time.Sleep(1500 * time.Millisecond)
	if d := got.Load() - stalled; d != 0 {
		t.Errorf("%d bytes arrived while the link was down", d)
	}
	st := lab.DSL.Stats(Upstream)
	lab.DSL.SetDown(false)
	t.Logf("down: %d packets dropped upstream, %d bytes before", st.DroppedDown, stalled)
	if st.DroppedDown == 0 {
		t.Error("no packet counted as dropped while down")
	}
	// TCP retransmits with backoff; after 1.8 s down the next try comes
	// within a few seconds.
	deadline := time.Now().Add(10 * time.Second)
	for got.Load() == stalled && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if got.Load() == stalled {
		t.Fatal("the transfer did not resume within 10 s of the link coming back")
	}
	resumed := got.Load()
	time.Sleep(time.Second)
	t.Logf("resumed: %d bytes in the second after the first", got.Load()-resumed)
}

// TestNativeSources checks what the server sees of natively routed
// traffic: IPv4 from the LAN masqueraded to the CPE's dsl address, IPv6
// with the client's own address.
func TestNativeSources(t *testing.T) {
	lab := New(t, Options{})
	for _, c := range []struct {
		network  string
		dst, src netip.Addr
	}{
		{"udp4", lab.Plan.Server4, lab.Plan.DSL.CPE4},
		{"udp6", lab.Plan.Server6, lab.Plan.Client6},
	} {
		var pc net.PacketConn
		if err := lab.SRV.Do(func() (err error) {
			pc, err = net.ListenPacket(c.network, net.JoinHostPort(c.dst.String(), "0"))
			return
		}); err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		var conn net.Conn
		if err := lab.LAN.Do(func() (err error) { conn, err = net.Dial(c.network, pc.LocalAddr().String()); return }); err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		_ = pc.SetReadDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 64)
		_, from, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("%s: server received nothing: %v", c.network, err)
		}
		if got := from.(*net.UDPAddr).AddrPort().Addr().Unmap(); got != c.src {
			t.Errorf("%s: server saw source %v, want %v", c.network, got, c.src)
		}
	}
}

// TestLinkFlap: a link set to flap drops what crosses it during each
// outage and only then, in both directions at once, and stops when told.
func TestLinkFlap(t *testing.T) {
	lab := New(t, Options{})
	ping(t, lab.CPE, lab.Plan.DSL.HAG4, "")
	if err := lab.Set("dsl", []string{"flap", "500ms", "1s"}); err != nil {
		t.Fatal(err)
	}
	if s := DescribeProfile(lab.DSL.Profile(Upstream)); !strings.Contains(s, "flap 500ms/1s") {
		t.Errorf("status does not show the flap: %q", s)
	}
	// 150 pings 20 ms apart span 3 s: three outages of half a second.
	out, _ := lab.CPE.Output("ping", "-n", "-q", "-c", "150", "-i", "0.02", "-W", "1", HAGDSL4)
	var sent, recv int
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "packets transmitted") {
			fmt.Sscanf(l, "%d packets transmitted, %d received", &sent, &recv)
		}
	}
	t.Logf("flap 500ms/1s: %d of %d pings answered", recv, sent)
	if sent != 150 || recv < 40 || recv > 110 {
		t.Errorf("%d of %d pings answered, want about half (ping output:\n%s)", recv, sent, out)
	}
	up, down := lab.DSL.Stats(Upstream), lab.DSL.Stats(Downstream)
	if up.DroppedDown == 0 {
		t.Error("no packet counted as dropped down upstream")
	}
	// A reply dropped downstream would mean the directions are out of
	// phase: an echo that crossed upstream while up comes back 15 ms later.
	t.Logf("dropped down: %d upstream, %d downstream", up.DroppedDown, down.DroppedDown)
	if err := lab.Set("dsl", []string{"flap", "off"}); err != nil {
		t.Fatal(err)
	}
	if _, err := lab.CPE.Output("ping", "-n", "-q", "-c", "50", "-i", "0.02", "-W", "1", HAGDSL4); err != nil {
		t.Errorf("pings lost after flap off: %v", err)
	}
}
