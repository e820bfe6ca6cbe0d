// Package relay copies bytes both ways between two stream connections until
// both directions have ended, the way a transparent proxy must: a FIN on one
// side becomes a FIN (CloseWrite) on the other while the reverse direction
// keeps flowing, and a reset or failure on one side becomes a reset on the
// other, so that neither endpoint mistakes a broken stream for a complete one.
//
// Each direction waits until its source is readable without holding a
// buffer (a poll on a kernel socket through syscall.RawConn, gVisor's
// waiter queue through WaitRead), then borrows a pooled buffer to move the
// bytes and returns it before it waits again. An idle flow therefore holds
// no buffer and, between two kernel sockets (hag), no pipe: the splice(2)
// that io.Copy would use blocks inside the kernel copy holding two pipe
// descriptors per direction, which Go's pipe pool closes only at GC, and
// make bench figure 5 counted 6 descriptors per idle flow on hag.
//
// Relay owns both connections: it closes them before it returns.
package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Conn is a stream connection that can be half-closed.
// *net.TCPConn and gVisor's *gonet.TCPConn both satisfy it.
type Conn interface {
	net.Conn
	CloseWrite() error
}

// Aborter is implemented by a Conn that can end itself with a reset
// instead of a FIN. Relay calls Abort and then Close; Abort needs only to
// make the stack send the RST (for gVisor: the endpoint's Abort). A
// *net.TCPConn needs no Abort method: Relay uses SetLinger(0) on it.
type Aborter interface {
	Abort()
}

// Options tune a Relay. The zero value is valid: no timeouts, resets
// recognised by syscall.ECONNRESET / EPIPE only, private counters.
type Options struct {
	// IdleTimeout ends the relay when neither direction has moved a byte
	// for this long. 0 means never. A direction that stays blocked in one
	// write for IdleTimeout plus a grace (IdleTimeout/4, 10 ms to 10 s) —
	// a receiver that drains slower than 32 KiB (one buffer) in that time — also
	// counts as idle, because progress inside a write is invisible.
	IdleTimeout time.Duration

	// HalfCloseTimeout bounds how long the second direction may keep
	// running after the first one has ended. 0 means no bound beyond
	// IdleTimeout.
	HalfCloseTimeout time.Duration

	// IsReset reports whether an error from a Conn means the peer reset the
	// connection, in addition to the built-in syscall.ECONNRESET and EPIPE
	// checks. gVisor's gonet reports resets as its own error type, so the
	// hcpe side must supply this.
	IsReset func(error) bool

	// Counters, if not nil, is updated while the relay runs so that a
	// caller can export live byte counts. They advance with every write.
	Counters *Counters
}

// Counters holds the bytes relayed so far in each direction. Read them with
// Load at any time; only Relay should Add.
type Counters struct {
	AtoB atomic.Int64
	BtoA atomic.Int64
}

// Side names one of the two connections given to Relay.
type Side uint8

const (
	SideNone Side = iota
	SideA
	SideB
)

func (s Side) String() string {
	switch s {
	case SideA:
		return "a"
	case SideB:
		return "b"
	default:
		return "none"
	}
}

// Reason says why a relay ended.
type Reason uint8

const (
	// ReasonEOF: both directions ended with a FIN; the clean case.
	ReasonEOF Reason = iota
	// ReasonReset: a side reset the connection; the other side was reset too.
	ReasonReset
	// ReasonError: a read or write failed otherwise; both sides were reset,
	// because a FIN would present a truncated stream as complete.
	ReasonError
	// ReasonIdle: no byte moved in either direction for IdleTimeout.
	ReasonIdle
	// ReasonHalfCloseTimeout: one direction ended and the other did not
	// end within HalfCloseTimeout.
	ReasonHalfCloseTimeout
	// ReasonCanceled: the context was cancelled.
	ReasonCanceled
)

func (r Reason) String() string {
	switch r {
	case ReasonEOF:
		return "eof"
	case ReasonReset:
		return "reset"
	case ReasonError:
		return "error"
	case ReasonIdle:
		return "idle"
	case ReasonHalfCloseTimeout:
		return "half_close_timeout"
	case ReasonCanceled:
		return "canceled"
	default:
		return fmt.Sprintf("reason(%d)", uint8(r))
	}
}

// Result describes a finished relay.
type Result struct {
	AtoB, BtoA int64 // bytes written to b and to a
	End        Reason
	// First is the side whose stream ended first (FIN, reset or error).
	// It is SideNone when the relay was torn down (idle, cancel) before
	// either side ended.
	First Side
	// Err is the error that ended the relay (ReasonReset, ReasonError), the
	// context's cause (ReasonCanceled), or else the first CloseWrite error,
	// if any.
	Err error
}

// bufSize is the per-direction buffer, borrowed only while bytes move;
// the same size io.Copy uses.
const bufSize = 32 << 10

// bufPool is a cache, not state: buffers carry nothing between flows.
var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// buffersOut counts buffers borrowed and not yet returned, across all
// relays: what the relays hold right now. Tests read it; an idle flow
// must not add to it.
var buffersOut atomic.Int64

func getBuf() *[]byte {
	buffersOut.Add(1)
	return bufPool.Get().(*[]byte)
}

func putBuf(b *[]byte) {
	bufPool.Put(b)
	buffersOut.Add(-1)
}

// ReadWaiter is implemented by a Conn that can wait until a Read would not
// block without being given a buffer (netstack.Conn, over gVisor's waiter
// queue). WaitRead must return early with a timeout error when the read
// deadline passes, and with an error once the Conn is closed.
type ReadWaiter interface {
	WaitRead() error
}

type direction struct {
	src, dst         Conn
	srcSide, dstSide Side
	n                *atomic.Int64
	name             string
}

type flow struct {
	a, b  Conn
	opts  Options
	start time.Time
	last  atomic.Int64 // time.Since(start) at the last progress, ns

	probe atomic.Uint64 // generation of the idle probe in progress, 0 if none
	acks  chan uint64   // a direction has reported progress for probe n

	done atomic.Bool // set once teardown starts; later errors are ours
	mu   sync.Mutex
	end  Reason
	side Side
	err  error
}

// Relay copies a→b and b→a concurrently until both directions have ended
// or the relay is torn down, then closes a and b and returns. It returns
// only after both copy goroutines have exited. Cancelling ctx tears the
// relay down at once (ReasonCanceled).
//
// Shutdown order: the first ending (error, reset, idle, half-close timeout,
// cancel) marks the flow done and then aborts both conns (RST), which
// unblocks both copy goroutines; errors they see after that are the
// teardown's own and are not recorded. Relay waits for both goroutines,
// then closes both conns once more for the clean EOF path.
func Relay(ctx context.Context, a, b Conn, opts Options) Result {
	ctr := opts.Counters
	if ctr == nil {
		ctr = new(Counters)
	}
	f := &flow{a: a, b: b, opts: opts, start: time.Now(), acks: make(chan uint64, 2)}
	// Until both directions have ended cleanly, a close of either socket
	// must be a RST, including the one the kernel does when the process is
	// killed: a FIN from a dead relay would present the cut stream as
	// complete. The clean path restores the normal close below.
	setLinger(a, 0)
	setLinger(b, 0)
	dirs := [2]direction{
		{src: a, dst: b, srcSide: SideA, dstSide: SideB, n: &ctr.AtoB, name: "a->b"},
		{src: b, dst: a, srcSide: SideB, dstSide: SideA, n: &ctr.BtoA, name: "b->a"},
	}
	ended := make(chan struct{}, 2)
	for i := range dirs {
		go func(d *direction) {
			defer func() { ended <- struct{}{} }()
			f.copy(d)
		}(&dirs[i])
	}
	f.supervise(ctx, ended)

	if !f.done.Load() {
		// Both directions ended with a FIN each way: close normally, so
		// that what is still queued is delivered before the socket goes.
		setLinger(a, -1)
		setLinger(b, -1)
	}
	a.Close()
	b.Close()

	f.mu.Lock()
	defer f.mu.Unlock()
	return Result{AtoB: ctr.AtoB.Load(), BtoA: ctr.BtoA.Load(), End: f.end, First: f.side, Err: f.err}
}

// supervise runs on Relay's goroutine and waits for both directions, acting
// on cancellation and the timeouts meanwhile.
//
// When the counters have been quiet for IdleTimeout the supervisor
// probes before it ends the flow: it sets a past read deadline on both
// conns. That interrupts a direction only while it waits for input, when it
// holds no bytes, so nothing is lost. Each direction clears the deadline,
// reports, and acknowledges; once every running direction has, the counters are
// trusted. A direction blocked writing cannot acknowledge; after the probe's
// grace it counts as idle. idleProbe makes those decisions.
func (f *flow) supervise(ctx context.Context, ended <-chan struct{}) {
	var idleC, halfC <-chan time.Time
	var idle, half *time.Timer
	if f.opts.IdleTimeout > 0 {
		idle = time.NewTimer(f.opts.IdleTimeout)
		defer idle.Stop()
		idleC = idle.C
	}
	p := newIdleProbe(f.opts.IdleTimeout)
	done := ctx.Done()
	running := 2

	// check decides once the counters are trustworthy (or the grace is up).
	check := func() {
		s := p.check(time.Since(f.start) - time.Duration(f.last.Load()))
		switch {
		case s.idle:
			idleC = nil
			f.finish(ReasonIdle, SideNone, nil)
		case s.probe != 0:
			f.probe.Store(s.probe)
			// A deadline fails only on a closed conn, whose direction
			// is ending anyway and owes no acknowledgement.
			past := time.Unix(1, 0)
			f.a.SetReadDeadline(past)
			f.b.SetReadDeadline(past)
			idle.Reset(s.wait)
		default:
			f.probe.Store(0)
			idle.Reset(s.wait)
		}
	}

	for running > 0 {
		select {
		case <-ended:
			running--
			if running == 1 && f.opts.HalfCloseTimeout > 0 {
				half = time.NewTimer(f.opts.HalfCloseTimeout)
				defer half.Stop()
				halfC = half.C
			}
			if p.complete(running) && idleC != nil {
				check()
			}
		case <-done:
			done = nil
			f.finish(ReasonCanceled, SideNone, context.Cause(ctx))
		case <-halfC:
			halfC = nil
			f.finish(ReasonHalfCloseTimeout, SideNone, nil)
		case g := <-f.acks:
			if p.ack(g, running) && idleC != nil {
				check()
			}
		case <-idleC:
			check()
		}
	}
}

// copy moves src to dst until EOF or an error. Between reads it waits
// for readability with no buffer; the buffer goes back to the pool after
// each write, so only a direction with bytes in hand holds one.
func (f *flow) copy(d *direction) {
	wait := waiterOf(d.src)
	for {
		if wait != nil {
			if err := wait(); err != nil {
				if f.retry(d, err) {
					f.ack()
					continue
				}
				f.fail(d, d.srcSide, err)
				return
			}
		}
		bp := getBuf()
		buf := *bp
		nr, rerr := d.src.Read(buf)
		if nr > 0 {
			nw, werr := d.dst.Write(buf[:nr])
			f.progress(d, int64(nw))
			if werr == nil && nw < nr {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				putBuf(bp)
				f.fail(d, d.dstSide, werr)
				return
			}
		}
		putBuf(bp)
		switch {
		case rerr == nil:
		case errors.Is(rerr, io.EOF):
			f.eof(d)
			return
		case f.retry(d, rerr):
			f.ack()
		default:
			f.fail(d, d.srcSide, rerr)
			return
		}
	}
}

// waiterOf returns how to wait until c is readable without a buffer, or
// nil if c offers no way (then Read waits, holding the buffer).
func waiterOf(c Conn) func() error {
	if w, ok := c.(ReadWaiter); ok {
		return w.WaitRead
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return func() error { return rc.Read(readable) }
}

func (f *flow) progress(d *direction, n int64) {
	if n > 0 {
		d.n.Add(n)
		f.last.Store(int64(time.Since(f.start)))
	}
}

// retry handles the idle probe's deadline: the direction clears it and
// carries on. It clears before reporting progress and acknowledging, so a
// later probe, which only follows a quiet period, cannot be undone by this
// clear.
func (f *flow) retry(d *direction, err error) bool {
	var ne net.Error
	if f.done.Load() || !errors.As(err, &ne) || !ne.Timeout() {
		return false
	}
	return d.src.SetReadDeadline(time.Time{}) == nil
}

// ack tells the supervisor that this direction has reported all it moved
// before the current probe. A full buffer only means the supervisor falls
// back to its grace period.
func (f *flow) ack() {
	if g := f.probe.Load(); g != 0 {
		select {
		case f.acks <- g:
		default:
		}
	}
}

func (f *flow) eof(d *direction) {
	f.mu.Lock()
	if f.side == SideNone && !f.done.Load() {
		f.side = d.srcSide
	}
	f.mu.Unlock()
	if err := d.dst.CloseWrite(); err != nil && !f.done.Load() {
		// Not fatal: if dst is gone, its own read reports how.
		f.mu.Lock()
		if f.err == nil {
			f.err = fmt.Errorf("relay %s: close write: %w", d.name, err)
		}
		f.mu.Unlock()
	}
}

func (f *flow) fail(d *direction, side Side, err error) {
	if f.done.Load() {
		return // our own teardown closed the conn under us
	}
	r := ReasonError
	if f.isReset(err) {
		r = ReasonReset
	}
	f.finish(r, side, fmt.Errorf("relay %s: %w", d.name, err))
}

func (f *flow) isReset(err error) bool {
	// EPIPE: a write after the peer's RST was already consumed by a read.
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	return f.opts.IsReset != nil && f.opts.IsReset(err)
}

// finish records the first ending and aborts both sides. Every ending that
// reaches finish cuts at least one direction short (only the clean EOF path
// bypasses it), and a FIN would tell the peer that the stream is complete:
// a cancel at shutdown, an idle or half-close timeout and a failure all end
// with a RST on both sides. Aborting the side that already reset costs
// nothing, so both are aborted without working out which one failed.
func (f *flow) finish(r Reason, side Side, err error) {
	f.mu.Lock()
	if f.done.Load() {
		f.mu.Unlock()
		return
	}
	f.done.Store(true)
	f.end = r
	if f.side == SideNone {
		f.side = side
	}
	if err != nil {
		f.err = err
	}
	f.mu.Unlock()
	abortConn(f.a)
	abortConn(f.b)
}

// setLinger sets SO_LINGER on a conn that has it (*net.TCPConn, or a
// wrapper that exposes the method); sec 0 makes close send a RST, -1
// restores the normal close.
func setLinger(c Conn, sec int) {
	if l, ok := c.(interface{ SetLinger(int) error }); ok {
		// Fails only on a closed conn, which has nothing left to reset.
		_ = l.SetLinger(sec)
	}
}

func abortConn(c Conn) {
	switch c := c.(type) {
	case *net.TCPConn:
		c.SetLinger(0)
	case Aborter:
		c.Abort()
	}
	c.Close()
}
