//go:build linux

package gateway_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hybridgw/internal/convert"
	"hybridgw/internal/netlab"
)

// TestCookieReplayAndReload runs the hag binary and speaks to it as a CPE
// would: a Convert message sent twice is served once and then refused Not
// Authorized; a cookie made for one destination or LAN source is refused
// for another; and `hag reload` rotates the CPE's key (old and new
// accepted, then only the new), changes its prefixes and the deny list,
// while a flow opened before the first reload runs on to the end. A bad
// file is refused naming the field, and the config in force stays.
func TestCookieReplayAndReload(t *testing.T) {
	netlab.RequireRoot(t)
	tp := newTopo(t)
	netlab.ServeTCP(t, tp.srv, "[::]:8080", netlab.EchoHash)

	sock := filepath.Join(t.TempDir(), "admin.sock")
	oldKey := convert.CookieKey{ID: 0, Secret: testKey}
	newKey := convert.CookieKey{ID: 1, Secret: bytes.Repeat([]byte{0x43}, 32)}
	base := strings.NewReplacer(`admin: {listen: ""}`, `admin: {listen: "`+sock+`"}`).Replace(fmt.Sprintf(hagConfig, "", hex.EncodeToString(testKey)))
	keyLine := "key: " + hex.EncodeToString(testKey)
	both := fmt.Sprintf("keys: [{id: 0, key: %x}, {id: 1, key: %x}]", oldKey.Secret, newKey.Secret)
	onlyNew := fmt.Sprintf("keys: [{id: 1, key: %x}]", newKey.Secret)
	// The reload also opens a second delegated prefix and denies the
	// IPv4 server.
	wider := strings.NewReplacer(`client_prefixes: ["2001:db8:10::/56"]`, `client_prefixes: ["2001:db8:10::/56", "2001:db8:11::/56"]`,
		`deny:
  destinations: [203.0.113.200/32]`, `deny:
  destinations: [203.0.113.200/32, 203.0.113.10/32]`)
	_, cfg := startHagConfig(t, tp, base)
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	reload := func(args ...string) (string, error) {
		out, err := exec.Command(hagBin, append([]string{"reload"}, args...)...).CombinedOutput()
		return string(out), err
	}
	dst6, dst4 := netip.AddrPortFrom(srvV6, 8080), netip.AddrPortFrom(srvV4, 8080)
	client11 := netip.MustParseAddrPort("[2001:db8:11::10]:40123")
	// served sends msg on a fresh connection and reports the reply code
	// (-1: served), finishing a served flow so it frees its slot.
	served := func(hag netip.Addr, msg []byte) int {
		t.Helper()
		c := tp.dial(t, hag, msg)
		code := readReply(t, c)
		if code == -1 {
			c.CloseWrite()
			if _, err := io.ReadAll(c); err != nil {
				t.Fatalf("served flow: %v", err)
			}
		}
		c.Close()
		return code
	}
	na := int(convert.NotAuthorized)

	t.Run("replay", func(t *testing.T) {
		msg := requestKey(t, dst6, clientV6, oldKey)
		if got := served(hagV6, msg); got != -1 {
			t.Fatalf("first use: code %d, want served", got)
		}
		for i := range 2 {
			if got := served(hagV6, msg); got != na {
				t.Fatalf("replay %d: code %d, want Not Authorized (%d)", i, got, na)
			}
		}
		// The same Connect with a fresh cookie is a new request.
		if got := served(hagV6, requestKey(t, dst6, clientV6, oldKey)); got != -1 {
			t.Fatalf("fresh cookie: code %d, want served", got)
		}
	})

	t.Run("binding", func(t *testing.T) {
		ck, err := convert.MakeCookie(oldKey, "cpe-test", time.Now(), dst6, clientV6)
		if err != nil {
			t.Fatal(err)
		}
		other := netip.MustParseAddrPort("[2001:db8:10::11]:40123")
		for name, msg := range map[string][]byte{
			"destination":   message(connectTLV(netip.AddrPortFrom(srvV6, 8082)), clientAddrTLV(clientV6), cookieTLV(ck)),
			"LAN source":    message(connectTLV(dst6), clientAddrTLV(other), cookieTLV(ck)),
			"no LAN source": message(connectTLV(dst6), cookieTLV(ck)),
		} {
			if got := served(hagV6, msg); got != na {
				t.Errorf("cookie for another %s: code %d, want Not Authorized", name, got)
			}
		}
	})

	t.Run("reload", func(t *testing.T) {
		// A flow open across every reload below.
		long := tp.dial(t, hagV6, requestKey(t, dst6, clientV6, oldKey))
		if code := readReply(t, long); code != -1 {
			t.Fatalf("long flow: code %d", code)
		}
		h := sha256.New()
		send := func(n int) {
			t.Helper()
			b := bytes.Repeat([]byte{byte(n)}, n)
			if _, err := long.Write(b); err != nil {
				t.Fatalf("long flow after a reload: %v", err)
			}
			h.Write(b)
		}
		send(1 << 20)

		if got := served(hagV6, requestKey(t, dst6, clientV6, newKey)); got != na {
			t.Fatalf("new key before hag has it: code %d, want Not Authorized", got)
		}
		if got := served(hagV6, requestKey(t, netip.AddrPortFrom(srvV6, 8080), client11, oldKey)); got != na {
			t.Fatalf("client in a prefix not yet delegated: code %d, want Not Authorized", got)
		}

		// Step 1 of a rotation: both keys.
		write(wider.Replace(strings.Replace(base, keyLine, both, 1)))
		if out, err := reload("-c", cfg); err != nil || !strings.Contains(out, "hag reloaded") {
			t.Fatalf("hag reload: %v\n%s", err, out)
		}
		for name, k := range map[string]convert.CookieKey{"old": oldKey, "new": newKey} {
			if got := served(hagV6, requestKey(t, dst6, clientV6, k)); got != -1 {
				t.Errorf("%s key during the rotation: code %d, want served", name, got)
			}
		}
		if got := served(hagV6, requestKey(t, dst6, client11, newKey)); got != -1 {
			t.Errorf("client in the newly delegated prefix: code %d, want served", got)
		}
		if got := served(hagV4, requestKey(t, dst4, netip.AddrPort{}, newKey)); got != na {
			t.Errorf("newly denied destination: code %d, want Not Authorized", got)
		}
		send(1<<20 + 1)

		// Step 2: the old key removed.
		write(wider.Replace(strings.Replace(base, keyLine, onlyNew, 1)))
		if out, err := reload("-c", cfg); err != nil {
			t.Fatalf("hag reload: %v\n%s", err, out)
		}
		if got := served(hagV6, requestKey(t, dst6, clientV6, oldKey)); got != na {
			t.Errorf("old key after its removal: code %d, want Not Authorized", got)
		}
		if got := served(hagV6, requestKey(t, dst6, clientV6, newKey)); got != -1 {
			t.Errorf("new key after the rotation: code %d, want served", got)
		}

		// A bad file, through the local check and through the daemon's.
		bad := wider.Replace(strings.Replace(base, keyLine, strings.Replace(onlyNew, "id: 1", "id: 300", 1), 1))
		write(bad)
		for _, args := range [][]string{{"-c", cfg}, {"--admin", sock}} {
			out, err := reload(args...)
			if err == nil || !strings.Contains(out, "cpes[0].keys[0].id: 300 is outside 0..255") || !strings.Contains(out, "keeps its config") && !strings.Contains(out, "stays in force") {
				t.Errorf("hag reload %v of a bad file: %v\n%s", args, err, out)
			}
		}
		if got := served(hagV6, requestKey(t, dst6, clientV6, newKey)); got != -1 {
			t.Errorf("after a refused reload the new key: code %d, want served", got)
		}
		if got := served(hagV6, requestKey(t, dst6, clientV6, oldKey)); got != na {
			t.Errorf("after a refused reload the old key: code %d, want Not Authorized", got)
		}
		// A listen address needs a restart: applied otherwise, and said.
		write(strings.Replace(wider.Replace(strings.Replace(base, keyLine, onlyNew, 1)), `addresses: [198.51.100.2, "2001:db8:d5::2"]`, `addresses: ["::"]`, 1))
		if out, err := reload("-c", cfg); err != nil || !strings.Contains(out, "not applied until a restart: listen") {
			t.Errorf("reload with a new listen address: %v\n%s", err, out)
		}

		send(3)
		long.CloseWrite()
		got, err := io.ReadAll(long)
		if err != nil {
			t.Fatalf("long flow: %v", err)
		}
		// The port may differ: earlier flows left clientV6's port in
		// TIME_WAIT towards the server, and hag then lets the kernel pick.
		addr, sum, _ := strings.Cut(string(got), " ")
		if ap, err := netip.ParseAddrPort(addr); err != nil || ap.Addr() != clientV6.Addr() || sum != fmt.Sprintf("%x", h.Sum(nil)) {
			t.Fatalf("long flow across reloads: server answered %q, want %s and the hash of what was sent", got, clientV6.Addr())
		}
	})

	t.Run("metrics", func(t *testing.T) {
		out, err := tp.hag.Output("bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9102; printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			`hag_refusals_total{reason="cookie_replay"} 2`, `hag_refusals_total{reason="cookie_unknown_key"} 3`,
			`hag_refusals_total{reason="cookie_invalid"} 3`, `hag_config_reloads_total{result="ok"} 3`,
			`hag_config_reloads_total{result="refused"} 1`, `hag_cookie_replay_entries `,
		} {
			if !strings.Contains(out, want) {
				t.Errorf("metrics lack %s", want)
			}
		}
		if t.Failed() {
			for _, l := range strings.Split(out, "\n") {
				if strings.Contains(l, "cookie") || strings.Contains(l, "reload") {
					t.Log(l)
				}
			}
		}
	})
}
