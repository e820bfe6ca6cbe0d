package e2e

import (
	"encoding/binary"
	"encoding/json"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"hybridgw/internal/admin"
	"hybridgw/internal/config"
	"hybridgw/internal/netlab"
)

// TestNativeFailover: what the LAN sends natively (here UDP) leaves on
// bypass.uplink (DSL) while it is alive, moves to LTE when DSL black-holes
// and back when it returns. A 50-packets-per-second stream (a VoIP call)
// loses at most the probes' detection time's worth of packets, then flows
// over LTE; a request/response exchange on one socket (DNS-like) keeps
// being answered. The moves are counted and `hcpe status` shows the last.
func TestNativeFailover(t *testing.T) {
	netlab.RequireRoot(t)
	sock := filepath.Join(t.TempDir(), "hcpe.sock")
	s := startSystem(t, "listen: /run/hcpe/admin.sock", "listen: "+sock)
	cfg, err := config.LoadHCPE(s.cpeConfig)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Bypass.Uplink != "dsl" {
		t.Fatalf("the example config's bypass.uplink is %q; this test expects dsl", cfg.Bypass.Uplink)
	}
	pr := cfg.Uplinks[0].Probe
	detection := time.Duration(pr.DownAfter)*pr.Interval + pr.Timeout

	// The echo answers each datagram with its first 8 bytes (the sequence
	// number) and the address it came from.
	var srv net.PacketConn
	if err := s.lab.SRV.Do(func() (err error) { srv, err = net.ListenPacket("udp4", ":5399"); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, a, err := srv.ReadFrom(buf)
			if err != nil {
				return
			}
			if n < 8 {
				continue
			}
			out := append(append([]byte(nil), buf[:8]...), a.(*net.UDPAddr).AddrPort().Addr().Unmap().String()...)
			srv.WriteTo(out, a)
		}
	}()
	dialUDP := func() *net.UDPConn {
		var c net.Conn
		if err := s.lab.LAN.Do(func() (err error) {
			c, err = net.Dial("udp4", netip.AddrPortFrom(server4, 5399).String())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(*net.UDPConn)
	}
	moves := func(to, reason string) float64 {
		return s.metric(t, s.lab.CPE, 9101, "hcpe_native_route_moves_total", `uplink="`+to+`"`, `reason="`+reason+`"`)
	}
	onUplink := func(name string) bool {
		v, err := s.tryMetric(s.lab.CPE, 9101, "hcpe_native_uplink", `uplink="`+name+`"`)
		return err == nil && v == 1
	}
	waitFor(t, "native traffic on dsl", 5*time.Second, func() bool { return onUplink("dsl") })
	failovers0, returns0 := moves("lte", "failover"), moves("dsl", "return")

	// The call: one datagram every 20 ms; replies recorded by sequence.
	type reply struct {
		at   time.Time
		from string
	}
	var (
		mu      sync.Mutex
		sentAt  []time.Time
		replies = map[uint64]reply{}
	)
	call := dialUDP()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 1500)
		for {
			n, err := call.Read(buf)
			if err != nil {
				return
			}
			if n >= 8 {
				mu.Lock()
				replies[binary.BigEndian.Uint64(buf)] = reply{time.Now(), string(buf[8:n])}
				mu.Unlock()
			}
		}
	})
	wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		pkt := make([]byte, 160) // a 20 ms G.711 frame
		for seq := uint64(0); ; seq++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			binary.BigEndian.PutUint64(pkt, seq)
			mu.Lock()
			sentAt = append(sentAt, time.Now())
			mu.Unlock()
			call.Write(pkt)
		}
	})
	t.Cleanup(func() { call.Close(); wg.Wait() })

	// The DNS-like exchange: a query every 100 ms on one socket (one
	// conntrack entry), each waiting up to 500 ms for its answer.
	type query struct {
		at       time.Time
		answered bool
		from     string
	}
	var queries []query
	dns := dialUDP()
	dnsDone := make(chan struct{})
	go func() {
		defer close(dnsDone)
		buf := make([]byte, 1500)
		for seq := uint64(1 << 32); ; seq++ {
			select {
			case <-stop:
				return
			default:
			}
			q := query{at: time.Now()}
			binary.BigEndian.PutUint64(buf, seq)
			dns.Write(buf[:40])
			dns.SetReadDeadline(q.at.Add(500 * time.Millisecond))
			for {
				n, err := dns.Read(buf)
				if err != nil {
					break
				}
				if n >= 8 && binary.BigEndian.Uint64(buf) == seq {
					q.answered, q.from = true, string(buf[8:n])
					break
				}
			}
			queries = append(queries, q)
			time.Sleep(time.Until(q.at.Add(100 * time.Millisecond)))
		}
	}()

	time.Sleep(2 * time.Second)
	down := time.Now()
	s.lab.DSL.SetDown(true)
	t.Cleanup(func() { s.lab.DSL.SetDown(false) })
	waitFor(t, "native traffic to move to lte", 5*time.Second, func() bool { return onUplink("lte") })
	moved := time.Since(down)
	var st admin.CPEStatus
	out, err := exec.Command(filepath.Join(binDir, "hcpe"), "status", "-c", s.cpeConfig, "-o", "json").CombinedOutput()
	if err != nil {
		t.Fatalf("hcpe status: %v\n%s", err, out)
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("hcpe status -o json: %v\n%s", err, out)
	}
	time.Sleep(3 * time.Second)
	up := time.Now()
	s.lab.DSL.SetDown(false)
	waitFor(t, "native traffic back on dsl", 5*time.Second, func() bool { return onUplink("dsl") })
	back := time.Since(up)
	time.Sleep(2 * time.Second)
	close(stop)
	<-dnsDone
	time.Sleep(500 * time.Millisecond) // the last replies
	mu.Lock()
	defer mu.Unlock()

	// Loss and the longest silence while DSL was down, and after it
	// returned; where the answered packets went out.
	var lostDown, lostUp, sentDown, sentUp int
	var lastFrom string
	fromAfter := map[string]int{}
	for seq, at := range sentAt {
		r, ok := replies[uint64(seq)]
		switch {
		case at.Before(down):
		case at.Before(up):
			sentDown++
			if !ok {
				lostDown++
			} else if at.After(down.Add(moved)) {
				fromAfter[r.from]++
			}
		default:
			sentUp++
			if !ok {
				lostUp++
			}
			if ok {
				lastFrom = r.from
			}
		}
	}
	budget := int(detection/(20*time.Millisecond)) + 10 // 200 ms of slack: a decision, a busy machine
	t.Logf("DSL down: native routes on LTE after %v (detection bound %v); %d of %d datagrams lost (%.0f ms of the call; budget %d); answered after the move from %v",
		moved.Round(time.Millisecond), detection, lostDown, sentDown, float64(lostDown)*20, budget, fromAfter)
	t.Logf("DSL back: native routes on DSL after %v; %d of %d datagrams lost; last answered from %s", back.Round(time.Millisecond), lostUp, sentUp, lastFrom)
	if lostDown > budget {
		t.Errorf("the call lost %d datagrams when DSL died, want at most %d (the probes' detection time %v at 50 packets/s, plus 200 ms)", lostDown, budget, detection)
	}
	if fromAfter[netlab.CPEDSL4] > 0 || fromAfter[netlab.CPELTE4] == 0 {
		t.Errorf("after the move the server saw the call from %v, want only LTE's %s", fromAfter, netlab.CPELTE4)
	}
	if lostUp > 5 {
		t.Errorf("the call lost %d datagrams when the routes moved back to DSL, want at most 5", lostUp)
	}
	if lastFrom != netlab.CPEDSL4 {
		t.Errorf("after DSL returned the call came from %q, want DSL's %s", lastFrom, netlab.CPEDSL4)
	}
	// Over LTE every query is answered; when the routes move back, the
	// one in flight may lose its answer (its NAT entry is flushed).
	var unanswered, atReturn []string
	for _, q := range queries {
		switch {
		case q.answered || q.at.Before(down.Add(moved)):
		case q.at.Before(up):
			unanswered = append(unanswered, q.at.Sub(down).Round(time.Millisecond).String())
		default:
			atReturn = append(atReturn, q.at.Sub(down).Round(time.Millisecond).String())
		}
	}
	if len(unanswered) > 0 {
		t.Errorf("DNS-like queries on one socket went unanswered over LTE (routes moved %v after DSL died): sent %v after DSL died", moved.Round(time.Millisecond), unanswered)
	}
	if len(atReturn) > 1 {
		t.Errorf("DNS-like queries went unanswered after DSL returned: sent %v after DSL died, want at most the one in flight at the move", atReturn)
	}
	if got := moves("lte", "failover") - failovers0; got != 1 {
		t.Errorf("hcpe_native_route_moves_total{uplink=lte,reason=failover} grew by %v, want 1", got)
	}
	if got := moves("dsl", "return") - returns0; got != 1 {
		t.Errorf("hcpe_native_route_moves_total{uplink=dsl,reason=return} grew by %v, want 1", got)
	}
	f := st.LastFailover
	if f == nil || f.What != "native-routes" || f.From != "dsl" || f.To != "lte" || f.Reason != "failover" ||
		f.TookMs <= 0 || time.Duration(f.TookMs*float64(time.Millisecond)) > detection+time.Second || st.NativeUplink != "lte" {
		t.Errorf("hcpe status while DSL was down: native on %q, last failover %+v; want dsl → lte, taking at most %v", st.NativeUplink, f, detection+time.Second)
	} else {
		t.Logf("hcpe status: last failover %s → %s took %.0f ms", f.From, f.To, f.TookMs)
	}
}
