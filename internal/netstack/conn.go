package netstack

import (
	"errors"
	"io"
	"net"
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
// so IsReset works on both sides of a relay. It is a relay.Notifier: a
// relay parks on the endpoint's waiter queue instead of a goroutine.
type Conn struct {
	c         *gonet.TCPConn
	ep        tcpip.Endpoint
	wq        *waiter.Queue
	id        FlowID
	closeOnce sync.Once
}

var _ net.Conn = (*Conn)(nil)

func newConn(wq *waiter.Queue, ep tcpip.Endpoint, id FlowID) *Conn {
	return &Conn{c: gonet.NewTCPConn(wq, ep), ep: ep, wq: wq, id: id}
}

// ID is the flow's original source and destination.
func (c *Conn) ID() FlowID { return c.id }

// Read reads from the LAN host; io.EOF after its FIN.
func (c *Conn) Read(b []byte) (int, error) {
	n, err := c.c.Read(b)
	return n, mapErr(err)
}

// TryRead reads what the LAN host has sent without waiting: io.EOF after
// its FIN, an error matching syscall.EAGAIN when there is nothing yet
// (relay.Notifier). It is Read without the wait, and like Read it lets
// receive-buffer auto-tuning see the bytes taken.
func (c *Conn) TryRead(b []byte) (int, error) {
	w := tcpip.SliceWriter(b)
	res, err := c.ep.Read(&w, tcpip.ReadOptions{})
	switch err.(type) {
	case nil:
		if res.Count != 0 {
			c.ep.ModerateRecvBuf(res.Count)
		}
		return res.Count, nil
	case *tcpip.ErrWouldBlock:
		return 0, syscall.EAGAIN
	case *tcpip.ErrClosedForReceive:
		return 0, io.EOF
	}
	return 0, mapErr(&net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: errors.New(err.String())})
}

// readableMask is what makes a read return at once: data, the LAN host's
// FIN, a reset or an error.
const readableMask = waiter.ReadableEvents | waiter.EventHUp | waiter.EventErr

// Readable reports whether TryRead would return without EAGAIN.
func (c *Conn) Readable() bool { return c.ep.Readiness(readableMask) != 0 }

// NotifyReadable has fn called on every readiness event of the endpoint
// (data, FIN, reset, close) until stop. gVisor calls fn with the
// endpoint's locks held, so fn must not block or call into the Conn.
func (c *Conn) NotifyReadable(fn func()) (stop func()) {
	e := waiter.NewFunctionEntry(readableMask, func(waiter.EventMask) { fn() })
	c.wq.EventRegister(&e)
	return func() { c.wq.EventUnregister(&e) }
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
		c.ep.Abort()
		c.ep.Close()
	})
}

// Close closes the connection gracefully (FIN after queued data). It is
// idempotent, and a no-op after Abort.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		_ = c.c.Close()
	})
	return nil
}

// LocalAddr is the server address the LAN host connected to.
func (c *Conn) LocalAddr() net.Addr { return net.TCPAddrFromAddrPort(c.id.Dst) }

// RemoteAddr is the LAN host's address.
func (c *Conn) RemoteAddr() net.Addr { return net.TCPAddrFromAddrPort(c.id.Src) }

// SetDeadline sets the read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error { return c.c.SetDeadline(t) }

// SetReadDeadline sets the read deadline of Read (TryRead never waits).
func (c *Conn) SetReadDeadline(t time.Time) error { return c.c.SetReadDeadline(t) }

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
