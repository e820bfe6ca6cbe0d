package config

import (
	"encoding/hex"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExampleConfigsLoad(t *testing.T) {
	h, err := LoadHCPE("../../configs/hcpe.yaml")
	if err != nil {
		t.Fatalf("configs/hcpe.yaml: %v", err)
	}
	if len(h.Uplinks) != 2 || h.Uplinks[1].DownBps != 40e6 || !h.Uplinks[0].Auto || len(h.HAG.KeyRaw) != 32 {
		t.Errorf("hcpe example decoded wrongly: %+v", h.Uplinks)
	}
	g, err := LoadHAG("../../configs/hag.yaml")
	if err != nil {
		t.Fatalf("configs/hag.yaml: %v", err)
	}
	if g.Listen.Port != 5124 || len(g.CPEs) != 1 || g.CPEs[0].Clients[0].String() != "2001:db8:10::/56" {
		t.Errorf("hag example decoded wrongly: %+v", g)
	}
	// Listeners safe by default: metrics on loopback only, no TCP admin
	// API, no SYN data.
	for name, l := range map[string]string{"hcpe metrics": h.Metrics.Listen, "hag metrics": g.Metrics.Listen} {
		if ap, err := netip.ParseAddrPort(l); err != nil || !ap.Addr().IsLoopback() {
			t.Errorf("%s listen on %q, want a loopback address", name, l)
		}
	}
	if !strings.HasPrefix(g.Admin.Listen, "/") || !strings.HasPrefix(h.Admin.Listen, "/") || g.Listen.FastOpen || g.Listen.FastOpenNoCookieUnsafe {
		t.Errorf("example listeners not safe by default: hag admin %q, hcpe admin %q, fast_open %v", g.Admin.Listen, h.Admin.Listen, g.Listen.FastOpen)
	}
	if len(g.CPEs[0].CookieKeys) != 1 || string(g.CPEs[0].CookieKeys[0].Raw) != string(h.HAG.KeyRaw) || g.CPEs[0].CookieKeys[0].ID != h.HAG.KeyID {
		t.Error("the example keys of hcpe and hag differ")
	}
}

const minimalHCPE = `lan:
  interfaces: [lan]
uplinks:
  - name: dsl
    interface: dsl
    role: primary
    down_rate: 20mbit
    up_rate: 5mbit
hag:
  addresses: [198.51.100.100]
`

func write(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMinimalHCPEDefaults(t *testing.T) {
	c, err := LoadHCPE(write(t, "hcpe.yaml", minimalHCPE))
	if err != nil {
		t.Fatal(err)
	}
	if c.HAG.Port != DefaultPort || c.TUN.MTU != 1500 || c.Uplinks[0].Probe != DefaultProbe() || c.Uplinks[0].Table != 101 {
		t.Errorf("defaults not applied: %+v", c)
	}
}

func TestHCPEProblems(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []string // each must appear in the error, in order of lines
	}{
		{"unknown field", minimalHCPE + "colour: blue\n", []string{"hcpe.yaml:11: colour: unknown field \"colour\""}},
		{"unknown nested field", strings.Replace(minimalHCPE, "    role: primary\n", "    role: primary\n    weight: 3\n", 1),
			[]string{"hcpe.yaml:7: uplinks[0].weight: unknown field \"weight\""}},
		{"wrong type", strings.Replace(minimalHCPE, "interfaces: [lan]", "interfaces: lan", 1),
			[]string{"hcpe.yaml:2: lan.interfaces: cannot unmarshal `lan` into []string"}},
		{"invalid role", strings.Replace(minimalHCPE, "role: primary", "role: standby", 1),
			[]string{`hcpe.yaml:6: uplinks[0].role: "standby" is not one of primary, overflow, backup, bond`}},
		{"bad rate and address together", strings.Replace(strings.Replace(minimalHCPE, "20mbit", "fast", 1), "198.51.100.100", "198.51.100", 1),
			[]string{`hcpe.yaml:7: uplinks[0].down_rate: "fast" is not a rate`, `hcpe.yaml:10: hag.addresses[0]: "198.51.100" is not an IP address`}},
		{"type and value errors in one run", strings.Replace(strings.Replace(minimalHCPE, "role: primary", "role: standby", 1), "hag:\n", "hag:\n  port: many\n", 1),
			[]string{"uplinks[0].role", "hag.port: cannot unmarshal `many` into int"}},
		{"missing uplinks", "lan:\n  interfaces: [lan]\nhag:\n  addresses: [198.51.100.100]\n", []string{"hcpe.yaml: uplinks: at least one uplink is required"}},
		{"syntax", "lan: [\n", []string{"hcpe.yaml:"}},
		{"interface name too long", strings.Replace(minimalHCPE, "interface: dsl", "interface: averyveryverylongname", 1),
			[]string{`hcpe.yaml:5: uplinks[0].interface: "averyveryverylongname" is longer than`}},
		{"short key", minimalHCPE + "  cpe_id: x\n  key: abcd\n", []string{"hcpe.yaml:12: hag.key: is 2 bytes; at least 16 are required"}},
		{"no shutdown grace", minimalHCPE + "limits:\n  shutdown_grace: 0s\n", []string{"hcpe.yaml:12: limits.shutdown_grace: must be greater than 0"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadHCPE(write(t, "hcpe.yaml", tc.body))
			if err == nil {
				t.Fatal("config accepted")
			}
			msg := err.Error()
			for _, w := range tc.want {
				i := strings.Index(msg, w)
				if i < 0 {
					t.Fatalf("error lacks %q:\n%s", w, msg)
				}
				msg = msg[i+len(w):]
			}
			if tc.name != "syntax" {
				var ps Problems
				if !errors.As(err, &ps) {
					t.Fatalf("error is %T, want Problems", err)
				}
			}
		})
	}
}

const minimalHAG = `cpes:
  - id: c1
    auth: source
    wan_prefixes: [198.51.100.0/30]
    client_prefixes: ["2001:db8:10::/56"]
`

func TestHAGProblems(t *testing.T) {
	if _, err := LoadHAG(write(t, "hag.yaml", minimalHAG)); err != nil {
		t.Fatalf("minimal hag config: %v", err)
	}
	tests := []struct {
		name, body string
		want       []string
	}{
		{"cookie auth needs key", strings.Replace(minimalHAG, "auth: source", "auth: cookie", 1), []string{`hag.yaml:2: cpes[0].key: is required with auth "cookie"`}},
		{"bad auth", strings.Replace(minimalHAG, "auth: source", "auth: password", 1), []string{`hag.yaml:3: cpes[0].auth: "password" is not one of cookie, source, cookie+source`}},
		{"host bits", strings.Replace(minimalHAG, "2001:db8:10::/56", "2001:db8:10::1/56", 1), []string{`hag.yaml:5: cpes[0].client_prefixes[0]: "2001:db8:10::1/56" has host bits set`}},
		{"egress", minimalHAG + "egress:\n  ipv6: nat\n", []string{`hag.yaml:7: egress.ipv6: "nat" is not one of preserve, share`}},
		{"duplicate id and overlap", minimalHAG + "  - id: c1\n    auth: source\n    wan_prefixes: [198.51.100.0/24]\n",
			[]string{`cpes[1].id: "c1" is used by another CPE`, "cpes[1].wan_prefixes: 198.51.100.0/24 overlaps"}},
		{"limits", minimalHAG + "limits:\n  dial_timeout: -1s\n  flows_total: 0\n", []string{"hag.yaml:7: limits.dial_timeout: must be greater than 0", "hag.yaml:8: limits.flows_total"}},
		{"allow", minimalHAG + "allow:\n  destinations: [10.0.0.0/33]\n", []string{`hag.yaml:7: allow.destinations[0]: "10.0.0.0/33" is not an IP prefix`}},
		{"listen", minimalHAG + "metrics:\n  listen: nowhere\n", []string{`hag.yaml:7: metrics.listen: "nowhere" is not a listen address`}},
		{"admin over TCP not meant", minimalHAG + "admin:\n  listen: 127.0.0.1:9200\n", []string{`admin.listen: "127.0.0.1:9200" is a TCP address`, "admin.tcp_exposes_reload_and_pprof"}},
		{"key and keys", strings.Replace(minimalHAG, "auth: source", "auth: cookie\n    key: "+key16+"\n    keys: [{id: 1, key: "+key16+"}]", 1),
			[]string{`hag.yaml:5: cpes[0].keys: set key (or key_file) or keys, not both`}},
		{"three keys", strings.Replace(minimalHAG, "auth: source", "auth: cookie\n    keys: [{id: 1, key: "+key16+"}, {id: 2, key: "+key16+"}, {id: 3, key: "+key16+"}]", 1),
			[]string{`hag.yaml:4: cpes[0].keys: has 3 keys; at most 2`}},
		{"bad keys", strings.Replace(minimalHAG, "auth: source", "auth: cookie\n    keys:\n      - {id: 7, key: "+key16+"}\n      - {id: 7, key: abcd}", 1),
			[]string{`hag.yaml:6: cpes[0].keys[1].id: key id 7 is used by another key`, `hag.yaml:6: cpes[0].keys[1].key: is 2 bytes`}},
		{"key id out of range", strings.Replace(minimalHAG, "auth: source", "auth: cookie\n    keys: [{id: 256, key: "+key16+"}, {id: -1, key: "+key16+"}]", 1),
			[]string{`hag.yaml:4: cpes[0].keys[0].id: 256 is outside 0..255`, `cpes[0].keys[1].id: -1 is outside 0..255`}},
		{"key without secret", strings.Replace(minimalHAG, "auth: source", "auth: cookie\n    keys: [{id: 1}]", 1),
			[]string{`cpes[0].key: is required with auth "cookie"`, `cpes[0].keys[0].key: is required (key or key_file)`}},
		{"missing key file", strings.Replace(minimalHAG, "auth: source", "auth: cookie\n    keys: [{id: 1, key_file: /nonexistent/cpe.key}]", 1),
			[]string{`cpes[0].keys[0].key_file: cannot read`}},
		{"replay entries", minimalHAG + "limits:\n  cookie_replay_entries: 0\n", []string{"hag.yaml:7: limits.cookie_replay_entries: must be greater than 0"}},
		{"no-cookie Fast Open without Fast Open", "listen:\n  fast_open_no_cookie_unsafe: true\n" + minimalHAG, []string{"listen.fast_open_no_cookie_unsafe: needs listen.fast_open: true"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadHAG(write(t, "hag.yaml", tc.body))
			if err == nil {
				t.Fatal("config accepted")
			}
			msg := err.Error()
			for _, w := range tc.want {
				i := strings.Index(msg, w)
				if i < 0 {
					t.Fatalf("error lacks %q:\n%s", w, msg)
				}
				msg = msg[i+len(w):]
			}
		})
	}
}

// key16 is a valid hex key (16 bytes).
const key16 = "000102030405060708090a0b0c0d0e0f"

// TestHAGKeys: a CPE entry with one key (id 0, the format before key ids)
// or with two keys during a rotation, from inline hex or files.
func TestHAGKeys(t *testing.T) {
	other := "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"
	file := write(t, "cpe.key", other+"\n")
	for _, tc := range []struct {
		name, entry string
		want        []CPEKey
	}{
		{"single key is id 0", "key: " + key16, []CPEKey{{ID: 0, Raw: hexBytes(key16)}}},
		{"single key file is id 0", "key_file: " + file, []CPEKey{{ID: 0, Raw: hexBytes(other)}}},
		{"two keys in a rotation", "keys:\n      - {id: 3, key: " + key16 + "}\n      - {id: 4, key_file: " + file + "}",
			[]CPEKey{{ID: 3, Raw: hexBytes(key16)}, {ID: 4, Raw: hexBytes(other)}}},
		{"one key with an id", "keys: [{id: 255, key: " + key16 + "}]", []CPEKey{{ID: 255, Raw: hexBytes(key16)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := LoadHAG(write(t, "hag.yaml", strings.Replace(minimalHAG, "auth: source", "auth: cookie\n    "+tc.entry, 1)))
			if err != nil {
				t.Fatal(err)
			}
			got := c.CPEs[0].CookieKeys
			if len(got) != len(tc.want) {
				t.Fatalf("keys %+v, want %+v", got, tc.want)
			}
			for i := range got {
				if got[i].ID != tc.want[i].ID || string(got[i].Raw) != string(tc.want[i].Raw) {
					t.Errorf("key %d: id %d raw %x, want id %d raw %x", i, got[i].ID, got[i].Raw, tc.want[i].ID, tc.want[i].Raw)
				}
			}
		})
	}
	h, err := LoadHCPE(write(t, "hcpe.yaml", minimalHCPE+"  cpe_id: x\n  key: "+key16+"\n  key_id: 4\n"))
	if err != nil || h.HAG.KeyID != 4 {
		t.Fatalf("hcpe key_id: %+v, %v", h.HAG, err)
	}
	if _, err := LoadHCPE(write(t, "hcpe.yaml", minimalHCPE+"  cpe_id: x\n  key: "+key16+"\n  key_id: 256\n")); err == nil || !strings.Contains(err.Error(), "hag.key_id: 256 is outside 0..255") {
		t.Errorf("hcpe key_id 256: %v", err)
	}
}

func hexBytes(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]Rate{"20mbit": 20e6, "5Mbit/s": 5e6, "800kbit": 800e3, "1.5gbit": 1.5e9, "1000": 1000, "10mbps": 10e6} {
		got, err := parseRate(in)
		if err != nil || got != want {
			t.Errorf("parseRate(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "fast", "-1mbit", "mbit"} {
		if _, err := parseRate(in); err == nil {
			t.Errorf("parseRate(%q) accepted", in)
		}
	}
}
