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
// overlaps hag's dial to the server.
func WaitEstablished(ctx context.Context, conn *net.TCPConn) error {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for {
		info, err := Info(conn)
		switch {
		case errors.Is(err, ErrFallback), err == nil && info.Fallback:
			// Plain TCP: no MPTCP key to wait for, but a Fast Open child
			// is still in SYN-RECV until the third ACK proves the source.
			if ok, err := tcpHandshakeDone(conn); err != nil || ok {
				return err
			}
		case err != nil:
			return fmt.Errorf("mptcp: waiting for the handshake to complete: %w", err)
		case info.Flags&InfoFlagRemoteKeyReceived != 0:
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("mptcp: waiting for the handshake to complete: %w", context.Cause(ctx))
		case <-t.C:
		}
	}
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
