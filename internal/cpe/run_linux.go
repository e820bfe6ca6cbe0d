package cpe

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"hybridgw/internal/config"
	"hybridgw/internal/memlimit"
	"hybridgw/internal/metrics"
	"hybridgw/internal/mptcp/pm"
	"hybridgw/internal/netstack"
	"hybridgw/internal/relay"
	"hybridgw/internal/trim"
	"hybridgw/internal/tun"
)

// Run intercepts LAN TCP until ctx is cancelled.
//
// Start order: remove what a crashed run left; set the path-manager limits;
// install uplink routing and endpoints; open the TUN; steer LAN TCP into
// it; start the netstack. Shutdown order is the reverse: stop admitting
// SYNs (new LAN connections get a RST from the kernel once steering is
// gone); let flows finish for limits.shutdown_grace; close the netstack
// (resetting what is left); stop the relays' epoll poller; stop the
// subflow poller and the metrics and admin
// servers; remove steering; stop the warm pool, health and uplinks (which
// removes uplink rules, routes and endpoints); close the path manager.
// The last steps are one deferred sequence, so that a start that fails
// half way undoes what it had done in the same order.
func (c *CPE) Run(ctx context.Context) (err error) {
	if err := c.ownSysctls(); err != nil {
		return err
	}
	p, err := pm.Open()
	if err != nil {
		return fmt.Errorf("opening the MPTCP path manager (is net.mptcp.enabled=1?): %w", err)
	}
	// Each stop function is a no-op until its part has started.
	nop := func() {}
	var wg sync.WaitGroup
	stopUplinks, stopHealth, stopPool, stopStack, stopMetrics, stopPoll := nop, nop, nop, nop, nop, nop
	stopRelays := nop
	steered := false
	defer func() {
		// The stop sequence. On the normal path the netstack was already
		// stopped below, after the flows' grace.
		stopStack()
		stopRelays() // after the stack: it has ended every flow
		stopPoll()
		stopMetrics() // metrics and admin
		if steered {
			c.reloadMu.Lock()
			if rerr := c.steer.Remove(); rerr != nil {
				c.log.Error("removing LAN steering", "err", rerr)
			}
			c.steer = nil
			c.reloadMu.Unlock()
		}
		// The pool dials over the uplinks and asks health which are
		// alive, so it stops (closing every warm connection) before
		// either does; uplinks remove their rules, routes and endpoints
		// as they stop.
		stopPool()
		stopHealth()
		stopUplinks()
		wg.Wait()
		p.Close()
	}()
	c.ups = newUplinks(c.cfg, c.log, p)
	if err := c.ups.cleanStale(); err != nil {
		c.log.Warn("removing leftovers of an earlier run", "err", err)
	}
	// One extra subflow per other uplink and family is all hcpe opens; the
	// kernel caps this at 8.
	if err := p.SetLimits(pm.Limits{Subflows: uint32(min(8, 2*len(c.cfg.Uplinks))), AddAddrAccepted: 0}); err != nil {
		return fmt.Errorf("setting MPTCP path-manager limits: %w", err)
	}

	upCtx, cancelUplinks := context.WithCancel(context.Background())
	stopUplinks = cancelUplinks
	upReady := make(chan struct{})
	wg.Go(func() { c.ups.run(upCtx, upReady) })
	<-upReady

	c.health = newHealth(c)
	c.withdrawals = newWithdrawals(c)
	hctx, cancelHealth := context.WithCancel(context.Background())
	stopHealth = cancelHealth
	wg.Go(func() { c.health.run(hctx) })
	if c.cfg.Policy.StallDetection {
		wg.Go(func() { c.watchStalls(hctx) })
	}

	c.pool = newWarmPool(c)
	if c.pool != nil {
		poolCtx, cancelPool := context.WithCancel(context.Background())
		stopPool = cancelPool
		wg.Go(func() { c.pool.run(poolCtx) })
	}

	dev, err := tun.Open(c.cfg.TUN.Name, c.cfg.TUN.MTU)
	if err != nil {
		return fmt.Errorf("opening TUN %s: %w", c.cfg.TUN.Name, err)
	}
	c.relaxRPFilter()
	// A crashed run may have left either steering slot behind.
	for slot := range 2 {
		if err := c.steering(slot, c.cfg.Bypass).CleanStale(); err != nil {
			c.log.Warn("removing stale LAN steering", "slot", slot, "err", err)
		}
	}
	c.steer = c.steering(0, c.cfg.Bypass)
	c.bypass = c.cfg.Bypass
	if err := c.steer.Install(); err != nil {
		dev.Close()
		return fmt.Errorf("steering LAN TCP into %s: %w", c.cfg.TUN.Name, err)
	}
	steered = true

	// The memory ceiling: the runtime's soft limit, and new LAN flows
	// refused while memory is near it.
	mem := memlimit.New(int64(c.cfg.Limits.MemoryLimitMB) << 20)
	memCtx, stopMem := context.WithCancel(context.Background())
	wg.Add(1)
	go func() { defer wg.Done(); mem.Run(memCtx, 250*time.Millisecond) }()
	defer stopMem()

	// The relays park idle flows on the poller; it runs until the stack
	// has ended every flow.
	if c.poller, err = relay.NewPoller(); err != nil {
		dev.Close()
		return err
	}
	stopRelays = func() { _ = c.poller.Close() }
	wg.Go(func() {
		if err := c.poller.Run(); err != nil {
			c.log.Error("relay poller stopped", "err", err)
		}
	})

	st, err := netstack.New(netstack.Config{
		Device: dev, MTU: c.cfg.TUN.MTU,
		Dial: c.dial, Start: c.start,
		MaxInFlight: c.cfg.Limits.HandshakesInFlight, MaxInFlightPerHost: c.cfg.Limits.HandshakesPerHost,
		MaxFlows:        c.cfg.Limits.Flows + c.cfg.Limits.HandshakesInFlight,
		MaxFlowsPerHost: c.cfg.Limits.FlowsPerHost,
		Overloaded:      mem.Tight,
		DialTimeout:     c.cfg.HAG.ConnectTimeout + time.Second,
		Logger:          c.log,
	})
	if err != nil {
		dev.Close()
		return fmt.Errorf("configuring the netstack: %w", err)
	}
	stackErr := make(chan error, 1)
	stackCtx, cancelStack := context.WithCancel(context.Background())
	stopStack = cancelStack
	wg.Go(func() { stackErr <- st.Run(stackCtx) })

	metricsCtx, cancelMetrics := context.WithCancel(context.Background())
	stopMetrics = cancelMetrics
	merr := make(chan error, 1)
	wg.Go(func() { merr <- metrics.Serve(metricsCtx, c.cfg.Metrics.Listen, c.m.Registry, c.log) })
	wg.Go(func() {
		if err := c.serveAdmin(metricsCtx); err != nil {
			c.log.Error("admin API unavailable", "err", err)
		}
	})

	pollCtx, cancelPoll := context.WithCancel(context.Background())
	stopPoll = cancelPoll
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var last netstack.Stats
		trimmer := trim.Trimmer{MinDrop: trimMinDrop}
		for {
			select {
			case <-pollCtx.Done():
				return
			case <-t.C:
				c.pollAll()
				c.mu.Lock()
				open := len(c.flows)
				c.mu.Unlock()
				trimmer.Observe(open)
				c.pollExt()
				s := st.Stats()
				c.m.NetstackDrops.WithLabelValues("handshakes").Add(float64(s.DropInFlight - last.DropInFlight))
				c.m.NetstackDrops.WithLabelValues("handshakes_per_host").Add(float64(s.DropPerHost - last.DropPerHost))
				c.m.NetstackDrops.WithLabelValues("flows").Add(float64(s.DropFlows - last.DropFlows))
				c.m.NetstackDrops.WithLabelValues("flows_per_host").Add(float64(s.RefusedPerHost - last.RefusedPerHost))
				c.m.NetstackDrops.WithLabelValues("memory").Add(float64(s.RefusedMemory - last.RefusedMemory))
				last = s
			}
		}
	})

	c.log.Info("intercepting LAN TCP", "tun", c.cfg.TUN.Name, "lan", c.cfg.LAN.Interfaces)
	close(c.ready)
	select {
	case <-ctx.Done():
	case err = <-stackErr:
		err = fmt.Errorf("netstack stopped: %w", err)
		stackErr <- nil
	case err = <-merr:
		merr <- nil
	}
	// Stop admitting SYNs, give the open flows their grace (only on a
	// requested stop, not when the netstack or metrics failed), then close
	// the netstack, which resets what is left. The deferred sequence does
	// the rest.
	st.StopAccepting()
	deadline := time.Now().Add(c.cfg.Limits.ShutdownGrace)
	for st.Stats().Active > 0 && time.Now().Before(deadline) && ctx.Err() != nil {
		time.Sleep(50 * time.Millisecond) // the netstack has no drain event to wait on
	}
	if n := st.Stats().Active; n > 0 {
		c.log.Warn("resetting flows still open at shutdown", "flows", n)
	}
	stopStack()
	if serr := <-stackErr; serr != nil && !errors.Is(serr, context.Canceled) {
		err = errors.Join(err, serr)
	}
	return err
}

// pickPath chooses hag's address and the initial subflow's source for a
// new flow: the first configured hag address for whose family a live
// uplink has an address.
func (c *CPE) pickPath() (hag netip.AddrPort, local netip.Addr, uplink string, ok bool) {
	first := c.health.first()
	for _, a := range c.cfg.HAG.Addrs {
		if src, name, found := c.ups.source(a.Is6(), first, c.health.usable); found {
			return netip.AddrPortFrom(a, uint16(c.cfg.HAG.Port)), src, name, true
		}
	}
	return netip.AddrPort{}, netip.Addr{}, "", false
}

// relaxRPFilter turns reverse-path filtering off on the TUN. The TUN has no
// IPv4 address, and the kernel's reverse-path check drops every packet from
// an address-less interface whose source is not routed back through it: the
// netstack's ICMP unreachables to LAN hosts would vanish (TCP survives only
// because its reverse lookup matches the ipproto-tcp steering rule). The
// effective value is the maximum of "all" and the interface's, so a router
// with conf.all.rp_filter set still drops them: say so.
func (c *CPE) relaxRPFilter() {
	p := "/proc/sys/net/ipv4/conf/" + c.cfg.TUN.Name + "/rp_filter"
	if err := os.WriteFile(p, []byte("0"), 0o644); err != nil {
		c.log.Warn("could not turn off rp_filter on the TUN; ICMP unreachables to LAN hosts may be dropped", "path", p, "err", err)
	}
	if b, err := os.ReadFile("/proc/sys/net/ipv4/conf/all/rp_filter"); err == nil && strings.TrimSpace(string(b)) != "0" {
		c.log.Warn("net.ipv4.conf.all.rp_filter is not 0: LAN hosts will not see ICMP unreachables for refused IPv4 flows and wait for their connect timeout instead",
			"value", strings.TrimSpace(string(b)))
	}
}

// steering builds the LAN steering for a slot. Two slots with their own
// table and rule priorities let a reload install the new bypass rules
// before removing the old ones, so LAN TCP is never unsteered in between.
func (c *CPE) steering(slot int, b config.Bypass) *tun.Steering {
	st := &tun.Steering{
		LANs: c.cfg.LAN.Interfaces, Device: c.cfg.TUN.Name,
		Table: c.cfg.TUN.Table + steeringSlotTable*slot, Priority: c.cfg.TUN.RulePriority + 3*slot,
		BypassDst: b.Dsts, BypassSrc: b.Srcs,
	}
	for _, r := range b.PortRanges {
		st.BypassPorts = append(st.BypassPorts, tun.PortRange{First: r.Lo, Last: r.Hi})
	}
	if b.Uplink != "" {
		// hcpe's own table, which health keeps on a live uplink.
		st.NativeTable = c.cfg.TUN.Table + config.NativeTableOffset
	}
	return st
}

// steeringSlotTable separates the second steering slot's routing table
// from the first (tun.table + 100; config validation keeps uplink tables
// off it).
const steeringSlotTable = config.SteeringSlotTable

// Reload applies a changed config file to the running hcpe: uplink roles,
// nominal rates and policy thresholds at once, bypass rules by swapping
// steering slots. Established flows are untouched. An invalid file is
// refused with every problem and the running config stays in force;
// settings that need a restart (interfaces, TUN, hag, limits, listeners)
// are reported and left as they are.
func (c *CPE) Reload(path string) error {
	_, err := c.reload(path)
	return err
}

// reload is Reload that also returns the settings left for a restart.
func (c *CPE) reload(path string) (notApplied []string, err error) {
	nc, err := config.LoadHCPE(path)
	if err != nil {
		return nil, fmt.Errorf("new config refused, the running one stays in force:\n%w", err)
	}
	c.reloadMu.Lock()
	defer c.reloadMu.Unlock()
	if c.steer == nil {
		return nil, errors.New("hcpe is not running")
	}
	notApplied = restartOnly(c.cfg, nc)
	if len(notApplied) > 0 {
		c.log.Warn("reload: these settings need a restart and were not applied", "fields", notApplied)
	}
	// Uplinks are matched by name; a reload cannot add or remove one.
	roles := make([]config.Uplink, len(c.cfg.Uplinks))
	copy(roles, c.cfg.Uplinks)
	for i := range roles {
		for _, nu := range nc.Uplinks {
			if nu.Name == roles[i].Name {
				roles[i].Role, roles[i].DownBps, roles[i].UpBps = nu.Role, nu.DownBps, nu.UpBps
			}
		}
	}
	c.health.setPolicy(roles, nc.Policy)
	c.health.setNativeUplink(nc.Bypass.Uplink)
	if !sameBypass(c.bypass, nc.Bypass) {
		next := c.steering(1-c.slot, nc.Bypass)
		if err := next.Install(); err != nil {
			return notApplied, fmt.Errorf("installing the new bypass rules (the old ones stay): %w", err)
		}
		if err := c.steer.Remove(); err != nil {
			c.log.Warn("reload: removing the old steering", "err", err)
		}
		c.steer, c.slot, c.bypass = next, 1-c.slot, nc.Bypass
	}
	c.log.Info("config reloaded", "config", path, "bypass_destinations", len(nc.Bypass.Dsts), "bypass_ports", len(nc.Bypass.PortRanges), "bypass_uplink", nc.Bypass.Uplink,
		"bypass_sources", len(nc.Bypass.Srcs), "steering_slot", c.slot)
	return notApplied, nil
}

func sameBypass(a, b config.Bypass) bool {
	return slices.Equal(a.Dsts, b.Dsts) && slices.Equal(a.Srcs, b.Srcs) && slices.Equal(a.PortRanges, b.PortRanges) && a.Uplink == b.Uplink
}

// restartOnly names the settings that differ and that a reload cannot
// apply. TestReloadClassifiesEveryField keeps it complete: a config field
// is either here or applied by reload.
func restartOnly(old, nw *config.HCPE) []string {
	var out []string
	if !slices.Equal(old.LAN.Interfaces, nw.LAN.Interfaces) {
		out = append(out, "lan")
	}
	if old.TUN != nw.TUN {
		out = append(out, "tun")
	}
	if len(old.Uplinks) != len(nw.Uplinks) {
		out = append(out, "uplinks (count)")
	} else {
		for i := range old.Uplinks {
			o, n := old.Uplinks[i], nw.Uplinks[i]
			if o.Name != n.Name || o.Interface != n.Interface || !slices.Equal(o.Addresses, n.Addresses) ||
				!slices.Equal(o.Gateways, n.Gateways) || o.Table != n.Table || o.Probe != n.Probe {
				out = append(out, fmt.Sprintf("uplinks[%d]", i))
			}
		}
	}
	if !slices.Equal(old.HAG.Addresses, nw.HAG.Addresses) || old.HAG.Port != nw.HAG.Port || old.HAG.CPEID != nw.HAG.CPEID ||
		string(old.HAG.KeyRaw) != string(nw.HAG.KeyRaw) || old.HAG.KeyID != nw.HAG.KeyID || old.HAG.ConnectTimeout != nw.HAG.ConnectTimeout || old.HAG.FastOpen != nw.HAG.FastOpen {
		out = append(out, "hag")
	}
	if old.Limits != nw.Limits {
		out = append(out, "limits")
	}
	if old.Pool != nw.Pool {
		out = append(out, "pool")
	}
	if old.Metrics != nw.Metrics || old.Admin != nw.Admin || old.Log != nw.Log {
		out = append(out, "metrics/admin/log")
	}
	return out
}

// trimMinDrop is how many flows must close before hcpe hands their memory
// back to the kernel at once (internal/trim): about 50 MB at 1,000 idle
// flows (make bench figure 5), while a household's ordinary churn of a few
// dozen flows never forces a collection.
const trimMinDrop = 256
