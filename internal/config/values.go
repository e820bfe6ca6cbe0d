package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Rate is a link rate in bits per second, written as "20mbit", "5Mbit/s",
// "800kbit" or a bare number of bit/s.
type Rate int64

func parseRate(s string) (Rate, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	t = strings.TrimSuffix(t, "/s")
	if strings.HasSuffix(t, "bps") {
		t = strings.TrimSuffix(t, "bps") + "bit"
	}
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}, {"bit", 1}, {"g", 1e9}, {"m", 1e6}, {"k", 1e3}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSuffix(t, u.suffix), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(t), 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("%q is not a rate (e.g. 20mbit, 800kbit)", s)
	}
	return Rate(f * float64(mult)), nil
}

func (r Rate) String() string {
	switch {
	case r >= 1e9 && r%1e7 == 0:
		return strconv.FormatFloat(float64(r)/1e9, 'f', -1, 64) + "gbit"
	case r >= 1e6:
		return strconv.FormatFloat(float64(r)/1e6, 'f', -1, 64) + "mbit"
	case r >= 1e3:
		return strconv.FormatFloat(float64(r)/1e3, 'f', -1, 64) + "kbit"
	}
	return strconv.FormatInt(int64(r), 10) + "bit"
}

// The check* helpers parse one value, report a problem at path when it is
// wrong, and return the zero value so validation carries on.

func (ps *problems) addr(path, s string) netip.Addr {
	a, err := netip.ParseAddr(s)
	if err != nil {
		ps.add(path, "%q is not an IP address", s)
		return netip.Addr{}
	}
	return a.Unmap()
}

func (ps *problems) prefix(path, s string) netip.Prefix {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		if a, aerr := netip.ParseAddr(s); aerr == nil {
			return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		ps.add(path, "%q is not an IP prefix (e.g. 2001:db8:10::/56)", s)
		return netip.Prefix{}
	}
	if p.Masked() != p {
		ps.add(path, "%q has host bits set; did you mean %s?", s, p.Masked())
	}
	return p.Masked()
}

func (ps *problems) prefixes(path string, ss []string) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ss))
	for i, s := range ss {
		if p := ps.prefix(fmt.Sprintf("%s[%d]", path, i), s); p.IsValid() {
			out = append(out, p)
		}
	}
	return out
}

// hostPort parses "addr:port", "[v6]:port" or an address alone (then port
// def); an empty string means "disabled" and returns the zero value.
func (ps *problems) listen(path, s string) string {
	if s == "" {
		return ""
	}
	if strings.HasPrefix(s, "/") || strings.HasPrefix(s, "unix:") {
		return s
	}
	if _, err := netip.ParseAddrPort(s); err != nil {
		if strings.HasPrefix(s, ":") {
			if _, err := strconv.ParseUint(s[1:], 10, 16); err == nil {
				return s
			}
		}
		ps.add(path, "%q is not a listen address (host:port, [v6]:port, :port or a unix socket path)", s)
	}
	return s
}

func (ps *problems) adminListen(a AdminListen) {
	s := ps.listen("admin.listen", a.Listen)
	if s != "" && !strings.HasPrefix(s, "/") && !strings.HasPrefix(s, "unix:") && !a.TCPExposesReloadAndPprof {
		ps.add("admin.listen", "%q is a TCP address: anyone who reaches it can reload the config and read pprof; use a unix socket, or set admin.tcp_exposes_reload_and_pprof: true if that is meant", s)
	}
}

func (ps *problems) oneOf(path, v string, allowed ...string) {
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	ps.add(path, "%q is not one of %s", v, strings.Join(allowed, ", "))
}

func (ps *problems) positive(path string, v int64) {
	if v <= 0 {
		ps.add(path, "must be greater than 0 (is %d)", v)
	}
}

// PortRange is an inclusive destination port range, written "443" or "8000-8999".
type PortRange struct{ Lo, Hi uint16 }

func (ps *problems) portRange(path, s string) PortRange {
	lo, hi, found := strings.Cut(strings.TrimSpace(s), "-")
	if !found {
		hi = lo
	}
	l, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
	h, err2 := strconv.ParseUint(strings.TrimSpace(hi), 10, 16)
	if err1 != nil || err2 != nil || l == 0 || l > h {
		ps.add(path, "%q is not a port or port range (e.g. 443 or 8000-8999)", s)
		return PortRange{}
	}
	return PortRange{uint16(l), uint16(h)}
}
