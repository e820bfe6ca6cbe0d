//go:build !linux

package mptcp

import "errors"

// Sysctl is one per-namespace kernel setting, named as sysctl(8) names it.
type Sysctl struct {
	Name  string
	Value string
}

// Changed is what SetSysctls did to one setting.
type Changed struct {
	Name     string
	Old, New string
}

// SetSysctls needs Linux.
func SetSysctls(want []Sysctl) ([]Changed, error) { return nil, errors.ErrUnsupported }

// ReadExt needs Linux.
func ReadExt() (map[string]uint64, error) { return nil, errors.ErrUnsupported }

// Somaxconn needs Linux.
func Somaxconn() (int, error) { return 0, errors.ErrUnsupported }

// MaxSynBacklog needs Linux.
func MaxSynBacklog() (int, error) { return 0, errors.ErrUnsupported }
