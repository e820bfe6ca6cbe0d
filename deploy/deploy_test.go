// Package deploy_test checks the operational files under deploy/ against the
// tools that will consume them and against the code they describe:
//
//   - the systemd units are verified by systemd-analyze and their
//     ExecStartPre/ExecReload commands are run against the example configs;
//   - the nftables ruleset is parsed by nft -c and its mark, table and rule
//     priority agree with the config defaults;
//   - the sysctl files name sysctls that exist and set the TFO server bit;
//   - every PromQL expression in the Grafana dashboard and the alert rules
//     names only metrics (and labels) that hag's and hcpe's registries
//     export, and promtool accepts and unit-tests the rules;
//   - the OpenWrt init script parses and mk/release.mk cross-compiles for
//     the architectures we ship.
//
// systemd-analyze (Debian package systemd), promtool (prometheus) and nft
// (nftables) are external tools: a test that needs a missing one fails
// under CI=true and is skipped otherwise.
//
// systemd-analyze verify refuses a unit whose ExecStart binary does not
// exist, so the test builds hag and hcpe into a temporary directory and
// verifies copies of the units in which /usr/bin/<daemon> is replaced by
// the built binary and /etc/hybridgw/<daemon>.yaml by configs/<daemon>.yaml;
// nothing else in the units is changed.
package deploy_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.yaml.in/yaml/v3"

	"hybridgw/internal/config"
	"hybridgw/internal/metrics"
)

// requireTool returns the path of an external tool, or fails (CI=true) or
// skips the test when it is missing. pkg is the Debian package to install.
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed (apt-get install %s); CI must provide it", name, pkg)
	}
	t.Skipf("%s is not installed (apt-get install %s)", name, pkg)
	return ""
}

func repoRoot(t *testing.T) string {
	t.Helper()
	abs, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// ---- the daemons' binaries, built once -----------------------------------

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

func binaries(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "hybridgw-deploy-")
		if buildErr != nil {
			return
		}
		for _, d := range []string{"hag", "hcpe"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, d), "hybridgw/cmd/"+d)
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("building %s: %v\n%s", d, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// ---- systemd units ---------------------------------------------------------

// unit is a parsed unit file: section → key → values in order.
type unit map[string]map[string][]string

func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	u := unit{}
	sec := ""
	sc := bufio.NewScanner(strings.NewReader(readFile(t, path)))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			sec = strings.Trim(line, "[]")
			u[sec] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || sec == "" {
				t.Fatalf("%s:%d: not a key=value line in a section: %q", path, n, line)
			}
			u[sec][k] = append(u[sec][k], v)
		}
	}
	return u
}

func (u unit) one(sec, key string) string {
	vs := u[sec][key]
	if len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}

func TestUnitsHardening(t *testing.T) {
	caps := map[string][]string{"hag": {"CAP_NET_ADMIN"}, "hcpe": {"CAP_NET_ADMIN"}}
	for _, d := range []string{"hag", "hcpe"} {
		t.Run(d, func(t *testing.T) {
			u := parseUnit(t, filepath.Join("systemd", d+".service"))
			want := map[string]string{
				"NoNewPrivileges":  "yes",
				"ProtectSystem":    "strict",
				"ProtectHome":      "yes",
				"PrivateTmp":       "yes",
				"RuntimeDirectory": d,
				"User":             d,
				"Restart":          "on-failure",
				"ExecStartPre":     "/usr/bin/" + d + " check-config -c /etc/hybridgw/" + d + ".yaml",
				"ExecStart":        "/usr/bin/" + d + " run -c /etc/hybridgw/" + d + ".yaml",
			}
			for k, v := range want {
				if got := u.one("Service", k); got != v {
					t.Errorf("[Service] %s = %q, want %q", k, got, v)
				}
			}
			for _, k := range []string{"AmbientCapabilities", "CapabilityBoundingSet"} {
				got := strings.Fields(u.one("Service", k))
				if !slices.Equal(got, caps[d]) {
					t.Errorf("[Service] %s = %v, want exactly %v (least privilege)", k, got, caps[d])
				}
			}
			// The admin socket of the default config must land in the
			// runtime directory, or the daemon cannot create it under
			// ProtectSystem=strict.
			var admin string
			if d == "hag" {
				admin = config.DefaultHAG().Admin.Listen
			} else {
				admin = config.DefaultHCPE().Admin.Listen
			}
			if filepath.Dir(admin) != "/run/"+u.one("Service", "RuntimeDirectory") {
				t.Errorf("default admin.listen %s is not inside RuntimeDirectory=/run/%s", admin, u.one("Service", "RuntimeDirectory"))
			}
			reload := u["Service"]["ExecReload"]
			if len(reload) != 2 || !strings.Contains(reload[0], "check-config") || reload[1] != "/bin/kill -HUP $MAINPID" {
				t.Errorf("%s ExecReload = %q, want check-config then kill -HUP $MAINPID", d, reload)
			}
		})
	}
}

// rewriteUnit points a unit at the built binary and the example config.
func rewriteUnit(t *testing.T, d, bin, cfg string) string {
	t.Helper()
	s := readFile(t, filepath.Join("systemd", d+".service"))
	if !strings.Contains(s, "ExecStart=/usr/bin/"+d+" run") {
		t.Fatalf("%s.service: ExecStart does not run /usr/bin/%s", d, d)
	}
	s = strings.ReplaceAll(s, "/usr/bin/"+d, bin)
	return strings.ReplaceAll(s, "/etc/hybridgw/"+d+".yaml", cfg)
}

func TestUnitsVerify(t *testing.T) {
	sa := requireTool(t, "systemd-analyze", "systemd")
	bins := binaries(t)
	root := repoRoot(t)
	dir := t.TempDir()
	for _, d := range []string{"hag", "hcpe"} {
		t.Run(d, func(t *testing.T) {
			cfg := filepath.Join(root, "configs", d+".yaml")
			path := filepath.Join(dir, d+".service")
			if err := os.WriteFile(path, []byte(rewriteUnit(t, d, filepath.Join(bins, d), cfg)), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := run(t, sa, "verify", "--man=no", path)
			if err != nil || strings.TrimSpace(out) != "" {
				// Warnings (unknown keys, bad values) exit 0 but print:
				// any output is a failure.
				t.Errorf("systemd-analyze verify %s.service: %v\n%s", d, err, out)
			}
			// The commands systemd runs before start and on reload must
			// work as written: run them against the example config.
			u := parseUnit(t, path)
			cmds := append(append([]string{}, u["Service"]["ExecStartPre"]...), u["Service"]["ExecReload"]...)
			for _, c := range cmds {
				f := strings.Fields(c)
				if filepath.Base(f[0]) == "kill" {
					continue
				}
				if out, err := run(t, f[0], f[1:]...); err != nil {
					t.Errorf("%s: %v\n%s", c, err, out)
				}
			}
			// ExecStart's flags must exist.
			f := strings.Fields(u.one("Service", "ExecStart"))
			help, err := run(t, f[0], f[1], "--help")
			if err != nil || !strings.Contains(help, "-c, --config") {
				t.Errorf("%s %s --help does not offer -c/--config: %v\n%s", f[0], f[1], err, help)
			}
		})
	}
}

// ---- sysctl and nftables ---------------------------------------------------

func parseSysctl(t *testing.T, path string) map[string]string {
	t.Helper()
	kv := map[string]string{}
	for n, line := range strings.Split(readFile(t, path), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s:%d: not key = value: %q", path, n+1, line)
		}
		kv[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return kv
}

func TestSysctlFiles(t *testing.T) {
	for _, d := range []string{"hag", "hcpe"} {
		t.Run(d, func(t *testing.T) {
			kv := parseSysctl(t, filepath.Join("sysctl", "60-hybridgw-"+d+".conf"))
			if kv["net.mptcp.enabled"] != "1" {
				t.Errorf("net.mptcp.enabled = %q, want 1", kv["net.mptcp.enabled"])
			}
			tfo, err := strconv.ParseUint(kv["net.ipv4.tcp_fastopen"], 0, 32)
			if err != nil {
				t.Fatalf("net.ipv4.tcp_fastopen: %v", err)
			}
			if tfo&1 == 0 {
				t.Errorf("net.ipv4.tcp_fastopen = %#x lacks the client bit 0x1", tfo)
			}
			if d == "hag" && tfo&2 == 0 {
				t.Errorf("net.ipv4.tcp_fastopen = %#x lacks the server bit 0x2, without which MPTCP falls back to TCP", tfo)
			}
			if d == "hcpe" && (kv["net.ipv4.ip_forward"] != "1" || kv["net.ipv6.conf.all.forwarding"] != "1") {
				t.Errorf("hcpe routes what it does not convert: forwarding must be on")
			}
			if _, err := os.Stat("/proc/sys/net/mptcp"); err != nil {
				t.Logf("no /proc/sys/net/mptcp here; not checking that the keys exist")
				return
			}
			for k := range kv {
				if _, err := os.Stat("/proc/sys/" + strings.ReplaceAll(k, ".", "/")); err != nil {
					t.Errorf("sysctl %s does not exist on this kernel: %v", k, err)
				}
			}
		})
	}
}

func TestNFTablesRuleset(t *testing.T) {
	s := readFile(t, filepath.Join("nftables", "hag-transparent.nft"))
	def := config.DefaultHAG().Transparent
	for _, want := range []string{
		"table inet hybridgw_hag {", // the table gateway.installTransparent owns
		"priority mangle",
		"meta l4proto tcp socket transparent 1 meta mark set " + fmt.Sprintf("0x%08x", def.Mark),
		fmt.Sprintf("ip -4 rule add pref %d fwmark %#x lookup %d", def.RulePriority, def.Mark, def.Table),
		fmt.Sprintf("ip -6 rule add pref %d fwmark %#x lookup %d", def.RulePriority, def.Mark, def.Table),
		fmt.Sprintf("ip -4 route replace local 0.0.0.0/0 dev lo table %d", def.Table),
		fmt.Sprintf("ip -6 route replace local ::/0 dev lo table %d", def.Table),
	} {
		if !strings.Contains(s, want) {
			t.Errorf("hag-transparent.nft lacks %q (must match internal/config defaults and internal/gateway)", want)
		}
	}
	nft := requireTool(t, "nft", "nftables")
	if os.Geteuid() != 0 {
		t.Skip("nft -c needs root")
	}
	if out, err := run(t, nft, "-c", "-f", filepath.Join("nftables", "hag-transparent.nft")); err != nil {
		t.Errorf("nft -c: %v\n%s", err, out)
	}
}

// ---- metrics: registries, PromQL ------------------------------------------

// touchVectors creates one child in every metric vector of a collectors
// struct (by reflection, so a vector added later is covered too): vectors
// appear in Gather only once they have a child.
func touchVectors(t *testing.T, m any) {
	t.Helper()
	v := reflect.ValueOf(m).Elem()
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		meth := f.MethodByName("GetMetricWithLabelValues")
		if !meth.IsValid() {
			continue
		}
		ok := false
		for n := 0; n <= 8 && !ok; n++ {
			args := make([]reflect.Value, n)
			for j := range args {
				args[j] = reflect.ValueOf("x")
			}
			out := meth.Call(args)
			ok = out[1].IsNil()
		}
		if !ok {
			t.Fatalf("could not create a child of %s", v.Type().Field(i).Name)
		}
	}
}

// series maps every series name a Prometheus server would store for our
// daemons to the label names it carries (histograms expand to
// _bucket/_sum/_count).
func series(t *testing.T) map[string]map[string]bool {
	t.Helper()
	hag := metrics.NewHAG(func(string) float64 { return 0 })
	touchVectors(t, hag)
	hcpe := metrics.NewHCPE()
	touchVectors(t, hcpe)
	out := map[string]map[string]bool{}
	add := func(name string, labels map[string]bool) {
		if out[name] == nil {
			out[name] = map[string]bool{"job": true, "instance": true}
		}
		for l := range labels {
			out[name][l] = true
		}
	}
	for _, reg := range []*prometheus.Registry{hag.Registry, hcpe.Registry} {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			labels := map[string]bool{}
			for _, m := range mf.GetMetric() {
				for _, lp := range m.GetLabel() {
					labels[lp.GetName()] = true
				}
			}
			switch mf.GetType() {
			case dto.MetricType_HISTOGRAM:
				add(mf.GetName()+"_sum", labels)
				add(mf.GetName()+"_count", labels)
				add(mf.GetName()+"_bucket", labels)
				out[mf.GetName()+"_bucket"]["le"] = true
			case dto.MetricType_SUMMARY:
				add(mf.GetName()+"_sum", labels)
				add(mf.GetName()+"_count", labels)
				add(mf.GetName(), labels)
				out[mf.GetName()]["quantile"] = true
			default:
				add(mf.GetName(), labels)
			}
		}
	}
	// Prometheus's own per-target series, used by the "daemon down" alerts.
	out["up"] = map[string]bool{"job": true, "instance": true}
	return out
}

// selector is one metric name in a PromQL expression and the label names
// its matchers use.
type selector struct {
	name   string
	labels []string
}

var promqlWords = map[string]bool{
	// aggregation operators (may be followed by by/without before "(")
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
	"limitk": true, "limit_ratio": true,
	// binary operators, modifiers and literals
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true,
	"inf": true, "nan": true, "Inf": true, "NaN": true,
}

var groupingWords = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}
func isIdent(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }

// skipString returns the index after the string literal starting at i.
func skipString(s string, i int) int {
	q := s[i]
	for i++; i < len(s); i++ {
		if s[i] == '\\' && q != '`' {
			i++
			continue
		}
		if s[i] == q {
			return i + 1
		}
	}
	return i
}

// selectors lists the metric names of a PromQL expression. It is a lexer,
// not a parser: enough to find names and matchers in the expressions we
// write (promtool parses the rules for real). Grafana variables ($x, ${x})
// are skipped.
func selectors(expr string) ([]selector, error) {
	var sels []selector
	s := expr
	last := -1 // index in sels of a name that a {...} may follow directly
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
			continue
		case c == '"' || c == '\'' || c == '`':
			i = skipString(s, i)
		case c == '#': // comment to end of line
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '$':
			i++
			if i < len(s) && s[i] == '{' {
				for i < len(s) && s[i] != '}' {
					i++
				}
				i++
			} else {
				for i < len(s) && isIdent(s[i]) {
					i++
				}
			}
		case c == '[':
			for i < len(s) && s[i] != ']' {
				i++
			}
			i++
		case c == '{':
			j := i + 1
			var labels []string
			for j < len(s) && s[j] != '}' {
				switch {
				case s[j] == '"' || s[j] == '\'' || s[j] == '`':
					j = skipString(s, j)
				case isIdentStart(s[j]):
					k := j
					for k < len(s) && isIdent(s[k]) {
						k++
					}
					labels = append(labels, s[j:k])
					j = k
				default:
					j++
				}
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unbalanced { in %q", expr)
			}
			if last >= 0 {
				sels[last].labels = append(sels[last].labels, labels...)
			} else {
				return nil, fmt.Errorf("selector without a metric name in %q (name every metric)", expr)
			}
			i = j + 1
		case c >= '0' && c <= '9' || c == '.':
			for i < len(s) && (isIdent(s[i]) || s[i] == '.') {
				i++
			}
		case isIdentStart(c):
			j := i
			for j < len(s) && isIdent(s[j]) {
				j++
			}
			word := s[i:j]
			k := j
			for k < len(s) && (s[k] == ' ' || s[k] == '\t' || s[k] == '\n') {
				k++
			}
			switch {
			case groupingWords[word]:
				if k < len(s) && s[k] == '(' {
					for k < len(s) && s[k] != ')' {
						k++
					}
					k++
				}
				i = k
				last = -1
				continue
			case promqlWords[word], k < len(s) && s[k] == '(':
				i = j
				last = -1
				continue
			}
			sels = append(sels, selector{name: word})
			i = j
			last = len(sels) - 1
			continue
		default:
			i++
		}
		last = -1
	}
	return sels, nil
}

func TestSelectorsLexer(t *testing.T) {
	got, err := selectors(`sum by (uplink) (rate(hcpe_uplink_bytes_total{direction="up", instance=~"$hcpe"}[$__rate_interval])) * 8
		/ on (instance) group_left hag_flows_active > bool 0.9 * 65536 and histogram_quantile(0.9, x_bucket{le!="+Inf"}) offset 5m`)
	if err != nil {
		t.Fatal(err)
	}
	want := []selector{{"hcpe_uplink_bytes_total", []string{"direction", "instance"}}, {"hag_flows_active", nil}, {"x_bucket", []string{"le"}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("selectors = %+v, want %+v", got, want)
	}
}

// expressions returns every PromQL expression in the dashboard and the
// alert rules, each with where it comes from.
func expressions(t *testing.T) map[string]string {
	t.Helper()
	exprs := map[string]string{}

	var dash any
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join("grafana", "hybridgw.json"))), &dash); err != nil {
		t.Fatalf("grafana/hybridgw.json: %v", err)
	}
	labelValues := regexp.MustCompile(`^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch x := v.(type) {
		case map[string]any:
			title, _ := x["title"].(string)
			if title == "" {
				title, _ = x["name"].(string)
			}
			if e, ok := x["expr"].(string); ok && e != "" {
				exprs[fmt.Sprintf("dashboard %s: %s", path, title)] = e
			}
			// templating variables: label_values(selector, label)
			if q, ok := x["query"].(string); ok && strings.HasPrefix(q, "label_values(") {
				m := labelValues.FindStringSubmatch(q)
				if m == nil {
					t.Errorf("dashboard variable %s: cannot read %q", path, q)
				} else {
					exprs[fmt.Sprintf("dashboard variable %s", path)] = m[1] + "{" + m[2] + "=\"\"}"
				}
			}
			keys := make([]string, 0, len(x))
			for k := range x {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				walk(path+"."+k, x[k])
			}
		case []any:
			for i, e := range x {
				walk(fmt.Sprintf("%s[%d]", path, i), e)
			}
		}
	}
	walk("", dash)

	var rules struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert  string `yaml:"alert"`
				Record string `yaml:"record"`
				Expr   string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal([]byte(readFile(t, filepath.Join("prometheus", "alerts.yml"))), &rules); err != nil {
		t.Fatalf("prometheus/alerts.yml: %v", err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			exprs["alert "+g.Name+"/"+r.Alert+r.Record] = r.Expr
		}
	}
	return exprs
}

func TestPromQLNamesExist(t *testing.T) {
	known := series(t)
	exprs := expressions(t)
	if len(exprs) < 20 {
		t.Fatalf("found only %d expressions; the dashboard or the rules did not parse as expected", len(exprs))
	}
	used := map[string]bool{}
	for where, e := range exprs {
		sels, err := selectors(e)
		if err != nil {
			t.Errorf("%s: %v", where, err)
			continue
		}
		if len(sels) == 0 {
			t.Errorf("%s: no metric in %q", where, e)
		}
		for _, s := range sels {
			labels, ok := known[s.name]
			if !ok {
				t.Errorf("%s: metric %s is not exported by hag or hcpe (expr %q)", where, s.name, e)
				continue
			}
			used[s.name] = true
			for _, l := range s.labels {
				if !labels[l] && l != "__name__" {
					t.Errorf("%s: metric %s has no label %q (expr %q)", where, s.name, l, e)
				}
			}
		}
	}
	// Every daemon metric should be on the dashboard or in a rule;
	// report the ones that are not, so a new metric is not forgotten.
	for name := range known {
		if (strings.HasPrefix(name, "hag_") || strings.HasPrefix(name, "hcpe_")) && !used[name] &&
			!strings.HasSuffix(name, "_sum") && !strings.HasSuffix(name, "_count") && !strings.HasSuffix(name, "_bucket") {
			t.Errorf("metric %s is neither on the dashboard nor in an alert", name)
		}
	}
}

func TestGrafanaDashboard(t *testing.T) {
	var d struct {
		UID        string `json:"uid"`
		Title      string `json:"title"`
		Panels     []map[string]any
		Templating struct {
			List []map[string]any `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join("grafana", "hybridgw.json"))), &d); err != nil {
		t.Fatal(err)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("dashboard needs a uid and a title")
	}
	ids := map[float64]bool{}
	for _, p := range d.Panels {
		id, _ := p["id"].(float64)
		if ids[id] {
			t.Errorf("panel id %v is used twice", id)
		}
		ids[id] = true
		if p["type"] == "row" {
			continue
		}
		if ds, _ := p["datasource"].(map[string]any); ds == nil || ds["uid"] != "${datasource}" {
			t.Errorf("panel %q does not use the ${datasource} variable", p["title"])
		}
		if _, ok := p["gridPos"]; !ok {
			t.Errorf("panel %q has no gridPos", p["title"])
		}
	}
}

func TestPromtool(t *testing.T) {
	pt := requireTool(t, "promtool", "prometheus")
	if out, err := run(t, pt, "check", "rules", filepath.Join("prometheus", "alerts.yml")); err != nil {
		t.Errorf("promtool check rules: %v\n%s", err, out)
	}
	// promtool resolves rule_files relative to the test file.
	if out, err := run(t, pt, "test", "rules", filepath.Join("prometheus", "alerts_test.yml")); err != nil {
		t.Errorf("promtool test rules: %v\n%s", err, out)
	}
}

// ---- OpenWrt package and release targets -----------------------------------

func TestOpenWrtPackage(t *testing.T) {
	mk := readFile(t, filepath.Join("openwrt", "hcpe", "Makefile"))
	for _, want := range []string{
		"include $(TOPDIR)/rules.mk", "PKG_NAME:=hcpe", "include $(INCLUDE_DIR)/package.mk",
		"golang-package.mk", "$(eval $(call GoBinPackage,hcpe))", "$(eval $(call BuildPackage,hcpe))",
		"kmod-tun", "/etc/hybridgw/hcpe.yaml",
	} {
		if !strings.Contains(mk, want) {
			t.Errorf("openwrt/hcpe/Makefile lacks %q", want)
		}
	}
	init := filepath.Join("openwrt", "hcpe", "files", "hcpe.init")
	s := readFile(t, init)
	for _, want := range []string{"#!/bin/sh /etc/rc.common", "USE_PROCD=1", "procd_open_instance", "procd_set_param command /usr/bin/hcpe run -c", "check-config -c", "reload_service"} {
		if !strings.Contains(s, want) {
			t.Errorf("hcpe.init lacks %q", want)
		}
	}
	if out, err := run(t, "sh", "-n", init); err != nil {
		t.Errorf("sh -n hcpe.init: %v\n%s", err, out)
	}
	var caps map[string][]string
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join("openwrt", "hcpe", "files", "hcpe.capabilities.json"))), &caps); err != nil {
		t.Fatalf("hcpe.capabilities.json: %v", err)
	}
	for _, set := range []string{"bounding", "effective", "ambient", "permitted", "inheritable"} {
		if !slices.Equal(caps[set], []string{"CAP_NET_ADMIN"}) {
			t.Errorf("hcpe.capabilities.json %s = %v, want [CAP_NET_ADMIN]", set, caps[set])
		}
	}
	// The example config the package installs must load.
	hcpe := filepath.Join(binaries(t), "hcpe")
	if out, err := run(t, hcpe, "check-config", "-c", filepath.Join("openwrt", "hcpe", "files", "hcpe.yaml.example")); err != nil {
		t.Errorf("hcpe check-config on the OpenWrt example: %v\n%s", err, out)
	}
}

// TestContainerfile is a cheap lint (no container engine here): every line
// is a known instruction, every --from names an earlier stage, the final
// stage runs as a numeric non-root user, and the build stage builds hag
// statically with the version stamped.
func TestContainerfile(t *testing.T) {
	s := readFile(t, filepath.Join("container", "Containerfile"))
	known := map[string]bool{"FROM": true, "RUN": true, "COPY": true, "ARG": true, "ENV": true, "WORKDIR": true, "USER": true,
		"EXPOSE": true, "ENTRYPOINT": true, "CMD": true, "LABEL": true, "ADD": true, "VOLUME": true, "STOPSIGNAL": true, "HEALTHCHECK": true, "SHELL": true}
	stages := map[string]bool{}
	var user string
	cont := false
	for n, line := range strings.Split(s, "\n") {
		l := strings.TrimSpace(line)
		wasCont := cont
		cont = strings.HasSuffix(l, "\\")
		if l == "" || strings.HasPrefix(l, "#") || wasCont {
			continue
		}
		f := strings.Fields(l)
		if !known[f[0]] {
			t.Errorf("Containerfile:%d: unknown instruction %q", n+1, f[0])
			continue
		}
		switch f[0] {
		case "FROM":
			if len(f) == 4 && strings.EqualFold(f[2], "AS") {
				stages[f[3]] = true
			}
			user = ""
		case "COPY":
			for _, a := range f[1:] {
				if from, ok := strings.CutPrefix(a, "--from="); ok && !stages[from] {
					t.Errorf("Containerfile:%d: --from=%s is not an earlier stage", n+1, from)
				}
			}
		case "USER":
			user = f[1]
		case "ENTRYPOINT", "CMD":
			var v []string
			if err := json.Unmarshal([]byte(strings.TrimSpace(strings.TrimPrefix(l, f[0]))), &v); err != nil {
				t.Errorf("Containerfile:%d: %s is not in exec (JSON) form: %v", n+1, f[0], err)
			}
		}
	}
	uid, _, _ := strings.Cut(user, ":")
	if id, err := strconv.Atoi(uid); err != nil || id == 0 {
		t.Errorf("final stage USER = %q, want a numeric non-root uid", user)
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "hybridgw/internal/version.Version=${VERSION}", "setcap cap_net_admin+ep"} {
		if !strings.Contains(s, want) {
			t.Errorf("Containerfile lacks %q", want)
		}
	}
}

func TestReleaseTargets(t *testing.T) {
	mk := requireTool(t, "make", "make")
	out, err := exec.Command(mk, "-C", "..", "-n", "release", "VERSION=v0.0.0-test", "COMMIT=abc").CombinedOutput()
	if err != nil {
		t.Fatalf("make -n release: %v\n%s", err, out)
	}
	s := string(out)
	for _, arch := range []string{"amd64", "arm64", "mipsle"} {
		for _, d := range []string{"hag", "hcpe"} {
			if !strings.Contains(s, "dist/"+d+"-linux-"+arch) {
				t.Errorf("make -n release does not build dist/%s-linux-%s:\n%s", d, arch, s)
			}
		}
	}
	for _, want := range []string{"GOMIPS=softfloat", "-trimpath", "-X hybridgw/internal/version.Version=v0.0.0-test", "CGO_ENABLED=0"} {
		if !strings.Contains(s, want) {
			t.Errorf("make -n release lacks %q:\n%s", want, s)
		}
	}
}
