//go:build !linux

package mptcp

import (
	"errors"
	"net"
)

// Quiet needs Linux; elsewhere no connection is fit to be pooled.
func Quiet(*net.TCPConn) bool { return false }

// WaitReadable needs Linux.
func WaitReadable(*net.TCPConn) error { return errors.ErrUnsupported }

// Unacked needs Linux.
func Unacked(*net.TCPConn) (int, error) { return 0, errors.ErrUnsupported }

// Peek needs Linux.
func Peek(*net.TCPConn, []byte) (int, error) { return 0, errors.ErrUnsupported }
