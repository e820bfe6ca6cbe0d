//go:build !linux

package mptcp

import (
	"context"
	"errors"
	"net"
	"net/netip"
)

// Listen needs Linux-kernel MPTCP.
func Listen(ctx context.Context, network, addr string, opts ListenOptions) (*net.TCPListener, error) {
	return nil, errors.ErrUnsupported
}

// Dial needs Linux-kernel MPTCP.
func Dial(ctx context.Context, o DialOptions, firstData []byte) (*net.TCPConn, error) {
	return nil, errors.ErrUnsupported
}

// SetNotSentLowat is Linux-only here.
func SetNotSentLowat(conn *net.TCPConn, bytes int) error { return errors.ErrUnsupported }

// EnsureFastOpenServer is Linux-only.
func EnsureFastOpenServer() error { return errors.ErrUnsupported }

// Check needs Linux-kernel MPTCP.
func Check(conn *net.TCPConn) (bool, error) { return false, errors.ErrUnsupported }

// IsMPTCP is always false outside Linux.
func IsMPTCP(conn *net.TCPConn) bool { return false }

// Info needs Linux-kernel MPTCP.
func Info(conn *net.TCPConn) (ConnInfo, error) { return ConnInfo{}, errors.ErrUnsupported }

// Subflows needs Linux-kernel MPTCP.
func Subflows(conn *net.TCPConn) ([]Subflow, error) { return nil, errors.ErrUnsupported }

// CloseSubflow needs Linux.
func CloseSubflow(local, remote netip.AddrPort) error { return errors.ErrUnsupported }
