//go:build !linux

package main

import (
	"context"
	"errors"
)

// run needs Linux network namespaces, MPTCP and nftables.
func run(context.Context, options, string, func(func())) error { return errors.ErrUnsupported }
