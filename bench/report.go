package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
)

// The systems under comparison.
const (
	sysDirect = "direct"   // plain TCP, natively routed over DSL
	sysHybrid = "hybridgw" // hcpe + hag
	// sysBond is hybridgw with both uplinks in role bond instead of the
	// shipped DSL-first overflow policy: it separates the data path from
	// the policy in figure 1.
	sysBond = "hybridgw-bond"
	sysPeer = "peer" // ss-redir + ss-server with --mptcp (OpenMPTCProuter's approach)
)

// Peer settings. The port numbers are shadowsocks' customary ones.
const (
	peerServerPort = 8388
	peerRedirPort  = 1080
	peerCipher     = "chacha20-ietf-poly1305" // ss-libev's default and OpenMPTCProuter's usual choice
	peerNFTable    = "bench_peer"
	peerNofile     = 65536 // ss's -n: the open-file limit it sets itself
)

// mptcpView is what ss says about the MPTCP connections towards a port in
// a namespace at one moment.
type mptcpView struct {
	MPTCPConns   int            `json:"mptcp_conns"`
	ExtraSubflow map[string]int `json:"extra_subflows_histogram"` // "subflows:N" value → connections
	SubflowsDSL  int            `json:"tcp_subflows_dsl"`
	SubflowsLTE  int            `json:"tcp_subflows_lte"`
	PlainTCP     int            `json:"plain_tcp_conns"` // to the port without the MPTCP ULP
	Raw          string         `json:"raw,omitempty"`
}

// Report is everything one run measured; report.json is this struct and
// report.md renders it.
type Report struct {
	Started        string             `json:"started"`
	Finished       string             `json:"finished"`
	RuntimeSeconds float64            `json:"runtime_seconds"`
	Version        string             `json:"version"`
	Commit         string             `json:"commit"`
	Command        string             `json:"command"`
	Machine        Machine            `json:"machine"`
	Lab            LabInfo            `json:"lab"`
	Seeds          Seeds              `json:"seeds"`
	Durations      map[string]float64 `json:"durations_seconds"`
	Flows          int                `json:"parallel_flows"`
	PeerNofile     int                `json:"peer_nofile"` // ss's -n
	// Runs are the repetitions asked for of figures 1 ("efficiency"), 3
	// ("handover") and 4 ("cpu").
	Runs   map[string]int `json:"runs_asked"`
	Policy PolicyInfo     `json:"hcpe_policy"` // hybridgw's policy as its config loaded

	Headlines  []Headline    `json:"headlines"`
	Checks     []Check       `json:"checks"`
	Efficiency []EffRow      `json:"efficiency"`
	TTFB       []TTFBRow     `json:"ttfb"`
	FCT        []FCTRow      `json:"fct"`
	Handover   []HandoverRow `json:"handover"`
	CPU        []CPURow      `json:"cpu"`
	OneCore    []CPURow      `json:"one_core,omitempty"` // figure 9, fig_onecore_linux.go
	Memory     []MemRow      `json:"memory"`
	Emulator   []EmuRow      `json:"emulator"`
	Rate       []RateRun     `json:"connection_rate"`
	Hung       []HungRow     `json:"hung_connects"` // figure 5's LAN connects that got no answer
	Profiles   []ProfileRow  `json:"profiles"`
	// ConfigChanges are the differences between the daemons' configs in
	// this run and the shipped examples.
	ConfigChanges []string `json:"config_changes"`
	Errors        []string `json:"errors"`
	Notes         []string `json:"notes"`
}

// Machine describes where the run happened.
type Machine struct {
	Cores       int     `json:"cores"`
	CPUModel    string  `json:"cpu_model"`
	Kernel      string  `json:"kernel"`
	GoVersion   string  `json:"go_version"`
	MemTotalMB  int64   `json:"mem_total_mb"`
	LoadBefore  string  `json:"loadavg_before"`
	LoadAfter   string  `json:"loadavg_after"`
	OtherLabs   int     `json:"other_lab_namespaces_at_start"`
	PeerVersion string  `json:"peer_version"`
	IdleCores   float64 `json:"idle_machine_busy_cores_at_start"`
	Nofile      string  `json:"rlimit_nofile"`
}

// LabInfo names the lab and its link profiles.
type LabInfo struct {
	Prefix   string            `json:"prefix"`
	MTU      int               `json:"mtu"`
	Profiles map[string]string `json:"profiles"` // name → "up: ...; down: ..."
	Pairs    []Pair            `json:"pairs"`
}

// Pair is a DSL+LTE profile pair and the sum of its downstream rates.
type Pair struct {
	Name     string  `json:"name"`
	DSL      string  `json:"dsl"`
	LTE      string  `json:"lte"`
	DSLDown  float64 `json:"dsl_down_mbps"`
	LTEDown  float64 `json:"lte_down_mbps"`
	SumDown  float64 `json:"sum_down_mbps"`
	DSLRTTms float64 `json:"dsl_rtt_ms"`
	LTERTTms float64 `json:"lte_rtt_ms"`
}

// Seeds are every random seed of the run.
type Seeds struct {
	Data  uint64           `json:"data"`
	Links map[string]int64 `json:"links"` // link/direction → linkem seed (jitter, loss)
}

// Headline is one ratio measured in this run.
type Headline struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Text  string  `json:"text"`
}

// Check is a verification done before measuring (for example that the
// peer's connections really are MPTCP with two subflows).
type Check struct {
	System string     `json:"system"`
	What   string     `json:"what"`
	OK     bool       `json:"ok"`
	Detail string     `json:"detail"`
	View   *mptcpView `json:"ss_view,omitempty"`
}

// RateRun is figure 7 for one hag config: the steps of the ramp.
type RateRun struct {
	Label   string `json:"label"`   // shipped limits, rate limits raised
	Limits  string `json:"limits"`  // hag's limits in this config
	Sysctls string `json:"sysctls"` // namespace settings for the run
	// SustainedPerS is the highest offered rate whose step passed (under
	// 1 % errors, p99 setup under 1 s); 0 if none did.
	SustainedPerS float64     `json:"sustained_flows_per_s"`
	BrokeAt       int         `json:"broke_at_flows_per_s"` // the failing step's offered rate; 0 if none failed
	RateLimit     float64     `json:"new_flows_per_second"` // hag's per-CPE limit in this config
	RateBurst     int         `json:"new_flows_burst"`
	Why           string      `json:"why"`
	Steps         []RateStep  `json:"steps"`
	Profile       *ProfileRow `json:"hag_profile,omitempty"` // during the last step
}

// RateStep is one offered rate of figure 7.
type RateStep struct {
	Target       int     `json:"offered_target_per_s"`
	Seconds      float64 `json:"seconds"`
	Scheduled    int     `json:"scheduled"`
	Started      int     `json:"started"`
	OfferedPerS  float64 `json:"offered_per_s"` // started ÷ the time it took to start them
	OK           int     `json:"ok"`
	AchievedPerS float64 `json:"achieved_per_s"` // ok ÷ the step's duration
	ErrorCount   int     `json:"errors"`
	ErrPct       float64 `json:"error_pct"` // of the scheduled flows
	// Errors counts failed flows by kind (a Convert error code, timeout,
	// refused, reset, no local port, the generator's in-flight bound).
	Errors       map[string]int    `json:"errors_by_kind"`
	ErrorSamples map[string]string `json:"error_samples"`
	WaitP99Ms    float64           `json:"dial_wait_p99_ms"` // arrival → a dial worker took it (the generator's own queue)
	// SlowHandshakes counts flows whose handshake alone took 0.9 s or
	// more: a lost SYN or SYN-ACK, retransmitted after a second.
	SlowHandshakes int     `json:"slow_handshakes"`
	ConnectMedMs   float64 `json:"connect_median_ms"` // arrival → MPTCP handshake done, successful flows
	ConnectP99Ms   float64 `json:"connect_p99_ms"`
	MedianMs       float64 `json:"setup_median_ms"` // arrival → hag's reply, successful flows
	P99Ms          float64 `json:"setup_p99_ms"`
	MaxMs          float64 `json:"setup_max_ms"`
	Fallbacks      int     `json:"mptcp_fallbacks"`
	// LateMs is how far the generator fell behind its schedule at worst.
	LateMs          float64            `json:"generator_late_ms"`
	GeneratorBehind bool               `json:"generator_behind"`
	HagCores        float64            `json:"hag_cores"`
	BenchCores      float64            `json:"bench_process_cores"`
	MachineCores    float64            `json:"machine_busy_cores"`
	LinkPackets     uint64             `json:"emulator_packets"` // forwarded over both links, both ways, during the step
	LinkDrops       uint64             `json:"emulator_drops"`   // dropped by the emulator: queue, arena, write or read errors
	SoftirqCores    float64            `json:"softirq_cores"`    // the machine's softirq time: kernel network processing no process is charged for
	LimitHits       map[string]float64 `json:"hag_limit_hits"`   // hag_limit_hits_total over the step, by limit
	HagResults      map[string]float64 `json:"hag_results"`      // hag_flows_total over the step, by result
	Kernel          map[string]float64 `json:"kernel_counters"`  // hag's listener drops and the generator's SYN retransmits over the step (/proc/net/netstat)
	TimeWaitCPE     int                `json:"time_wait_cpe"`    // sockets in TIME_WAIT after the step
	TimeWaitHAG     int                `json:"time_wait_hag"`
	Pass            bool               `json:"pass"`
}

func (r *Report) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// encoding/json rejects NaN, which stands for "not applicable" here.
	j, err := json.MarshalIndent(jsonable(reflect.ValueOf(r)), "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), append(j, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "report.md"), []byte(r.markdown()), 0o644)
}

func f1(v float64) string { return num(v, 1) }
func f2(v float64) string { return num(v, 2) }

func num(v float64, prec int) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "n/a"
	}
	return fmt.Sprintf("%.*f", prec, v)
}

func pct(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "n/a"
	}
	return fmt.Sprintf("%.1f %%", 100*v)
}

type table struct {
	b    *strings.Builder
	cols int
}

func newTable(b *strings.Builder, head ...string) *table {
	fmt.Fprintf(b, "| %s |\n|%s\n", strings.Join(head, " | "), strings.Repeat("---|", len(head)))
	return &table{b, len(head)}
}

func (t *table) row(cells ...string) {
	for len(cells) < t.cols {
		cells = append(cells, "")
	}
	fmt.Fprintf(t.b, "| %s |\n", strings.Join(cells, " | "))
}

func (r *Report) markdown() string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("# hybridgw benchmark report\n\n")
	w("Run %s → %s (%.0f s), hybridgw %s (%s). Command: `%s`.\n\n", r.Started, r.Finished, r.RuntimeSeconds, r.Version, r.Commit, r.Command)
	m := r.Machine
	w("**Machine:** %d cores (%s), kernel %s, %s, %d MB RAM; load average before %s, after %s; %d namespaces of other labs present at the start (the machine is shared: absolute numbers are noisy, the ratios below are measured in this one run over the same emulated links). Peer: %s. RLIMIT_NOFILE: %s.\n\n",
		m.Cores, m.CPUModel, m.Kernel, m.GoVersion, m.MemTotalMB, m.LoadBefore, m.LoadAfter, m.OtherLabs, m.PeerVersion, m.Nofile)

	w("## At a glance\n\n")
	w("Every figure of this table was measured in this one run over the same emulated links; the last column is the headline ratio. Efficiency is goodput ÷ the sum of the two links' downstream rates (%s). Noisy measures are repeated: a cell gives the median and, in brackets, the range (figures 1 and 4) or the worst run (figure 3); n is how many runs each cell stands for.\n\n", r.linkSum())
	b.WriteString(r.glance(r.Flows))
	w("\n### Headline ratios\n\n")
	for _, h := range r.Headlines {
		w("- **%s: %s** — %s\n", h.Name, f2(h.Value), h.Text)
	}
	if behind := r.behind(); len(behind) > 0 {
		w("\n### Where hybridgw is behind the peer, and the likely cause\n\n")
		for _, l := range behind {
			w("- %s\n", l)
		}
	}
	if len(r.Errors) > 0 {
		w("\n**Errors in this run:**\n\n")
		for _, e := range r.Errors {
			w("- %s\n", strings.ReplaceAll(e, "\n", " ⏎ "))
		}
	}

	w("\n## Systems\n\n")
	w("1. **hybridgw** — `hcpe` (cpe ns) + `hag` (hag ns) with `configs/hcpe.yaml` and `configs/hag.yaml` as shipped, but for the limits and admin sockets listed below: one MPTCP connection per LAN flow carrying an RFC 8803 Convert request (in the SYN only with `hag.fast_open: true`; the shipped config has it off), %s.\n", r.policyText())
	w("2. **hybridgw-bond** (figure 1 only) — the same binaries and configs, except both uplinks in `role: bond`: the data path without the overflow policy.\n")
	w("3. **peer** — the OpenMPTCProuter approach: Debian shadowsocks-libev, `ss-redir --mptcp` in the cpe ns behind `nft … iifname \"lan\" meta l4proto tcp redirect to :%d`, `ss-server --mptcp` on hag's service address %s:%d in the hag ns, cipher %s, `--no-delay`, `-n %d` (its open-file limit), no TCP Fast Open (Debian defaults otherwise). Same path-manager endpoints as hcpe installs (every uplink address, flag `subflow`) and limits `subflow 4 add_addr_accepted 0` in both namespaces.\n",
		peerRedirPort, "198.51.100.100", peerServerPort, peerCipher, r.PeerNofile)
	w("4. **direct** — no daemon: the lab's cpe routes LAN TCP natively over DSL with masquerade (plain single-link TCP). **limit** — the sum of the two links' downstream rates.\n\n")
	w("All transfers are IPv4 from the LAN client (%s) to the server (%s), server → client; bbr everywhere (the namespaces' default).\n\n", "192.0.2.10", "203.0.113.10")
	if len(r.ConfigChanges) > 0 {
		w("**The daemons' configs** are copies of `configs/hcpe.yaml` and `configs/hag.yaml` (in `logs/configs/` of the run) with these changes only:\n\n")
		for _, c := range r.ConfigChanges {
			w("- %s\n", c)
		}
		w("\n")
	}

	if len(r.Checks) > 0 {
		w("### Checks before measuring\n\n")
		t := newTable(&b, "system", "check", "ok", "detail")
		for _, c := range r.Checks {
			t.row(c.System, c.What, yes(c.OK), strings.ReplaceAll(c.Detail, "\n", "<br>"))
		}
		w("\n")
	}

	w("## Link profiles\n\n")
	t := newTable(&b, "profile", "up (cpe → hag)", "down (hag → cpe)")
	names := make([]string, 0, len(r.Lab.Profiles))
	for n := range r.Lab.Profiles {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		up, down, _ := strings.Cut(r.Lab.Profiles[n], "|")
		t.row(n, up, down)
	}
	w("\nPairs (dsl + lte): ")
	for i, p := range r.Lab.Pairs {
		if i > 0 {
			w("; ")
		}
		w("**%s** = %s + %s (%.0f + %.0f = %.0f Mbit/s down, RTT %.0f / %.0f ms)", p.Name, p.DSL, p.LTE, p.DSLDown, p.LTEDown, p.SumDown, p.DSLRTTms, p.LTERTTms)
	}
	seeds := make([]string, 0, len(r.Seeds.Links))
	for k, v := range r.Seeds.Links {
		seeds = append(seeds, fmt.Sprintf("%s %d", k, v))
	}
	slices.Sort(seeds)
	w(". MTU %d. Seeds: payload %d; linkem jitter/loss seeds (link/profile/direction) %s.\n\n", r.Lab.MTU, r.Seeds.Data, strings.Join(seeds, ", "))

	r.renderEfficiency(&b)
	r.renderTTFB(&b)

	renderFCT(&b, r.FCT)

	r.renderHandover(&b)
	r.renderCPU(&b)

	r.oneCoreMD(&b)

	r.renderMemory(&b)

	r.renderEmulator(&b)

	if len(r.Rate) > 0 {
		r.rateMD(&b)
	}

	w("\n## Method notes and caveats\n\n")
	for _, n := range r.Notes {
		w("- %s\n", n)
	}
	return b.String()
}

func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func errCell(e string) string {
	if e == "" {
		return ""
	}
	if len(e) > 160 {
		e = e[:160] + "…"
	}
	return " — error: " + strings.ReplaceAll(e, "|", "/")
}

func coresCell(m map[string]float64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.2f", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// jsonable turns v into maps, slices and scalars for encoding/json, with
// NaN and infinities as null and field names from the json tags.
func jsonable(v reflect.Value) any {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return jsonable(v.Elem())
	case reflect.Struct:
		m := map[string]any{}
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			if opts == "omitempty" && v.Field(i).IsZero() {
				continue
			}
			m[name] = jsonable(v.Field(i))
		}
		return m
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.IsNil() {
			return []any{}
		}
		out := make([]any, v.Len())
		for i := range out {
			out[i] = jsonable(v.Index(i))
		}
		return out
	case reflect.Map:
		m := map[string]any{}
		for _, k := range v.MapKeys() {
			m[fmt.Sprint(k.Interface())] = jsonable(v.MapIndex(k))
		}
		return m
	case reflect.Float32, reflect.Float64:
		f := v.Float()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil
		}
		return f
	}
	return v.Interface()
}
