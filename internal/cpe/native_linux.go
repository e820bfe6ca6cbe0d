package cpe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// masqueradedTo matches conntrack entries whose replies go to one of the
// addresses while their original source was another: LAN traffic the
// router source-NATs behind an uplink address. hcpe's own sockets on the
// uplink (subflows, probes) have the same address both ways and are left
// alone.
type masqueradedTo []netip.Addr

func (m masqueradedTo) MatchConntrackFlow(f *netlink.ConntrackFlow) bool {
	to, ok := netip.AddrFromSlice(f.Reverse.DstIP)
	if !ok {
		return false
	}
	to = to.Unmap()
	for _, a := range m {
		if a == to {
			from, _ := netip.AddrFromSlice(f.Forward.SrcIP)
			return from.Unmap() != to
		}
	}
	return false
}

// flushMasqueraded deletes the conntrack entries that masquerade LAN
// traffic behind addrs and returns how many it deleted. NAT keeps an
// entry's mapping for the entry's life, whatever the routes say since:
// without this a UDP stream that a route move sends over another uplink
// would still carry the old uplink's address.
func flushMasqueraded(addrs []netip.Addr) (uint, error) {
	if len(addrs) == 0 {
		return 0, nil
	}
	var total uint
	var errs []error
	for _, fam := range []netlink.InetFamily{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		n, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, fam, masqueradedTo(addrs))
		total += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	return total, errors.Join(errs...)
}

// destroySubflows aborts (SOCK_DESTROY, as `ss -K`) every TCP socket from
// one of locals to hag's port: the MPTCP subflows, including pooled
// connections', over an uplink that is being withdrawn. An aborted
// subflow can no longer send, so the path manager's RM_ADDR that follows
// leaves on a live subflow instead of the dead one, and the kernel
// reinjects what was in flight on it. It returns how many it aborted.
func destroySubflows(locals []netip.Addr, port uint16) (int, error) {
	var n int
	var errs []error
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		socks, err := netlink.SocketDiagTCP(fam)
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			errs = append(errs, fmt.Errorf("listing TCP sockets: %w", err))
			continue
		}
		for _, s := range socks {
			src, ok := netip.AddrFromSlice(s.ID.Source)
			if !ok || s.ID.DestinationPort != port || !slices.Contains(locals, src.Unmap()) {
				continue
			}
			if err := sockDestroy(fam, s); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("aborting %v:%d: %w", src, s.ID.SourcePort, err))
				continue
			}
			n++
		}
	}
	return n, errors.Join(errs...)
}

// sockDestroyTuple aborts the TCP socket from local to remote, without
// its cookie (one round trip to the kernel, no dump).
func sockDestroyTuple(local, remote netip.AddrPort) error {
	fam := uint8(unix.AF_INET6)
	if local.Addr().Unmap().Is4() && remote.Addr().Unmap().Is4() {
		fam = unix.AF_INET
	}
	s := &netlink.Socket{ID: netlink.SocketID{
		SourcePort: local.Port(), DestinationPort: remote.Port(),
		Source: net.IP(local.Addr().Unmap().AsSlice()), Destination: net.IP(remote.Addr().Unmap().AsSlice()),
		Cookie: [2]uint32{nl.TCPDIAG_NOCOOKIE, nl.TCPDIAG_NOCOOKIE},
	}}
	return sockDestroy(fam, s)
}

// sockDestroy sends SOCK_DESTROY for one socket as the dump described it
// (netlink's own SocketDestroy is IPv4 only): struct inet_diag_req_v2
// with the socket's id and cookie.
func sockDestroy(fam uint8, s *netlink.Socket) error {
	b := make([]byte, 56)
	b[0], b[1] = fam, unix.IPPROTO_TCP
	binary.NativeEndian.PutUint32(b[4:], 0xfff)
	binary.BigEndian.PutUint16(b[8:], s.ID.SourcePort)
	binary.BigEndian.PutUint16(b[10:], s.ID.DestinationPort)
	putAddr := func(dst []byte, ip net.IP) {
		if v4 := ip.To4(); fam == unix.AF_INET && v4 != nil {
			copy(dst, v4)
		} else {
			copy(dst, ip.To16())
		}
	}
	putAddr(b[12:28], s.ID.Source)
	putAddr(b[28:44], s.ID.Destination)
	binary.NativeEndian.PutUint32(b[44:], s.ID.Interface)
	binary.NativeEndian.PutUint32(b[48:], s.ID.Cookie[0])
	binary.NativeEndian.PutUint32(b[52:], s.ID.Cookie[1])
	req := nl.NewNetlinkRequest(nl.SOCK_DESTROY, unix.NLM_F_ACK)
	req.AddRawData(b)
	_, err := req.Execute(unix.NETLINK_INET_DIAG, 0)
	return err
}
