//go:build !linux

package labproc

import (
	"errors"
	"os/exec"
)

func start(*exec.Cmd) error { return errors.ErrUnsupported }
