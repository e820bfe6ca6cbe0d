package mptcp

import (
	"net"
)

// SubflowsLegacy runs the pre-6.5 path of Subflows (MPTCP_SUBFLOW_ADDRS and
// MPTCP_TCPINFO) so tests cover it on a kernel that has MPTCP_FULL_INFO.
func SubflowsLegacy(conn *net.TCPConn) ([]Subflow, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	var out []Subflow
	err = control(rc, func(fd int) error {
		var err error
		out, err = subflowsOld(fd)
		return err
	})
	return out, err
}
