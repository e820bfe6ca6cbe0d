//go:build !linux

package linkem

import (
	"context"
	"errors"
)

type sysLink struct{}

// Open needs Linux TUN devices and network namespaces.
func Open(cfg Config) (*Link, error) {
	return nil, errors.ErrUnsupported
}

// Run needs Linux.
func (l *Link) Run(ctx context.Context) error { return errors.ErrUnsupported }

// Close has nothing to close off Linux.
func (l *Link) Close() error { return nil }
