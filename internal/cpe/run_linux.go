package cpe

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"hybridgw/internal/metrics"
	"hybridgw/internal/mptcp/pm"
	"hybridgw/internal/netstack"
	"hybridgw/internal/tun"
)

// shutdownGrace is how long established flows may finish after SIGTERM
// before they are reset.
const shutdownGrace = 5 * time.Second

// Run intercepts LAN TCP until ctx is cancelled.
//
// Start order: remove what a crashed run left; set the path-manager limits;
// install uplink routing and endpoints; open the TUN; steer LAN TCP into
// it; start the netstack. Shutdown order is the reverse: stop admitting
// SYNs (new LAN connections get a RST from the kernel once steering is
// gone); let flows finish for a grace period; close the netstack (resetting
// what is left); remove steering; remove uplink rules, routes and
// endpoints; stop the metrics server.
func (c *CPE) Run(ctx context.Context) (err error) {
	p, err := pm.Open()
	if err != nil {
		return fmt.Errorf("opening the MPTCP path manager (is net.mptcp.enabled=1?): %w", err)
	}
	defer p.Close()
	c.ups = newUplinks(c.cfg, c.log, p)
	if err := c.ups.cleanStale(); err != nil {
		c.log.Warn("removing leftovers of an earlier run", "err", err)
	}
	// One extra subflow per other uplink and family is all hcpe opens; the
	// kernel caps this at 8.
	if err := p.SetLimits(pm.Limits{Subflows: uint32(min(8, 2*len(c.cfg.Uplinks))), AddAddrAccepted: 0}); err != nil {
		return fmt.Errorf("setting MPTCP path-manager limits: %w", err)
	}

	var wg sync.WaitGroup
	upCtx, stopUplinks := context.WithCancel(context.Background())
	upReady := make(chan struct{})
	wg.Add(1)
	go func() { defer wg.Done(); c.ups.run(upCtx, upReady) }()
	defer func() { stopUplinks(); wg.Wait() }()
	<-upReady

	c.health = newHealth(c)
	hctx, stopHealth := context.WithCancel(context.Background())
	wg.Add(1)
	go func() { defer wg.Done(); c.health.run(hctx) }()
	defer stopHealth()

	dev, err := tun.Open(c.cfg.TUN.Name, c.cfg.TUN.MTU)
	if err != nil {
		return fmt.Errorf("opening TUN %s: %w", c.cfg.TUN.Name, err)
	}
	c.relaxRPFilter()
	steer := &tun.Steering{
		LANs: c.cfg.LAN.Interfaces, Device: c.cfg.TUN.Name, Table: c.cfg.TUN.Table, Priority: c.cfg.TUN.RulePriority,
		BypassDst: c.cfg.Bypass.Dsts, BypassSrc: c.cfg.Bypass.Srcs,
	}
	for _, r := range c.cfg.Bypass.PortRanges {
		steer.BypassPorts = append(steer.BypassPorts, tun.PortRange{First: r.Lo, Last: r.Hi})
	}
	if err := steer.Install(); err != nil {
		dev.Close()
		return fmt.Errorf("steering LAN TCP into %s: %w", c.cfg.TUN.Name, err)
	}
	defer func() {
		if rerr := steer.Remove(); rerr != nil {
			c.log.Error("removing LAN steering", "err", rerr)
		}
	}()

	st, err := netstack.New(netstack.Config{
		Device: dev, MTU: c.cfg.TUN.MTU,
		Dial: c.dial, Handle: c.handle,
		MaxInFlight: c.cfg.Limits.HandshakesInFlight, MaxInFlightPerHost: c.cfg.Limits.HandshakesPerHost,
		MaxFlows:    c.cfg.Limits.Flows + c.cfg.Limits.HandshakesInFlight,
		DialTimeout: c.cfg.HAG.ConnectTimeout + time.Second,
		Logger:      c.log,
	})
	if err != nil {
		dev.Close()
		return fmt.Errorf("configuring the netstack: %w", err)
	}
	stackErr := make(chan error, 1)
	stackCtx, stopStack := context.WithCancel(context.Background())
	defer stopStack()
	wg.Add(1)
	go func() { defer wg.Done(); stackErr <- st.Run(stackCtx) }()

	metricsCtx, stopMetrics := context.WithCancel(context.Background())
	defer stopMetrics()
	merr := make(chan error, 1)
	wg.Add(1)
	go func() { defer wg.Done(); merr <- metrics.Serve(metricsCtx, c.cfg.Metrics.Listen, c.m.Registry, c.log) }()

	pollCtx, stopPoll := context.WithCancel(context.Background())
	defer stopPoll()
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var last netstack.Stats
		for {
			select {
			case <-pollCtx.Done():
				return
			case <-t.C:
				c.pollAll()
				s := st.Stats()
				c.m.NetstackDrops.WithLabelValues("handshakes").Add(float64(s.DropInFlight - last.DropInFlight))
				c.m.NetstackDrops.WithLabelValues("handshakes_per_host").Add(float64(s.DropPerHost - last.DropPerHost))
				c.m.NetstackDrops.WithLabelValues("flows").Add(float64(s.DropFlows - last.DropFlows))
				last = s
			}
		}
	}()

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
	st.StopAccepting()
	deadline := time.Now().Add(shutdownGrace)
	for st.Stats().Active > 0 && time.Now().Before(deadline) && ctx.Err() != nil {
		time.Sleep(50 * time.Millisecond)
	}
	if n := st.Stats().Active; n > 0 {
		c.log.Warn("resetting flows still open at shutdown", "flows", n)
	}
	stopStack()
	if serr := <-stackErr; serr != nil && !errors.Is(serr, context.Canceled) {
		err = errors.Join(err, serr)
	}
	stopPoll()
	stopMetrics()
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
