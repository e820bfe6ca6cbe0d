//go:build !linux

package cpe

import (
	"context"
	"errors"
)

type uplinks struct{}
type flow struct{}
type health struct{}
type warmPool struct{}

// Run needs Linux: TUN, policy routing and kernel MPTCP.
func (c *CPE) Run(ctx context.Context) error { return errors.ErrUnsupported }
