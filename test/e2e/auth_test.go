package e2e

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSourceAuth runs hag with `auth: source` (docs/operator-guide.md): a
// CPE is recognised by the address its connections come from alone, so
// hcpe runs without a key (it sends no cookie; hag takes a cookie naming a
// source-mode CPE as unknown). The lab's CPE, inside its wan_prefixes, is
// served; the same CPE with wan_prefixes that do not hold its addresses is
// refused by hag.
func TestSourceAuth(t *testing.T) {
	s := startSystem(t, "key: 6c61622d6f6e6c792d6b65792d6e6f742d666f722d70726f64756374696f6e21", "")
	outer := t
	for _, tc := range []struct {
		name   string
		edits  []string
		served bool
	}{
		{"inside wan_prefixes served", []string{"auth: cookie+source", "auth: source"}, true},
		{"outside wan_prefixes refused", []string{
			"auth: cookie+source", "auth: source",
			"- 198.51.100.0/30", "- 192.0.2.128/30",
			"- 198.51.100.4/30", "- 192.0.2.132/30",
			`"2001:db8:d5::/64"`, `"2001:db8:ffd5::/64"`,
			`"2001:db8:17e::/64"`, `"2001:db8:ff7e::/64"`,
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := os.ReadFile(configPath("hag.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			body := string(b)
			for i := 0; i+1 < len(tc.edits); i += 2 {
				if !strings.Contains(body, tc.edits[i]) {
					t.Fatalf("hag.yaml has no %q to replace", tc.edits[i])
				}
				body = strings.Replace(body, tc.edits[i], tc.edits[i+1], 1)
			}
			cfg := filepath.Join(outer.TempDir(), "hag.yaml")
			if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			s.hag.stop(t)
			s.hag = startDaemon(outer, s.lab.HAG, "hag", cfg)
			waitFor(t, "hag listening", 10*time.Second, func() bool {
				out, _ := s.lab.HAG.Output("ss", "-Hltn", "sport", "= :5124")
				return strings.Count(out, "LISTEN") >= 2
			})
			dst := netip.AddrPortFrom(server4, 8081)
			if tc.served {
				waitServed(t, s)
				if _, _, err := s.download(s.ctx(t, 30*time.Second), dst, 1<<20, 41); err != nil {
					t.Fatalf("download with auth: source: %v", err)
				}
				return
			}
			e0, err := s.tryMetric(s.lab.HAG, 9102, "hag_convert_errors_total")
			if err != nil {
				e0 = 0 // no refusal yet: the vec has no sample
			}
			for i := range 3 {
				if _, _, err := s.download(s.ctx(t, 10*time.Second), dst, 1024, uint64(50+i)); err == nil {
					t.Fatalf("download %d from a CPE outside wan_prefixes was served with auth: source", i)
				}
			}
			e1, err := s.tryMetric(s.lab.HAG, 9102, "hag_convert_errors_total")
			if err != nil || e1 <= e0 {
				t.Errorf("hag_convert_errors_total %v -> %v (%v): hag did not refuse the flows itself", e0, e1, err)
			}
		})
	}
}
