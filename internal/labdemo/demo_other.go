//go:build !linux

package labdemo

import (
	"context"
	"errors"
)

// Run needs Linux network namespaces.
func Run(ctx context.Context, cfg Config) error { return errors.ErrUnsupported }
