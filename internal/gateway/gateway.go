// Package gateway assembles hag: MPTCP listeners, the Convert server,
// authorisation, the dial to the server and the relay, with its metrics.
//
// One accepted connection is one flow: read the Convert message under a
// deadline, decide (decide.go: which CPE, which destination, which source),
// dial the server, answer, relay. Every refusal is an Error TLV with the
// RFC 8803 code followed by a normal close, and one log line saying why.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"

	"sync"
	"sync/atomic"
	"time"

	"hybridgw/internal/config"
	"hybridgw/internal/convert"
	"hybridgw/internal/metrics"
	"hybridgw/internal/mptcp"
	"hybridgw/internal/probe"
	"hybridgw/internal/relay"
	"hybridgw/internal/replay"
	"hybridgw/internal/trim"
)

// Gateway is one hag instance.
type Gateway struct {
	conf     atomic.Pointer[config.HAG] // the config in force; a reload swaps it (reload.go)
	reloadMu sync.Mutex                 // one reload at a time
	log      *slog.Logger
	m        *metrics.HAG
	lim      *limiter
	src      *sourceSlots
	replay   *replay.Filter // cookies accepted within their validity, each accepted once

	handshakes atomic.Int64
	flowSeq    atomic.Uint64

	mu        sync.Mutex
	live      map[*relay.Counters]struct{}
	doneBytes [2]int64 // to_server, to_client of finished flows
	own       *ownSet
	reg       registry // flows and CPEs for the admin API (admin.go)
	pool      poolGate // hcpe's warm connections before their first byte (pool.go)
	poller    *relay.Poller

	joins joinGuard // relayed flows whose subflows are checked (joins.go)

	ready chan struct{} // closed once the listeners are up
	addrs []net.Addr
}

// New checks what the config alone cannot tell and starts nothing.
func New(cfg *config.HAG, log *slog.Logger) (*Gateway, error) {
	g := &Gateway{log: log, lim: newLimiter(cfg.Limits), src: newSourceSlots(cfg.Limits.HandshakesPerSource), live: map[*relay.Counters]struct{}{}, ready: make(chan struct{}),
		replay: replay.New(cfg.Limits.CookieReplayEntries, cfg.Limits.CookieMaxSkew)}
	g.conf.Store(cfg)
	g.m = metrics.NewHAG(g.bytes)
	g.m.SetCookieReplayEntries(func() float64 { return float64(g.replay.Len()) })
	return g, nil
}

// cfg is the config in force. A flow reads it afresh at each step, so a
// reload applies to the next decision of flows already in their handshake.
func (g *Gateway) cfg() *config.HAG { return g.conf.Load() }

// Summary is what hag logs about its config at start.
func Summary(c *config.HAG) []any {
	return []any{"listen", c.Listen.Addresses, "port", c.Listen.Port, "cpes", len(c.CPEs),
		"egress_v4", c.Egress.IPv4, "egress_v6", c.Egress.IPv6}
}

// Metrics is hag's registry, for tests and the admin API.
func (g *Gateway) Metrics() *metrics.HAG { return g.m }

// Ready is closed once hag accepts connections.
func (g *Gateway) Ready() <-chan struct{} { return g.ready }

// Addrs are the listeners' addresses (valid after Ready).
func (g *Gateway) Addrs() []net.Addr { return g.addrs }

func (g *Gateway) bytes(dir string) float64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	i := 0
	if dir == "to_client" {
		i = 1
	}
	n := g.doneBytes[i]
	for c := range g.live {
		if i == 0 {
			n += c.AtoB.Load()
		} else {
			n += c.BtoA.Load()
		}
	}
	return float64(n)
}

// Run serves until ctx is cancelled.
//
// Shutdown order: stop accepting (close listeners, wait for the accept
// loops); let relayed flows run for limits.shutdown_grace; cancel the rest
// (a cancelled relay resets both sides, so neither takes the cut stream for
// complete) and wait for every handler and relay. Then, as the defers
// unwind: stop the relays' poller; stop the metrics and admin servers and
// the trimmer; stop the probe servers; stop watching hag's own addresses;
// remove the transparent-socket routing. Each part's goroutines are waited
// for before the next part stops.
func (g *Gateway) Run(ctx context.Context) (err error) {
	if g.cfg().Listen.FastOpen {
		if err := mptcp.EnsureFastOpenServer(); err != nil {
			return fmt.Errorf("enabling TCP Fast Open for the Convert message in the SYN: %w", err)
		}
	}
	if g.cfg().Listen.FastOpenNoCookieUnsafe {
		g.log.Warn("listen.fast_open_no_cookie_unsafe is set: SYN data is read before the client proved its address; requests are still authorised only after the handshake, but spoofed SYNs hold handshake slots")
	}
	if g.cfg().Egress.IPv4 == "preserve" || g.cfg().Egress.IPv6 == "preserve" {
		if g.cfg().Transparent.Install {
			tp, err := installTransparent(g.cfg().Transparent)
			if err != nil {
				return fmt.Errorf("egress preserve needs transparent-socket routing: %w", err)
			}
			g.log.Info("transparent-socket routing installed", "mark", g.cfg().Transparent.Mark, "table", g.cfg().Transparent.Table)
			defer func() {
				if err := tp.remove(); err != nil {
					g.log.Error("removing transparent-socket routing", "err", err)
				}
			}()
		}
	}
	g.own = newOwnSet()
	watchCtx, stopWatch := context.WithCancel(context.Background())
	var wwg sync.WaitGroup
	defer func() { stopWatch(); wwg.Wait() }()
	watching := make(chan struct{})
	wwg.Go(func() {
		if err := g.own.watch(watchCtx, watching); err != nil {
			g.log.Error("hag's own addresses are no longer tracked; addresses added from now on are not refused as destinations", "err", err)
		}
	})
	<-watching
	joinsWatched := make(chan struct{})
	wwg.Go(func() {
		if err := g.watchJoins(watchCtx, joinsWatched); err != nil {
			g.log.Error("subflows are checked against wan_prefixes only when a flow starts, not as they join (hag needs CAP_NET_ADMIN for the MPTCP path-manager events)", "err", err)
		}
	})
	<-joinsWatched

	var lns []*net.TCPListener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for _, a := range g.cfg().Listen.Addrs {
		addr := netip.AddrPortFrom(a, uint16(g.cfg().Listen.Port)).String()
		network := "tcp6"
		if a.Is4() {
			network = "tcp4"
		} else if a.IsUnspecified() {
			network = "tcp" // "::" is dual-stack
		}
		ln, err := mptcp.Listen(ctx, network, addr, mptcp.ListenOptions{FastOpen: fastOpenMode(g.cfg().Listen)})
		if err != nil {
			return fmt.Errorf("listening on %s: %w", addr, err)
		}
		lns = append(lns, ln)
		g.addrs = append(g.addrs, ln.Addr())
		g.own.set(a, true)
		g.log.Info("listening", "addr", ln.Addr().String(), "mptcp", true, "tfo", g.cfg().Listen.FastOpen, "tfo_without_cookie", g.cfg().Listen.FastOpenNoCookieUnsafe)
	}

	// Health probes from CPEs arrive on the same addresses and port, over
	// UDP (internal/probe); only CPEs with a key can be answered, under
	// any of their keys during a rotation.
	probes := &probe.Server{Keys: func(id string) [][]byte {
		c := g.cfg().CPEByID(id)
		if c == nil {
			return nil
		}
		keys := make([][]byte, len(c.CookieKeys))
		for i, k := range c.CookieKeys {
			keys[i] = k.Raw
		}
		return keys
	}}
	probeCtx, stopProbes := context.WithCancel(context.Background())
	var pwg sync.WaitGroup
	defer func() { stopProbes(); pwg.Wait() }()
	for _, a := range g.cfg().Listen.Addrs {
		network := "udp6"
		if a.Is4() {
			network = "udp4"
		} else if a.IsUnspecified() {
			network = "udp"
		}
		uc, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, uint16(g.cfg().Listen.Port))))
		if err != nil {
			return fmt.Errorf("listening for health probes on %s: %w", a, err)
		}
		pwg.Go(func() {
			defer uc.Close()
			if err := probes.Serve(probeCtx, uc); err != nil {
				g.log.Error("probe server stopped", "addr", uc.LocalAddr().String(), "err", err)
			}
		})
	}

	metricsCtx, stopMetrics := context.WithCancel(context.Background())
	var mwg sync.WaitGroup
	merr := make(chan error, 1)
	mwg.Go(func() {
		if err := metrics.Serve(metricsCtx, g.cfg().Metrics.Listen, g.m.Registry, g.log); err != nil {
			merr <- err
		}
	})
	mwg.Go(func() {
		if err := g.serveAdmin(metricsCtx); err != nil {
			g.log.Error("admin API unavailable", "err", err)
		}
	})
	mwg.Go(func() { g.trimLoop(metricsCtx) })
	defer func() { stopMetrics(); mwg.Wait() }()

	// The relays park idle flows on the poller; it runs until every flow
	// has drained (the deferred Close runs after that, below).
	if g.poller, err = relay.NewPoller(); err != nil {
		return err
	}
	var rwg sync.WaitGroup
	defer func() { g.poller.Close(); rwg.Wait() }()
	rwg.Go(func() {
		if err := g.poller.Run(); err != nil {
			g.log.Error("relay poller stopped", "err", err)
		}
	})

	flowCtx, cancelFlows := context.WithCancel(context.Background())
	defer cancelFlows()
	var flows sync.WaitGroup
	var accepts sync.WaitGroup
	for _, ln := range lns {
		accepts.Go(func() { g.acceptLoop(ln, flowCtx, &flows) })
	}
	close(g.ready)

	select {
	case <-ctx.Done():
	case err = <-merr:
	}
	g.log.Info("stopping: no new connections", "flows_active", g.activeFlows(), "grace", g.cfg().Limits.ShutdownGrace)
	for _, ln := range lns {
		ln.Close()
	}
	accepts.Wait()
	drained := make(chan struct{})
	go func() { flows.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(g.cfg().Limits.ShutdownGrace):
		g.log.Warn("shutdown grace over; closing remaining flows", "flows_active", g.activeFlows())
		cancelFlows()
		<-drained
	}
	return err
}

// trimMinDrop is how many flows must close before hag hands their memory
// back to the kernel at once (internal/trim): about 24 MB at 1,000 idle
// flows (make bench figure 5); smaller dips do not force a collection.
const trimMinDrop = 256

// trimLoop releases freed memory once a second after a wave of flows has
// closed, until ctx ends.
func (g *Gateway) trimLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	trimmer := trim.Trimmer{MinDrop: trimMinDrop}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			trimmer.Observe(g.activeFlows())
		}
	}
}

func (g *Gateway) activeFlows() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.live)
}

func (g *Gateway) acceptLoop(ln *net.TCPListener, ctx context.Context, flows *sync.WaitGroup) {
	for {
		c, err := ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and friends: back off instead of spinning.
			g.log.Error("accept failed", "listener", ln.Addr().String(), "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		flows.Add(1)
		go func() {
			if !g.serve(ctx, c, flows.Done) {
				flows.Done()
			}
		}()
	}
}

func (g *Gateway) isOwn(a netip.Addr) bool { return g.own.has(a) }

// fastOpenMode is the listener's Fast Open setting: off unless configured,
// and without the RFC 7413 cookie only when the operator said so by name.
func fastOpenMode(l config.HAGListen) mptcp.FastOpenMode {
	switch {
	case !l.FastOpen:
		return mptcp.FastOpenOff
	case l.FastOpenNoCookieUnsafe:
		return mptcp.FastOpenNoCookie
	}
	return mptcp.FastOpenCookie
}

// busy turns away a connection that a handshake bound refused: counted as
// a limit hit and a refusal, answered Resource Exceeded with hag's back-off.
func (g *Gateway) busy(conn *net.TCPConn, log *slog.Logger, reason, why string) {
	g.m.LimitHits.WithLabelValues("handshakes").Inc()
	g.refused(log, reason, why)
	r := refuse(convert.ResourceExceeded, why)
	r.tlv = convert.NewError(convert.ResourceExceeded, backOffSeconds(g.cfg().Limits.ResourceBackoff))
	g.answer(conn, log, r)
}

// refused counts and logs one refusal by reason (hag_refusals_total).
func (g *Gateway) refused(log *slog.Logger, reason, why string) {
	g.m.Refusals.WithLabelValues(reason).Inc()
	log.Warn("refused", "reason", reason, "why", why)
}

// serve runs one flow from accept to close, in phases: hold a handshake
// slot, read the request, make sure the client's handshake completed (its
// source address is proven), decide, connect, run the flow. It returns
// true once the flow runs in a relay, which then owns the connections and
// the flow's slot and calls end when the flow is over; no goroutine waits
// for it. Otherwise the flow is over when serve returns.
func (g *Gateway) serve(ctx context.Context, conn *net.TCPConn, end func()) (relaying bool) {
	defer func() {
		if !relaying {
			conn.Close()
		}
	}()
	id := g.flowSeq.Add(1)
	peer := addrPortOf(conn.RemoteAddr())
	log := g.log.With("flow", id, "peer", peer.String())
	if !g.awaitFirstByte(ctx, conn, peer, log) {
		return
	}

	g.m.HandshakesInFlight.Inc()
	n := g.handshakes.Add(1)
	handshakeDone := sync.OnceFunc(func() { g.handshakes.Add(-1); g.m.HandshakesInFlight.Dec() })
	defer handshakeDone()
	// A refused connection gives its slot back before it is answered:
	// the answer takes up to a second (closeGently), and one host's
	// refused flood must not hold the slots that other sources need.
	if n > int64(g.cfg().Limits.HandshakesInFlight) {
		handshakeDone()
		g.busy(conn, log, "handshake_limit", "too many handshakes in flight")
		return
	}
	srcDone := g.src.take(peer.Addr())
	if srcDone == nil {
		handshakeDone()
		g.busy(conn, log, "handshake_limit_source", "too many handshakes in flight from this source")
		return
	}
	defer srcDone()

	isMPTCP, err := mptcp.Check(conn)
	if err == nil && !isMPTCP {
		g.m.MPTCPFallbacks.Inc()
		log.Info("client connection is plain TCP (MPTCP fell back or was not offered)")
	}

	m, ok := g.readRequest(conn, log)
	if !ok {
		return
	}
	// With Fast Open the request may have come in the SYN, before the
	// client proved it owns its address: nothing is decided, dialled or
	// written until the third ACK has arrived (RFC 8803 §9, RFC 7413 §5).
	if !g.proveSource(conn, log) {
		return
	}
	if !m.Has(convert.TypeConnect) {
		// Info alone asks which TCP extensions hag supports (§6.2.3).
		reply := convert.Msg{SupportedExt: supportedOptions[:]}
		_ = convert.WriteMsg(conn, &reply)
		g.m.Flows.WithLabelValues("info").Inc()
		closeGently(conn)
		return
	}
	log = log.With("dst", m.Connect.Dst.String())

	p, r := g.decide(peer, &m)
	if r != nil {
		g.answer(conn, log, r)
		return
	}
	defer func() {
		if !relaying {
			p.release()
		}
	}()
	log = log.With("cpe", p.cpe.ID)
	if p.cookie != nil {
		log = log.With("key_id", p.cookie.KeyID)
	}

	sconn, start, ok := g.connect(ctx, conn, p, log)
	if !ok {
		return
	}
	handshakeDone()
	srcDone()
	g.runFlow(ctx, conn, sconn, flowInfo{id: id, peer: peer, m: &m, plan: p, mptcp: isMPTCP, start: start}, log, func() {
		p.release()
		end()
	})
	return true
}

// readRequest reads the Convert message under the read deadline. A bad
// message is answered (or reset, where the RFC says so) here; ok is false
// then and the connection is done.
func (g *Gateway) readRequest(conn *net.TCPConn, log *slog.Logger) (m convert.Msg, ok bool) {
	var buf [convert.MaxMsgLen]byte
	// Deadline setters fail only on a closed conn, and the I/O after them
	// then fails and says so; the same throughout this file.
	_ = conn.SetReadDeadline(time.Now().Add(g.cfg().Limits.ConvertReadTimeout))
	m, raw, err := convert.ReadRequest(conn, buf[:])
	if err == nil {
		_ = conn.SetReadDeadline(time.Time{})
		return m, true
	}
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.As(err, &ne) && ne.Timeout():
		// Nobody to answer: the client left or never spoke.
		log.Info("no Convert message", "err", err)
		g.m.Flows.WithLabelValues("no_request").Inc()
		return m, false
	}
	if em, ok := convert.ErrorReply(err, raw); ok {
		code, _ := convert.CodeOf(err)
		log.Warn("bad Convert message", "code", code.String(), "err", err)
		g.countRefusal(code)
		if !g.proveSource(conn, log) {
			return m, false
		}
		_ = conn.SetWriteDeadline(time.Now().Add(g.cfg().Limits.ConvertReadTimeout))
		_ = convert.WriteMsg(conn, &em)
		closeGently(conn)
		return m, false
	}
	log.Warn("Convert message asks for a reset", "err", err)
	g.m.Flows.WithLabelValues("reset").Inc()
	// SetLinger fails only on a closed conn, which has nothing to reset.
	_ = conn.SetLinger(0)
	return m, false
}

// proveSource waits, bounded by the Convert deadline, until the client's
// handshake has completed, so that its source address is proven and hag
// may write. A connection that never gets there (a blind spoofer's SYN
// with data) is refused without a word and reset.
func (g *Gateway) proveSource(conn *net.TCPConn, log *slog.Logger) bool {
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg().Limits.ConvertReadTimeout)
	defer cancel()
	if err := mptcp.WaitEstablished(ctx, conn); err != nil {
		g.refused(log, "handshake_unproven", err.Error())
		_ = conn.SetLinger(0) // fails only on a closed conn: nothing to reset
		return false
	}
	return true
}

// plan is what decide admits: the CPE, the destination, the source to dial
// from, the cookie that authorised it (nil for source authorisation), and
// the limiter slot to give back when the flow ends.
type plan struct {
	cpe     *config.CPE
	dst     netip.AddrPort
	src     source
	cookie  *convert.Cookie
	release func()
}

// decide runs the refusal checks in order (decide.go) and takes a limiter
// slot; it returns a plan or the refusal to answer with. One config
// snapshot decides the whole request, so a reload never mixes two.
func (g *Gateway) decide(peer netip.AddrPort, m *convert.Msg) (plan, *refusal) {
	cfg, now := g.cfg(), time.Now()
	dst := m.Connect.Dst
	cpe, ck, r := authorize(cfg, peer.Addr(), m, now)
	if r != nil {
		return plan{}, r
	}
	// A replay is turned away before it takes one of the CPE's new-flow
	// tokens; the check that counts is useCookie's, below, which is atomic.
	if ck != nil && g.replay.Seen(ck.Tag, ck.Issued) {
		return plan{}, replayed(ck)
	}
	if r = checkDestination(dst.Addr(), g.isOwn, cfg.Allow.Prefixes, cfg.Deny.Prefixes); r != nil {
		return plan{}, r
	}
	if r = checkOptions(m.Connect.Options); r != nil {
		return plan{}, r
	}
	src, r := chooseSource(cfg, cpe, peer.Addr(), m)
	if r != nil {
		return plan{}, r
	}
	release, limit := g.lim.acquire(cpe.ID, now)
	if limit != "" {
		g.m.LimitHits.WithLabelValues(limit).Inc()
		r = refuse(convert.ResourceExceeded, "limit "+limit+" reached")
		r.tlv = convert.NewError(convert.ResourceExceeded, backOffSeconds(cfg.Limits.ResourceBackoff))
		return plan{}, r
	}
	// Remembered only once admitted: a CPE then holds at most its burst
	// plus its rate times the window in the filter.
	if ck != nil {
		if r = useCookie(g.replay, ck, now, cfg.Limits.ResourceBackoff); r != nil {
			release()
			return plan{}, r
		}
	}
	return plan{cpe: cpe, dst: dst, src: src, cookie: ck, release: release}, nil
}

// connect dials the server and, once it accepted, writes the Convert reply
// as the first bytes to the client (hcpe holds the LAN handshake until it
// arrives). ok is false when the flow is over (refused or client gone).
func (g *Gateway) connect(ctx context.Context, conn *net.TCPConn, p plan, log *slog.Logger) (sconn *net.TCPConn, start time.Time, ok bool) {
	start = time.Now()
	sconn, err := dialServer(ctx, p.dst, p.src, g.cfg().Limits.DialTimeout)
	if err != nil {
		g.m.DialDuration.WithLabelValues("error").Observe(time.Since(start).Seconds())
		g.answer(conn, log.With("src", p.src.Addr.String()), dialRefusal(err, p.dst.Addr()))
		return nil, start, false
	}
	g.m.DialDuration.WithLabelValues("ok").Observe(time.Since(start).Seconds())
	g.waitEstablished(conn, log)
	reply := convert.Msg{}
	if err := convert.WriteMsg(conn, &reply); err != nil {
		log.Info("client gone before the reply", "err", err)
		g.m.Flows.WithLabelValues("client_gone").Inc()
		sconn.Close()
		return nil, start, false
	}
	return sconn, start, true
}

// flowInfo is what runFlow logs and shows on the admin API.
type flowInfo struct {
	id    uint64
	peer  netip.AddrPort
	m     *convert.Msg
	plan  plan
	mptcp bool
	start time.Time
}

// runFlow starts relaying an answered flow and returns; when the relay
// ends, its accounting runs and then end. Nothing of the Convert message is
// kept for the flow's life but what the admin API shows.
func (g *Gateway) runFlow(ctx context.Context, conn, sconn *net.TCPConn, f flowInfo, log *slog.Logger, end func()) {
	g.m.Flows.WithLabelValues("ok").Inc()
	if lw := g.cfg().Limits.NotSentLowat; lw > 0 {
		// Bounds what queues per flow in hag: without it a fast server
		// fills tens of MB of send buffer towards a slow uplink. It
		// fails only on a socket already closed (the relay then ends at
		// once) or a kernel without the option (pre-3.12, which has no
		// usable MPTCP either), so the error is not worth a flow.
		_ = mptcp.SetNotSentLowat(conn, lw)
		_ = mptcp.SetNotSentLowat(sconn, lw)
	}
	local := addrPortOf(sconn.LocalAddr())
	log.Info("flow open", "src", local.String(), "preserved", f.plan.src.Preserved, "mptcp", f.mptcp, "dial", time.Since(f.start).Round(time.Microsecond).String())

	unguard := g.guardJoins(conn, f.plan.cpe, f.peer, log)
	smp := startSubflowSampler(conn)
	ctr := new(relay.Counters)
	g.mu.Lock()
	g.live[ctr] = struct{}{}
	g.mu.Unlock()
	untrack := g.reg.track(trackedFlow{id: f.id, cpe: f.plan.cpe.ID, peer: f.peer, client: f.m.ClientAddr, dst: f.plan.dst, src: local, preserved: f.plan.src.Preserved, mptcp: f.mptcp, conn: conn, ctr: ctr})
	g.m.FlowsActive.Inc()
	start := f.start
	relay.Start(ctx, conn, sconn, relay.Options{IdleTimeout: g.cfg().Limits.IdleTimeout, Counters: ctr, Poller: g.poller}, func(res relay.Result) {
		g.m.FlowsActive.Dec()
		g.mu.Lock()
		delete(g.live, ctr)
		g.doneBytes[0] += res.AtoB
		g.doneBytes[1] += res.BtoA
		g.mu.Unlock()

		subflows := smp.stop()
		g.m.Subflows.Observe(float64(subflows))
		g.m.FlowEnds.WithLabelValues(res.End.String()).Inc()
		attrs := []any{"reason", res.End.String(), "first", res.First.String(), "to_server", res.AtoB, "to_client", res.BtoA,
			"duration", time.Since(start).Round(time.Millisecond).String(), "subflows", subflows}
		if res.Err != nil && res.End != relay.ReasonEOF {
			attrs = append(attrs, "err", res.Err)
		}
		log.Info("flow closed", attrs...)
		untrack()
		unguard()
		end()
	})
}

// subflowSampler keeps the most subflows a flow had. Subflows join after
// the handshake and are gone once the relay closed the socket, so it
// samples while the flow runs: after 1 s, then every 5 s.
type subflowSampler struct {
	conn    *net.TCPConn
	max     atomic.Int64
	stopped atomic.Bool
	timer   *time.Timer
}

func startSubflowSampler(conn *net.TCPConn) *subflowSampler {
	s := &subflowSampler{conn: conn}
	s.max.Store(1)
	s.timer = time.AfterFunc(time.Second, s.sample)
	return s
}

func (s *subflowSampler) sample() {
	if info, err := mptcp.Info(s.conn); err == nil && !info.Fallback {
		if n := int64(info.Subflows) + 1; n > s.max.Load() {
			s.max.Store(n)
		}
	}
	if !s.stopped.Load() {
		s.timer.Reset(5 * time.Second)
	}
}

// stop ends sampling and returns the most subflows seen.
func (s *subflowSampler) stop() int64 {
	s.stopped.Store(true)
	s.timer.Stop()
	return s.max.Load()
}

// waitEstablished holds the first write until the MPTCP handshake is
// complete (see mptcp.WaitEstablished), bounded by the Convert deadline.
func (g *Gateway) waitEstablished(conn *net.TCPConn, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg().Limits.ConvertReadTimeout)
	defer cancel()
	if err := mptcp.WaitEstablished(ctx, conn); err != nil {
		log.Info("MPTCP handshake did not complete", "err", err)
	}
}

func (g *Gateway) countRefusal(code convert.ErrorCode) {
	name := metrics.Label(code.String())
	g.m.ConvertErrors.WithLabelValues(name).Inc()
	g.m.Flows.WithLabelValues(name).Inc()
}

// answer sends a refusal's Error TLV and closes normally (RFC 8803 §6.2.8:
// the converter does not reset; the client does).
func (g *Gateway) answer(conn *net.TCPConn, log *slog.Logger, r *refusal) {
	log.Warn("refused", "code", r.code.String(), "reason", r.reason, "why", r.why)
	g.countRefusal(r.code)
	if r.reason != "" {
		g.m.Refusals.WithLabelValues(r.reason).Inc()
	}
	g.waitEstablished(conn, log)
	m := convert.Msg{HasError: true, Error: r.tlv}
	_ = conn.SetWriteDeadline(time.Now().Add(g.cfg().Limits.ConvertReadTimeout))
	if err := convert.WriteMsg(conn, &m); err != nil {
		log.Info("could not send the Error TLV", "err", err)
	}
	closeGently(conn)
}

// closeGently sends FIN and reads what the client still sends for a
// moment: closing with unread data would turn the FIN into a RST and the
// client could lose the Error TLV.
func closeGently(conn *net.TCPConn) {
	_ = conn.CloseWrite()
	_ = conn.SetReadDeadline(time.Now().Add(time.Second))
	_, _ = io.Copy(io.Discard, io.LimitReader(conn, 1<<20))
}

func backOffSeconds(d time.Duration) uint8 {
	s := d.Round(time.Second) / time.Second
	return uint8(max(1, min(255, s)))
}

func addrPortOf(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}
