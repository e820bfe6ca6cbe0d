package cpe

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"

	"hybridgw/internal/mptcp"
)

// lossSysctls are the per-namespace MPTCP settings that decide what a lost
// uplink does to new flows (Documentation/networking/mptcp-sysctl.rst).
// hcpe owns them: with the kernel defaults an outage of every uplink for a
// few seconds (a modem resync, a router boot) turns MPTCP off for an hour.
//
//   - net.mptcp.blackhole_timeout = 0: "0 to disable the blackhole
//     detection". The detection takes an MP_CAPABLE SYN that went
//     unanswered followed by a plain SYN that got through as proof that a
//     firewall drops MPTCP, and then sends every new connection without
//     MP_CAPABLE for 3600 s, growing with each repeat. On a CPE the path to
//     hag is meant to carry MPTCP, a lost SYN means a lost link, and hcpe
//     counts real stripping per uplink itself (hcpe_mptcp_fallbacks_total).
//   - net.mptcp.syn_retrans_before_tcp_fallback = 128: ">= 128 means that
//     all SYN retransmissions will keep the MPTCP options" (u8; default 2).
//     A plain-TCP retry of a SYN on a dead uplink only produces a connection
//     without bonding or failover; hcpe races the flow onto another uplink
//     instead, and a middlebox that strips the option still yields a plain
//     connection because the SYN-ACK comes back without MP_CAPABLE.
var lossSysctls = []mptcp.Sysctl{
	{Name: "net.mptcp.blackhole_timeout", Value: "0"},
	{Name: "net.mptcp.syn_retrans_before_tcp_fallback", Value: "128"},
}

// ownSysctls sets lossSysctls in hcpe's network namespace and logs what it
// changed. Failing is fatal: without them one resync leaves every flow
// plain TCP for an hour, silently.
func (c *CPE) ownSysctls() error {
	ch, err := mptcp.SetSysctls(lossSysctls)
	for _, x := range ch {
		c.log.Info("set MPTCP sysctl", "sysctl", x.Name, "old", x.Old, "new", x.New)
	}
	if err != nil {
		return fmt.Errorf("owning the MPTCP loss sysctls (deploy/sysctl/60-hybridgw-hcpe.conf sets them when hcpe may not write /proc/sys): %w", err)
	}
	return nil
}

// pollExt exports the kernel's blackhole counters and logs once when the
// kernel has declared a blackhole or sent MP_CAPABLE-less SYNs because of
// one; with blackhole_timeout = 0 neither should ever move.
func (c *CPE) pollExt() {
	ext, err := mptcp.ReadExt()
	if err != nil {
		if !c.extErrLogged {
			c.extErrLogged = true
			c.log.Warn("cannot read the kernel's MPTCP counters", "err", err)
		}
		return
	}
	bh, dis := ext["Blackhole"], ext["MPCapableSYNTXDisabled"]
	c.m.KernelBlackholes.Set(float64(bh))
	c.m.KernelSYNTXDisabled.Set(float64(dis))
	c.extSeen.Store(dis)
	if (bh > 0 || dis > 0) && !c.blackholeLogged {
		c.blackholeLogged = true
		c.log.Error("the kernel declared an MPTCP blackhole: new connections to hag go out without MP_CAPABLE (plain TCP) until net.mptcp.blackhole_timeout expires",
			"MPTcpExtBlackhole", bh, "MPTcpExtMPCapableSYNTXDisabled", dis)
	}
}

// fallbackReason tells why a connection to hag is plain TCP. The kernel
// keeps no per-socket record, so it is inferred at setup:
//   - blackhole: MPTcpExtMPCapableSYNTXDisabled moved since the last poll,
//     so the kernel sent SYNs without MP_CAPABLE on purpose (only when
//     something re-enabled net.mptcp.blackhole_timeout behind hcpe's back);
//   - syn_retries: TCP_INFO counts retransmissions before the first byte of
//     data, i.e. of the SYN: the kernel gave up on MP_CAPABLE after
//     net.mptcp.syn_retrans_before_tcp_fallback retries;
//   - stripped: the SYN went out once with MP_CAPABLE and the SYN-ACK came
//     back without it: a middlebox on that uplink removes the option.
func (c *CPE) fallbackReason(conn *net.TCPConn) string {
	if ext, err := mptcp.ReadExt(); err == nil && ext["MPCapableSYNTXDisabled"] > c.extSeen.Load() {
		return "blackhole"
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		return "stripped"
	}
	var retrans uint32
	// Control fails only on a closed conn; retrans then stays 0 and the
	// answer is the conservative "stripped".
	_ = rc.Control(func(fd uintptr) {
		if ti, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			retrans = ti.Total_retrans
		}
	})
	if retrans > 0 {
		return "syn_retries"
	}
	return "stripped"
}
