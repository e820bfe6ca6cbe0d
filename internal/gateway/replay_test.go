package gateway

import (
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"hybridgw/internal/config"
	"hybridgw/internal/convert"
)

// TestCookieBinding: a cookie authorises the Connect it was made for and
// nothing else: not another destination, not another LAN source.
func TestCookieBinding(t *testing.T) {
	a := netip.MustParseAddrPort("[2001:db8:99::1]:443")
	b := netip.MustParseAddrPort("[2001:db8:99::2]:443")
	x := netip.MustParseAddrPort("[2001:db8:10::10]:40000")
	y := netip.MustParseAddrPort("[2001:db8:10::11]:40000")
	ck, err := convert.MakeCookie(convert.CookieKey{ID: 0, Secret: keyA}, "both", now, a, x)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		dst    netip.AddrPort
		client netip.AddrPort
		ok     bool
	}{
		{"destination A, client X: as made", a, x, true},
		{"destination B", b, x, false},
		{"client Y", a, y, false},
		{"client address dropped", a, netip.AddrPort{}, false},
	} {
		m := &convert.Msg{Connect: convert.Connect{Dst: tc.dst}, ClientAddr: tc.client, Cookie: ck}
		_, _, r := authorize(decideConfig(), netip.MustParseAddr("2001:db8:d5::7"), m, now)
		if (r == nil) != tc.ok {
			t.Errorf("%s: refusal %v, want accepted %v", tc.name, r, tc.ok)
		}
	}
}

func testGateway(t *testing.T, cfg *config.HAG) *Gateway {
	t.Helper()
	g, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	g.own = &ownSet{m: map[netip.Addr]bool{}}
	return g
}

func replayConfig(entries int) *config.HAG {
	c := decideConfig()
	c.Allow.Prefixes = []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")}
	c.Limits = config.DefaultHAG().Limits
	c.Limits.CookieReplayEntries = entries
	return c
}

// TestDecideReplay: a cookie is accepted once; a replay is refused Not
// Authorized and counted as cookie_replay, whichever connection it comes
// on; a fresh cookie for the same Connect is served; when the filter is
// full the flow is refused Resource Exceeded rather than let through.
func TestDecideReplay(t *testing.T) {
	dst := netip.MustParseAddrPort("[2001:db8:99::1]:443")
	client := netip.MustParseAddrPort("[2001:db8:10::10]:40000")
	peer := netip.MustParseAddrPort("[2001:db8:d5::7]:50000")
	msg := func() *convert.Msg {
		ck, err := convert.MakeCookie(convert.CookieKey{ID: 1, Secret: keyC}, "both", time.Now(), dst, client)
		if err != nil {
			t.Fatal(err)
		}
		return &convert.Msg{Connect: convert.Connect{Dst: dst}, ClientAddr: client, Cookie: ck}
	}
	g := testGateway(t, replayConfig(2))
	first := msg()
	p, r := g.decide(peer, first)
	if r != nil {
		t.Fatalf("first use refused: %v", r)
	}
	if p.cookie == nil || p.cookie.KeyID != 1 {
		t.Errorf("plan's cookie %+v", p.cookie)
	}
	p.release()
	for _, from := range []netip.AddrPort{peer, netip.MustParseAddrPort("[2001:db8:d5::8]:50001")} {
		_, r = g.decide(from, first)
		if r == nil || r.code != convert.NotAuthorized || r.reason != "cookie_replay" {
			t.Fatalf("replay from %s: %v (reason %q), want Not Authorized, cookie_replay", from, r, r.reason)
		}
	}
	p, r = g.decide(peer, msg())
	if r != nil {
		t.Fatalf("fresh cookie for the same Connect refused: %v", r)
	}
	p.release()
	// The filter holds 2: the third fresh cookie finds it full.
	_, r = g.decide(peer, msg())
	if r == nil || r.code != convert.ResourceExceeded || r.reason != "cookie_replay_full" {
		t.Fatalf("filter full: %v, want Resource Exceeded, cookie_replay_full", r)
	}
	if g.replay.Len() != 2 {
		t.Errorf("filter holds %d cookies, want 2 (bounded)", g.replay.Len())
	}
	// A flow refused at the full filter gave back its limiter slot.
	if g.lim.total != 0 {
		t.Errorf("limiter holds %d flows after every plan was released", g.lim.total)
	}
	// Source-authorised requests carry no cookie and need no room.
	src := &convert.Msg{Connect: convert.Connect{Dst: dst}}
	p, r = g.decide(netip.MustParseAddrPort("[2001:db8:5c::7]:50000"), src)
	if r != nil {
		t.Fatalf("source-authorised request with the filter full: %v", r)
	}
	p.release()
}

// TestReplayTakesNoToken: a replay is refused before it takes one of the
// CPE's new-flow tokens, so someone replaying captured cookies cannot use
// up the CPE's rate.
func TestReplayTakesNoToken(t *testing.T) {
	dst := netip.MustParseAddrPort("[2001:db8:99::1]:443")
	peer := netip.MustParseAddrPort("[2001:db8:d5::7]:50000")
	cfg := replayConfig(100)
	cfg.Limits.NewFlowsBurst, cfg.Limits.NewFlowsPerSecond = 2, 0.001
	g := testGateway(t, cfg)
	msg := func() *convert.Msg {
		ck, err := convert.MakeCookie(convert.CookieKey{ID: 0, Secret: keyA}, "both", time.Now(), dst, netip.AddrPort{})
		if err != nil {
			t.Fatal(err)
		}
		return &convert.Msg{Connect: convert.Connect{Dst: dst}, Cookie: ck}
	}
	first := msg()
	p, r := g.decide(peer, first)
	if r != nil {
		t.Fatal(r)
	}
	p.release()
	for range 5 {
		if _, r := g.decide(peer, first); r == nil || r.reason != "cookie_replay" {
			t.Fatalf("replay: %v", r)
		}
	}
	if p, r = g.decide(peer, msg()); r != nil {
		t.Fatalf("the CPE's second token was taken by replays: %v", r)
	}
	p.release()
}

const reloadHAG = `listen:
  addresses: ["2001:db8:d5::2"]
cpes:
  - id: cpe-1
    %s
    auth: cookie
    client_prefixes: ["2001:db8:10::/56"]
allow:
  destinations: ["2001:db8::/32"]
limits:
  flows_per_cpe: %d
metrics: {listen: ""}
admin: {listen: ""}
`

// TestReload: a good file changes keys and limits for the next request;
// a bad one is refused naming the field and changes nothing; settings
// that need a restart are listed and keep their running values.
func TestReload(t *testing.T) {
	keyOld, keyNew := hex.EncodeToString(keyA), hex.EncodeToString(keyC)
	dir := t.TempDir()
	path := filepath.Join(dir, "hag.yaml")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(fmt.Sprintf(reloadHAG, "key: "+keyOld, 8))
	cfg, err := config.LoadHAG(path)
	if err != nil {
		t.Fatal(err)
	}
	g := testGateway(t, cfg)
	dst := netip.MustParseAddrPort("[2001:db8:99::1]:443")
	peer := netip.MustParseAddrPort("[2001:db8:77::7]:50000")
	try := func(key []byte, id uint8) *refusal {
		ck, err := convert.MakeCookie(convert.CookieKey{ID: id, Secret: key}, "cpe-1", time.Now(), dst, netip.AddrPort{})
		if err != nil {
			t.Fatal(err)
		}
		p, r := g.decide(peer, &convert.Msg{Connect: convert.Connect{Dst: dst}, Cookie: ck})
		if r == nil {
			p.release()
		}
		return r
	}
	if r := try(keyA, 0); r != nil {
		t.Fatalf("old key before the rotation: %v", r)
	}
	if r := try(keyC, 1); r == nil || r.reason != "cookie_unknown_key" {
		t.Fatalf("new key before hag has it: %v", r)
	}

	// Rotation, step 1: both keys; a new limit; a listen address changed.
	write(strings.Replace(fmt.Sprintf(reloadHAG, "keys: [{id: 0, key: "+keyOld+"}, {id: 1, key: "+keyNew+"}]", 3), `"2001:db8:d5::2"`, `"2001:db8:d5::3"`, 1))
	na, err := g.reload(path)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(na, []string{"listen"}) || g.cfg().Listen.Addresses[0] != "2001:db8:d5::2" {
		t.Errorf("not applied %v, listen %v: want [listen] kept at 2001:db8:d5::2", na, g.cfg().Listen.Addresses)
	}
	if r := try(keyA, 0); r != nil {
		t.Errorf("old key during the rotation: %v", r)
	}
	if r := try(keyC, 1); r != nil {
		t.Errorf("new key during the rotation: %v", r)
	}
	if g.lim.cfg.FlowsPerCPE != 3 {
		t.Errorf("limits.flows_per_cpe is %d after reload, want 3", g.lim.cfg.FlowsPerCPE)
	}

	// A bad file: refused with the field named, nothing changes.
	before := g.cfg()
	for _, tc := range []struct{ body, want string }{
		{fmt.Sprintf(reloadHAG, "keys: [{id: 1, key: "+keyNew+"}, {id: 1, key: "+keyOld+"}]", 3), "cpes[0].keys[1].id: key id 1 is used by another key"},
		{fmt.Sprintf(reloadHAG, "key: "+keyNew+"\n    keys: [{id: 1, key: "+keyNew+"}]", 3), "cpes[0].keys: set key (or key_file) or keys, not both"},
		{fmt.Sprintf(reloadHAG, "keys: [{id: 1, key: "+keyNew+"}]", 0), "limits.flows_per_cpe: must be greater than 0"},
		{fmt.Sprintf(reloadHAG, "keys: [{id: 1, key: "+keyNew+"}]", 3) + "colour: blue\n", `colour: unknown field "colour"`},
	} {
		write(tc.body)
		_, err := g.reload(path)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "the running one stays in force") {
			t.Errorf("bad file: %v, want %q", err, tc.want)
		}
		if g.cfg() != before || g.lim.cfg.FlowsPerCPE != 3 {
			t.Error("a refused file changed the config in force")
		}
	}

	// Rotation, step 2: only the new key.
	write(fmt.Sprintf(reloadHAG, "keys: [{id: 1, key: "+keyNew+"}]", 3))
	if _, err := g.reload(path); err != nil {
		t.Fatal(err)
	}
	if r := try(keyA, 0); r == nil || r.reason != "cookie_unknown_key" {
		t.Errorf("old key after its removal: %v, want cookie_unknown_key", r)
	}
	if r := try(keyC, 1); r != nil {
		t.Errorf("new key after the rotation: %v", r)
	}
}
