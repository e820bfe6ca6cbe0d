package labdemo

import (
	"net/netip"
	"strings"
	"testing"
	"unicode/utf8"

	"hybridgw/internal/netlab"
)

func TestBar(t *testing.T) {
	for _, tc := range []struct {
		value, full float64
		width       int
		want        string
	}{
		{0, 20e6, 4, "▕░░░░▏"},
		{10e6, 20e6, 4, "▕██░░▏"},
		{12.5e6, 20e6, 4, "▕██▌░▏"},
		{20e6, 20e6, 4, "▕████▏"},
		{30e6, 20e6, 4, "▕████▏"}, // above the rate: full
		{-1, 20e6, 4, "▕░░░░▏"},
		{5, 0, 4, "▕░░░░▏"}, // unlimited link: nothing to compare with
	} {
		if got := bar(tc.value, tc.full, tc.width); got != tc.want {
			t.Errorf("bar(%v, %v, %d) = %q, want %q", tc.value, tc.full, tc.width, got, tc.want)
		}
	}
}

func TestLiveLineWidthIsStable(t *testing.T) {
	ups := func(a, b float64) []uplinkRate {
		return []uplinkRate{{"dsl", a, 20e6}, {"lte", b, 40e6}}
	}
	n := utf8.RuneCountInString(liveLine(1, ups(0, 0), 0))
	for _, l := range []string{liveLine(7, ups(19.6, 36.2), 55.1), liveLine(20, ups(25, 45.3), 70.3)} {
		if m := utf8.RuneCountInString(l); m != n {
			t.Errorf("%q: %d runes, want %d", l, m, n)
		}
	}
}

// ssOut is `ss -tniH state established` in the cpe namespace during a
// download (Linux 6.18, iproute2): the lte subflow is bound to its device.
const ssOut = "0      0          198.51.100.1:50072 198.51.100.100:5124\n" +
	"\t bbr wscale:10,10 rto:216 rtt:14.377/5.752 ato:40 mss:1448 bytes_sent:84 bytes_acked:85 bytes_received:10503800 tcp-ulp-mptcp flags:Mmecv token:0000(id:0)/a2a8677c(id:0)\n" +
	"0      0      198.51.100.5%lte:35466 198.51.100.100:5124\n" +
	"\t bbr wscale:10,10 rto:240 rtt:36.475/18.237 ato:80 bytes_acked:1 bytes_received:11911060 tcp-ulp-mptcp flags:Jjecv token:a26e35f5(id:0)/a2a8677c(id:3)       \n" +
	"0      0      127.0.0.1:9101 127.0.0.1:40000\n" +
	"\t cubic rtt:1/0 bytes_received:90\n" +
	"0      0      [2001:db8:10::10]:5000 [2001:db8:20::10]:5124\n" +
	"\t cubic rtt:1/0 bytes_received:90\n"

func TestParseSubflows(t *testing.T) {
	a := netip.MustParseAddr
	subs := parseSubflows(ssOut, 5124, map[netip.Addr]string{a("198.51.100.1"): "dsl", a("198.51.100.5"): "lte"})
	if len(subs) != 2 {
		t.Fatalf("got %d subflows, want 2: %+v", len(subs), subs)
	}
	want := []subflow{
		{Uplink: "dsl", Local: netip.MustParseAddrPort("198.51.100.1:50072"), Remote: netip.MustParseAddrPort("198.51.100.100:5124"),
			BytesReceived: 10503800, BytesAcked: 85, RTT: "14.377/5.752"},
		{Uplink: "lte", Local: netip.MustParseAddrPort("198.51.100.5:35466"), Remote: netip.MustParseAddrPort("198.51.100.100:5124"),
			BytesReceived: 11911060, BytesAcked: 1, RTT: "36.475/18.237"},
	}
	for i := range want {
		if subs[i] != want[i] {
			t.Errorf("subflow %d = %+v, want %+v", i, subs[i], want[i])
		}
	}
}

func TestSummary(t *testing.T) {
	r := &result{
		v4: netip.MustParseAddrPort("203.0.113.1:40000"), v6: netip.MustParseAddrPort("[2001:db8:10::10]:50000"),
		bytes: 137_500_000, elapsed: 20e9,
		before: counters{kernel: [2]uint64{0, 0}, kernelOK: true},
		after:  counters{kernel: [2]uint64{47_500_000, 90_000_000}, link: [2]uint64{49_700_000, 94_000_000}, kernelOK: true},
		rates:  [2]int64{20e6, 40e6},
		subflows: []subflow{{Uplink: "dsl", Local: netip.MustParseAddrPort("198.51.100.1:5000"),
			Remote: netip.MustParseAddrPort("198.51.100.100:5124"), RTT: "15/1", BytesReceived: 4e7}},
		subflowsAt: 18, gauge: [2]float64{1, 1},
	}
	var b strings.Builder
	printSummary(&b, Config{Prefix: "hg-"}, r)
	for _, want := range []string{
		"goodput      55.0 Mbit/s =  92 % of dsl+lte 60 Mbit/s",
		"dsl          19.0 Mbit/s   35 % of the bytes",
		"lte          36.0 Mbit/s   65 % of the bytes",
		"IPv6 [2001:db8:10::10]:50000      = the client's own address ✓",
		"IPv4 203.0.113.1:40000            = hag's address",
		"1 at t=18s (ss -tni in hg-cpe",
		"dsl  198.51.100.1:5000 → 198.51.100.100:5124",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, b.String())
		}
	}
	if errs := r.check(netlab.DefaultPlan()); len(errs) != 0 {
		t.Errorf("check: %v", errs)
	}
	r.v6 = netip.MustParseAddrPort("[2001:db8:20::1]:50000")
	r.bytes = 0
	if errs := r.check(netlab.DefaultPlan()); len(errs) != 2 {
		t.Errorf("check of a wrong address and zero bytes: %v, want 2 errors", errs)
	}
}
