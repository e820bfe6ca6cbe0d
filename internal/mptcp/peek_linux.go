package mptcp

import (
	"errors"
	"fmt"
	"io"
	"net"

	"golang.org/x/sys/unix"
)

// peek looks at the receive queue without consuming it or blocking.
func peek(fd uintptr) (n int, err error) {
	var b [1]byte
	n, _, err = unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	return n, err
}

// Quiet reports whether conn is open with nothing to read: what a warm,
// unused connection to hag must look like. A FIN (EOF), a reset or bytes
// hag sent unasked all mean the connection cannot carry a new flow.
func Quiet(conn *net.TCPConn) bool {
	rc, err := conn.SyscallConn()
	if err != nil {
		return false
	}
	quiet := false
	if cerr := rc.Control(func(fd uintptr) {
		_, err := peek(fd)
		quiet = errors.Is(err, unix.EAGAIN)
	}); cerr != nil {
		return false
	}
	return quiet
}

// Peek copies into buf what conn has received and not yet been read, up
// to len(buf), without consuming it or blocking: one recv(2) with MSG_PEEK.
// n is 0 with a nil error at EOF; a connection with nothing to read gives
// an error wrapping unix.EAGAIN (it is Quiet).
func Peek(conn *net.TCPConn, buf []byte) (n int, err error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("peeking: %w", err)
	}
	var perr error
	if err := rc.Control(func(fd uintptr) {
		n, _, perr = unix.Recvfrom(int(fd), buf, unix.MSG_PEEK|unix.MSG_DONTWAIT)
	}); err != nil {
		return 0, fmt.Errorf("peeking: %w", err)
	}
	if perr != nil {
		return 0, fmt.Errorf("peeking: %w", perr)
	}
	return n, nil
}

// WaitReadable blocks until conn has a byte to read, without reading it,
// bounded by conn's read deadline. io.EOF when the peer closed first.
func WaitReadable(conn *net.TCPConn) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("waiting for the first byte: %w", err)
	}
	var n int
	var perr error
	if err := rc.Read(func(fd uintptr) bool {
		n, perr = peek(fd)
		return !errors.Is(perr, unix.EAGAIN)
	}); err != nil {
		return fmt.Errorf("waiting for the first byte: %w", err)
	}
	if perr != nil {
		return fmt.Errorf("waiting for the first byte: %w", perr)
	}
	if n == 0 {
		return io.EOF
	}
	return nil
}

// Unacked is how many bytes written on conn the peer has not acknowledged
// yet (SIOCOUTQ; on an MPTCP socket, at the connection level, so a byte
// acknowledged over any subflow counts as delivered).
func Unacked(conn *net.TCPConn) (int, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("reading the unacknowledged bytes: %w", err)
	}
	var n int
	var ierr error
	if err := rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) }); err != nil {
		return 0, fmt.Errorf("reading the unacknowledged bytes: %w", err)
	}
	if ierr != nil {
		return 0, fmt.Errorf("reading the unacknowledged bytes: SIOCOUTQ: %w", ierr)
	}
	return n, nil
}
