//go:build !linux

package mptcp

import (
	"context"
	"errors"
	"net"
)

// WaitEstablished needs Linux.
func WaitEstablished(ctx context.Context, conn *net.TCPConn) error { return errors.ErrUnsupported }

// HandshakeState is what one look at an accepted connection tells.
type HandshakeState struct {
	MPTCP bool
	Done  bool
}

// Handshake needs Linux.
func Handshake(conn *net.TCPConn) (HandshakeState, error) {
	return HandshakeState{}, errors.ErrUnsupported
}
