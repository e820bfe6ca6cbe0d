// Package tun opens hcpe's TUN device and installs the policy routing that
// steers the LAN's TCP into it.
//
// The device is wireguard-go's Linux TUN with IFF_VNET_HDR and TSO: the
// kernel hands over TSO super-packets and takes segments up to 64 KiB to
// split itself, so one read or write syscall moves up to 64 KiB. Read and
// Write are wireguard-go's batch API (Read splits super-packets into MTU-sized
// segments, Write coalesces them back); ReadVirtio and WriteVirtio pass
// super-packets through whole with their virtio-net header, for a caller
// whose TCP/IP stack handles large segments itself (internal/netstack).
// That is worth about 2.5x the throughput of a plain TUN with one packet per
// syscall; passing super-packets through gVisor whole tripled to quintupled
// BenchmarkThroughput again (upload, download).

// Steering is done with ip rules, never with routes in the main table, so
// that only what the rules select enters the TUN:
//
//	pref P    iif <lan> to <bypass dst>          goto P+2   (one per LAN, prefix)
//	pref P    iif <lan> from <bypass src>        goto P+2
//	pref P    iif <lan> ipproto tcp dport <range> goto P+2
//	pref P+1  iif <lan> ipproto tcp              lookup <table>
//	pref P+2  nop
//	pref P+2  iif <lan> lookup main suppress_prefixlength 0   (with NativeTable)
//	pref P+2  iif <lan> lookup <native table>                  (with NativeTable)
//	table <table>: default dev <tun>   (IPv4 and IPv6)
//
// Bypassed traffic jumps over the steering rule to the nop. Without a
// NativeTable it continues with whatever rules follow, so it is routed
// exactly as if hcpe were not there (a "lookup main" would skip any policy
// routing the router has after P). With one (hcpe's bypass.uplink), what
// the LAN sends natively — bypassed TCP and all non-TCP traffic, which
// reaches P+2 too — takes the main table's specific routes (the LAN's
// other subnets) and otherwise that uplink's default route; rules of the
// same priority are evaluated in the order they were added, and a goto
// lands on the first of them, the nop. Non-TCP traffic never matches the
// steering rule, and hcpe's own sockets are locally generated, so they
// never match "iif <lan>".
//
// Every rule and route carries the protocol number RouteProtocol, which is
// how CleanStale recognises what a crashed run left behind.
package tun

import (
	"errors"
	"fmt"
	"net/netip"
)

// RouteProtocol tags every rule and route that Steering installs (rtnetlink
// "protocol"; `ip rule show proto 104`, `ip route show table T proto 104`).
// It is not one of the numbers that iproute2 or routing daemons assign.
const RouteProtocol = 104

// Offset is the headroom Write needs in front of every packet: the device
// puts its virtio-net header there. Read accepts any offset.
const Offset = 16

// PortRange is an inclusive range of TCP destination ports.
type PortRange struct {
	First, Last uint16
}

func (r PortRange) String() string {
	if r.First == r.Last {
		return fmt.Sprint(r.First)
	}
	return fmt.Sprintf("%d-%d", r.First, r.Last)
}

// Steering is the policy routing that sends the LAN's TCP into the TUN.
// Fill in the fields, then call Install; Remove undoes it.
type Steering struct {
	// Namespace is the path of the network namespace to configure (for
	// example /run/netns/cpe); empty means the caller's.
	Namespace string
	// LANs are the interfaces whose incoming TCP is steered (iif).
	LANs []string
	// Device is the TUN's name.
	Device string
	// Table is the routing table that holds the default routes to the TUN.
	// It must be dedicated to hcpe: CleanStale deletes its tagged routes.
	Table int
	// Priority is the first of the three rule priorities P, P+1 and P+2
	// that Steering uses. CleanStale deletes tagged rules in that range.
	Priority int
	// BypassDst are destinations routed natively.
	BypassDst []netip.Prefix
	// BypassSrc are LAN sources whose traffic is routed natively.
	BypassSrc []netip.Prefix
	// BypassPorts are TCP destination ports routed natively.
	BypassPorts []PortRange
	// NativeTable, if not 0, is the table whose default route what the
	// LAN sends natively takes (an uplink's source-routing table); 0
	// leaves it to the rules after P+2 and the main table.
	NativeTable int

	state *installed // what Install added, for Remove; nil when not installed
}

// validate checks the fields Install depends on and returns every problem.
func (s *Steering) validate() error {
	var errs []error
	if len(s.LANs) == 0 {
		errs = append(errs, fmt.Errorf("steering: no LAN interface given"))
	}
	for _, l := range s.LANs {
		if l == "" || len(l) > 15 {
			errs = append(errs, fmt.Errorf("steering: LAN interface name %q is not a valid interface name", l))
		}
	}
	if s.Device == "" {
		errs = append(errs, fmt.Errorf("steering: no TUN device given"))
	}
	// 0 is unspec, 253-255 are default, main and local.
	if s.Table <= 0 || (s.Table >= 253 && s.Table <= 255) {
		errs = append(errs, fmt.Errorf("steering: table %d is reserved or invalid; use a dedicated table number", s.Table))
	}
	if s.NativeTable < 0 || (s.NativeTable >= 253 && s.NativeTable <= 255) || (s.NativeTable != 0 && s.NativeTable == s.Table) {
		errs = append(errs, fmt.Errorf("steering: native table %d is reserved, invalid or the TUN's own", s.NativeTable))
	}
	// 0 is the local table's rule; 32766 and 32767 are main and default.
	if s.Priority <= 0 || s.Priority+2 >= 32766 {
		errs = append(errs, fmt.Errorf("steering: priority %d must be in 1..32763 so that P..P+2 come before main", s.Priority))
	}
	for _, p := range append(append([]netip.Prefix(nil), s.BypassDst...), s.BypassSrc...) {
		if !p.IsValid() {
			errs = append(errs, fmt.Errorf("steering: bypass prefix %v is invalid", p))
		}
	}
	for _, r := range s.BypassPorts {
		if r.First == 0 || r.Last < r.First {
			errs = append(errs, fmt.Errorf("steering: bypass port range %v is invalid", r))
		}
	}
	return errors.Join(errs...)
}
