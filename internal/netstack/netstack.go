package netstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Device is the TUN as the Stack uses it; *tun.Device and wireguard-go's
// tun.Device satisfy it. Write is called with offset Offset.
type Device interface {
	Read(bufs [][]byte, sizes []int, offset int) (int, error)
	Write(bufs [][]byte, offset int) (int, error)
	BatchSize() int
	Close() error
}

// Offset is the headroom the Stack leaves in front of every packet it
// writes; it covers the virtio-net header that wireguard-go's TUN needs.
const Offset = 16

// FlowID names a LAN flow by its original addresses: Src is the LAN host,
// Dst the server it tried to reach. Both are as the LAN host sent them (an
// IPv4 flow has IPv4 addresses, never 4-in-6).
type FlowID struct {
	Src, Dst netip.AddrPort
}

func (f FlowID) String() string { return f.Src.String() + "->" + f.Dst.String() }

// Upstream is the connection Dial opened for a flow. The Stack only closes
// it (when the LAN handshake fails, or at shutdown); Handle does the rest.
type Upstream interface {
	io.ReadWriteCloser
}

// Reject says how the LAN host is told that its connection failed.
type Reject int

const (
	// RejectReset answers the SYN with a RST: connect fails with
	// ECONNREFUSED. It is the answer to any Dial error that is not a
	// *DialError.
	RejectReset Reject = iota
	// RejectHostUnreachable answers with ICMP host unreachable (ICMPv6
	// address unreachable): connect fails with EHOSTUNREACH.
	RejectHostUnreachable
	// RejectNetUnreachable answers with ICMP(v6) network unreachable / no
	// route: connect fails with ENETUNREACH.
	RejectNetUnreachable
	// RejectAdminProhibited answers with ICMP communication administratively
	// prohibited: EHOSTUNREACH on IPv4, EACCES on IPv6.
	RejectAdminProhibited
	// RejectDrop answers nothing: the host retransmits its SYN (which is
	// dialled again) until it gives up with ETIMEDOUT.
	RejectDrop
)

func (r Reject) String() string {
	switch r {
	case RejectReset:
		return "reset"
	case RejectHostUnreachable:
		return "host-unreachable"
	case RejectNetUnreachable:
		return "net-unreachable"
	case RejectAdminProhibited:
		return "admin-prohibited"
	case RejectDrop:
		return "drop"
	}
	return fmt.Sprintf("Reject(%d)", int(r))
}

// DialError is a Dial error that chooses how the LAN host is answered, for
// example when hag reports that the server is unreachable rather than that
// it refused. Any other Dial error is answered with a RST.
type DialError struct {
	Reject Reject
	Err    error
}

func (e *DialError) Error() string {
	if e.Err == nil {
		return "dial rejected (" + e.Reject.String() + ")"
	}
	return e.Err.Error()
}

func (e *DialError) Unwrap() error { return e.Err }

// Config configures a Stack. Device, MTU, Dial and one of Handle and Start
// are required.
type Config struct {
	// Device is the TUN. The Stack owns it from Run on and closes it when
	// Run returns: closing it is the only way to end a blocked read.
	Device Device
	// MTU is the device's MTU.
	MTU int

	// Dial opens the upstream for a new LAN flow. It is called once per
	// SYN (retransmissions of a SYN being dialled are absorbed) in its own
	// goroutine; ctx ends after DialTimeout or at shutdown. The LAN
	// handshake is completed only if it returns nil error.
	Dial func(ctx context.Context, id FlowID) (Upstream, error)
	// Handle serves an established flow. It owns lan and up and must return
	// when ctx is cancelled (shutdown) or both are finished; when it returns
	// the Stack closes both (again, if Handle did already).
	Handle func(ctx context.Context, lan *Conn, up Upstream)
	// Start, instead of Handle, serves an established flow without holding
	// the goroutine it is called on: it returns at once (relay.Start) and
	// calls done, once, when it has finished with lan and up, after ctx is
	// cancelled or both are finished. Then the Stack closes both, as after
	// Handle, and shutdown waits for every done as for every Handle.
	Start func(ctx context.Context, lan *Conn, up Upstream, done func())

	// MaxInFlight bounds the handshakes in flight (Dial running, or the LAN
	// host's final ACK outstanding). Default 1024.
	MaxInFlight int
	// MaxInFlightPerHost bounds the handshakes in flight per LAN source
	// address (not per /64: a LAN is usually one /64). Default 64.
	MaxInFlightPerHost int
	// MaxFlows bounds handshakes in flight plus flows being handled.
	// Default 16384.
	MaxFlows int
	// MaxFlowsPerHost bounds handshakes in flight plus flows being handled
	// per LAN host: one IPv4 address, or one IPv6 /64, so that a host
	// rotating through its privacy addresses counts as one. A SYN over it
	// is answered with a RST: unlike a burst of handshakes, a host at its
	// bound stays there, and a retransmitted SYN would only wait longer
	// to fail. Default 512.
	MaxFlowsPerHost int
	// Overloaded, if set, is asked for every LAN SYN; while it reports
	// true (the process is near its memory ceiling) new flows are answered
	// with a RST. It must be cheap: it runs in the TUN reader.
	Overloaded func() bool
	// DialTimeout bounds each Dial. Default 15 s: by then the LAN host has
	// retransmitted its SYN four times.
	DialTimeout time.Duration

	// Logger receives rare events (TUN errors); default slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 1024
	}
	if c.MaxInFlightPerHost == 0 {
		c.MaxInFlightPerHost = 64
	}
	if c.MaxFlows == 0 {
		c.MaxFlows = 16384
	}
	if c.MaxFlowsPerHost == 0 {
		c.MaxFlowsPerHost = 512
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = 15 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

func (c *Config) validate() error {
	var errs []error
	if c.Device == nil {
		errs = append(errs, errors.New("netstack: Device is required"))
	}
	if c.MTU < 1280 || c.MTU > 65535 {
		errs = append(errs, fmt.Errorf("netstack: MTU %d is outside 1280..65535", c.MTU))
	}
	if c.Dial == nil {
		errs = append(errs, errors.New("netstack: Dial is required"))
	}
	if (c.Handle == nil) == (c.Start == nil) {
		errs = append(errs, errors.New("netstack: exactly one of Handle and Start is required"))
	}
	if c.MaxInFlight < 0 || c.MaxInFlightPerHost < 0 || c.MaxFlows < 0 || c.MaxFlowsPerHost < 0 || c.DialTimeout < 0 {
		errs = append(errs, errors.New("netstack: limits and timeouts must not be negative"))
	}
	if c.MaxInFlightPerHost > c.MaxInFlight {
		errs = append(errs, fmt.Errorf("netstack: MaxInFlightPerHost %d exceeds MaxInFlight %d", c.MaxInFlightPerHost, c.MaxInFlight))
	}
	if c.MaxInFlight > c.MaxFlows {
		errs = append(errs, fmt.Errorf("netstack: MaxInFlight %d exceeds MaxFlows %d", c.MaxInFlight, c.MaxFlows))
	}
	return errors.Join(errs...)
}

// Stats are the Stack's counters (monotonic, since New) and gauges.
type Stats struct {
	SYNs           uint64 // SYNs admitted: Dial was called
	DropInFlight   uint64 // SYNs dropped by MaxInFlight
	DropPerHost    uint64 // SYNs dropped by MaxInFlightPerHost
	DropFlows      uint64 // SYNs dropped by MaxFlows
	RefusedPerHost uint64 // SYNs answered with a RST by MaxFlowsPerHost
	RefusedMemory  uint64 // SYNs answered with a RST while Overloaded
	DropStopped    uint64 // SYNs dropped after StopAccepting or during shutdown
	DialErrors     uint64 // Dial failed; the LAN host was answered per Reject
	HandshakeFails uint64 // Dial succeeded but the LAN host did not complete
	Flows          uint64 // flows handed to Handle

	InFlight int // gauge: handshakes in flight
	Active   int // gauge: flows in Handle

	TUNReadErrors  uint64 // failed TUN reads (not counting close) and packets read with a bad TCP checksum
	TUNWriteErrors uint64 // failed TUN writes
	OutboundDrops  uint64 // packets gVisor could not queue for the TUN
}

type counters struct {
	syns, dropInFlight, dropPerHost, dropFlows, dropStopped atomic.Uint64
	refusedPerHost, refusedMemory                           atomic.Uint64
	dialErrors, handshakeFails, flows                       atomic.Uint64
	tunReadErrors, tunWriteErrors                           atomic.Uint64
}

// Stack is the LAN-side TCP termination. Create it with New, start it with
// Run; Close stops it.
type Stack struct {
	cfg Config
	c   counters
	fwd *forwarder

	mu      sync.Mutex
	started bool
	closed  bool
	cancel  context.CancelFunc // cancels Run; set while it runs
	done    chan struct{}      // closed when Run has returned
}

// New validates cfg and returns a Stack; it starts nothing.
func New(cfg Config) (*Stack, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Stack{cfg: cfg, done: make(chan struct{})}
	s.fwd = newForwarder(&s.cfg, &s.c)
	return s, nil
}

// Stats returns the counters.
func (s *Stack) Stats() Stats {
	st := Stats{
		SYNs:           s.c.syns.Load(),
		DropInFlight:   s.c.dropInFlight.Load(),
		DropPerHost:    s.c.dropPerHost.Load(),
		DropFlows:      s.c.dropFlows.Load(),
		RefusedPerHost: s.c.refusedPerHost.Load(),
		RefusedMemory:  s.c.refusedMemory.Load(),
		DropStopped:    s.c.dropStopped.Load(),
		DialErrors:     s.c.dialErrors.Load(),
		HandshakeFails: s.c.handshakeFails.Load(),
		Flows:          s.c.flows.Load(),
		TUNReadErrors:  s.c.tunReadErrors.Load(),
		TUNWriteErrors: s.c.tunWriteErrors.Load(),
	}
	st.InFlight, st.Active = s.fwd.gauges()
	st.OutboundDrops = s.fwd.outboundDrops()
	return st
}

// StopAccepting makes the Stack drop every new SYN from now on (counted as
// DropStopped) while established flows continue: the first step of a
// graceful shutdown. Wait for Stats().Active to reach zero or a grace
// period, then Close.
func (s *Stack) StopAccepting() { s.fwd.stopAccepting() }

// Run attaches the stack to the device and serves until ctx is cancelled,
// Close is called or reading the TUN fails for good. It returns only after
// every goroutine it started (TUN reader and writer, Dial and Handle calls)
// has returned, and closes the device. It can be called once.
//
// Shutdown order: stop admitting SYNs; cancel Dial and Handle contexts;
// reset the LAN side and close the upstream of every active flow, and abort
// handshakes, until every handler goroutine has returned; close gVisor; let
// the writer flush what is queued (those RSTs) and exit; close the device,
// which ends the reader; close the channel endpoint; wait for the reader and
// for gVisor's workers. A Dial or Handle that ignores its context and its
// closed connections holds shutdown up.
func (s *Stack) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.started || s.closed {
		s.mu.Unlock()
		return errors.New("netstack: Run called twice or after Close")
	}
	s.started = true
	ctx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	s.mu.Unlock()
	defer close(s.done)
	defer cancel()
	return s.run(ctx)
}

// Close stops Run and waits for it to return; before Run it closes the
// device. It is idempotent and returns nil.
func (s *Stack) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.doneIfStarted()
		return nil
	}
	s.closed = true
	started, cancel := s.started, s.cancel
	s.mu.Unlock()
	if !started {
		return s.cfg.Device.Close()
	}
	cancel()
	<-s.done
	return nil
}

func (s *Stack) doneIfStarted() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		c := make(chan struct{})
		close(c)
		return c
	}
	return s.done
}
