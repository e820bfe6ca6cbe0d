package e2e

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"hybridgw/internal/admin"
	"hybridgw/internal/netlab"
)

// TestAdmin runs `hcpe status|flows` and `hag status|flows`, the real
// binaries against the running daemons' admin sockets, while a download
// is under way, and checks what they report against what the lab is.
//
// Each daemon gets a socket under the test's own directory: the example
// configs' /run/hcpe/admin.sock and /run/hag/admin.sock are one file for
// every lab on the machine.
func TestAdmin(t *testing.T) {
	netlab.RequireRoot(t)
	dir := t.TempDir()
	cpeSock, hagSock := filepath.Join(dir, "hcpe.sock"), filepath.Join(dir, "hag.sock")
	s := startSystem(t, "listen: /run/hcpe/admin.sock", "listen: "+cpeSock)

	// The harness starts hag from the example config; restart it with its
	// own socket and wait until hcpe's probes find it again.
	b, err := os.ReadFile(configPath("hag.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	hagCfg := filepath.Join(dir, "hag.yaml")
	body := strings.Replace(string(b), "listen: /run/hag/admin.sock", "listen: "+hagSock, 1)
	if body == string(b) {
		t.Fatal("hag.yaml has no admin.listen /run/hag/admin.sock to replace")
	}
	if err := os.WriteFile(hagCfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	s.hag.stop(t)
	s.hag = startDaemon(t, s.lab.HAG, "hag", hagCfg)
	waitFor(t, "hag listening again with both uplinks alive", 15*time.Second, func() bool {
		out, _ := s.lab.HAG.Output("ss", "-Hltn", "sport", "= :5124")
		v, err := s.tryMetric(s.lab.CPE, 9101, "hcpe_uplink_up")
		return strings.Count(out, "LISTEN") >= 2 && err == nil && v >= 2
	})

	run := func(t *testing.T, bin string, args ...string) string {
		t.Helper()
		out, err := exec.Command(filepath.Join(binDir, bin), args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	getJSON := func(t *testing.T, out any, bin string, args ...string) {
		t.Helper()
		raw := run(t, bin, append(args, "-o", "json")...)
		if err := json.Unmarshal([]byte(raw), out); err != nil {
			t.Fatalf("%s %s -o json: %v\n%s", bin, strings.Join(args, " "), err, raw)
		}
	}
	// hcpe finds its socket through -c (admin.listen in the config), hag
	// through --admin.
	cpe := []string{"-c", s.cpeConfig}
	hag := []string{"--admin", hagSock}

	// A download long enough to look at: 48 MiB at the default 60 Mbit/s.
	const size = 48 << 20
	dst := netip.AddrPortFrom(server4, 8081)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, _, err := s.download(ctx, dst, size, 42); done <- err }()
	finished := false
	defer func() {
		if !finished {
			cancel()
			<-done
		}
	}()

	// hcpe flows: the download, with a subflow on each uplink once the
	// kernel opened the second one.
	var cf admin.CPEFlows
	waitFor(t, "the download in `hcpe flows` with subflows on both uplinks", 15*time.Second, func() bool {
		getJSON(t, &cf, "hcpe", append([]string{"flows", "--host", netlab.Server4}, cpe...)...)
		if len(cf.Flows) != 1 || cf.Flows[0].ToClient == 0 {
			return false
		}
		var ups []string
		for _, sf := range cf.Flows[0].Subflows {
			ups = append(ups, sf.Uplink)
		}
		slices.Sort(ups)
		return slices.Equal(slices.Compact(ups), []string{"dsl", "lte"})
	})
	f := cf.Flows[0]
	if f.Destination != dst || f.Source.Addr().String() != netlab.Client4 || !f.MPTCP || f.AgeMs <= 0 {
		t.Errorf("hcpe flow: %+v", f)
	}
	// A subflow that joined but has carried nothing yet (the overflow
	// uplink's, while DSL keeps up) has no RTT sample: only the busy one
	// must show an RTT.
	rtt := false
	for _, sf := range f.Subflows {
		if sf.Backup == nil || sf.RTTMs < 0 || sf.Remote.Port() != 5124 || !sf.Local.IsValid() {
			t.Errorf("hcpe subflow: %+v", sf)
		}
		rtt = rtt || sf.RTTMs > 0
	}
	if !rtt {
		t.Errorf("no hcpe subflow shows an RTT: %+v", f.Subflows)
	}
	var none admin.CPEFlows
	getJSON(t, &none, "hcpe", append([]string{"flows", "--host", "203.0.113.99"}, cpe...)...)
	if len(none.Flows) != 0 {
		t.Errorf("--host 203.0.113.99 matched %d flows", len(none.Flows))
	}
	table := run(t, "hcpe", append([]string{"flows", "--sort", "bytes"}, cpe...)...)
	if !strings.Contains(table, netlab.Server4+":8081") || !strings.Contains(table, "lte") || !strings.Contains(table, "dsl") {
		t.Errorf("hcpe flows table:\n%s", table)
	}
	t.Logf("hcpe flows:\n%s", table)

	// hcpe status: both uplinks alive with their addresses and a probe
	// RTT (the download's queue inflates it: only the range is checked),
	// bytes moving, and the hag it talks to.
	var cs admin.CPEStatus
	waitFor(t, "download bytes and rate in `hcpe status`", 10*time.Second, func() bool {
		getJSON(t, &cs, "hcpe", append([]string{"status"}, cpe...)...)
		// Rates are sampled once a second: the first answer may predate
		// the second sample.
		return cs.Totals.BytesDown > 1<<20 && cs.Totals.FlowsActive >= 1 && len(cs.Uplinks) > 0 && cs.Uplinks[0].DownBps > 0
	})
	if cs.HAG.Port != 5124 || cs.HAG.CPEID != "cpe-lab-1" || !cs.HAG.Reachable || len(cs.HAG.Addresses) != 2 {
		t.Errorf("hcpe status hag: %+v", cs.HAG)
	}
	if len(cs.Uplinks) != 2 {
		t.Fatalf("hcpe status uplinks: %+v", cs.Uplinks)
	}
	for i, u := range cs.Uplinks {
		want := map[int][3]string{0: {"dsl", "primary", netlab.CPEDSL4}, 1: {"lte", "overflow", netlab.CPELTE4}}[i]
		if u.Name != want[0] || u.Role != want[1] || !u.Alive || (u.State != admin.StateActive && u.State != admin.StateBackup) ||
			!slices.Contains(u.Addresses, netip.MustParseAddr(want[2])) || u.RTTMs < 5 || u.RTTMs > 2000 || u.NominalDownBps == 0 {
			t.Errorf("hcpe status uplink %d: %+v", i, u)
		}
	}
	if cs.Uplinks[0].DownBps == 0 || cs.Uplinks[0].BytesDown == 0 {
		t.Errorf("dsl carries the download but shows no rate or bytes: %+v", cs.Uplinks[0])
	}
	table = run(t, "hcpe", append([]string{"status"}, cpe...)...)
	if !strings.Contains(table, "cpe-lab-1, reachable") || !strings.Contains(table, "UPLINK") {
		t.Errorf("hcpe status table:\n%s", table)
	}
	t.Logf("hcpe status:\n%s", table)

	// hag flows: the same download, from this CPE, to the server, with a
	// subflow from each of the CPE's uplink addresses.
	var hf admin.HAGFlows
	getJSON(t, &hf, "hag", append([]string{"flows", "--cpe", "cpe-lab-1"}, hag...)...)
	var hflow *admin.HAGFlow
	for i := range hf.Flows {
		if hf.Flows[i].Destination == dst {
			hflow = &hf.Flows[i]
		}
	}
	if hflow == nil {
		t.Fatalf("hag flows has no flow to %s: %+v", dst, hf.Flows)
	}
	var remotes []string
	for _, sf := range hflow.Subflows {
		remotes = append(remotes, sf.Remote.Addr().String())
	}
	slices.Sort(remotes)
	if hflow.CPE != "cpe-lab-1" || hflow.ToClient == 0 || !hflow.MPTCP ||
		!slices.Equal(remotes, []string{netlab.CPEDSL4, netlab.CPELTE4}) {
		t.Errorf("hag flow: %+v (subflows from %v)", *hflow, remotes)
	}
	table = run(t, "hag", append([]string{"flows"}, hag...)...)
	if !strings.Contains(table, "cpe-lab-1") || !strings.Contains(table, netlab.Server4+":8081") {
		t.Errorf("hag flows table:\n%s", table)
	}
	t.Logf("hag flows:\n%s", table)

	// hag status: its two listeners, the CPE with an active flow.
	var hs admin.HAGStatus
	getJSON(t, &hs, "hag", append([]string{"status"}, hag...)...)
	if len(hs.Listeners) != 2 || hs.Flows.Active < 1 || hs.Flows.Results["ok"] < 1 {
		t.Errorf("hag status: %+v", hs)
	}
	if len(hs.CPEs) != 1 || hs.CPEs[0].ID != "cpe-lab-1" || hs.CPEs[0].FlowsActive < 1 || hs.CPEs[0].LastSeen == nil || len(hs.CPEs[0].Peers) == 0 {
		t.Errorf("hag status cpes: %+v", hs.CPEs)
	}
	table = run(t, "hag", append([]string{"status"}, hag...)...)
	if !strings.Contains(table, "listeners:") || !strings.Contains(table, "cpe-lab-1") {
		t.Errorf("hag status table:\n%s", table)
	}
	t.Logf("hag status:\n%s", table)

	// Once the download is over, its flow is gone and its bytes counted
	// for the CPE.
	if err := <-done; err != nil {
		t.Fatalf("download: %v", err)
	}
	finished = true
	waitFor(t, "the finished flow gone from both daemons", 10*time.Second, func() bool {
		getJSON(t, &cf, "hcpe", append([]string{"flows", "--host", netlab.Server4}, cpe...)...)
		getJSON(t, &hf, "hag", append([]string{"flows", "--host", netlab.Server4}, hag...)...)
		return len(cf.Flows) == 0 && len(hf.Flows) == 0
	})
	getJSON(t, &hs, "hag", append([]string{"status"}, hag...)...)
	if got := hs.CPEs[0].ToClient; got < size {
		t.Errorf("hag status: cpe-lab-1 to_client %d after a %d-byte download", got, size)
	}

	// Stopping removes the sockets.
	s.cpe.stop(t)
	s.hag.stop(t)
	for _, sock := range []string{cpeSock, hagSock} {
		if _, err := os.Lstat(sock); err == nil {
			t.Errorf("%s left behind after the daemon stopped", sock)
		}
	}
}
