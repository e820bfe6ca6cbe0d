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

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

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
	// flowLog decides which flows' lines are logged (log.flows).
	flowLog *flowLogs
	// hot are the series serve updates for every flow, resolved once:
	// a label lookup hashes its values under a lock each time.
	hot hotMetrics

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
	g.flowLog = newFlowLogs(cfg.Log)
	g.hot = resolveHot(g.m)
	return g, nil
}

// cfg is the config in force. A flow reads it afresh at each step, so a
// reload applies to the next decision of flows already in their handshake.
func (g *Gateway) cfg() *config.HAG { return g.conf.Load() }

// hotMetrics are the series of a flow's common path.
type hotMetrics struct {
	flowsOK           prometheus.Counter
	dialOK, dialError prometheus.Observer
	ends              [relay.ReasonCanceled + 1]prometheus.Counter // by relay.Reason
}

func resolveHot(m *metrics.HAG) hotMetrics {
	h := hotMetrics{flowsOK: m.Flows.WithLabelValues("ok"),
		dialOK: m.DialDuration.WithLabelValues("ok"), dialError: m.DialDuration.WithLabelValues("error")}
	for r := range h.ends {
		h.ends[r] = m.FlowEnds.WithLabelValues(relay.Reason(r).String())
	}
	return h
}

// flowEnds is hag_flow_ends_total for r.
func (g *Gateway) flowEnds(r relay.Reason) prometheus.Counter {
	if int(r) < len(g.hot.ends) {
		return g.hot.ends[r]
	}
	return g.m.FlowEnds.WithLabelValues(r.String())
}

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
// Start order: transparent-socket routing; the watches of hag's own
// addresses and of joining subflows; the MPTCP listeners; the probe
// servers; the metrics and admin servers and housekeeping; the relays'
// poller; the accept loops.
//
// Shutdown order: stop accepting (close the listeners, wait for the accept
// loops); let relayed flows run for limits.shutdown_grace; cancel the rest
// (a cancelled relay resets both sides, so neither takes the cut stream
// for complete) and wait for every handler and relay. Then one stop
// sequence, the reverse of the start: the poller, metrics/admin/
// housekeeping, the probe servers, the watches, the routing. Each stop
// waits for its part's goroutines before the next part stops, and is a
// no-op until its part started, so a start that fails half way undoes
// what it did in the same order.
func (g *Gateway) Run(ctx context.Context) (err error) {
	if g.cfg().Listen.FastOpen {
		if err := mptcp.EnsureFastOpenServer(); err != nil {
			return fmt.Errorf("enabling TCP Fast Open for the Convert message in the SYN: %w", err)
		}
	}
	if g.cfg().Listen.FastOpenNoCookieUnsafe {
		g.log.Warn("listen.fast_open_no_cookie_unsafe is set: SYN data is read before the client proved its address; requests are still authorised only after the handshake, but spoofed SYNs hold handshake slots")
	}
	nop := func() {}
	stopRouting, stopWatches, stopProbes, stopMetrics, stopPoller := nop, nop, nop, nop, nop
	var lns []*net.TCPListener
	defer func() {
		// The stop sequence (the listeners are closed already on the
		// normal path; a second Close is harmless).
		for _, ln := range lns {
			ln.Close()
		}
		stopPoller() // every flow has ended: nothing is parked on it
		stopMetrics()
		stopProbes()
		stopWatches()
		stopRouting()
	}()

	if stopRouting, err = g.startRouting(); err != nil {
		return err
	}
	stopWatches = g.startWatches()
	if lns, err = g.listen(ctx); err != nil {
		return err
	}
	if stopProbes, err = g.startProbes(); err != nil {
		return err
	}
	var merr <-chan error
	stopMetrics, merr = g.startMetrics()
	if stopPoller, err = g.startPoller(); err != nil {
		return err
	}

	flowCtx, cancelFlows := context.WithCancel(context.Background())
	defer cancelFlows()
	var flows, accepts sync.WaitGroup
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

// startRouting installs the transparent-socket routing that egress
// "preserve" needs, when the config asks hag to; stop removes it.
func (g *Gateway) startRouting() (stop func(), err error) {
	c := g.cfg()
	if (c.Egress.IPv4 != "preserve" && c.Egress.IPv6 != "preserve") || !c.Transparent.Install {
		return func() {}, nil
	}
	tp, err := installTransparent(c.Transparent)
	if err != nil {
		return func() {}, fmt.Errorf("egress preserve needs transparent-socket routing: %w", err)
	}
	g.log.Info("transparent-socket routing installed", "mark", c.Transparent.Mark, "table", c.Transparent.Table)
	return func() {
		if err := tp.remove(); err != nil {
			g.log.Error("removing transparent-socket routing", "err", err)
		}
	}, nil
}

// startWatches follows hag's own addresses (refused as destinations) and
// the subflows that join relayed flows (checked against wan_prefixes); it
// returns once both are watching. Either failing is logged and hag goes
// on without it.
func (g *Gateway) startWatches() (stop func()) {
	g.own = newOwnSet()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	watching := make(chan struct{})
	wg.Go(func() {
		if err := g.own.watch(ctx, watching); err != nil {
			g.log.Error("hag's own addresses are no longer tracked; addresses added from now on are not refused as destinations", "err", err)
		}
	})
	<-watching
	joinsWatched := make(chan struct{})
	wg.Go(func() {
		if err := g.watchJoins(ctx, joinsWatched); err != nil {
			g.log.Error("subflows are checked against wan_prefixes only when a flow starts, not as they join (hag needs CAP_NET_ADMIN for the MPTCP path-manager events)", "err", err)
		}
	})
	<-joinsWatched
	return func() { cancel(); wg.Wait() }
}

// listen opens an MPTCP listener on every listen address; on error the
// ones already open are returned too, for the caller to close.
func (g *Gateway) listen(ctx context.Context) ([]*net.TCPListener, error) {
	var lns []*net.TCPListener
	for _, a := range g.cfg().Listen.Addrs {
		addr := netip.AddrPortFrom(a, uint16(g.cfg().Listen.Port)).String()
		network := "tcp6"
		if a.Is4() {
			network = "tcp4"
		} else if a.IsUnspecified() {
			network = "tcp" // "::" is dual-stack
		}
		ln, err := mptcp.Listen(ctx, network, addr, g.listenOptions())
		if err != nil {
			return lns, fmt.Errorf("listening on %s: %w", addr, err)
		}
		lns = append(lns, ln)
		g.addrs = append(g.addrs, ln.Addr())
		g.own.set(a, true)
		g.log.Info("listening", "addr", ln.Addr().String(), "mptcp", true, "tfo", g.cfg().Listen.FastOpen, "tfo_without_cookie", g.cfg().Listen.FastOpenNoCookieUnsafe)
	}
	g.logBacklog()
	return lns, nil
}

// startProbes answers CPEs' health probes (internal/probe), which arrive
// on the listen addresses and port over UDP; only CPEs with a key can be
// answered, under any of their keys during a rotation. On error the
// servers already started are stopped.
func (g *Gateway) startProbes() (stop func(), err error) {
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
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	stop = func() { cancel(); wg.Wait() }
	for _, a := range g.cfg().Listen.Addrs {
		network := "udp6"
		if a.Is4() {
			network = "udp4"
		} else if a.IsUnspecified() {
			network = "udp"
		}
		uc, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, uint16(g.cfg().Listen.Port))))
		if err != nil {
			stop()
			return func() {}, fmt.Errorf("listening for health probes on %s: %w", a, err)
		}
		wg.Go(func() {
			defer uc.Close()
			if err := probes.Serve(ctx, uc); err != nil {
				g.log.Error("probe server stopped", "addr", uc.LocalAddr().String(), "err", err)
			}
		})
	}
	return stop, nil
}

// startMetrics runs the metrics and admin servers and housekeeping; a
// metrics server that cannot serve reports on merr, which stops hag.
func (g *Gateway) startMetrics() (stop func(), merr <-chan error) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	wg.Go(func() {
		if err := metrics.Serve(ctx, g.cfg().Metrics.Listen, g.m.Registry, g.log); err != nil {
			errc <- err
		}
	})
	wg.Go(func() {
		if err := g.serveAdmin(ctx); err != nil {
			g.log.Error("admin API unavailable", "err", err)
		}
	})
	wg.Go(func() { g.housekeeping(ctx) })
	return func() { cancel(); wg.Wait() }, errc
}

// startPoller runs the epoll poller the relays park idle flows on; it
// must outlive every flow.
func (g *Gateway) startPoller() (stop func(), err error) {
	if g.poller, err = relay.NewPoller(); err != nil {
		return func() {}, err
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := g.poller.Run(); err != nil {
			g.log.Error("relay poller stopped", "err", err)
		}
	})
	return func() { g.poller.Close(); wg.Wait() }, nil
}

// trimMinDrop is how many flows must close before hag hands their memory
// back to the kernel at once (internal/trim): about 24 MB at 1,000 idle
// flows (make bench figure 5); smaller dips do not force a collection.
const trimMinDrop = 256

// housekeeping runs once a second until ctx ends: it samples the
// subflows of the flows that are due (sampleSubflows), releases freed
// memory after a wave of flows has closed, and reports the flows whose
// lines log.flows left out. One ticker for all flows: no timer per flow.
func (g *Gateway) housekeeping(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	trimmer := trim.Trimmer{MinDrop: trimMinDrop}
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			g.reg.sampleSubflows(now)
			trimmer.Observe(g.activeFlows())
			g.reportUnlogged()
		}
	}
}

// listenOptions are the listeners' socket options. What every accepted
// connection needs is set once on the listening socket, which they
// inherit it from: keepalive, TCP_NOTSENT_LOWAT, and SO_LINGER 0, so that
// a connection hag has not finished with is reset, never ended with a
// FIN that would present a refused or cut flow as complete (closeGently
// and the relay's clean end restore the normal close).
func (g *Gateway) listenOptions() mptcp.ListenOptions {
	return mptcp.ListenOptions{FastOpen: fastOpenMode(g.cfg().Listen), Backlog: g.cfg().Limits.ListenBacklog,
		NotSentLowat: g.cfg().Limits.NotSentLowat, ResetOnClose: true}
}

// logBacklog logs the listeners' backlog and the kernel bounds it meets,
// and warns when net.core.somaxconn cuts the configured one short.
func (g *Gateway) logBacklog() {
	somax, err := mptcp.Somaxconn()
	if err != nil {
		g.log.Warn("cannot read net.core.somaxconn", "err", err)
		return
	}
	synMax, _ := mptcp.MaxSynBacklog()
	want := g.cfg().Limits.ListenBacklog
	backlog := somax
	if want > 0 {
		backlog = min(want, somax)
	}
	g.log.Info("listen backlog", "backlog", backlog, "net.core.somaxconn", somax, "net.ipv4.tcp_max_syn_backlog", synMax)
	if want > somax {
		g.log.Warn("limits.listen_backlog is cut to net.core.somaxconn; raise the sysctl (deploy/sysctl/60-hybridgw-hag.conf)", "listen_backlog", want, "net.core.somaxconn", somax)
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
	log := g.flowLogger(id, peer, time.Now())
	// One look at what has arrived: the whole Convert message, usually,
	// or nothing yet (a warm-pool connection, or the request still on
	// its way).
	var buf [convert.MaxMsgLen]byte
	peeked, err := mptcp.Peek(conn, buf[:])
	if errors.Is(err, unix.EAGAIN) && !g.awaitFirstByte(ctx, conn, peer, log) {
		// A warm connection hag will not keep ends with a FIN, as hcpe
		// expects of a pooled connection that was merely closed.
		_ = conn.SetLinger(-1)
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

	m, ok := g.readRequest(conn, buf[:], peeked, log)
	if !ok {
		return
	}
	// With Fast Open the request may have come in the SYN, before the
	// client proved it owns its address: nothing is decided, dialled or
	// written until the third ACK has arrived (RFC 8803 §9, RFC 7413 §5).
	isMPTCP, ok := g.proveSource(conn, log)
	if !ok {
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
	if log != discard {
		log = log.With("dst", m.Connect.Dst.String())
	}

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
	if log != discard {
		log = log.With("cpe", p.cpe.ID)
		if p.cookie != nil {
			log = log.With("key_id", p.cookie.KeyID)
		}
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

// readRequest reads the Convert message: at once when peeked bytes of buf
// (mptcp.Peek's) hold all of it, else under the read deadline. A bad
// message is answered (or reset, where the RFC says so) here; ok is false
// then and the connection is done.
func (g *Gateway) readRequest(conn *net.TCPConn, buf []byte, peeked int, log *slog.Logger) (m convert.Msg, ok bool) {
	m, raw, err, whole := requestFromPeek(conn, buf, peeked)
	if !whole {
		_ = conn.SetReadDeadline(time.Now().Add(g.cfg().Limits.ConvertReadTimeout))
		m, raw, err = convert.ReadRequest(conn, buf)
		if err == nil {
			_ = conn.SetReadDeadline(time.Time{})
		}
	}
	if err == nil {
		return m, true
	}
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.As(err, &ne) && ne.Timeout():
		// Nobody to answer: the client left or never spoke.
		g.countFallback(conn, log)
		log.Info("no Convert message", "err", err)
		g.m.Flows.WithLabelValues("no_request").Inc()
		return m, false
	}
	if em, ok := convert.ErrorReply(err, raw); ok {
		code, _ := convert.CodeOf(err)
		log.Warn("bad Convert message", "code", code.String(), "err", err)
		g.countRefusal(code)
		if _, ok := g.proveSource(conn, log); !ok {
			return m, false
		}
		_ = conn.SetWriteDeadline(time.Now().Add(g.cfg().Limits.ConvertReadTimeout))
		_ = convert.WriteMsg(conn, &em)
		closeGently(conn)
		return m, false
	}
	g.countFallback(conn, log)
	log.Warn("Convert message asks for a reset", "err", err)
	g.m.Flows.WithLabelValues("reset").Inc()
	// SetLinger fails only on a closed conn, which has nothing to reset.
	_ = conn.SetLinger(0)
	return m, false
}

// requestFromPeek reads and parses the request with one read when the
// peeked bytes hold it whole (whole is true then, err says how it went).
// The read takes exactly the message: bytes the client sent after it stay
// queued for the relay.
func requestFromPeek(conn *net.TCPConn, buf []byte, peeked int) (m convert.Msg, raw []byte, err error, whole bool) {
	if peeked < convert.HeaderLen {
		return m, nil, nil, false
	}
	n, err := convert.ParseHeader(buf[:peeked])
	if err != nil || n > peeked {
		return m, nil, nil, false // the slow path reads and reports it
	}
	if _, err := io.ReadFull(conn, buf[:n]); err != nil {
		return m, nil, fmt.Errorf("convert: reading %d-byte message: %w", n, err), true
	}
	if m, _, err = convert.Parse(buf[:n]); err == nil {
		err = convert.CheckRequest(&m)
	}
	if err != nil {
		return convert.Msg{}, buf[:n], err, true
	}
	return m, buf[:n], nil, true
}

// countFallback counts a plain TCP client on a path that ends before
// proveSource, which counts the others.
func (g *Gateway) countFallback(conn *net.TCPConn, log *slog.Logger) {
	if ok, err := mptcp.Check(conn); err == nil && !ok {
		g.m.MPTCPFallbacks.Inc()
		log.Info("client connection is plain TCP (MPTCP fell back or was not offered)")
	}
}

// proveSource waits, bounded by the Convert deadline, until the client's
// handshake has completed, so that its source address is proven and hag
// may write. A connection that never gets there (a blind spoofer's SYN
// with data) is refused without a word and reset. It also tells, and
// counts, a plain TCP client. Usually the first look settles it: one
// MPTCP_INFO read, no timer.
func (g *Gateway) proveSource(conn *net.TCPConn, log *slog.Logger) (isMPTCP, ok bool) {
	hs, err := mptcp.Handshake(conn)
	if err != nil || !hs.Done {
		ctx, cancel := context.WithTimeout(context.Background(), g.cfg().Limits.ConvertReadTimeout)
		defer cancel()
		if err := mptcp.WaitEstablished(ctx, conn); err != nil {
			g.refused(log, "handshake_unproven", err.Error())
			_ = conn.SetLinger(0)
			return false, false
		}
		hs, _ = mptcp.Handshake(conn)
	}
	if !hs.MPTCP {
		g.m.MPTCPFallbacks.Inc()
		log.Info("client connection is plain TCP (MPTCP fell back or was not offered)")
	}
	return hs.MPTCP, true
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
	sconn, err := dialServer(ctx, p.dst, p.src, dialOptions{timeout: g.cfg().Limits.DialTimeout, notSentLowat: g.cfg().Limits.NotSentLowat})
	if err != nil {
		g.hot.dialError.Observe(time.Since(start).Seconds())
		if log != discard {
			log = log.With("src", p.src.Addr.String())
		}
		g.answer(conn, log, dialRefusal(err, p.dst.Addr()))
		return nil, start, false
	}
	g.hot.dialOK.Observe(time.Since(start).Seconds())
	// The client's handshake is complete: serve proved it before decide.
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
	g.hot.flowsOK.Inc()
	// TCP_NOTSENT_LOWAT bounds what queues per flow in hag (without it a
	// fast server fills tens of MB of send buffer towards a slow uplink).
	// It is set already: an MPTCP conn inherited it from the listener,
	// sconn got it before connect; a plain TCP client's conn does not
	// inherit it.
	if lw := g.cfg().Limits.NotSentLowat; lw > 0 && !f.mptcp {
		_ = mptcp.SetNotSentLowat(conn, lw)
	}
	local := addrPortOf(sconn.LocalAddr())
	lvl, lines := g.flowLines(log)
	if lines {
		log.Log(ctx, lvl, "flow open", "src", local.String(), "preserved", f.plan.src.Preserved, "mptcp", f.mptcp, "dial", time.Since(f.start).Round(time.Microsecond).String())
	}

	unguard := g.guardJoins(conn, f.plan.cpe, f.peer, log)
	ctr := new(relay.Counters)
	g.mu.Lock()
	g.live[ctr] = struct{}{}
	g.mu.Unlock()
	tf := &trackedFlow{id: f.id, cpe: f.plan.cpe.ID, peer: f.peer, client: f.m.ClientAddr, dst: f.plan.dst, src: local, preserved: f.plan.src.Preserved, mptcp: f.mptcp, conn: conn, ctr: ctr}
	untrack := g.reg.track(tf)
	g.m.FlowsActive.Inc()
	start := f.start
	// Both conns already close with a reset until the relay ends them
	// cleanly (listenOptions, dialServer).
	relay.Start(ctx, conn, sconn, relay.Options{IdleTimeout: g.cfg().Limits.IdleTimeout, Counters: ctr, ResetOnClose: true, Poller: g.poller}, func(res relay.Result) {
		g.m.FlowsActive.Dec()
		g.mu.Lock()
		delete(g.live, ctr)
		g.doneBytes[0] += res.AtoB
		g.doneBytes[1] += res.BtoA
		g.mu.Unlock()

		subflows := tf.subflows()
		g.m.Subflows.Observe(float64(subflows))
		g.flowEnds(res.End).Inc()
		if lines {
			attrs := []any{"reason", res.End.String(), "first", res.First.String(), "to_server", res.AtoB, "to_client", res.BtoA,
				"duration", time.Since(start).Round(time.Millisecond).String(), "subflows", subflows}
			if res.Err != nil && res.End != relay.ReasonEOF {
				attrs = append(attrs, "err", res.Err)
			}
			log.Log(ctx, lvl, "flow closed", attrs...)
		}
		untrack()
		unguard()
		end()
	})
}

// waitEstablished holds the first write until the MPTCP handshake is
// complete (see mptcp.WaitEstablished), bounded by the Convert deadline.
func (g *Gateway) waitEstablished(conn *net.TCPConn, log *slog.Logger) {
	if hs, err := mptcp.Handshake(conn); err == nil && hs.Done {
		return
	}
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
// client could lose the Error TLV. It restores the normal close first
// (accepted connections inherit SO_LINGER 0: listenOptions).
func closeGently(conn *net.TCPConn) {
	_ = conn.SetLinger(-1)
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
