package relay

import (
	"errors"
	"syscall"
)

// errWouldBlock is what an evented source's read returns when nothing is
// there yet.
var errWouldBlock = errors.New("relay: read would block")

// notifierSource reads a Notifier. Its callback stays registered for the
// flow's life and wakes the direction whenever the conn signals; a running
// or ended direction ignores the wake (direction.wake), and arm checks
// readiness itself after the direction has parked, so no signal is lost
// between the last read and the park.
type notifierSource struct {
	n    Notifier
	wake func()
	stop func()
}

func newNotifierSource(n Notifier, wake func()) *notifierSource {
	return &notifierSource{n: n, wake: wake, stop: n.NotifyReadable(wake)}
}

func (s *notifierSource) read(b []byte) (int, error) {
	n, err := s.n.TryRead(b)
	if errors.Is(err, syscall.EAGAIN) {
		return 0, errWouldBlock
	}
	return n, err
}

func (s *notifierSource) arm() error {
	if s.n.Readable() {
		s.wake()
	}
	return nil
}

func (s *notifierSource) release() { s.stop() }
