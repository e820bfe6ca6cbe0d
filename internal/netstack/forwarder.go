package netstack

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"

	"hybridgw/internal/hostkey"
)

// forwarder admits LAN SYNs within the bounds, dials, and completes or
// rejects the LAN handshake.
//
// Admission happens in handlePacket, which gVisor calls synchronously for
// every TCP packet that matches no endpoint, before its tcp.Forwarder. Only
// admitted SYNs reach tcp.Forwarder.HandlePacket, which then always starts a
// handler goroutine: the id is not in its in-flight map (ours is a superset,
// entries leave ours only after Complete has removed them from gVisor's),
// and its count is below its limit (ours counts the same requests and has
// the same limit). That invariant is what lets handlePacket count the
// goroutine in f.handlers before gVisor starts it.
type forwarder struct {
	cfg *Config
	c   *counters

	gs      *stack.Stack
	tcpFwd  *tcp.Forwarder
	rawOut  func([]byte)
	ctx     context.Context // for Dial and Handle; cancelled at shutdown
	cancel  context.CancelFunc
	started bool

	handlers sync.WaitGroup // handler goroutines; Add only under mu while !closing

	mu       sync.Mutex
	stopped  bool // StopAccepting: drop new SYNs
	closing  bool // shutdown: drop new SYNs, abort flows as they appear
	inFlight map[stack.TransportEndpointID]*pending
	perHost  map[netip.Addr]int
	active   map[*flow]struct{}
	// hostFlows counts admitted SYNs and running flows per LAN host
	// (hostkey.Of) against MaxFlowsPerHost; an entry lives while it counts.
	hostFlows map[netip.Prefix]int
}

// pending is an admitted SYN.
type pending struct {
	src netip.Addr
	// syn holds the SYN's IP and TCP headers, quoted in an ICMP error if
	// Dial asks for one.
	syn   []byte
	proto tcpip.NetworkProtocolNumber
}

type flow struct {
	lan *Conn
	up  Upstream
}

func newForwarder(cfg *Config, c *counters) *forwarder {
	ctx, cancel := context.WithCancel(context.Background())
	return &forwarder{
		cfg:      cfg,
		c:        c,
		ctx:      ctx,
		cancel:   cancel,
		inFlight: make(map[stack.TransportEndpointID]*pending),
		perHost:  make(map[netip.Addr]int),
		active:   make(map[*flow]struct{}),

		hostFlows: make(map[netip.Prefix]int),
	}
}

func (f *forwarder) attach(gs *stack.Stack, tcpFwd *tcp.Forwarder, rawOut func([]byte)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gs, f.tcpFwd, f.rawOut, f.started = gs, tcpFwd, rawOut, true
}

func (f *forwarder) gauges() (inFlight, active int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.inFlight), len(f.active)
}

func (f *forwarder) outboundDrops() uint64 {
	f.mu.Lock()
	gs := f.gs
	f.mu.Unlock()
	if gs == nil {
		return 0
	}
	return gs.Stats().NICs.TxPacketsDroppedNoBufferSpace.Value()
}

func (f *forwarder) stopAccepting() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopped = true
}

func (f *forwarder) isShutdown() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closing
}

// handlePacket is the TCP protocol's default handler: it sees every TCP
// packet that no endpoint claimed. Non-SYNs are left to gVisor (returning
// false makes it answer with a RST). It runs in the TUN reader goroutine.
func (f *forwarder) handlePacket(id stack.TransportEndpointID, pkt *stack.PacketBuffer) bool {
	th := header.TCP(pkt.TransportHeader().Slice())
	if len(th) < header.TCPMinimumSize {
		return false
	}
	if fl := th.Flags(); !fl.Contains(header.TCPFlagSyn) || fl.Contains(header.TCPFlagAck) {
		return false
	}
	src := toAddr(id.RemoteAddress)

	f.mu.Lock()
	if _, ok := f.inFlight[id]; ok {
		// A retransmission of a SYN we are still dialling for: absorb it,
		// as gVisor's forwarder would.
		f.mu.Unlock()
		return true
	}
	host := hostkey.Of(src)
	var drop, refuse *atomic.Uint64
	switch {
	case f.closing || f.stopped:
		drop = &f.c.dropStopped
	case len(f.inFlight) >= f.cfg.MaxInFlight:
		drop = &f.c.dropInFlight
	case f.perHost[src] >= f.cfg.MaxInFlightPerHost:
		drop = &f.c.dropPerHost
	case len(f.inFlight)+len(f.active) >= f.cfg.MaxFlows:
		drop = &f.c.dropFlows
	case f.hostFlows[host] >= f.cfg.MaxFlowsPerHost:
		refuse = &f.c.refusedPerHost
	case f.cfg.Overloaded != nil && f.cfg.Overloaded():
		refuse = &f.c.refusedMemory
	}
	if drop != nil {
		f.mu.Unlock()
		drop.Add(1)
		return true
	}
	if refuse != nil {
		f.mu.Unlock()
		refuse.Add(1)
		return false // gVisor answers an unclaimed SYN with a RST
	}
	p := &pending{src: src, proto: pkt.NetworkProtocolNumber}
	p.syn = append(append(make([]byte, 0, len(pkt.NetworkHeader().Slice())+len(th)),
		pkt.NetworkHeader().Slice()...), th...)
	f.inFlight[id] = p
	f.perHost[src]++
	f.hostFlows[host]++
	f.handlers.Add(1)
	f.mu.Unlock()

	if !f.tcpFwd.HandlePacket(id, pkt) {
		// Not a valid SYN after all (bad checksum): no goroutine started.
		f.release(id, p)
		f.leaveHost(src)
		f.handlers.Done()
		return false
	}
	f.c.syns.Add(1)
	return true
}

// leaveHost gives back the per-host count an admitted SYN took.
func (f *forwarder) leaveHost(src netip.Addr) {
	k := hostkey.Of(src)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.hostFlows[k]--; f.hostFlows[k] <= 0 {
		delete(f.hostFlows, k)
	}
}

// release forgets an in-flight request.
func (f *forwarder) release(id stack.TransportEndpointID, p *pending) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.releaseLocked(id, p)
}

func (f *forwarder) releaseLocked(id stack.TransportEndpointID, p *pending) {
	delete(f.inFlight, id)
	if f.perHost[p.src]--; f.perHost[p.src] <= 0 {
		delete(f.perHost, p.src)
	}
}

// handle runs in the goroutine gVisor's forwarder starts for each admitted
// SYN: dial, then complete or reject the LAN handshake, then serve (with
// Config.Start: start serving and return; the flow's done ends it).
func (f *forwarder) handle(r *tcp.ForwarderRequest) {
	started := false
	defer func() {
		if !started {
			f.handlers.Done()
		}
	}()
	id := r.ID()
	f.mu.Lock()
	p := f.inFlight[id]
	f.mu.Unlock()
	// The request, and then its flow, counted per host until here (or,
	// with Start, until the flow's done).
	defer func() {
		if !started {
			f.leaveHost(p.src)
		}
	}()

	fid := FlowID{
		Src: netip.AddrPortFrom(p.src, id.RemotePort),
		Dst: netip.AddrPortFrom(toAddr(id.LocalAddress), id.LocalPort),
	}
	dctx, cancel := context.WithTimeout(f.ctx, f.cfg.DialTimeout)
	up, err := f.cfg.Dial(dctx, fid)
	cancel()
	if err == nil && up == nil {
		err = errors.New("netstack: Dial returned no upstream and no error")
	}
	if err != nil {
		f.c.dialErrors.Add(1)
		f.reject(r, p, err)
		f.release(id, p)
		return
	}
	if f.isShutdown() {
		_ = up.Close()
		r.Complete(false)
		f.release(id, p)
		return
	}

	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		// The LAN host reset, or never sent its final ACK.
		f.c.handshakeFails.Add(1)
		r.Complete(true)
		_ = up.Close()
		f.release(id, p)
		return
	}
	r.Complete(false)
	lan := newConn(&wq, ep, fid)
	fl := &flow{lan: lan, up: up}

	// Move the request from in flight to active in one step, so that the
	// MaxFlows bound never sees it in neither or both.
	f.mu.Lock()
	f.releaseLocked(id, p)
	if f.closing {
		f.mu.Unlock()
		lan.Abort()
		abortUpstream(up)
		return
	}
	f.active[fl] = struct{}{}
	f.mu.Unlock()
	f.c.flows.Add(1)

	if f.cfg.Start != nil {
		started = true
		f.cfg.Start(f.ctx, lan, up, sync.OnceFunc(func() {
			f.served(fl)
			f.leaveHost(p.src)
			f.handlers.Done()
		}))
		return
	}
	f.cfg.Handle(f.ctx, lan, up)
	f.served(fl)
}

// served closes a flow its handler is done with and forgets it.
func (f *forwarder) served(fl *flow) {
	if f.ctx.Err() != nil {
		// Shutdown cut the handler short: whatever it did not close
		// itself must reach both ends as a reset, not a FIN, and this
		// close can win the race against shutdown's abortAll.
		fl.lan.Abort()
		abortUpstream(fl.up)
	}
	_ = fl.lan.Close()
	_ = fl.up.Close()

	f.mu.Lock()
	delete(f.active, fl)
	f.mu.Unlock()
}

// reject answers a SYN whose Dial failed.
func (f *forwarder) reject(r *tcp.ForwarderRequest, p *pending, err error) {
	how := RejectReset
	var de *DialError
	if errors.As(err, &de) {
		how = de.Reject
	}
	switch how {
	case RejectDrop:
		r.Complete(false)
	case RejectHostUnreachable, RejectNetUnreachable, RejectAdminProhibited:
		r.Complete(false)
		if b := unreachable(p.syn, p.proto, how, Offset); b != nil {
			f.rawOut(b)
			return
		}
		// Could not quote the SYN (IPv6 extension headers): fall back.
		fallthrough
	default:
		r.Complete(true)
	}
}

// shutdown stops admission, cancels Dial and Handle, resets active flows
// and waits for every handler goroutine. gVisor and the link keep running
// so that handshakes can be aborted and RSTs go out.
func (f *forwarder) shutdown() {
	f.mu.Lock()
	f.closing = true
	started := f.started
	f.mu.Unlock()
	f.cancel()
	if !started {
		return
	}
	done := make(chan struct{})
	// Owned: it ends when the last handler does, which this function waits for.
	go func() {
		f.handlers.Wait()
		close(done)
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		// Repeat: a handler may be between Dial and CreateEndpoint, and
		// its endpoint registers only then.
		f.abortAll()
		select {
		case <-done:
			return
		case <-tick.C:
		}
	}
}

// abortAll resets every active flow's LAN side, closes its upstream, and
// aborts every endpoint gVisor knows (handshakes included).
func (f *forwarder) abortAll() {
	f.mu.Lock()
	flows := make([]*flow, 0, len(f.active))
	for fl := range f.active {
		flows = append(flows, fl)
	}
	f.mu.Unlock()
	for _, fl := range flows {
		fl.lan.Abort()
		abortUpstream(fl.up)
	}
	for _, ep := range f.gs.RegisteredEndpoints() {
		ep.Abort()
	}
}

// abortUpstream closes up with a reset where it can: a flow cut at shutdown
// must not reach the server as a FIN, which would present the LAN host's
// truncated upload as complete. A TCP socket (or a wrapper that exposes
// SetLinger, as hcpe's does) resets with SO_LINGER 0 on close.
func abortUpstream(up Upstream) {
	switch u := up.(type) {
	case interface{ Abort() }:
		u.Abort()
	case interface{ SetLinger(int) error }:
		_ = u.SetLinger(0)
	}
	_ = up.Close()
}

// toAddr converts a gVisor address; tcpip.Address.As16 panics on a 4-byte
// address, so the length decides.
func toAddr(a tcpip.Address) netip.Addr {
	switch a.Len() {
	case 4:
		return netip.AddrFrom4(a.As4())
	case 16:
		return netip.AddrFrom16(a.As16())
	}
	return netip.Addr{}
}
