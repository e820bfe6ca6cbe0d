package mptcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// WaitEstablished returns once an accepted connection can send: the peer's
// key has arrived (the MP_CAPABLE third ACK), or the connection is plain
// TCP and out of SYN-RECV (its third ACK arrived; until then its source
// address is unproven). A TCP Fast Open listener hands out the connection while it is still
// in SYN-RECV, and on Linux 6.18 data an MPTCP server writes then is queued
// but never sent, not even after the third ACK arrives: the Convert reply
// would be lost. Measured in the lab: without this wait every reply hag
// wrote before the third ACK stalled the flow until the client gave up.
//
// It polls MPTCP_INFO every millisecond: the wait is one RTT at most and
// overlaps hag's dial to the server. The first look costs no timer.
func WaitEstablished(ctx context.Context, conn *net.TCPConn) error {
	var t *time.Ticker
	for {
		hs, err := Handshake(conn)
		if err != nil || hs.Done {
			return err
		}
		if t == nil {
			t = time.NewTicker(time.Millisecond)
			defer t.Stop()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("mptcp: waiting for the handshake to complete: %w", context.Cause(ctx))
		case <-t.C:
		}
	}
}

// HandshakeState is what one look at an accepted connection tells.
type HandshakeState struct {
	// MPTCP is false for a plain TCP connection: a fallback, or a TCP
	// client of an MPTCP listener.
	MPTCP bool
	// Done: the client's handshake has completed (see WaitEstablished),
	// its source address is proven and the server side may write.
	Done bool
}

// Handshake reads conn's state once: one MPTCP_INFO read, and a TCP_INFO
// read for a plain TCP connection. Once Done it stays so.
func Handshake(conn *net.TCPConn) (HandshakeState, error) {
	info, err := Info(conn)
	switch {
	case errors.Is(err, ErrFallback), err == nil && info.Fallback:
		// Plain TCP: no MPTCP key to wait for, but a Fast Open child
		// is still in SYN-RECV until the third ACK proves the source.
		done, err := tcpHandshakeDone(conn)
		return HandshakeState{Done: done}, err
	case err != nil:
		return HandshakeState{}, fmt.Errorf("mptcp: waiting for the handshake to complete: %w", err)
	}
	return HandshakeState{MPTCP: true, Done: info.Flags&InfoFlagRemoteKeyReceived != 0}, nil
}

// tcpHandshakeDone tells whether the client's third ACK has arrived: the
// socket left SYN-RECV other than by being closed.
func tcpHandshakeDone(conn *net.TCPConn) (bool, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return false, fmt.Errorf("mptcp: reading TCP_INFO: %w", err)
	}
	var info *unix.TCPInfo
	var gerr error
	if err := rc.Control(func(fd uintptr) { info, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil {
		return false, fmt.Errorf("mptcp: reading TCP_INFO: %w", err)
	}
	if gerr != nil {
		return false, fmt.Errorf("mptcp: reading TCP_INFO: %w", gerr)
	}
	switch info.State {
	case unix.BPF_TCP_SYN_RECV:
		return false, nil
	case unix.BPF_TCP_CLOSE:
		return false, errors.New("mptcp: connection closed before the handshake completed")
	}
	return true, nil
}
