package labproc

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Socket is one socket of `ss -tni` output (with or without -M, -H, a
// state filter): its header line and its indented info line(s).
type Socket struct {
	Netid string // "tcp" or "mptcp"; "" when ss printed no Netid column
	State string // "ESTAB", …; "" when a state filter left the column out
	// Local and Peer are as ss prints them ("198.51.100.5%lte:35466");
	// ParseSSAddr reads them.
	Local, Peer string
	Info        string // the info lines, joined by spaces
}

// MPTCPSubflow says whether a tcp socket is an MPTCP subflow.
func (s Socket) MPTCPSubflow() bool { return strings.Contains(s.Info, "tcp-ulp-mptcp") }

// Field is the value of an info field such as "subflows" or
// "bytes_received" ("subflows:1" → "1"), and whether it is there.
func (s Socket) Field(name string) (string, bool) {
	for _, w := range strings.Fields(s.Info) {
		if v, ok := strings.CutPrefix(w, name+":"); ok {
			return v, true
		}
	}
	return "", false
}

// ParseSS reads the output of `ss -tni` (-H, -M and a state filter
// allowed). The header line ss prints without -H is skipped.
func ParseSS(out string) []Socket {
	var socks []Socket
	ls := strings.Split(out, "\n")
	for i := 0; i < len(ls); i++ {
		if strings.HasPrefix(ls[i], "\t") || strings.HasPrefix(ls[i], " ") {
			continue // an info line without its socket
		}
		f := strings.Fields(ls[i])
		if len(f) < 4 || f[0] == "Netid" || f[0] == "State" || f[0] == "Recv-Q" {
			continue
		}
		s := Socket{Local: f[len(f)-2], Peer: f[len(f)-1]}
		// Recv-Q and Send-Q are the two numbers before the addresses;
		// before them, Netid and State when shown.
		lead := f[:len(f)-4]
		if len(lead) > 0 && (lead[0] == "tcp" || lead[0] == "mptcp" || lead[0] == "udp") {
			s.Netid, lead = lead[0], lead[1:]
		}
		if len(lead) > 0 {
			s.State = lead[0]
		}
		var info []string
		for i+1 < len(ls) && (strings.HasPrefix(ls[i+1], "\t") || strings.HasPrefix(ls[i+1], " ")) {
			i++
			info = append(info, strings.TrimSpace(ls[i]))
		}
		s.Info = strings.Join(info, " ")
		socks = append(socks, s)
	}
	return socks
}

// ParseSSAddr parses an address as ss prints it: 198.51.100.5:35466,
// [2001:db8::1]:80, and with the interface a socket is bound to,
// 198.51.100.5%lte:35466 or [2001:db8::1%lte]:80. The interface is
// dropped and an IPv4-mapped address unmapped.
func ParseSSAddr(s string) (netip.AddrPort, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return netip.AddrPort{}, fmt.Errorf("no port in %q", s)
	}
	host, port := strings.TrimSuffix(strings.TrimPrefix(s[:i], "["), "]"), s[i+1:]
	if j := strings.IndexByte(host, '%'); j >= 0 {
		host = host[:j]
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("port in %q: %w", s, err)
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(p)), nil
}
