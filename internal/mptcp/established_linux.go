package mptcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

// WaitEstablished returns once an accepted connection can send: the peer's
// key has arrived (the MP_CAPABLE third ACK), or the connection is plain
// TCP. A TCP Fast Open listener hands out the connection while it is still
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
			return nil
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
