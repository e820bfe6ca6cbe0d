package labdemo

import (
	"fmt"
	"math"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"hybridgw/internal/labproc"
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
	for _, so := range labproc.ParseSS(out) {
		la, err1 := labproc.ParseSSAddr(so.Local)
		ra, err2 := labproc.ParseSSAddr(so.Peer)
		if err1 != nil || err2 != nil || ra.Port() != remotePort || !so.MPTCPSubflow() {
			continue
		}
		s := subflow{Local: la, Remote: ra, Uplink: "?"}
		if n, ok := uplinks[s.Local.Addr()]; ok {
			s.Uplink = n
		}
		if v, ok := so.Field("bytes_received"); ok {
			s.BytesReceived, _ = strconv.ParseUint(v, 10, 64)
		}
		if v, ok := so.Field("bytes_acked"); ok {
			s.BytesAcked, _ = strconv.ParseUint(v, 10, 64)
		}
		s.RTT, _ = so.Field("rtt")
		subs = append(subs, s)
	}
	sort.SliceStable(subs, func(i, j int) bool { return subs[i].Uplink < subs[j].Uplink })
	return subs
}

// share is part/total as a percentage, 0 when total is 0.
func share(part, total float64) float64 {
	if total <= 0 {
		return 0
	}
	return 100 * part / total
}
