package labdemo

import (
	"bufio"
	"fmt"
	"math"
	"net/netip"
	"sort"
	"strconv"
	"strings"
)

// Pure pieces of the demo: the live bar, the parsers of hcpe's metrics and
// of ss(8), and the summary. Tests call them without root.

// mbit converts bytes over seconds to Mbit/s.
func mbit(bytes uint64, seconds float64) float64 {
	if seconds <= 0 {
		return 0
	}
	return float64(bytes) * 8 / seconds / 1e6
}

// barWidth is the width in cells of an uplink's bar: half a cell per
// Mbit/s of its rate, so that the bars of unequal links compare at a
// glance, within [8, 30].
func barWidth(rateBps int64) int {
	return min(max(int(math.Round(float64(rateBps)/2e6)), 8), 30)
}

// bar draws value/full as a bar of width cells, with half-cell
// resolution: ▕█████▌░░░░▏. A value above full fills the bar.
func bar(value, full float64, width int) string {
	frac := 0.0
	if full > 0 {
		frac = min(max(value/full, 0), 1)
	}
	halves := int(math.Round(frac * float64(width) * 2))
	cells := halves / 2
	var b strings.Builder
	b.WriteString("▕")
	b.WriteString(strings.Repeat("█", cells))
	if halves%2 == 1 {
		b.WriteString("▌")
		cells++
	}
	b.WriteString(strings.Repeat("░", width-cells))
	b.WriteString("▏")
	return b.String()
}

// uplinkRate is one uplink's rate over one interval.
type uplinkRate struct {
	Name    string
	Mbit    float64 // measured
	RateBps int64   // the link's nominal downstream rate
}

// liveLine is the line printed once a second.
func liveLine(t int, ups []uplinkRate, client float64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "t=%3ds", t)
	var sum float64
	for _, u := range ups {
		fmt.Fprintf(&b, "  %s %s %5.1f Mbit/s", u.Name, bar(u.Mbit*1e6, float64(u.RateBps), barWidth(u.RateBps)), u.Mbit)
		sum += u.Mbit
	}
	fmt.Fprintf(&b, "   total %5.1f   client %5.1f", sum, client)
	return b.String()
}

// parseMetric sums the samples of metric name in a Prometheus text
// exposition whose labels contain every fragment (such as
// `uplink="dsl"`).
func parseMetric(exposition, name string, fragments ...string) (sum float64, found bool) {
	sc := bufio.NewScanner(strings.NewReader(exposition))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		match := true
		for _, f := range fragments {
			match = match && strings.Contains(line, f)
		}
		if !match {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			continue
		}
		sum += v
		found = true
	}
	return sum, found
}

// subflow is one TCP subflow of an MPTCP connection as ss(8) shows it.
type subflow struct {
	Uplink        string // by the local address; "?" when it is no uplink's
	Local, Remote netip.AddrPort
	BytesReceived uint64
	BytesAcked    uint64
	RTT           string // ss's rtt:avg/var, in ms
}

// parseSubflows reads `ss -tniH state established` and returns the MPTCP
// subflows (tcp-ulp-mptcp) towards remotePort, naming each by the uplink
// whose address it is sent from.
func parseSubflows(out string, remotePort uint16, uplinks map[netip.Addr]string) []subflow {
	var subs []subflow
	lines := strings.Split(out, "\n")
	for i := 0; i < len(lines); i++ {
		f := strings.Fields(lines[i])
		if len(f) < 4 || strings.HasPrefix(lines[i], "\t") || strings.HasPrefix(lines[i], " ") {
			continue
		}
		// With a state filter ss omits the State column: Recv-Q Send-Q
		// Local Peer; without it, State comes first.
		local, remote := f[len(f)-2], f[len(f)-1]
		la, err1 := parseSSAddr(local)
		ra, err2 := parseSSAddr(remote)
		if err1 != nil || err2 != nil || ra.Port() != remotePort {
			continue
		}
		info := ""
		for i+1 < len(lines) && (strings.HasPrefix(lines[i+1], "\t") || strings.HasPrefix(lines[i+1], " ")) {
			i++
			info += " " + lines[i]
		}
		if !strings.Contains(info, "tcp-ulp-mptcp") {
			continue
		}
		s := subflow{Local: la, Remote: ra, Uplink: "?"}
		if n, ok := uplinks[s.Local.Addr()]; ok {
			s.Uplink = n
		}
		for _, kv := range strings.Fields(info) {
			k, v, ok := strings.Cut(kv, ":")
			if !ok {
				continue
			}
			switch k {
			case "bytes_received":
				s.BytesReceived, _ = strconv.ParseUint(v, 10, 64)
			case "bytes_acked":
				s.BytesAcked, _ = strconv.ParseUint(v, 10, 64)
			case "rtt":
				s.RTT = v
			}
		}
		subs = append(subs, s)
	}
	sort.SliceStable(subs, func(i, j int) bool { return subs[i].Uplink < subs[j].Uplink })
	return subs
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// share is part/total as a percentage, 0 when total is 0.
func share(part, total float64) float64 {
	if total <= 0 {
		return 0
	}
	return 100 * part / total
}

// parseSSAddr parses an address as ss prints it: 198.51.100.5:35466,
// [2001:db8::1]:80, and with the interface a socket is bound to,
// 198.51.100.5%lte:35466 or [2001:db8::1%lte]:80. The interface is dropped.
func parseSSAddr(s string) (netip.AddrPort, error) {
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
