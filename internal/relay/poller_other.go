//go:build !linux

package relay

import (
	"errors"
	"net"
)

// Poller needs epoll; elsewhere every direction keeps a goroutine.
type Poller struct{}

// NewPoller returns errors.ErrUnsupported outside Linux.
func NewPoller() (*Poller, error) { return nil, errors.ErrUnsupported }

// Run returns at once.
func (p *Poller) Run() error { return errors.ErrUnsupported }

// Close does nothing.
func (p *Poller) Close() error { return nil }

func (p *Poller) source(*net.TCPConn, func()) (source, error) { return nil, errors.ErrUnsupported }
