package relay

import (
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// Poller waits for the readability of parked kernel sockets, for all the
// relays of a process, in one epoll instance: a parked direction is an
// EPOLLONESHOT registration and no goroutine. The epoll descriptor is
// itself in Go's netpoller (it is readable while events are pending), so
// Run waits without holding an OS thread. Go's netpoller watches the same
// sockets in its own epoll set; a socket may be in both.
type Poller struct {
	epfd int
	file *os.File // owns epfd

	mu   sync.Mutex
	next uint64
	regs map[uint64]func() // token → the direction's wake

	closed atomic.Bool
}

// NewPoller creates the epoll instance; Run dispatches its events.
func NewPoller() (*Poller, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("relay: creating the epoll instance: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("relay: epoll instance: %w", err)
	}
	return &Poller{epfd: fd, file: os.NewFile(uintptr(fd), "relay-epoll"), regs: map[uint64]func(){}}, nil
}

// Run wakes the directions whose sockets became readable until Close.
// Relays that use the Poller need it running until they have ended; one
// that is torn down needs no event to end.
func (p *Poller) Run() error {
	rc, err := p.file.SyscallConn()
	if err != nil {
		return fmt.Errorf("relay: epoll instance: %w", err)
	}
	events := make([]unix.EpollEvent, 128)
	var wakes []func()
	for {
		var n int
		var werr error
		err := rc.Read(func(fd uintptr) bool {
			n, werr = unix.EpollWait(int(fd), events, 0)
			if werr == unix.EINTR {
				n, werr = 0, nil
				return true // try again at once
			}
			return n > 0 || werr != nil
		})
		if err != nil {
			if p.closed.Load() {
				return nil
			}
			return fmt.Errorf("relay: waiting on the epoll instance: %w", err)
		}
		if werr != nil {
			return fmt.Errorf("relay: epoll_wait: %w", werr)
		}
		p.mu.Lock()
		for _, ev := range events[:n] {
			if w := p.regs[token(ev)]; w != nil {
				wakes = append(wakes, w)
			}
		}
		p.mu.Unlock()
		for i, w := range wakes {
			w()
			wakes[i] = nil
		}
		wakes = wakes[:0]
	}
}

// Close stops Run. Registrations of relays still running fail on their
// next arm, which ends those relays with an error.
func (p *Poller) Close() error {
	if p.closed.Swap(true) {
		return nil
	}
	return p.file.Close()
}

func token(ev unix.EpollEvent) uint64 { return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32 }

// kernelSource reads a kernel socket without waiting and parks on the
// Poller. Its registration is EPOLLONESHOT: an event disarms it until the
// direction parks again, and re-arming (EPOLL_CTL_MOD) reports a socket
// that became readable meanwhile at once.
type kernelSource struct {
	p   *Poller
	rc  syscall.RawConn
	tok uint64
}

// source registers c, disarmed, for a direction woken by wake.
func (p *Poller) source(c *net.TCPConn, wake func()) (source, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.next++
	s := &kernelSource{p: p, rc: rc, tok: p.next}
	p.regs[s.tok] = wake
	p.mu.Unlock()
	if err := s.ctl(unix.EPOLL_CTL_ADD, unix.EPOLLONESHOT); err != nil {
		p.forget(s.tok)
		return nil, err
	}
	return s, nil
}

func (p *Poller) forget(tok uint64) {
	p.mu.Lock()
	delete(p.regs, tok)
	p.mu.Unlock()
}

func (s *kernelSource) ctl(op int, events uint32) error {
	ev := unix.EpollEvent{Events: events, Fd: int32(uint32(s.tok)), Pad: int32(uint32(s.tok >> 32))}
	var cerr error
	if err := s.rc.Control(func(fd uintptr) { cerr = unix.EpollCtl(s.p.epfd, op, int(fd), &ev) }); err != nil {
		return err
	}
	if cerr != nil {
		return os.NewSyscallError("epoll_ctl", cerr)
	}
	return nil
}

// read is one non-blocking read(2) under the conn's read lock (the
// callback reports done at once, so RawConn.Read never waits).
func (s *kernelSource) read(b []byte) (int, error) {
	var n int
	var serr error
	if err := s.rc.Read(func(fd uintptr) bool {
		for {
			n, serr = unix.Read(int(fd), b)
			if serr != unix.EINTR {
				return true
			}
		}
	}); err != nil {
		return 0, err
	}
	switch {
	case serr == unix.EAGAIN:
		return 0, errWouldBlock
	case serr != nil:
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", serr)}
	case n == 0 && len(b) > 0:
		return 0, io.EOF
	}
	return n, nil
}

func (s *kernelSource) arm() error {
	return s.ctl(unix.EPOLL_CTL_MOD, unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLONESHOT)
}

// release drops the registration (closing the socket would too) and the
// wake, which holds the flow.
func (s *kernelSource) release() {
	_ = s.ctl(unix.EPOLL_CTL_DEL, 0)
	s.p.forget(s.tok)
}
