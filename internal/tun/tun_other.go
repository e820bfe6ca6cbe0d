//go:build !linux

package tun

import "errors"

// Device is an open TUN interface; only Linux is supported.
type Device struct{}

// Open is only supported on Linux.
func Open(name string, mtu int) (*Device, error) { return nil, errors.ErrUnsupported }

// Name is the interface name.
func (d *Device) Name() string { return "" }

// Index is the interface index.
func (d *Device) Index() int { return 0 }

// MTU is the MTU the device was opened with.
func (d *Device) MTU() int { return 0 }

// BatchSize is the most packets one Read returns.
func (d *Device) BatchSize() int { return 1 }

// Read is only supported on Linux.
func (d *Device) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	return 0, errors.ErrUnsupported
}

// Write is only supported on Linux.
func (d *Device) Write(bufs [][]byte, offset int) (int, error) { return 0, errors.ErrUnsupported }

// Close is only supported on Linux.
func (d *Device) Close() error { return errors.ErrUnsupported }

type installed struct{}

// Install is only supported on Linux.
func (s *Steering) Install() error { return errors.ErrUnsupported }

// Remove is only supported on Linux.
func (s *Steering) Remove() error { return errors.ErrUnsupported }

// CleanStale is only supported on Linux.
func (s *Steering) CleanStale() error { return errors.ErrUnsupported }
