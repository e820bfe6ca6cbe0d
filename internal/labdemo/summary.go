package labdemo

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"hybridgw/internal/netlab"
)

// counters is one sample of the per-uplink downstream byte counters.
type counters struct {
	at       time.Time
	client   uint64
	link     [2]uint64  // linkem, IP bytes hag → cpe: dsl, lte
	kernel   [2]uint64  // hcpe_uplink_bytes_total{direction="down"}: dsl, lte
	kernelOK bool       // hcpe's metrics could be read
	subflows [2]float64 // hcpe_uplink_subflows: dsl, lte
}

var uplinkNames = [2]string{"dsl", "lte"}

// result is what the download measured.
type result struct {
	v4, v6        netip.AddrPort // the peers the server saw
	bytes         uint64         // the client received
	elapsed       time.Duration  // first byte to EOF
	before, after counters
	rates         [2]int64 // the links' downstream rates, bit/s
	subflows      []subflow
	subflowsAt    int // second of the ss snapshot
	gauge         [2]float64
	peakSubflows  [2]float64
	scrapeFails   int // seconds whose rates could not be read from hcpe
}

// check returns what is wrong with the result.
func (r *result) check(p netlab.Plan) []error {
	var errs []error
	if r.bytes == 0 {
		errs = append(errs, errors.New("the client received zero bytes"))
	}
	if r.v4.Addr() != p.HAGWAN4 {
		errs = append(errs, fmt.Errorf("over IPv4 the server saw %s, want hag's address %s", r.v4.Addr(), p.HAGWAN4))
	}
	if r.v6.Addr() != p.Client6 {
		errs = append(errs, fmt.Errorf("over IPv6 the server saw %s, want the client's own address %s", r.v6.Addr(), p.Client6))
	}
	if !r.before.kernelOK || !r.after.kernelOK {
		errs = append(errs, errors.New("could not read hcpe's per-uplink byte counters (hcpe_uplink_bytes_total)"))
	}
	return errs
}

// printSummary writes the closing summary. Per-uplink figures are the
// kernel's subflow counters as hcpe exports them (payload bytes received
// per uplink); linkem's counters of IP bytes on each emulated link are
// shown beside them as a cross-check.
func printSummary(w io.Writer, cfg Config, r *result) {
	secs := r.elapsed.Seconds()
	var sumRate int64
	for _, x := range r.rates {
		sumRate += x
	}
	var kernel, link [2]uint64
	var kernelSum, linkSum uint64
	for i := range uplinkNames {
		kernel[i] = r.after.kernel[i] - min(r.before.kernel[i], r.after.kernel[i])
		link[i] = r.after.link[i] - min(r.before.link[i], r.after.link[i])
		kernelSum += kernel[i]
		linkSum += link[i]
	}
	good := mbit(r.bytes, secs)
	fmt.Fprintf(w, "\n== summary (uplink shares from the kernel's subflow counters, hcpe_uplink_bytes_total)\n")
	fmt.Fprintf(w, "   goodput     %5.1f Mbit/s = %3.0f %% of dsl+lte %.0f Mbit/s   (%s in %.1f s, IPv6)\n",
		good, share(good*1e6, float64(sumRate)), float64(sumRate)/1e6, mb(r.bytes), secs)
	for i, n := range uplinkNames {
		fmt.Fprintf(w, "   %-4s        %5.1f Mbit/s  %3.0f %% of the bytes   on the link: %5.1f Mbit/s of IP = %3.0f %% of its %.0f Mbit/s\n",
			n, mbit(kernel[i], secs), share(float64(kernel[i]), float64(kernelSum)),
			mbit(link[i], secs), share(mbit(link[i], secs)*1e6, float64(r.rates[i])), float64(r.rates[i])/1e6)
	}
	fmt.Fprintf(w, "   cross-check subflow payload %s (client read %s); linkem forwarded %s of IP packets hag→cpe (headers, acks, probes)\n",
		mb(kernelSum), mb(r.bytes), mb(linkSum))
	if r.scrapeFails > 0 {
		fmt.Fprintf(w, "   (hcpe's metrics could not be read in %d of the seconds above: shown as 0)\n", r.scrapeFails)
	}
	fmt.Fprintf(w, "   server saw  IPv6 %-28s %s\n", r.v6, verdict(r.v6.Addr() == netip.MustParseAddr(netlab.Client6), "the client's own address"))
	fmt.Fprintf(w, "               IPv4 %-28s %s\n", r.v4, verdict(r.v4.Addr() == netip.MustParseAddr(netlab.HAGWAN4), "hag's address (IPv4 is shared)"))
	if len(r.subflows) > 0 {
		fmt.Fprintf(w, "   subflows    %d at t=%ds (ss -tni in %scpe; hcpe_uplink_subflows dsl %.0f, lte %.0f):\n",
			len(r.subflows), r.subflowsAt, cfg.Prefix, r.gauge[0], r.gauge[1])
		for _, s := range r.subflows {
			fmt.Fprintf(w, "                 %-4s %s → %s  srtt %s ms  received %s\n", s.Uplink, s.Local, s.Remote, srtt(s.RTT), mb(s.BytesReceived))
		}
	} else {
		fmt.Fprintf(w, "   subflows    ss showed none; hcpe_uplink_subflows peaked at dsl %.0f, lte %.0f\n", r.peakSubflows[0], r.peakSubflows[1])
	}
}

func verdict(ok bool, what string) string {
	if ok {
		return "= " + what + " ✓"
	}
	return "✗ expected " + what
}

// mb formats a byte count in MB (10^6).
func mb(b uint64) string { return fmt.Sprintf("%.1f MB", float64(b)/1e6) }

// srtt formats the smoothed RTT of ss's rtt:<srtt>/<rttvar> in ms.
func srtt(rtt string) string {
	a, _, _ := strings.Cut(rtt, "/")
	v, err := strconv.ParseFloat(a, 64)
	if err != nil {
		return "?"
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}
