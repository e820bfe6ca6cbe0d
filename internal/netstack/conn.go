package netstack

import (
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/waiter"
)

// Conn is the LAN side of a flow: a net.Conn over a gVisor TCP endpoint,
// with half-close (CloseWrite, CloseRead) and reset (Abort). Errors caused by
// a RST from the LAN host wrap syscall.ECONNRESET, as a kernel socket's do,
// so IsReset works on both sides of a relay.
type Conn struct {
	c         *gonet.TCPConn
	ep        tcpip.Endpoint
	wq        *waiter.Queue
	id        FlowID
	closeOnce sync.Once
	closed    chan struct{} // closed by Close and Abort; ends WaitRead

	// gonet keeps its read deadline to itself, so WaitRead keeps a copy.
	mu        sync.Mutex
	rDeadline time.Time
	rChanged  chan struct{} // closed and replaced when rDeadline changes
}

var _ net.Conn = (*Conn)(nil)

func newConn(wq *waiter.Queue, ep tcpip.Endpoint, id FlowID) *Conn {
	return &Conn{c: gonet.NewTCPConn(wq, ep), ep: ep, wq: wq, id: id,
		closed: make(chan struct{}), rChanged: make(chan struct{})}
}

// ID is the flow's original source and destination.
func (c *Conn) ID() FlowID { return c.id }

// Read reads from the LAN host; io.EOF after its FIN.
func (c *Conn) Read(b []byte) (int, error) {
	n, err := c.c.Read(b)
	return n, mapErr(err)
}

// Write writes to the LAN host.
func (c *Conn) Write(b []byte) (int, error) {
	n, err := c.c.Write(b)
	return n, mapErr(err)
}

// CloseWrite sends a FIN after the queued data (half-close).
func (c *Conn) CloseWrite() error { return mapErr(c.c.CloseWrite()) }

// CloseRead discards further data from the LAN host.
func (c *Conn) CloseRead() error { return mapErr(c.c.CloseRead()) }

// Abort resets the connection: the LAN host gets a RST and queued data is
// discarded. Use it to pass a reset from the upstream on. It releases the
// endpoint, like Close.
func (c *Conn) Abort() {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.ep.Abort()
		c.ep.Close()
	})
}

// Close closes the connection gracefully (FIN after queued data). It is
// idempotent, and a no-op after Abort.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		_ = c.c.Close()
	})
	return nil
}

// LocalAddr is the server address the LAN host connected to.
func (c *Conn) LocalAddr() net.Addr { return net.TCPAddrFromAddrPort(c.id.Dst) }

// RemoteAddr is the LAN host's address.
func (c *Conn) RemoteAddr() net.Addr { return net.TCPAddrFromAddrPort(c.id.Src) }

// SetDeadline sets the read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	c.setReadDeadline(t)
	return c.c.SetDeadline(t)
}

// SetReadDeadline sets the read deadline, for Read and WaitRead.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.setReadDeadline(t)
	return c.c.SetReadDeadline(t)
}

func (c *Conn) setReadDeadline(t time.Time) {
	c.mu.Lock()
	c.rDeadline = t
	close(c.rChanged)
	c.rChanged = make(chan struct{})
	c.mu.Unlock()
}

// readableMask is what makes a Read return at once: data, the LAN host's
// FIN, a reset or an error.
const readableMask = waiter.ReadableEvents | waiter.EventHUp | waiter.EventErr

// WaitRead returns once a Read would not block, without taking a buffer:
// an idle flow then holds none (relay.ReadWaiter). It returns a timeout
// error when the read deadline passes and net.ErrClosed after Close.
func (c *Conn) WaitRead() error {
	if c.ep.Readiness(readableMask) != 0 {
		return nil
	}
	e, ch := waiter.NewChannelEntry(readableMask)
	c.wq.EventRegister(&e)
	defer c.wq.EventUnregister(&e)
	for c.ep.Readiness(readableMask) == 0 {
		c.mu.Lock()
		dl, changed := c.rDeadline, c.rChanged
		c.mu.Unlock()
		var expired <-chan time.Time
		if !dl.IsZero() {
			d := time.Until(dl)
			if d <= 0 {
				return &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.ErrDeadlineExceeded}
			}
			t := time.NewTimer(d)
			expired = t.C
			defer t.Stop() // at most one per deadline change
		}
		select {
		case <-ch:
		case <-changed:
		case <-expired:
		case <-c.closed:
			return &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: net.ErrClosed}
		}
	}
	return nil
}

// SetWriteDeadline sets the write deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.c.SetWriteDeadline(t) }

// gonet turns gVisor's errors into opaque strings; these are the ones a
// relay must tell apart.
var (
	resetText   = (&tcpip.ErrConnectionReset{}).String()
	abortedText = (&tcpip.ErrConnectionAborted{}).String()
)

// mapErr gives reset and abort errors their errno so that errors.Is works.
func mapErr(err error) error {
	var oe *net.OpError
	if err == nil || !errors.As(err, &oe) || oe.Err == nil {
		return err
	}
	switch oe.Err.Error() {
	case resetText:
		oe.Err = syscall.ECONNRESET
	case abortedText:
		oe.Err = syscall.ECONNABORTED
	}
	return err
}

// IsReset reports whether err means the peer reset the connection: a RST
// from the LAN host on a *Conn, or from the far side on a kernel socket.
func IsReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET)
}
