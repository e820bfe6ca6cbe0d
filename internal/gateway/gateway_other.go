//go:build !linux

package gateway

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"

	"hybridgw/internal/config"
)

type transparent struct{}

func installTransparent(config.Transparent) (*transparent, error) { return nil, errors.ErrUnsupported }
func (t *transparent) remove() error                              { return nil }

type dialOptions struct {
	timeout      time.Duration
	notSentLowat int
}

func dialServer(context.Context, netip.AddrPort, source, dialOptions) (*net.TCPConn, error) {
	return nil, errors.ErrUnsupported
}

func dialRefusal(err error, dst netip.Addr) *refusal {
	return refuse(65, err.Error())
}
