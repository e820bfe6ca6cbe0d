package mptcp

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// CloseSubflow resets one subflow of an MPTCP connection, named by its
// local and remote address, with sock_diag's SOCK_DESTROY (what `ss -K`
// does; needs CONFIG_INET_DIAG_DESTROY and CAP_NET_ADMIN). The kernel
// aborts that TCP subflow only, sending a RST on it, and the connection
// goes on over its other subflows: MPTCP subflows answer SOCK_DESTROY with
// tcp_abort (tcp_abort_override in net/mptcp/subflow.c), and a subflow's
// error does not reach the MPTCP socket while other subflows remain.
//
// The path manager's own MPTCP_PM_CMD_SUBFLOW_DESTROY would be the natural
// call, but the kernel accepts it only for connections run by the
// userspace path manager ("userspace PM not selected"), and hag's are run
// by the in-kernel one. ErrSubflowNotFound if no such socket exists.
func CloseSubflow(local, remote netip.AddrPort) error {
	c, err := netlink.Dial(unix.NETLINK_SOCK_DIAG, nil)
	if err != nil {
		return fmt.Errorf("mptcp: closing subflow %v->%v: opening sock_diag: %w", local, remote, err)
	}
	defer c.Close()
	_, err = c.Execute(netlink.Message{
		Header: netlink.Header{Type: sockDestroy, Flags: netlink.Request | netlink.Acknowledge},
		Data:   appendDestroyRequest(make([]byte, 0, diagReqV2Len), local, remote),
	})
	if errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("mptcp: closing subflow %v->%v: %w", local, remote, ErrSubflowNotFound)
	}
	if err != nil {
		return fmt.Errorf("mptcp: closing subflow %v->%v: %w", local, remote, err)
	}
	return nil
}
