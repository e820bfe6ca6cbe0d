package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 23, 20, 0, 0, 0, time.UTC)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func cpeFlows() []CPEFlow {
	no := false
	return []CPEFlow{
		{ID: 1, Source: ap("192.0.2.10:40000"), Destination: ap("203.0.113.20:443"), Started: t0.Add(2 * time.Second), ToServer: 10, ToClient: 10},
		{ID: 2, Source: ap("192.0.2.11:40001"), Destination: ap("203.0.113.10:80"), Started: t0, ToServer: 5 << 20, ToClient: 1},
		{ID: 3, Source: ap("[2001:db8:10::5]:40002"), Destination: ap("[2001:db8:20::1]:443"), Started: t0.Add(time.Second), ToServer: 1, ToClient: 1 << 30,
			Subflows: []Subflow{{Uplink: "dsl", Local: ap("[2001:db8:d5::2]:5000"), Remote: ap("[2001:db8:ffff::1]:5124"), Backup: &no}}},
		{ID: 4, Source: ap("192.0.2.10:40003"), Destination: ap("203.0.113.10:80"), Started: t0, ToServer: 0, ToClient: 0},
	}
}

func ids[T any](fs []T, id func(T) uint64) []uint64 {
	out := make([]uint64, len(fs))
	for i, f := range fs {
		out[i] = id(f)
	}
	return out
}

func cpeID(f CPEFlow) uint64 { return f.ID }

func TestSortCPEFlows(t *testing.T) {
	for _, tc := range []struct {
		key  string
		want []uint64
	}{
		{SortAge, []uint64{2, 4, 3, 1}},   // oldest first, ties by id
		{SortBytes, []uint64{3, 2, 1, 4}}, // most first
		{SortDst, []uint64{2, 4, 1, 3}},   // v4 before v6, then port, then id
	} {
		fs := cpeFlows()
		SortCPEFlows(fs, tc.key)
		if got := ids(fs, cpeID); !slices.Equal(got, tc.want) {
			t.Errorf("sort %s: %v, want %v", tc.key, got, tc.want)
		}
	}
	if ValidSort("size") == nil {
		t.Error("--sort size accepted")
	}
}

func TestFilterCPEFlows(t *testing.T) {
	for _, tc := range []struct {
		host string
		want []uint64
	}{
		{"", []uint64{1, 2, 3, 4}},
		{"192.0.2.10", []uint64{1, 4}},         // LAN source
		{"203.0.113.10", []uint64{2, 4}},       // destination
		{"203.0.113.0/24", []uint64{1, 2, 4}},  // prefix
		{"203.0.113.20/24", []uint64{1, 2, 4}}, // host bits ignored
		{"2001:db8::/32", []uint64{3}},         // v6
		{"::ffff:192.0.2.11", []uint64{2}},     // mapped written by hand
		{"198.51.100.1", nil},
	} {
		h, err := ParseHost(tc.host)
		if err != nil {
			t.Fatalf("%q: %v", tc.host, err)
		}
		if got := ids(FilterCPEFlows(cpeFlows(), h), cpeID); !slices.Equal(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
			t.Errorf("--host %q: %v, want %v", tc.host, got, tc.want)
		}
	}
	if _, err := ParseHost("example.com"); err == nil {
		t.Error("--host example.com accepted")
	}
}

func hagFlows() []HAGFlow {
	return []HAGFlow{
		{ID: 5, CPE: "b", Destination: ap("203.0.113.10:80"), Peer: ap("198.51.100.2:1000"), Started: t0},
		{ID: 6, CPE: "a", Destination: ap("203.0.113.11:80"), Peer: ap("198.51.100.6:1000"), Started: t0.Add(time.Second), ToClient: 9},
		{ID: 7, CPE: "a", Destination: ap("203.0.113.10:80"), Peer: ap("198.51.100.2:1001"), Client: ap("[2001:db8:10::5]:4000"), Started: t0},
	}
}

func TestSortFilterHAGFlows(t *testing.T) {
	id := func(f HAGFlow) uint64 { return f.ID }
	fs := hagFlows()
	SortHAGFlows(fs, SortAge)
	if got := ids(fs, id); !slices.Equal(got, []uint64{7, 6, 5}) {
		t.Errorf("per CPE, oldest first: %v", got)
	}
	fs = hagFlows()
	SortHAGFlows(fs, SortBytes)
	if got := ids(fs, id); !slices.Equal(got, []uint64{6, 7, 5}) {
		t.Errorf("per CPE, most bytes first: %v", got)
	}
	h, _ := ParseHost("198.51.100.2") // a CPE's uplink address
	if got := ids(FilterHAGFlows(hagFlows(), h, ""), id); !slices.Equal(got, []uint64{5, 7}) {
		t.Errorf("--host peer: %v", got)
	}
	h, _ = ParseHost("2001:db8:10::/56") // the client
	if got := ids(FilterHAGFlows(hagFlows(), h, ""), id); !slices.Equal(got, []uint64{7}) {
		t.Errorf("--host client: %v", got)
	}
	if got := ids(FilterHAGFlows(hagFlows(), HostFilter{}, "a"), id); !slices.Equal(got, []uint64{6, 7}) {
		t.Errorf("--cpe a: %v", got)
	}
}

func TestFormats(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{Bytes(0), "0 B"}, {Bytes(1023), "1023 B"}, {Bytes(1536), "1.5 KiB"}, {Bytes(12 << 20), "12.0 MiB"}, {Bytes(3 << 40), "3.0 TiB"},
		{Rate(0), "0 bit/s"}, {Rate(-5), "0 bit/s"}, {Rate(999), "999 bit/s"}, {Rate(512_000), "512.0 kbit/s"}, {Rate(18_240_000), "18.2 Mbit/s"},
		{Rate(2_500_000_000), "2.5 Gbit/s"},
		{RTT(0), "-"}, {RTT(1.234), "1.23ms"}, {RTT(41.25), "41.2ms"},
		{Loss(0), "0%"}, {Loss(0.125), "12.5%"}, {Loss(1), "100%"}, {Loss(0.1), "10%"},
		{Age(-time.Second), "0s"}, {Age(850 * time.Millisecond), "850ms"}, {Age(4100 * time.Millisecond), "4.1s"},
		{Age(12*time.Minute + 3*time.Second), "12m03s"}, {Age(2*time.Hour + 5*time.Minute), "2h05m"}, {Age(76 * time.Hour), "3d04h"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestRenderCPEFlows(t *testing.T) {
	var b bytes.Buffer
	fl := sampleCPEFlows()
	fl.Flows = append(fl.Flows, CPEFlow{ID: 9, Source: ap("192.0.2.12:1"), Destination: ap("203.0.113.1:2"), Uplink: "lte", AgeMs: 3_600_000},
		CPEFlow{ID: 10, Source: ap("192.0.2.13:1"), Destination: ap("203.0.113.1:2"), Uplink: "dsl", Fallback: "stripped", AgeMs: 1000})
	if err := RenderCPEFlows(&b, fl.Flows); err != nil {
		t.Fatal(err)
	}
	want := `ID  SOURCE                DESTINATION          AGE    TO SERVER  TO CLIENT  UPLINK               RTT     BACKUP
7   192.0.2.10:40212      203.0.113.10:8081    4.1s   16 B       12.0 MiB   dsl
      198.51.100.6:39211  198.51.100.100:5124         8 B        6.0 MiB    lte                  41.2ms  yes
9   192.0.2.12:1          203.0.113.1:2        1h00m  0 B        0 B        lte (tcp)
10  192.0.2.13:1          203.0.113.1:2        1.0s   0 B        0 B        dsl (tcp: stripped)
3 flows
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestRenderCPEStatus(t *testing.T) {
	s := &CPEStatus{
		Started: t0, FirstUplink: "dsl",
		HAG: HAGPeer{Addresses: []netip.Addr{netip.MustParseAddr("198.51.100.100"), netip.MustParseAddr("2001:db8:ffff::1")}, Port: 5124, CPEID: "cpe-1", Reachable: true},
		Uplinks: []UplinkInfo{
			{Name: "dsl", Role: "primary", State: StateActive, Addresses: []netip.Addr{netip.MustParseAddr("198.51.100.2")}, RTTMs: 20.4,
				DownBps: 18_200_000, UpBps: 400_000, BytesDown: 1 << 30, BytesUp: 30 << 20, Subflows: 3, Reason: "primary"},
			{Name: "lte", Role: "overflow", State: StateNoLink, Loss: 1, Reason: "down"},
		},
		Totals:       CPETotals{FlowsActive: 3, FlowsOK: 120, FlowsFailed: 2, BytesDown: 1 << 30, BytesUp: 30 << 20},
		Pool:         PoolInfo{Enabled: true, Ready: 3, Target: 4, Floor: 2, Ceiling: 16, FlowRate: 2.5, Hits: 110, Misses: 12, Refills: 130, Discarded: 15},
		NativeUplink: "lte",
		LastFailover: &Failover{At: t0.Add(60 * time.Second), What: "native-routes", From: "dsl", To: "lte", Reason: "failover", TookMs: 861.4},
	}
	var b bytes.Buffer
	if err := RenderCPEStatus(&b, s, t0.Add(90*time.Second)); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"hag:           198.51.100.100:5124, [2001:db8:ffff::1]:5124 as cpe-1, reachable\n",
		"new flows on:  dsl\n",
		"up:            1m30s (since 2026-11-23T20:00:00Z)\n",
		"flows:         3 active, 120 converted, 2 refused, 0 MPTCP fallbacks\n",
		"warm pool:     3 ready of 4 wanted (2..16, 2.5 flows/s); 110 hits, 12 misses, 130 refills, 15 discarded\n",
		"native on:     lte\n",
		"failover:      native-routes dsl → lte (failover) 30.0s ago, took 861ms\n",
		"UPLINK  ROLE      STATE    ADDRESSES     RTT     LOSS  DOWN RATE    UP RATE       BYTES DOWN  BYTES UP  SUBFLOWS  REASON\n",
		"dsl     primary   active   198.51.100.2  20.4ms  0%    18.2 Mbit/s  400.0 kbit/s  1.0 GiB     30.0 MiB  3         primary\n",
		"lte     overflow  no-link  -             -       100%  0 bit/s",
		"total                                                                             1.0 GiB     30.0 MiB  3\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
}

func TestRenderHAG(t *testing.T) {
	seen := t0.Add(-time.Minute)
	s := &HAGStatus{
		Started:   t0,
		Listeners: []Listener{{Address: "198.51.100.100:5124", Protocols: []string{"mptcp", "probes"}}},
		CPEs: []CPESeen{{ID: "cpe-1", Auth: "cookie", FlowsActive: 0, Flows: 4, LastSeen: &seen, Configured: true},
			{ID: "cpe-2", Auth: "source", Configured: true}},
		Flows:  HAGFlowCounts{Active: 0, Results: map[string]uint64{"ok": 4, "not_authorized": 2, "info": 1}},
		Errors: HAGErrors{ConvertErrors: map[string]uint64{"not_authorized": 2}, FlowEnds: map[string]uint64{"eof": 4}},
	}
	var b bytes.Buffer
	if err := RenderHAGStatus(&b, s, t0); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"listeners:  198.51.100.100:5124 (mptcp, probes)\n",
		"flows:      0 active, 0 handshakes in flight, 4 relayed since start\n",
		"cpe-1  cookie  0       4      1m00s ago",
		"cpe-2  source  0       0      never",
		"result         not_authorized  2\n",
		"convert_error  not_authorized  2\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "eof") || strings.Contains(out, "info") {
		t.Errorf("a normal end listed as an error:\n%s", out)
	}

	b.Reset()
	fs := hagFlows()
	fs[2].Preserved, fs[2].Source, fs[2].MPTCP = true, ap("[2001:db8:10::5]:4000"), true
	fs[2].Subflows = []Subflow{{Local: ap("198.51.100.100:5124"), Remote: ap("198.51.100.6:2000"), BytesReceived: 100, BytesAcked: 2048, RTTMs: 30}}
	if err := RenderHAGFlows(&b, fs); err != nil {
		t.Fatal(err)
	}
	out = b.String()
	for _, want := range []string{
		"[2001:db8:10::5]:4000 (client)",
		"198.51.100.2:1000 (tcp)",
		"    198.51.100.6:2000", // the subflow, indented under its flow
		"100 B      2.0 KiB    30.0ms",
		"3 flows\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("flows lack %q:\n%s", want, out)
		}
	}
}

// TestCommands runs the cobra commands against a served fake: flags,
// config lookup, JSON and table output.
func TestCommands(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "admin.sock")
	fl := CPEFlows{Flows: cpeFlows()}
	serve(t, sock, Handler(&fakeProvider{status: &CPEStatus{Version: "v-test", Uplinks: []UplinkInfo{{Name: "dsl"}}}, flows: &fl}, nil))

	cfgs := map[string]string{filepath.Join(dir, "hcpe.yaml"): sock, filepath.Join(dir, "off.yaml"): ""}
	listenFrom := func(path string) (string, error) {
		l, ok := cfgs[path]
		if !ok {
			return "", &fs.PathError{Op: "open", Path: path, Err: fs.ErrNotExist}
		}
		return l, nil
	}
	run := func(args ...string) (string, error) {
		cmds := Commands("hcpe", filepath.Join(dir, "default.sock"), listenFrom)
		var c = cmds[0]
		if args[0] == "flows" {
			c = cmds[1]
		}
		var out bytes.Buffer
		c.SetOut(&out)
		c.SetErr(&out)
		c.SetArgs(args[1:])
		c.SetContext(context.Background())
		err := c.Execute()
		return out.String(), err
	}

	out, err := run("status", "--admin", sock, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var st CPEStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Version != "v-test" {
		t.Errorf("status -o json: %v %q", err, out)
	}

	// -c FILE: admin.listen from the config.
	out, err = run("flows", "-c", filepath.Join(dir, "hcpe.yaml"), "-o", "json", "--sort", "bytes", "--host", "203.0.113.0/24")
	if err != nil {
		t.Fatal(err)
	}
	var got CPEFlows
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if g := ids(got.Flows, cpeID); !slices.Equal(g, []uint64{2, 1, 4}) {
		t.Errorf("flows --sort bytes --host: %v", g)
	}

	out, err = run("flows", "--admin", "unix:"+sock, "--sort", "dst")
	if err != nil || !strings.HasPrefix(out, "ID  SOURCE") || !strings.HasSuffix(out, "4 flows\n") {
		t.Errorf("flows table: %v\n%s", err, out)
	}

	// The default config file missing: the built-in default path.
	if _, err := run("status", "-c", filepath.Join(dir, "none.yaml")); err == nil || !strings.Contains(err.Error(), "none.yaml") {
		t.Errorf("explicit missing config: %v", err)
	}
	cmds := Commands("hcpe", filepath.Join(dir, "default.sock"), listenFrom)
	var o bytes.Buffer
	cmds[0].SetOut(&o)
	cmds[0].SetErr(&o)
	cmds[0].SetArgs(nil)
	if err := cmds[0].Execute(); err == nil || !strings.Contains(err.Error(), "default.sock") || !strings.Contains(err.Error(), "is hcpe running?") {
		t.Errorf("default socket: %v", err)
	}

	if _, err := run("status", "-c", filepath.Join(dir, "off.yaml")); err == nil || !strings.Contains(err.Error(), "disabled") {
		t.Errorf("admin disabled in config: %v", err)
	}
	if _, err := run("status", "--admin", sock, "-o", "yaml"); err == nil {
		t.Error("-o yaml accepted")
	}
	if _, err := run("flows", "--admin", sock, "--sort", "size"); err == nil {
		t.Error("--sort size accepted")
	}
}
