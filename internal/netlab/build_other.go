//go:build !linux

package netlab

import (
	"context"
	"errors"
)

// build needs Linux network namespaces.
func (l *Lab) build(context.Context, LinkProfile, LinkProfile) error { return errors.ErrUnsupported }
