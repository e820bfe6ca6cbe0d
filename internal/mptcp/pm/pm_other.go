//go:build !linux

package pm

import (
	"context"
	"errors"
)

// PM is a path-manager client; it exists only on Linux.
type PM struct{}

// Open needs Linux.
func Open() (*PM, error) { return nil, errors.ErrUnsupported }

// Close does nothing outside Linux.
func (p *PM) Close() error { return nil }

func (p *PM) SetLimits(l Limits) error                         { return errors.ErrUnsupported }
func (p *PM) Limits() (Limits, error)                          { return Limits{}, errors.ErrUnsupported }
func (p *PM) AddEndpoint(e Endpoint) (uint8, error)            { return 0, errors.ErrUnsupported }
func (p *PM) DelEndpoint(id uint8) error                       { return errors.ErrUnsupported }
func (p *PM) Endpoint(id uint8) (Endpoint, error)              { return Endpoint{}, errors.ErrUnsupported }
func (p *PM) Endpoints() ([]Endpoint, error)                   { return nil, errors.ErrUnsupported }
func (p *PM) SetFlags(e Endpoint, flags Flags) error           { return errors.ErrUnsupported }
func (p *PM) Flush() error                                     { return errors.ErrUnsupported }
func (p *PM) Events(ctx context.Context) (<-chan Event, error) { return nil, errors.ErrUnsupported }
