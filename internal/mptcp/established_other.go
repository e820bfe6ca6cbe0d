//go:build !linux

package mptcp

import (
	"context"
	"errors"
	"net"
)

// WaitEstablished needs Linux.
func WaitEstablished(ctx context.Context, conn *net.TCPConn) error { return errors.ErrUnsupported }
