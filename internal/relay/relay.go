// Package relay copies bytes both ways between two stream connections until
// both directions have ended, the way a transparent proxy must: a FIN on one
// side becomes a FIN (CloseWrite) on the other while the reverse direction
// keeps flowing, and a reset or failure on one side becomes a reset on the
// other, so that neither endpoint mistakes a broken stream for a complete one.
//
// An idle flow holds no goroutine and no buffer. A direction whose source
// can report readability by callback — a kernel socket registered with a
// Poller (one epoll instance per daemon), or a Notifier such as a gVisor
// endpoint (its waiter queue) — is parked with nothing but its registration
// while no bytes arrive; when the source becomes readable a goroutine is
// started that borrows a pooled buffer, moves bytes until a read would block,
// re-arms the registration and exits. make bench figure 5 measured three
// goroutine stacks per flow in each daemon (a supervisor and one per
// direction) as most of an idle flow's memory. The timeouts are timers, not
// goroutines. A source that can do neither (any other Conn, or a kernel
// socket without a Poller) keeps a goroutine per direction; it waits for
// readability without a buffer where it can (a poll through syscall.RawConn).
//
// Between two kernel sockets (hag) the bytes are copied, not spliced: the
// splice(2) that io.Copy would use holds two pipe descriptors per
// direction, which Go's pipe pool closes only at GC, and make bench figure 5
// counted 6 descriptors per idle flow on hag.
//
// Relay and Start own both connections: they close them before the relay
// ends.
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

// KernelConn is implemented by a Conn that wraps a kernel socket without
// changing what reading it returns (hcpe's wrapper that takes a last
// reading of the subflow counters on Close). With a Poller, the relay
// reads and waits on the socket directly, and still writes, half-closes,
// aborts and closes through the wrapper.
type KernelConn interface {
	KernelConn() *net.TCPConn
}

// Notifier is implemented by a Conn that can read without waiting and tell
// by callback when it may have become readable (netstack.Conn, over
// gVisor's waiter queue). A direction reading from a Notifier holds no
// goroutine while it waits.
type Notifier interface {
	// TryRead reads what is there without waiting. When nothing is, it
	// returns 0 and an error that matches syscall.EAGAIN.
	TryRead(b []byte) (int, error)
	// Readable reports whether TryRead would return something other than
	// EAGAIN now: data, EOF or an error.
	Readable() bool
	// NotifyReadable has fn called each time the conn may have become
	// readable (data, FIN, reset, close) until stop is called. fn may be
	// called on any goroutine with the conn's locks held: it must not
	// block or call into the conn.
	NotifyReadable(fn func()) (stop func())
}

// Options tune a Relay. The zero value is valid: no timeouts, resets
// recognised by syscall.ECONNRESET / EPIPE only, private counters, and a
// goroutine per direction of kernel sockets.
type Options struct {
	// IdleTimeout ends the relay when neither direction has moved a byte
	// for this long. 0 means never. A direction that stays in one write
	// (or, without a Poller or Notifier, in one read that returned bytes)
	// for IdleTimeout plus a grace (IdleTimeout/4, 10 ms to 10 s) — a
	// receiver that drains slower than 32 KiB (one buffer) in that time —
	// also counts as idle, because progress inside a write is invisible.
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

	// ResetOnClose says that a and b already close with a reset
	// (SO_LINGER 0, set when they were made), so Relay need not set it
	// at its start: two setsockopt calls fewer per flow. Relay still
	// restores the normal close when both directions ended cleanly.
	ResetOnClose bool

	// Poller, if not nil, waits for the kernel sockets among the conns
	// (a *net.TCPConn, or a KernelConn), so that their idle directions
	// hold no goroutine. It must run until the relay has ended.
	Poller *Poller
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

// goroutines counts the directions that hold a goroutine (moving bytes,
// or blocked in a Conn without an evented source), across all relays.
// Tests read it: a parked flow must not add to it.
var goroutines atomic.Int64

// A direction's state. Only the goroutine that moved it to active moves it
// on from there; parked is left by exactly one CompareAndSwap, to active
// (a wake) or to ended (a teardown). active is the zero value: a direction
// Start is still setting up is Start's own, so a wake that comes while its
// source registers (gVisor calls back on its own goroutine as data
// arrives) finds it not parked and is ignored; park's readiness check
// after the arm finds the data.
const (
	active int32 = iota // a goroutine (or Start) runs it
	parked              // waiting for readability, no goroutine
	ended               // finished; it counts no more
)

// source is how an evented direction reads and waits.
type source interface {
	// read reads without waiting: errWouldBlock when nothing is there.
	read(b []byte) (int, error)
	// arm has d.wake called once the source is readable, perhaps at once
	// and on another goroutine. Only the direction's owner calls it.
	arm() error
	// release frees the registration once the relay has ended; a wake
	// before that of a direction that has ended is ignored.
	release()
}

type direction struct {
	f                *flow
	src, dst         Conn
	srcSide, dstSide Side
	n                *atomic.Int64
	name             string

	ev    source // nil: the direction runs in a goroutine of its own
	state atomic.Int32
	// busy is set while the direction holds bytes it has read and not yet
	// written (for a blocking source: from readability to the end of the
	// write); the idle timeout gives such a direction a grace.
	busy atomic.Bool
}

type flow struct {
	a, b  Conn
	opts  Options
	ctr   *Counters
	dirs  [2]direction
	start time.Time
	last  atomic.Int64 // time.Since(start) at the last progress, ns

	running atomic.Int32 // directions not yet ended
	done    atomic.Bool  // set once teardown starts; later errors are ours
	onDone  func(Result)

	mu        sync.Mutex
	completed bool
	idle      *time.Timer
	half      *time.Timer
	stopCtx   func() bool
	end       Reason
	side      Side
	err       error
}

// Relay copies a→b and b→a until both directions have ended or the relay
// is torn down, then closes a and b and returns. Cancelling ctx tears the
// relay down at once (ReasonCanceled). It is Start, waited for.
func Relay(ctx context.Context, a, b Conn, opts Options) Result {
	ch := make(chan Result, 1)
	Start(ctx, a, b, opts, func(r Result) { ch <- r })
	return <-ch
}

// Start begins relaying a→b and b→a and returns at once. When both
// directions have ended or the relay was torn down, it closes a and b and
// calls done, once: on the goroutine that ended the relay last (a
// direction's, a timer's, the context's), or on the caller's before Start
// returns if both directions failed at once. done is the relay's last use
// of a and b. Cancelling ctx tears the relay down at once
// (ReasonCanceled).
//
// Shutdown order: the first ending (error, reset, idle, half-close timeout,
// cancel) marks the flow done and then aborts both conns (RST), which ends
// the directions that are moving bytes; a parked direction is ended by the
// teardown itself. Errors seen after that are the teardown's own and are
// not recorded. Once the last direction has ended, both conns are closed
// once more (for the clean EOF path), then done is called.
func Start(ctx context.Context, a, b Conn, opts Options, done func(Result)) {
	ctr := opts.Counters
	if ctr == nil {
		ctr = new(Counters)
	}
	f := &flow{a: a, b: b, opts: opts, ctr: ctr, start: time.Now(), onDone: done}
	f.running.Store(2)
	// Until both directions have ended cleanly, a close of either socket
	// must be a RST, including the one the kernel does when the process is
	// killed: a FIN from a dead relay would present the cut stream as
	// complete. The clean path restores the normal close at the end.
	if !opts.ResetOnClose {
		setLinger(a, 0)
		setLinger(b, 0)
	}
	f.dirs = [2]direction{
		{f: f, src: a, dst: b, srcSide: SideA, dstSide: SideB, n: &ctr.AtoB, name: "a->b"},
		{f: f, src: b, dst: a, srcSide: SideB, dstSide: SideA, n: &ctr.BtoA, name: "b->a"},
	}
	for i := range f.dirs {
		d := &f.dirs[i]
		d.ev = newSource(d, opts.Poller) // d.state is active: see the states
	}
	f.mu.Lock()
	if opts.IdleTimeout > 0 {
		f.idle = time.AfterFunc(opts.IdleTimeout, f.idleCheck)
	}
	f.stopCtx = context.AfterFunc(ctx, func() { f.finish(ReasonCanceled, SideNone, context.Cause(ctx)) })
	f.mu.Unlock()
	for i := range f.dirs {
		d := &f.dirs[i]
		if d.ev == nil {
			goroutines.Add(1)
			go d.runBlocking()
		} else {
			d.park()
		}
	}
}

// newSource returns the evented source for d's src, or nil if it has none.
func newSource(d *direction, p *Poller) source {
	if n, ok := d.src.(Notifier); ok {
		return newNotifierSource(n, d.wake)
	}
	if p == nil {
		return nil
	}
	var tc *net.TCPConn
	switch c := d.src.(type) {
	case *net.TCPConn:
		tc = c
	case KernelConn:
		tc = c.KernelConn()
	default:
		return nil
	}
	s, err := p.source(tc, d.wake)
	if err != nil {
		return nil // a goroutine waits instead
	}
	return s
}

// wake starts a goroutine for a parked direction; a direction that is
// running or has ended ignores it.
func (d *direction) wake() {
	if d.state.CompareAndSwap(parked, active) {
		goroutines.Add(1)
		go d.run()
	}
}

// run moves bytes until the source would block, then parks the direction
// and returns. The buffer is borrowed per read, so a direction that parks
// holds none.
func (d *direction) run() {
	defer goroutines.Add(-1)
	f := d.f
	for {
		if f.done.Load() {
			d.stop()
			return
		}
		d.busy.Store(true)
		bp := getBuf()
		nr, rerr := d.ev.read(*bp)
		if nr > 0 && !d.write((*bp)[:nr]) {
			putBuf(bp)
			d.stop()
			return
		}
		putBuf(bp)
		d.busy.Store(false)
		switch {
		case rerr == nil:
		case rerr == errWouldBlock:
			d.park()
			return
		default:
			d.endOn(rerr)
			return
		}
	}
}

// endOn ends the direction after a read failed with err: a FIN passed on
// for EOF, the relay's failure otherwise.
func (d *direction) endOn(err error) {
	if errors.Is(err, io.EOF) {
		d.f.eof(d)
	} else {
		d.f.fail(d, d.srcSide, err)
	}
	d.stop()
}

// write writes b to dst and reports progress; false if the relay must end
// (the failure is recorded).
func (d *direction) write(b []byte) bool {
	nw, werr := d.dst.Write(b)
	d.f.progress(d, int64(nw))
	if werr == nil && nw < len(b) {
		werr = io.ErrShortWrite
	}
	if werr != nil {
		d.busy.Store(false)
		d.f.fail(d, d.dstSide, werr)
		return false
	}
	return true
}

// park gives up the direction's goroutine (or, at Start, the caller's)
// until the source is readable. The state goes to parked before the
// teardown check and the arm: a teardown that starts meanwhile either sees
// it parked and ends it, or is seen here.
func (d *direction) park() {
	f := d.f
	d.state.Store(parked)
	if f.done.Load() {
		if d.state.CompareAndSwap(parked, ended) {
			f.dirEnded()
		}
		return
	}
	if err := d.ev.arm(); err != nil && d.state.CompareAndSwap(parked, active) {
		f.fail(d, d.srcSide, err)
		d.stop()
	}
}

// stop ends a direction its caller runs.
func (d *direction) stop() {
	d.state.Store(ended)
	d.f.dirEnded()
}

// runBlocking is a direction without an evented source: a goroutine that
// waits for readability without a buffer where it can, then reads.
func (d *direction) runBlocking() {
	defer goroutines.Add(-1)
	f := d.f
	wait := waiterOf(d.src)
	for {
		if wait != nil {
			if err := wait(); err != nil {
				f.fail(d, d.srcSide, err)
				d.stop()
				return
			}
			d.busy.Store(true)
		}
		bp := getBuf()
		nr, rerr := d.src.Read(*bp)
		if nr > 0 {
			d.busy.Store(true)
			if !d.write((*bp)[:nr]) {
				putBuf(bp)
				d.stop()
				return
			}
		}
		putBuf(bp)
		d.busy.Store(false)
		if rerr != nil {
			d.endOn(rerr)
			return
		}
	}
}

// waiterOf returns how to wait until c is readable without a buffer, or
// nil if c offers no way (then Read waits, holding the buffer).
func waiterOf(c Conn) func() error {
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

// dirEnded counts a direction out. The last one completes the relay; the
// first one, on a flow that goes on, starts the half-close timeout.
func (f *flow) dirEnded() {
	if f.running.Add(-1) == 0 {
		f.complete()
		return
	}
	if f.opts.HalfCloseTimeout <= 0 {
		return
	}
	f.mu.Lock()
	if !f.completed && f.half == nil {
		f.half = time.AfterFunc(f.opts.HalfCloseTimeout, func() { f.finish(ReasonHalfCloseTimeout, SideNone, nil) })
	}
	f.mu.Unlock()
}

// complete runs once, on the goroutine that ended the last direction:
// it stops the timers, closes both conns and reports.
func (f *flow) complete() {
	f.mu.Lock()
	f.completed = true
	clean := !f.done.Swap(true) // no teardown: both directions saw a FIN
	if f.idle != nil {
		f.idle.Stop()
	}
	if f.half != nil {
		f.half.Stop()
	}
	stopCtx := f.stopCtx
	f.mu.Unlock()
	stopCtx()
	for i := range f.dirs {
		if ev := f.dirs[i].ev; ev != nil {
			ev.release()
		}
	}
	if clean {
		// Close normally, so that what is still queued is delivered
		// before the socket goes.
		setLinger(f.a, -1)
		setLinger(f.b, -1)
	}
	f.a.Close()
	f.b.Close()

	f.mu.Lock()
	res := Result{AtoB: f.ctr.AtoB.Load(), BtoA: f.ctr.BtoA.Load(), End: f.end, First: f.side, Err: f.err}
	f.mu.Unlock()
	f.onDone(res)
}

// idleCheck runs when the idle timer fires (idleDecision decides).
func (f *flow) idleCheck() {
	quiet := time.Since(f.start) - time.Duration(f.last.Load())
	busy := f.dirs[0].busy.Load() || f.dirs[1].busy.Load()
	if wait, idle := idleDecision(f.opts.IdleTimeout, quiet, busy); !idle {
		f.mu.Lock()
		if !f.completed {
			f.idle.Reset(wait)
		}
		f.mu.Unlock()
		return
	}
	f.finish(ReasonIdle, SideNone, nil)
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
// Parked directions are ended here; running ones end on the errors the
// aborts cause.
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
	var stopped [2]bool
	for i := range f.dirs {
		d := &f.dirs[i]
		if d.ev != nil && d.state.CompareAndSwap(parked, ended) {
			stopped[i] = true
		}
	}
	abortConn(f.a)
	abortConn(f.b)
	for i := range stopped {
		if stopped[i] {
			f.dirEnded()
		}
	}
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
