package admin

import (
	"bytes"
	"cmp"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Sort keys for flows.
const (
	SortAge   = "age"   // oldest first
	SortBytes = "bytes" // most bytes (both directions) first
	SortDst   = "dst"   // by destination address, then port
)

// HostFilter matches flows by an address or prefix; the zero value
// matches everything.
type HostFilter struct{ p netip.Prefix }

// ParseHost parses "--host": an address ("203.0.113.10") or a prefix
// ("203.0.113.0/24", "2001:db8::/32"); "" matches every flow.
func ParseHost(s string) (HostFilter, error) {
	if s == "" {
		return HostFilter{}, nil
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		return HostFilter{p.Masked()}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return HostFilter{}, fmt.Errorf("--host %q: want an address or a prefix", s)
	}
	a = a.Unmap().WithZone("")
	return HostFilter{netip.PrefixFrom(a, a.BitLen())}, nil
}

// Match reports whether any of addrs is in the filter.
func (h HostFilter) Match(addrs ...netip.AddrPort) bool {
	if !h.p.IsValid() {
		return true
	}
	for _, a := range addrs {
		if a.IsValid() && h.p.Contains(a.Addr().Unmap().WithZone("")) {
			return true
		}
	}
	return false
}

// FilterCPEFlows keeps the flows whose LAN source or destination matches h.
func FilterCPEFlows(fs []CPEFlow, h HostFilter) []CPEFlow {
	return slices.DeleteFunc(fs, func(f CPEFlow) bool { return !h.Match(f.Source, f.Destination) })
}

// FilterHAGFlows keeps the flows of cpe ("" for all) whose destination,
// client, peer or source matches h.
func FilterHAGFlows(fs []HAGFlow, h HostFilter, cpe string) []HAGFlow {
	return slices.DeleteFunc(fs, func(f HAGFlow) bool {
		return (cpe != "" && f.CPE != cpe) || !h.Match(f.Destination, f.Client, f.Peer, f.Source)
	})
}

// ValidSort checks a --sort value.
func ValidSort(key string) error {
	switch key {
	case SortAge, SortBytes, SortDst:
		return nil
	}
	return fmt.Errorf("--sort %q: want age, bytes or dst", key)
}

type sortable struct {
	id      uint64
	started time.Time
	bytes   int64
	dst     netip.AddrPort
}

func compare(key string, a, b sortable) int {
	var c int
	switch key {
	case SortAge:
		c = a.started.Compare(b.started)
	case SortBytes:
		c = cmp.Compare(b.bytes, a.bytes)
	case SortDst:
		c = a.dst.Compare(b.dst)
	}
	return cmp.Or(c, cmp.Compare(a.id, b.id))
}

// SortCPEFlows orders flows by key (see the Sort constants); ties by id.
func SortCPEFlows(fs []CPEFlow, key string) {
	slices.SortStableFunc(fs, func(a, b CPEFlow) int {
		return compare(key, sortable{a.ID, a.Started, a.ToServer + a.ToClient, a.Destination},
			sortable{b.ID, b.Started, b.ToServer + b.ToClient, b.Destination})
	})
}

// SortHAGFlows orders flows by CPE, then by key.
func SortHAGFlows(fs []HAGFlow, key string) {
	slices.SortStableFunc(fs, func(a, b HAGFlow) int {
		return cmp.Or(cmp.Compare(a.CPE, b.CPE), compare(key, sortable{a.ID, a.Started, a.ToServer + a.ToClient, a.Destination},
			sortable{b.ID, b.Started, b.ToServer + b.ToClient, b.Destination}))
	})
}

// table aligns cells with text/tabwriter and drops the padding that
// empty trailing cells leave at the ends of lines.
type table struct {
	*tabwriter.Writer
	buf bytes.Buffer
	out io.Writer
}

func newTable(w io.Writer) *table {
	t := &table{out: w}
	t.Writer = tabwriter.NewWriter(&t.buf, 0, 0, 2, ' ', 0)
	return t
}

func (t *table) Flush() error {
	if err := t.Writer.Flush(); err != nil {
		return err
	}
	lines := strings.SplitAfter(t.buf.String(), "\n")
	t.buf.Reset()
	for _, l := range lines {
		if body, ok := strings.CutSuffix(l, "\n"); ok {
			l = strings.TrimRight(body, " ") + "\n"
		}
		if _, err := io.WriteString(t.out, l); err != nil {
			return err
		}
	}
	return nil
}

func row(tw io.Writer, cells ...string) { fmt.Fprintln(tw, strings.Join(cells, "\t")) }

// RenderCPEStatus writes hcpe's status as an operator reads it.
func RenderCPEStatus(w io.Writer, s *CPEStatus, now time.Time) error {
	tw := newTable(w)
	hag := make([]string, len(s.HAG.Addresses))
	for i, a := range s.HAG.Addresses {
		hag[i] = netip.AddrPortFrom(a, uint16(s.HAG.Port)).String()
	}
	reach := "unreachable"
	if s.HAG.Reachable {
		reach = "reachable"
	}
	fmt.Fprintf(tw, "hag:\t%s as %s, %s\n", strings.Join(hag, ", "), orDash(s.HAG.CPEID), reach)
	fmt.Fprintf(tw, "new flows on:\t%s\n", orDash(s.FirstUplink))
	fmt.Fprintf(tw, "up:\t%s (since %s)\n", Age(now.Sub(s.Started)), s.Started.UTC().Format(time.RFC3339))
	t := s.Totals
	fmt.Fprintf(tw, "flows:\t%d active, %d converted, %d refused, %d MPTCP fallbacks\n", t.FlowsActive, t.FlowsOK, t.FlowsFailed, t.Fallbacks)
	if p := s.Pool; p.Enabled {
		fmt.Fprintf(tw, "warm pool:\t%d ready of %d wanted (%d..%d, %.1f flows/s); %d hits, %d misses, %d refills, %d discarded\n",
			p.Ready, p.Target, p.Floor, p.Ceiling, p.FlowRate, p.Hits, p.Misses, p.Refills, p.Discarded)
	} else {
		fmt.Fprintf(tw, "warm pool:\toff\n")
	}
	if s.NativeUplink != "" {
		fmt.Fprintf(tw, "native on:\t%s\n", s.NativeUplink)
	}
	if f := s.LastFailover; f != nil {
		fmt.Fprintf(tw, "failover:\t%s %s → %s (%s) %s ago, took %s\n", f.What, f.From, f.To, f.Reason,
			Age(now.Sub(f.At)), time.Duration(f.TookMs*float64(time.Millisecond)).Round(time.Millisecond))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = newTable(w)
	row(tw, "UPLINK", "ROLE", "STATE", "ADDRESSES", "RTT", "LOSS", "DOWN RATE", "UP RATE", "BYTES DOWN", "BYTES UP", "SUBFLOWS", "REASON")
	subs := 0
	for _, u := range s.Uplinks {
		addrs := make([]string, len(u.Addresses))
		for i, a := range u.Addresses {
			addrs[i] = a.String()
		}
		row(tw, u.Name, u.Role, u.State, orDash(strings.Join(addrs, ",")), RTT(u.RTTMs), Loss(u.Loss),
			Rate(u.DownBps), Rate(u.UpBps), Bytes(u.BytesDown), Bytes(u.BytesUp), fmt.Sprint(u.Subflows), orDash(u.Reason))
		subs += u.Subflows
	}
	row(tw, "total", "", "", "", "", "", "", "", Bytes(t.BytesDown), Bytes(t.BytesUp), fmt.Sprint(subs), "")
	return tw.Flush()
}

// RenderHAGStatus writes hag's status as an operator reads it.
func RenderHAGStatus(w io.Writer, s *HAGStatus, now time.Time) error {
	tw := newTable(w)
	ls := make([]string, len(s.Listeners))
	for i, l := range s.Listeners {
		ls[i] = l.Address + " (" + strings.Join(l.Protocols, ", ") + ")"
	}
	fmt.Fprintf(tw, "listeners:\t%s\n", orDash(strings.Join(ls, ", ")))
	fmt.Fprintf(tw, "up:\t%s (since %s)\n", Age(now.Sub(s.Started)), s.Started.UTC().Format(time.RFC3339))
	f := s.Flows
	fmt.Fprintf(tw, "flows:\t%d active, %d handshakes in flight, %d relayed since start\n", f.Active, f.HandshakesInFlight, f.Results["ok"])
	fmt.Fprintf(tw, "bytes:\t%s to servers, %s to clients\n", Bytes(uint64(max(0, f.ToServer))), Bytes(uint64(max(0, f.ToClient))))
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = newTable(w)
	row(tw, "CPE", "AUTH", "ACTIVE", "FLOWS", "LAST SEEN", "PEERS", "TO SERVER", "TO CLIENT")
	for _, c := range s.CPEs {
		seen := "never"
		if c.LastSeen != nil {
			seen = Age(now.Sub(*c.LastSeen)) + " ago"
			if c.FlowsActive > 0 {
				seen = "now"
			}
		}
		peers := make([]string, len(c.Peers))
		for i, p := range c.Peers {
			peers[i] = p.String()
		}
		id := c.ID
		if !c.Configured {
			id += " (removed)"
		}
		row(tw, id, orDash(c.Auth), fmt.Sprint(c.FlowsActive), fmt.Sprint(c.Flows), seen, orDash(strings.Join(peers, ",")),
			Bytes(uint64(max(0, c.ToServer))), Bytes(uint64(max(0, c.ToClient))))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = newTable(w)
	row(tw, "COUNTER", "NAME", "COUNT")
	n := 0
	add := func(kind string, m map[string]uint64, skip ...string) {
		for _, k := range sortedKeys(m) {
			if !slices.Contains(skip, k) && m[k] > 0 {
				row(tw, kind, k, fmt.Sprint(m[k]))
				n++
			}
		}
	}
	// Flow results other than success and an Info exchange: refusals by
	// Convert error, and requests that never got an answer.
	add("result", f.Results, "ok", "info")
	add("convert_error", s.Errors.ConvertErrors)
	add("limit_hit", s.Errors.LimitHits)
	add("flow_end", s.Errors.FlowEnds, "eof")
	if s.Errors.MPTCPFallbacks > 0 {
		row(tw, "mptcp_fallback", "-", fmt.Sprint(s.Errors.MPTCPFallbacks))
		n++
	}
	if n == 0 {
		row(tw, "errors", "none", "0")
	}
	return tw.Flush()
}

// RenderCPEFlows writes one row per flow and, indented under it, one per
// subflow: its uplink, local and remote address, RTT, bytes and backup
// flag.
func RenderCPEFlows(w io.Writer, fs []CPEFlow) error {
	tw := newTable(w)
	row(tw, "ID", "SOURCE", "DESTINATION", "AGE", "TO SERVER", "TO CLIENT", "UPLINK", "RTT", "BACKUP")
	for _, f := range fs {
		up := f.Uplink
		if !f.MPTCP {
			if f.Fallback != "" {
				up += " (tcp: " + f.Fallback + ")"
			} else {
				up += " (tcp)"
			}
		}
		row(tw, fmt.Sprint(f.ID), f.Source.String(), f.Destination.String(), Age(time.Duration(f.AgeMs)*time.Millisecond),
			Bytes(uint64(max(0, f.ToServer))), Bytes(uint64(max(0, f.ToClient))), up, "", "")
		for _, s := range f.Subflows {
			backup := "-"
			if s.Backup != nil {
				backup = yesNo(*s.Backup)
			}
			row(tw, "", "  "+s.Local.String(), s.Remote.String(), "", Bytes(s.BytesAcked), Bytes(s.BytesReceived), s.Uplink, RTT(s.RTTMs), backup)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "%d flows\n", len(fs))
	return nil
}

// RenderHAGFlows writes one row per flow and, indented under it, one per
// subflow with the CPE-side address it came from.
func RenderHAGFlows(w io.Writer, fs []HAGFlow) error {
	tw := newTable(w)
	row(tw, "ID", "CPE", "PEER", "DESTINATION", "SOURCE", "AGE", "TO SERVER", "TO CLIENT", "RTT")
	for _, f := range fs {
		src := f.Source.String()
		if f.Preserved {
			src += " (client)"
		}
		peer := f.Peer.String()
		if !f.MPTCP {
			peer += " (tcp)"
		}
		row(tw, fmt.Sprint(f.ID), f.CPE, peer, f.Destination.String(), src, Age(time.Duration(f.AgeMs)*time.Millisecond),
			Bytes(uint64(max(0, f.ToServer))), Bytes(uint64(max(0, f.ToClient))), "")
		for _, s := range f.Subflows {
			// On hag a subflow receives what goes to the server.
			row(tw, "", "", "  "+s.Remote.String(), "", "", "", Bytes(s.BytesReceived), Bytes(s.BytesAcked), RTT(s.RTTMs))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "%d flows\n", len(fs))
	return nil
}

func sortedKeys(m map[string]uint64) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// Bytes formats a byte count with binary prefixes: "512 B", "1.5 KiB",
// "12.0 MiB".
func Bytes(n uint64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v := float64(n)
	for _, unit := range []string{"KiB", "MiB", "GiB", "TiB"} {
		v /= 1024
		if v < 1024 || unit == "TiB" {
			return fmt.Sprintf("%.1f %s", v, unit)
		}
	}
	panic("unreachable")
}

// Rate formats bits per second: "850 bit/s", "512.0 kbit/s", "18.2 Mbit/s".
func Rate(bps int64) string {
	if bps < 1000 {
		return fmt.Sprintf("%d bit/s", max(0, bps))
	}
	v := float64(bps)
	for _, unit := range []string{"kbit/s", "Mbit/s", "Gbit/s"} {
		v /= 1000
		if v < 1000 || unit == "Gbit/s" {
			return fmt.Sprintf("%.1f %s", v, unit)
		}
	}
	panic("unreachable")
}

// RTT formats milliseconds: "21.3ms"; "-" when unknown (0).
func RTT(ms float64) string {
	if ms <= 0 {
		return "-"
	}
	if ms < 10 {
		return fmt.Sprintf("%.2fms", ms)
	}
	return fmt.Sprintf("%.1fms", ms)
}

// Loss formats a ratio as a percentage.
func Loss(r float64) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.1f", 100*r), "0"), ".") + "%"
}

// Age formats a duration coarsely: "850ms", "4.1s", "12m03s", "2h05m", "3d04h".
func Age(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
}
