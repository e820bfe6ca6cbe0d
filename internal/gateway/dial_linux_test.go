package gateway

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"hybridgw/internal/convert"
)

// TestDialRefusalDescriptors: a dial that fails because hag is out of
// descriptors is answered with the converter's resource error and counted
// as such, not as a Network Failure blamed on the path. The error is
// wrapped the way net.Dialer returns it.
func TestDialRefusalDescriptors(t *testing.T) {
	dst := netip.MustParseAddr("2001:db8:99::1")
	for _, errno := range []unix.Errno{unix.EMFILE, unix.ENFILE} {
		err := fmt.Errorf("dialling: %w", &net.OpError{Op: "socket", Net: "tcp6", Err: os.NewSyscallError("socket", errno)})
		r := dialRefusal(err, dst)
		if r.code != convert.ResourceExceeded || r.reason != "descriptors" {
			t.Errorf("%v: %v/%q, want Resource Exceeded/descriptors", errno, r.code, r.reason)
		}
	}
	if r := dialRefusal(fmt.Errorf("dialling: %w", os.NewSyscallError("connect", unix.ECONNREFUSED)), dst); r.reason != "" {
		t.Errorf("a refused connect counted as %q", r.reason)
	}
}
