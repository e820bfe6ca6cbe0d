package e2e

import (
	"context"
	"encoding/json"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"hybridgw/internal/admin"
	"hybridgw/internal/mptcp"
	"hybridgw/internal/netlab"
)

// TestResync: every uplink down for 2.5 s while LAN flows start (a modem
// resync, a router boot), then up. With the kernel's defaults the MP_CAPABLE
// SYNs lost in the outage make the kernel declare an MPTCP blackhole and
// send every later connection as plain TCP for an hour (issue 23). hcpe
// owns net.mptcp.blackhole_timeout and syn_retrans_before_tcp_fallback, so
// every flow opened afterwards must be MPTCP with a subflow on each uplink,
// and the kernel's blackhole counters in hcpe's namespace must stay 0.
func TestResync(t *testing.T) {
	netlab.RequireRoot(t)
	sock := filepath.Join(t.TempDir(), "hcpe.sock")
	s := startSystem(t, "listen: /run/hcpe/admin.sock", "listen: "+sock)
	ext := func() map[string]uint64 {
		t.Helper()
		var m map[string]uint64
		if err := s.lab.CPE.Do(func() (err error) { m, err = mptcp.ReadExt(); return }); err != nil {
			t.Fatal(err)
		}
		return m
	}
	before := ext()
	fb0 := s.metric(t, s.lab.CPE, 9101, "hcpe_mptcp_fallbacks_total")

	links := []*netlab.Link{s.lab.DSL, s.lab.LTE}
	t.Cleanup(func() {
		for _, l := range links {
			l.SetDown(false)
		}
	})
	for _, l := range links {
		l.SetDown(true)
	}
	// Three LAN flows start inside the outage; whether each one survives
	// it is the LAN host's connect timeout's business, not this test's.
	var wg sync.WaitGroup
	for i, dst := range []netip.AddrPort{
		netip.AddrPortFrom(server4, 8081), netip.AddrPortFrom(server6, 8081), netip.AddrPortFrom(server4, 8081),
	} {
		wg.Go(func() {
			_, _, err := s.download(s.ctx(t, 30*time.Second), dst, 256<<10, uint64(100+i))
			t.Logf("flow %d started in the outage: %v", i, err)
		})
		time.Sleep(300 * time.Millisecond)
	}
	time.Sleep(2500*time.Millisecond - 600*time.Millisecond)
	for _, l := range links {
		l.SetDown(false)
	}
	wg.Wait()
	waitFor(t, "both uplinks alive again", 20*time.Second, func() bool {
		v, err := s.tryMetric(s.lab.CPE, 9101, "hcpe_uplink_up")
		return err == nil && v >= 2
	})

	mid := ext()
	t.Logf("after the outage: MPTcpExt Blackhole %d, MPCapableSYNTXDisabled %d", mid["Blackhole"], mid["MPCapableSYNTXDisabled"])

	// Flows opened afterwards: long downloads, looked at through `hcpe
	// flows` while they run.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var dl sync.WaitGroup
	defer dl.Wait()
	defer cancel()
	const n = 3
	for i := range n {
		dl.Go(func() { _, _, _ = s.download(ctx, netip.AddrPortFrom(server6, 8081), 1<<30, uint64(200+i)) })
	}
	var cf admin.CPEFlows
	waitFor(t, "3 flows in `hcpe flows`, each MPTCP with subflows on dsl and lte", 20*time.Second, func() bool {
		out, err := exec.Command(filepath.Join(binDir, "hcpe"), "flows", "-c", s.cpeConfig, "-o", "json").Output()
		if err != nil || json.Unmarshal(out, &cf) != nil || len(cf.Flows) != n {
			return false
		}
		for _, f := range cf.Flows {
			var ups []string
			for _, sf := range f.Subflows {
				ups = append(ups, sf.Uplink)
			}
			slices.Sort(ups)
			if !f.MPTCP || !slices.Equal(slices.Compact(ups), []string{"dsl", "lte"}) {
				return false
			}
		}
		return true
	})
	for _, f := range cf.Flows {
		t.Logf("after the resync: flow %d via %s, mptcp=%v, %d subflows", f.ID, f.Uplink, f.MPTCP, len(f.Subflows))
	}
	after := ext()
	t.Logf("MPTcpExt Blackhole %d→%d, MPCapableSYNTXDisabled %d→%d, hcpe fallbacks +%.0f",
		before["Blackhole"], after["Blackhole"], before["MPCapableSYNTXDisabled"], after["MPCapableSYNTXDisabled"],
		s.metric(t, s.lab.CPE, 9101, "hcpe_mptcp_fallbacks_total")-fb0)
	if after["Blackhole"] != 0 || after["MPCapableSYNTXDisabled"] != 0 {
		t.Errorf("the kernel declared an MPTCP blackhole in hcpe's namespace: %v", after)
	}
	if v := s.metric(t, s.lab.CPE, 9101, "hcpe_mptcp_kernel_blackholes"); v != 0 {
		t.Errorf("hcpe_mptcp_kernel_blackholes = %v", v)
	}
}
