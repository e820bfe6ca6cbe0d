//go:build !linux

package probe

import (
	"errors"
	"syscall"
)

// bindToDevice is Linux-only.
func bindToDevice(dev string) func(network, address string, c syscall.RawConn) error {
	if dev == "" {
		return nil
	}
	return func(string, string, syscall.RawConn) error {
		return errors.ErrUnsupported
	}
}
