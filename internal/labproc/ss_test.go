package labproc

import (
	"strings"
	"testing"
)

// ssFiltered is `ss -tniH state established` in the cpe namespace during
// a download (Linux 6.18, iproute2): no Netid or State column, and the
// lte subflow bound to its device.
const ssFiltered = "0      0          198.51.100.1:50072 198.51.100.100:5124\n" +
	"\t bbr wscale:10,10 rto:216 rtt:14.377/5.752 ato:40 mss:1448 bytes_sent:84 bytes_acked:85 bytes_received:10503800 tcp-ulp-mptcp flags:Mmecv token:0000(id:0)/a2a8677c(id:0)\n" +
	"0      0      198.51.100.5%lte:35466 198.51.100.100:5124\n" +
	"\t bbr wscale:10,10 rto:240 rtt:36.475/18.237 ato:80 bytes_acked:1 bytes_received:11911060 tcp-ulp-mptcp flags:Jjecv token:a26e35f5(id:0)/a2a8677c(id:3)       \n" +
	"0      0      127.0.0.1:9101 127.0.0.1:40000\n" +
	"\t cubic rtt:1/0 bytes_received:90\n"

// ssMPTCP is `ss -tni -M` (with its header): Netid and State columns, the
// MPTCP socket and its subflows.
const ssMPTCP = "Netid State Recv-Q Send-Q Local Address:Port Peer Address:Port Process\n" +
	"tcp   ESTAB 0      0      198.18.1.1:40000 198.51.100.100:5124\n" +
	"\t bbr rtt:15/7 tcp-ulp-mptcp flags:Mmec\n" +
	"tcp   ESTAB 0      0      198.18.2.1%lte:40001 198.51.100.100:5124\n" +
	"\t bbr rtt:40/20 tcp-ulp-mptcp flags:Jjec\n" +
	"tcp   SYN-SENT 0   1      198.18.1.1:40002 198.51.100.100:9000\n" +
	"mptcp ESTAB 0      0      198.18.1.1:40000 198.51.100.100:5124\n" +
	"\t subflows:1 add_addr_signal:0 subflows_max:4\n"

func TestParseSS(t *testing.T) {
	got := ParseSS(ssFiltered)
	if len(got) != 3 {
		t.Fatalf("filtered: %d sockets, want 3: %+v", len(got), got)
	}
	if s := got[1]; s.Netid != "" || s.State != "" || s.Local != "198.51.100.5%lte:35466" || s.Peer != "198.51.100.100:5124" || !s.MPTCPSubflow() {
		t.Errorf("filtered socket 2 = %+v", s)
	}
	if v, ok := got[0].Field("bytes_received"); !ok || v != "10503800" {
		t.Errorf("bytes_received = %q, %v", v, ok)
	}
	if got[2].MPTCPSubflow() {
		t.Errorf("socket 3 is no subflow: %+v", got[2])
	}

	got = ParseSS(ssMPTCP)
	if len(got) != 4 {
		t.Fatalf("-M: %d sockets, want 4: %+v", len(got), got)
	}
	want := []struct{ netid, state, local string }{
		{"tcp", "ESTAB", "198.18.1.1:40000"}, {"tcp", "ESTAB", "198.18.2.1%lte:40001"}, {"tcp", "SYN-SENT", "198.18.1.1:40002"}, {"mptcp", "ESTAB", "198.18.1.1:40000"},
	}
	for i, w := range want {
		if s := got[i]; s.Netid != w.netid || s.State != w.state || s.Local != w.local {
			t.Errorf("-M socket %d = %+v, want %+v", i, s, w)
		}
	}
	if v, ok := got[3].Field("subflows"); !ok || v != "1" {
		t.Errorf("subflows = %q, %v", v, ok)
	}
	if got[2].Info != "" {
		t.Errorf("a socket without info line took another's: %q", got[2].Info)
	}
}

func TestParseSSAddr(t *testing.T) {
	for in, want := range map[string]string{
		"198.51.100.5:35466":       "198.51.100.5:35466",
		"198.51.100.5%lte:35466":   "198.51.100.5:35466",
		"[2001:db8:d5::1]:80":      "[2001:db8:d5::1]:80",
		"[2001:db8:d5::1%dsl]:80":  "[2001:db8:d5::1]:80",
		"[::ffff:192.0.2.10]:8080": "192.0.2.10:8080",
	} {
		got, err := ParseSSAddr(in)
		if err != nil || got.String() != want {
			t.Errorf("ParseSSAddr(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"*:*", "198.51.100.5", "[::1]:x"} {
		if _, err := ParseSSAddr(in); err == nil {
			t.Errorf("ParseSSAddr(%q): no error", in)
		}
	}
	if !strings.Contains(ssFiltered, "%lte") {
		t.Fatal("the sample lost its bound device")
	}
}
