package e2e

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"hybridgw/internal/config"
	"hybridgw/internal/linkem"
	"hybridgw/internal/netlab"
)

var (
	server4 = netip.MustParseAddr(netlab.Server4)
	server6 = netip.MustParseAddr(netlab.Server6)
)

// TestSystem runs the operator's checklist against one running system:
// the lab at its default profiles, hag and hcpe from configs/.
func TestSystem(t *testing.T) {
	netlab.RequireRoot(t)
	s := startSystem(t)

	t.Run("Integrity", s.testIntegrity)
	t.Run("AddressPreservation", s.testAddressPreservation)
	t.Run("BondingUsesBothUplinks", s.testBonding)
	t.Run("DSLDownMidDownload", s.testDSLDown)
	t.Run("NewConnectionsWithDSLDown", s.testNewWithDSLDown)
	t.Run("LTEDownMidDownload", s.testLTEDown)
	t.Run("ClosedPortAndUnroutable", s.testRefusals)
	t.Run("MPTCPStripped", s.testStripped)
	t.Run("LossOnLTE", s.testLoss)
	t.Run("HAGRestart", s.testHAGRestart)
}

func (s *system) ctx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// testIntegrity: 200+ transfers of random sizes from 1 byte to 64 MiB,
// both directions, IPv4 and IPv6, 16 at a time, with the client
// half-closing first (uploads) and the server half-closing first
// (downloads); every byte is checked by hash. The links are opened up to
// 300 Mbit/s for it: this is about integrity, and at the default rates the
// same bytes would take a quarter of an hour.
func (s *system) testIntegrity(t *testing.T) {
	fast := netlab.LinkProfile{Up: netlab.Direction{Rate: 300e6}, Down: netlab.Direction{Rate: 300e6}}
	for _, l := range []*netlab.Link{s.lab.DSL, s.lab.LTE} {
		old := netlab.LinkProfile{Up: netlab.Direction{Profile: l.Profile(netlab.Upstream)}, Down: netlab.Direction{Profile: l.Profile(netlab.Downstream)}}
		fp := fast
		fp.Up.Delay, fp.Down.Delay = old.Up.Delay, old.Down.Delay
		l.Apply(fp)
		t.Cleanup(func() { l.Apply(old) })
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	const n = 208
	type job struct {
		up   bool
		dst  netip.AddrPort
		size uint64
	}
	jobs := make([]job, n)
	var total uint64
	for i := range jobs {
		// Log-uniform sizes: every order of magnitude is exercised, and the
		// extremes are always there.
		size := uint64(math.Exp(rng.Float64() * math.Log(64<<20)))
		switch i {
		case 0:
			size = 1
		case 1:
			size = 64 << 20
		case 2:
			size = 64 << 20
		}
		dst := netip.AddrPortFrom(server4, 8081)
		if i%2 == 1 {
			dst = netip.AddrPortFrom(server6, 8081)
		}
		up := i%4 >= 2
		if up {
			dst = netip.AddrPortFrom(dst.Addr(), 8080)
		}
		jobs[i] = job{up: up, dst: dst, size: max(size, 1)}
		total += jobs[i].size
	}
	ctx := s.ctx(t, 8*time.Minute)
	start := time.Now()
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	for i, j := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			var err error
			if j.up {
				_, err = s.upload(ctx, j.dst, j.size, seed+uint64(i))
			} else {
				_, _, err = s.download(ctx, j.dst, j.size, seed+uint64(i))
			}
			if err != nil {
				mu.Lock()
				failures = append(failures, fmt.Sprintf("transfer %d (%s, up=%v, %d bytes): %v", i, j.dst, j.up, j.size, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, f := range failures {
		t.Error(f)
	}
	t.Logf("%d transfers, %.1f MB in %v", n, float64(total)/1e6, time.Since(start).Round(time.Millisecond))
}

func (s *system) testAddressPreservation(t *testing.T) {
	ctx := s.ctx(t, 30*time.Second)
	peer6, err := s.upload(ctx, netip.AddrPortFrom(server6, 8080), 1<<20, 1)
	if err != nil {
		t.Fatalf("IPv6 upload: %v", err)
	}
	if !strings.HasPrefix(peer6, "["+netlab.Client6+"]:") {
		t.Errorf("server saw %s for the IPv6 client, want the client's own %s", peer6, netlab.Client6)
	}
	peer4, err := s.upload(ctx, netip.AddrPortFrom(server4, 8080), 1<<20, 2)
	if err != nil {
		t.Fatalf("IPv4 upload: %v", err)
	}
	if !strings.HasPrefix(peer4, netlab.HAGWAN4+":") {
		t.Errorf("server saw %s for the IPv4 client, want hag's %s", peer4, netlab.HAGWAN4)
	}
	t.Logf("server saw the IPv6 client as %s and the IPv4 client as %s", peer6, peer4)
}

// uplinkDown reads hcpe's per-uplink received bytes (kernel subflow counters).
func (s *system) uplinkDown(t *testing.T) (dsl, lte float64) {
	return s.metric(t, s.lab.CPE, 9101, "hcpe_uplink_bytes_total", `uplink="dsl"`, `direction="down"`),
		s.metric(t, s.lab.CPE, 9101, "hcpe_uplink_bytes_total", `uplink="lte"`, `direction="down"`)
}

// testBonding: one bulk download at the default profiles carries at least
// 20 % of its bytes on each uplink, by the kernel's subflow counters.
func (s *system) testBonding(t *testing.T) {
	d0, l0 := s.uplinkDown(t)
	start := time.Now()
	const size = 40 << 20
	if _, _, err := s.download(s.ctx(t, 60*time.Second), netip.AddrPortFrom(server6, 8081), size, 3); err != nil {
		t.Fatal(err)
	}
	el := time.Since(start)
	time.Sleep(1200 * time.Millisecond) // one metrics poll
	d1, l1 := s.uplinkDown(t)
	dsl, lte := d1-d0, l1-l0
	sum := dsl + lte
	t.Logf("40 MiB in %v: %.1f Mbit/s goodput (links sum to 60); dsl %.1f%%, lte %.1f%% of %.1f MB on the subflows",
		el.Round(time.Millisecond), float64(size)*8/el.Seconds()/1e6, 100*dsl/sum, 100*lte/sum, sum/1e6)
	if sum < size*0.9 {
		t.Fatalf("subflow counters saw %.0f bytes of a %d-byte download", sum, size)
	}
	if dsl < 0.2*sum || lte < 0.2*sum {
		t.Errorf("an uplink carried less than 20%%: dsl %.0f, lte %.0f bytes", dsl, lte)
	}
}

// failMidDownload sets link down two seconds into a download that must
// still complete intact; it returns the longest receive gap.
func (s *system) failMidDownload(t *testing.T, link *netlab.Link, size uint64) time.Duration {
	ctx := s.ctx(t, 2*time.Minute)
	type result struct {
		gap time.Duration
		err error
	}
	done := make(chan result, 1)
	go func() {
		_, gap, err := s.download(ctx, netip.AddrPortFrom(server4, 8081), size, 4)
		done <- result{gap, err}
	}()
	time.Sleep(2 * time.Second)
	link.SetDown(true)
	t.Cleanup(func() { link.SetDown(false) })
	r := <-done
	if r.err != nil {
		t.Fatalf("download with %s down: %v", link.Name, r.err)
	}
	return r.gap
}

// The example hcpe.yaml's probe settings: an uplink is declared dead after
// 3 missed probes at probeInterval plus the last probe's timeout, and
// alive again after probeUpAfter answers.
const (
	probeInterval = 200 * time.Millisecond
	probeTimeout  = 300 * time.Millisecond
	probeUpAfter  = 2
	deadAfter     = 3*probeInterval + probeTimeout
)

// failoverBound is the longest receive gap a download may see when one
// uplink dies under it: the probes' detection time, then MPTCP's
// retransmission on the other subflow, which takes a few RTOs of the
// surviving path (RTO is at least 200 ms in Linux); the factor covers the
// backoff while the dead subflow still holds the data.
func failoverBound(rtt time.Duration) time.Duration {
	return deadAfter + 4*(200*time.Millisecond+rtt)
}

// linkRTT is the link's emulated round trip (netlab's fidelity tests hold
// the emulator to it).
func linkRTT(l *netlab.Link) time.Duration {
	return l.Profile(netlab.Upstream).Delay + l.Profile(netlab.Downstream).Delay
}

func (s *system) testDSLDown(t *testing.T) {
	gap := s.failMidDownload(t, s.lab.DSL, 30<<20)
	t.Logf("DSL down mid-download: completed intact; longest receive gap %v", gap.Round(time.Millisecond))
	if bound := failoverBound(linkRTT(s.lab.LTE)); gap > bound {
		t.Errorf("receive gap %v after DSL died, want at most %v (probe detection + retransmission on LTE)", gap, bound)
	}
	s.lab.DSL.SetDown(false)
	// Set up again, DSL carries traffic again.
	time.Sleep(time.Second)
	d0, _ := s.uplinkDown(t)
	if _, _, err := s.download(s.ctx(t, time.Minute), netip.AddrPortFrom(server4, 8081), 10<<20, 5); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1200 * time.Millisecond)
	d1, _ := s.uplinkDown(t)
	if d1-d0 < 1<<20 {
		t.Errorf("DSL carried %.0f bytes of a 10 MiB download after coming back", d1-d0)
	}
}

// testNewWithDSLDown: with DSL black-holing (interface up, nothing gets
// through), the probes declare it dead within a second and new connections
// start on LTE instead of waiting on DSL.
func (s *system) testNewWithDSLDown(t *testing.T) {
	s.lab.DSL.SetDown(true)
	t.Cleanup(func() { s.lab.DSL.SetDown(false) })
	down := time.Now()
	waitFor(t, "hcpe to see DSL dead", 3*time.Second, func() bool {
		return s.metric(t, s.lab.CPE, 9101, "hcpe_uplink_up", `uplink="dsl"`) == 0
	})
	detect := time.Since(down)
	t.Logf("DSL black-holed: declared dead after %v", detect.Round(time.Millisecond))
	// The example's probes: 3 misses at 200 ms plus a 300 ms timeout =
	// 900 ms. The metric is read through a scrape, whose latency this run
	// measures rather than assumes; one more probe interval absorbs a late
	// tick on a loaded machine.
	if bound := deadAfter + probeInterval + 2*s.scrapeLatency(t); detect > bound {
		t.Errorf("dead uplink detected after %v, want within %v (probe bound %v)", detect, bound, deadAfter)
	}
	for i := range 5 {
		start := time.Now()
		if _, err := s.upload(s.ctx(t, 10*time.Second), netip.AddrPortFrom(server6, 8080), 10000, uint64(100+i)); err != nil {
			t.Fatalf("new connection %d with DSL down: %v", i, err)
		}
		// A connection that tried DSL first would wait out a SYN RTO
		// (1 s) on it; over LTE it takes a few of LTE's RTTs.
		if el, bound := time.Since(start), time.Second+4*linkRTT(s.lab.LTE); el > bound {
			t.Errorf("new connection %d with DSL down took %v, want under %v", i, el, bound)
		}
	}
	s.lab.DSL.SetDown(false)
	waitFor(t, "hcpe to see DSL alive again", 5*time.Second, func() bool {
		return s.metric(t, s.lab.CPE, 9101, "hcpe_uplink_up", `uplink="dsl"`) == 1
	})
}

func (s *system) testLTEDown(t *testing.T) {
	gap := s.failMidDownload(t, s.lab.LTE, 30<<20)
	t.Logf("LTE down mid-download: completed over DSL; longest receive gap %v", gap.Round(time.Millisecond))
	if bound := failoverBound(linkRTT(s.lab.DSL)); gap > bound {
		t.Errorf("receive gap %v after LTE died, want at most %v (probe detection + retransmission on DSL)", gap, bound)
	}
}

// testRefusals: a closed port is refused in about one path RTT; an
// unroutable destination fails within hag's dial timeout, not a hang.
func (s *system) testRefusals(t *testing.T) {
	ctx := s.ctx(t, 30*time.Second)
	var slowest time.Duration // the slowest open port's setup
	for _, dst := range []netip.AddrPort{netip.AddrPortFrom(server4, 9), netip.AddrPortFrom(server6, 9)} {
		// The baseline: an open port on the same server, through hybridgw,
		// in this run. A refusal should come back as fast as an accept
		// does; a retry (the SYN RTO is 1 s) or a timeout would not.
		open := netip.AddrPortFrom(dst.Addr(), 8080)
		start := time.Now()
		c, err := s.dial(ctx, open)
		if err != nil {
			t.Fatalf("open port %s: %v", open, err)
		}
		baseline := time.Since(start)
		slowest = max(slowest, baseline)
		c.Close()
		start = time.Now()
		_, err = s.dial(ctx, dst)
		el := time.Since(start)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("closed port %s: %v, want ECONNREFUSED", dst, err)
		}
		if bound := 2*baseline + 2*linkRTT(s.lab.DSL); el > bound {
			t.Errorf("closed port %s refused after %v, want about the %v an open port took (bound %v)", dst, el, baseline, bound)
		}
		t.Logf("closed port %s: %v after %v", dst, err, el.Round(time.Millisecond))
	}
	hag, err := config.LoadHAG(configPath("hag.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, dst := range []netip.AddrPort{netip.MustParseAddrPort("203.0.113.99:80"), netip.MustParseAddrPort("[2001:db8:20::99]:80"), netip.MustParseAddrPort("[2001:db8:99::1]:80")} {
		start := time.Now()
		_, err := s.dial(ctx, dst)
		el := time.Since(start)
		if err == nil {
			t.Errorf("unroutable %s: connected", dst)
		} else if !errors.Is(err, syscall.EHOSTUNREACH) && !errors.Is(err, syscall.ENETUNREACH) {
			t.Errorf("unroutable %s: %v, want host or network unreachable", dst, err)
		}
		// hag gives up at its dial_timeout at the latest (neighbour
		// discovery gives up in ~3 s); the rest is what any connection
		// takes in this run.
		if bound := hag.Limits.DialTimeout + 2*slowest; el > bound {
			t.Errorf("unroutable %s: error after %v, want within hag's dial_timeout %v (bound %v)", dst, el, hag.Limits.DialTimeout, bound)
		}
		t.Logf("unroutable %s: %v after %v", dst, err, el.Round(time.Millisecond))
	}
}

// testStripped: a middlebox removing MPTCP options on DSL, then on both
// links: connections still work, and fallbacks are counted.
func (s *system) testStripped(t *testing.T) {
	strip := func(l *netlab.Link, on bool) {
		for _, d := range []linkem.Dir{netlab.Upstream, netlab.Downstream} {
			p := l.Profile(d)
			p.StripMPTCP = on
			l.SetProfile(d, p)
		}
	}
	t.Cleanup(func() { strip(s.lab.DSL, false); strip(s.lab.LTE, false) })
	f0 := s.metric(t, s.lab.CPE, 9101, "hcpe_mptcp_fallbacks_total")
	hf0 := s.metric(t, s.lab.HAG, 9102, "hag_mptcp_fallbacks_total")
	strip(s.lab.DSL, true)
	for i := 0; i < 3; i++ {
		if _, _, err := s.download(s.ctx(t, time.Minute), netip.AddrPortFrom(server6, 8081), 2<<20, 6); err != nil {
			t.Fatalf("MPTCP stripped on DSL: %v", err)
		}
	}
	strip(s.lab.LTE, true)
	for i := 0; i < 3; i++ {
		if _, _, err := s.download(s.ctx(t, time.Minute), netip.AddrPortFrom(server4, 8081), 2<<20, 7); err != nil {
			t.Fatalf("MPTCP stripped on both: %v", err)
		}
	}
	f1 := s.metric(t, s.lab.CPE, 9101, "hcpe_mptcp_fallbacks_total")
	hf := s.metric(t, s.lab.HAG, 9102, "hag_mptcp_fallbacks_total")
	t.Logf("fallbacks: hcpe +%.0f, hag +%.0f", f1-f0, hf-hf0)
	if f1-f0 < 3 {
		t.Errorf("hcpe counted %.0f fallbacks for 3 connections with MPTCP stripped on every link", f1-f0)
	}
	// hag accepts the same 3 connections without MP_CAPABLE: it must count
	// them too, or an operator cannot see a middlebox stripping MPTCP.
	if hf-hf0 < 3 {
		t.Errorf("hag counted %.0f fallbacks for 3 connections with MPTCP stripped on every link", hf-hf0)
	}
	// The SYN went out once and came back without MP_CAPABLE: a
	// middlebox, not lost SYNs or the kernel's blackhole detection.
	if other := f1 - s.metric(t, s.lab.CPE, 9101, "hcpe_mptcp_fallbacks_total", `reason="stripped"`); other != 0 {
		t.Errorf("%.0f fallbacks counted with a reason other than stripped", other)
	}
}

func (s *system) testLoss(t *testing.T) {
	p := s.lab.LTE.Profile(netlab.Downstream)
	old := p
	p.Loss = linkem.Loss{Model: linkem.LossBernoulli, P: 0.02}
	p.Seed = 42
	s.lab.LTE.SetProfile(netlab.Downstream, p)
	t.Cleanup(func() { s.lab.LTE.SetProfile(netlab.Downstream, old) })
	start := time.Now()
	if _, _, err := s.download(s.ctx(t, 2*time.Minute), netip.AddrPortFrom(server6, 8081), 20<<20, 8); err != nil {
		t.Fatalf("download with 2%% loss on LTE: %v", err)
	}
	t.Logf("20 MiB with 2%% loss on LTE: intact in %v", time.Since(start).Round(time.Millisecond))
}

// testHAGRestart: after hag restarts, new connections through hcpe work
// again as soon as hcpe's probes see hag answer: up_after probe intervals,
// one more for the tick in progress, and a probe timeout, measured from
// hag listening, plus what a connection takes in this run.
func (s *system) testHAGRestart(t *testing.T) {
	start := time.Now()
	if _, err := s.upload(s.ctx(t, 5*time.Second), netip.AddrPortFrom(server6, 8080), 1000, 9); err != nil {
		t.Fatalf("before the restart: %v", err)
	}
	baseline := time.Since(start)
	bound := (probeUpAfter+1)*probeInterval + probeTimeout + 2*baseline
	s.hag.stop(t)
	s.hag = startDaemon(t, s.lab.HAG, "hag", configPath("hag.yaml"))
	waitFor(t, "hag listening again", 10*time.Second, func() bool {
		out, _ := s.lab.HAG.Output("ss", "-Hltn", "sport", "= :5124")
		return strings.Count(out, "LISTEN") >= 2
	})
	back := time.Now()
	var err error
	for time.Since(back) < bound {
		if _, err = s.upload(s.ctx(t, 5*time.Second), netip.AddrPortFrom(server6, 8080), 1000, 9); err == nil {
			t.Logf("first connection through the restarted hag succeeded %v after it listened again (bound %v)", time.Since(back).Round(time.Millisecond), bound)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no connection through hcpe within %v of hag listening again (a connection took %v before): %v", bound, baseline, err)
}
