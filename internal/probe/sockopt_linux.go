package probe

import (
	"fmt"
	"syscall"
)

// bindToDevice pins the socket to an interface (SO_BINDTODEVICE, needs
// CAP_NET_RAW), so probes cannot leave on another uplink even when source
// routing is misconfigured.
func bindToDevice(dev string) func(network, address string, c syscall.RawConn) error {
	if dev == "" {
		return nil
	}
	return func(network, address string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptString(int(fd), syscall.SOL_SOCKET, syscall.SO_BINDTODEVICE, dev)
		}); err != nil {
			return fmt.Errorf("probe: SO_BINDTODEVICE %s: %w", dev, err)
		}
		if serr != nil {
			return fmt.Errorf("probe: SO_BINDTODEVICE %s: %w", dev, serr)
		}
		return nil
	}
}
