package config

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"
)

// SteeringSlotTable is the offset from tun.table of the routing table of
// hcpe's second steering slot, which a reload switches to.
const SteeringSlotTable = 100

// HCPE is hcpe's configuration file.
type HCPE struct {
	Log     Log         `yaml:"log"`
	LAN     LAN         `yaml:"lan"`
	TUN     TUN         `yaml:"tun"`
	Uplinks []Uplink    `yaml:"uplinks"`
	HAG     HAGPeer     `yaml:"hag"`
	Bypass  Bypass      `yaml:"bypass"`
	Limits  CPELimit    `yaml:"limits"`
	Policy  Policy      `yaml:"policy"`
	Pool    Pool        `yaml:"pool"`
	Metrics Listen      `yaml:"metrics"`
	Admin   AdminListen `yaml:"admin"`

	file string
}

// Log selects the level and encoding of the daemon's log.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // auto (text on a terminal, JSON otherwise), text, json
}

// LAN names the interfaces whose TCP hcpe intercepts.
type LAN struct {
	Interfaces []string `yaml:"interfaces"`
}

// TUN is the device intercepted flows enter, and the routing that steers
// them into it.
type TUN struct {
	Name         string `yaml:"name"`
	MTU          int    `yaml:"mtu"`
	Table        int    `yaml:"table"`         // routing table whose default route is the TUN
	RulePriority int    `yaml:"rule_priority"` // first of the priorities hcpe's ip rules use
}

// Uplink is one access link (DSL, LTE, ...).
type Uplink struct {
	Name      string   `yaml:"name"`
	Interface string   `yaml:"interface"`
	Addresses []string `yaml:"addresses"` // ["auto"] (default) or explicit addresses
	Gateways  []string `yaml:"gateways"`  // next hops, one per family; none on point-to-point links
	Role      string   `yaml:"role"`      // primary, overflow, backup, bond
	DownRate  string   `yaml:"down_rate"` // nominal, e.g. 20mbit
	UpRate    string   `yaml:"up_rate"`
	Table     int      `yaml:"table"` // source-routing table for subflows leaving on this uplink
	Probe     Probe    `yaml:"probe"`

	// Parsed by validate.
	Auto    bool         `yaml:"-"`
	Addrs   []netip.Addr `yaml:"-"`
	GWs     []netip.Addr `yaml:"-"`
	DownBps Rate         `yaml:"-"`
	UpBps   Rate         `yaml:"-"`
}

// Probe configures an uplink's health probes towards hag.
type Probe struct {
	Interval  time.Duration `yaml:"interval"`
	Timeout   time.Duration `yaml:"timeout"`
	DownAfter int           `yaml:"down_after"` // consecutive misses before the uplink is down
	UpAfter   int           `yaml:"up_after"`   // consecutive answers before it is up again
}

// HAGPeer is the gateway hcpe converts flows to.
type HAGPeer struct {
	Addresses      []string      `yaml:"addresses"`
	Port           int           `yaml:"port"`
	CPEID          string        `yaml:"cpe_id"`
	Key            string        `yaml:"key"`      // hex; or key_file
	KeyFile        string        `yaml:"key_file"` // file holding the hex key
	KeyID          int           `yaml:"key_id"`   // the id of this key in hag's entry for this CPE (0..255)
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// FastOpen puts the Convert message in the SYN (TCP Fast Open, RFC 8803
	// as designed). Off by default: on Linux 6.18 an MPTCP connection opened
	// with data in the SYN stalls the server's sending (measured: under
	// 2 Mbit/s against 47 without), so hcpe sends the message as the first
	// bytes after the handshake, at the cost of one round trip.
	FastOpen bool `yaml:"fast_open"`

	Addrs  []netip.Addr `yaml:"-"`
	KeyRaw []byte       `yaml:"-"`
}

// Bypass lists traffic that is routed natively instead of converted.
type Bypass struct {
	Destinations []string `yaml:"destinations"`
	Ports        []string `yaml:"ports"`
	Sources      []string `yaml:"sources"`
	Uplink       string   `yaml:"uplink"` // uplink what the LAN sends natively leaves on; "" = the router's own routing

	Dsts       []netip.Prefix `yaml:"-"`
	PortRanges []PortRange    `yaml:"-"`
	Srcs       []netip.Prefix `yaml:"-"`
}

// CPELimit bounds what LAN hosts can make hcpe hold.
type CPELimit struct {
	HandshakesInFlight int `yaml:"handshakes_in_flight"`
	HandshakesPerHost  int `yaml:"handshakes_per_host"`
	Flows              int `yaml:"flows"`
	// FlowsPerHost bounds the flows (handshakes included) of one LAN host:
	// one IPv4 address or one IPv6 /64, so address rotation does not
	// escape it. A SYN over it is refused with a RST.
	FlowsPerHost int           `yaml:"flows_per_host"`
	IdleTimeout  time.Duration `yaml:"idle_timeout"`
	// ShutdownGrace is how long open flows may finish after SIGTERM before
	// they are reset.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	// MemoryLimitMB is hcpe's memory ceiling in MiB (0: none): the Go
	// runtime's soft limit, and from 90 % of it new LAN flows are refused
	// with a RST until memory is below 80 % again.
	MemoryLimitMB int `yaml:"memory_limit_mb"`
}

// Pool sizes the warm pool: MPTCP connections to hag that are established
// (and joined on the other uplinks) before a LAN flow needs one, so a flow
// spends no round trip on hcpe's handshake. The size follows the recent
// flow arrival rate between Floor and Ceiling; Ceiling 0 disables the pool.
type Pool struct {
	Floor   int           `yaml:"floor"`
	Ceiling int           `yaml:"ceiling"`
	Window  time.Duration `yaml:"window"`   // how far back arrivals count
	MaxIdle time.Duration `yaml:"max_idle"` // a pooled connection older than this is replaced; keep it below hag's limits.pool_idle
}

// Policy tunes how uplink roles are enforced (internal/policy).
type Policy struct {
	// OverflowOn and OverflowOff are shares of the primary uplinks' nominal
	// rate: overflow uplinks carry traffic from OverflowOn and are released
	// below OverflowOff (hysteresis).
	OverflowOn  float64       `yaml:"overflow_on"`
	OverflowOff float64       `yaml:"overflow_off"`
	MinHold     time.Duration `yaml:"min_hold"` // least time between two flips, against flapping
	// RTTGuard demotes an overflow or bond uplink whose RTT exceeds the best
	// by more than this (RFC 8157 §4.7); 0 disables it.
	RTTGuard           time.Duration `yaml:"rtt_guard"`
	RTTGuardHysteresis time.Duration `yaml:"rtt_guard_hysteresis"`
}

// Listen is an optional listen address ("" disables it).
type Listen struct {
	Listen string `yaml:"listen"`
}

// AdminListen is where the admin API listens. It serves reload, flows and
// pprof, so a TCP address is refused unless TCPExposesReloadAndPprof says
// that is meant; a unix socket is guarded by its file mode.
type AdminListen struct {
	Listen                   string `yaml:"listen"`
	TCPExposesReloadAndPprof bool   `yaml:"tcp_exposes_reload_and_pprof"`
}

// File is the path the config was loaded from.
func (c *HCPE) File() string { return c.file }

// LoadHCPE reads, defaults and validates an hcpe config file.
func LoadHCPE(file string) (*HCPE, error) { return load(file, DefaultHCPE()) }

func (c *HCPE) setFile(f string) { c.file = f }

var roles = []string{"primary", "overflow", "backup", "bond"}

// validate resolves the derived defaults, then checks each section in the
// file's order. Parsing a value and checking it are one step (ps.addr and
// friends return the parsed value), so the parsed forms (Addrs, DownBps,
// KeyRaw, ...) are filled here too.
func (c *HCPE) validate(ps *problems) {
	c.resolve()
	c.Log.validate(ps)
	c.LAN.validate(ps)
	c.TUN.validate(ps)
	names := c.validateUplinks(ps)
	c.HAG.validate(ps)
	c.Bypass.validate(ps, names)
	c.Limits.validate(ps)
	c.Policy.validate(ps)
	c.Pool.validate(ps)
	ps.listen("metrics.listen", c.Metrics.Listen)
	ps.adminListen(c.Admin)
}

func (l *LAN) validate(ps *problems) {
	if len(l.Interfaces) == 0 {
		ps.add("lan.interfaces", "at least one LAN interface is required")
	}
	for i, n := range l.Interfaces {
		checkIfName(ps, fmt.Sprintf("lan.interfaces[%d]", i), n)
	}
}

func (t *TUN) validate(ps *problems) {
	checkIfName(ps, "tun.name", t.Name)
	if t.MTU < 1280 || t.MTU > 65535 {
		ps.add("tun.mtu", "%d is out of range 1280..65535 (IPv6 needs at least 1280)", t.MTU)
	}
	checkTable(ps, "tun.table", t.Table)
	if t.RulePriority < 1 || t.RulePriority > 32000 {
		ps.add("tun.rule_priority", "%d is out of range 1..32000 (32766 is the main table's rule)", t.RulePriority)
	}
}

// validateUplinks checks the uplinks, each on its own and their names and
// routing tables against each other and tun.table's, and returns the names.
func (c *HCPE) validateUplinks(ps *problems) map[string]bool {
	if len(c.Uplinks) == 0 {
		ps.add("uplinks", "at least one uplink is required")
	}
	names := map[string]bool{}
	tables := map[int]string{c.TUN.Table: "tun.table", c.TUN.Table + SteeringSlotTable: "tun.table+100 (hcpe's second steering slot, used across reloads)"}
	for i := range c.Uplinks {
		u := &c.Uplinks[i]
		p := fmt.Sprintf("uplinks[%d]", i)
		if u.Name == "" {
			ps.add(p+".name", "is required")
		} else if names[u.Name] {
			ps.add(p+".name", "%q is used by another uplink", u.Name)
		}
		names[u.Name] = true
		u.validate(ps, p)
		if other, dup := tables[u.Table]; dup {
			ps.add(p+".table", "table %d is already used by %s", u.Table, other)
		}
		tables[u.Table] = p + ".table"
		u.Probe.validate(ps, p+".probe")
	}
	return names
}

// validate checks one uplink's own fields but its probe (validateUplinks
// checks that after the table collisions, in the order of the file); p is
// its path, uplinks[i].
func (u *Uplink) validate(ps *problems, p string) {
	checkIfName(ps, p+".interface", u.Interface)
	ps.oneOf(p+".role", u.Role, roles...)
	if len(u.Addresses) == 0 || (len(u.Addresses) == 1 && u.Addresses[0] == "auto") {
		u.Auto = true
	} else {
		for j, a := range u.Addresses {
			if a == "auto" {
				ps.add(fmt.Sprintf("%s.addresses[%d]", p, j), `"auto" must stand alone`)
				continue
			}
			if ad := ps.addr(fmt.Sprintf("%s.addresses[%d]", p, j), a); ad.IsValid() {
				u.Addrs = append(u.Addrs, ad)
			}
		}
	}
	for j, g := range u.Gateways {
		if ad := ps.addr(fmt.Sprintf("%s.gateways[%d]", p, j), g); ad.IsValid() {
			u.GWs = append(u.GWs, ad)
		}
	}
	var err error
	if u.DownBps, err = parseRate(u.DownRate); err != nil || u.DownBps == 0 {
		ps.add(p+".down_rate", "%q is not a rate above zero (e.g. 20mbit)", u.DownRate)
	}
	if u.UpBps, err = parseRate(u.UpRate); err != nil || u.UpBps == 0 {
		ps.add(p+".up_rate", "%q is not a rate above zero (e.g. 5mbit)", u.UpRate)
	}
	checkTable(ps, p+".table", u.Table)
}

func (h *HAGPeer) validate(ps *problems) {
	if len(h.Addresses) == 0 {
		ps.add("hag.addresses", "at least one hag address is required")
	}
	for i, a := range h.Addresses {
		if ad := ps.addr(fmt.Sprintf("hag.addresses[%d]", i), a); ad.IsValid() {
			h.Addrs = append(h.Addrs, ad)
		}
	}
	if h.Port < 1 || h.Port > 65535 {
		ps.add("hag.port", "%d is not a TCP port", h.Port)
	}
	h.KeyRaw = loadKey(ps, "hag", h.Key, h.KeyFile)
	if len(h.KeyRaw) > 0 && h.CPEID == "" {
		ps.add("hag.cpe_id", "is required when a key is set (the cookie names the CPE)")
	}
	if len(h.CPEID) > 64 {
		ps.add("hag.cpe_id", "is longer than 64 bytes")
	}
	if h.KeyID < 0 || h.KeyID > 255 {
		ps.add("hag.key_id", "%d is outside 0..255", h.KeyID)
	}
	ps.positive("hag.connect_timeout", int64(h.ConnectTimeout))
}

// validate checks the bypass lists; uplinks names the uplinks that
// bypass.uplink may refer to.
func (b *Bypass) validate(ps *problems, uplinks map[string]bool) {
	b.Dsts = ps.prefixes("bypass.destinations", b.Destinations)
	b.Srcs = ps.prefixes("bypass.sources", b.Sources)
	for i, s := range b.Ports {
		if r := ps.portRange(fmt.Sprintf("bypass.ports[%d]", i), s); r.Lo != 0 {
			b.PortRanges = append(b.PortRanges, r)
		}
	}
	if b.Uplink != "" && !uplinks[b.Uplink] {
		ps.add("bypass.uplink", "%q is not the name of an uplink", b.Uplink)
	}
}

func (l *CPELimit) validate(ps *problems) {
	ps.positive("limits.handshakes_in_flight", int64(l.HandshakesInFlight))
	ps.positive("limits.handshakes_per_host", int64(l.HandshakesPerHost))
	ps.positive("limits.flows", int64(l.Flows))
	ps.positive("limits.flows_per_host", int64(l.FlowsPerHost))
	if l.MemoryLimitMB < 0 {
		ps.add("limits.memory_limit_mb", "must not be negative (0 sets no ceiling)")
	}
	if l.IdleTimeout < 0 {
		ps.add("limits.idle_timeout", "must not be negative")
	}
	ps.positive("limits.shutdown_grace", int64(l.ShutdownGrace))
}

func (pol *Policy) validate(ps *problems) {
	if pol.OverflowOff <= 0 || pol.OverflowOn > 1 || pol.OverflowOff > pol.OverflowOn {
		ps.add("policy", "need 0 < overflow_off (%g) <= overflow_on (%g) <= 1", pol.OverflowOff, pol.OverflowOn)
	}
	if pol.MinHold < 0 {
		ps.add("policy.min_hold", "must not be negative")
	}
	if pol.RTTGuard < 0 || pol.RTTGuardHysteresis < 0 || pol.RTTGuardHysteresis > pol.RTTGuard {
		ps.add("policy.rtt_guard_hysteresis", "need 0 <= rtt_guard_hysteresis (%v) <= rtt_guard (%v)", pol.RTTGuardHysteresis, pol.RTTGuard)
	}
}

func (p *Pool) validate(ps *problems) {
	if p.Floor < 0 || p.Ceiling < p.Floor || p.Ceiling > 1024 {
		ps.add("pool", "need 0 <= floor (%d) <= ceiling (%d) <= 1024", p.Floor, p.Ceiling)
	}
	ps.positive("pool.window", int64(p.Window))
	ps.positive("pool.max_idle", int64(p.MaxIdle))
}

func (l *Log) validate(ps *problems) {
	ps.oneOf("log.level", l.Level, "debug", "info", "warn", "error")
	ps.oneOf("log.format", l.Format, "auto", "text", "json")
}

func (p *Probe) validate(ps *problems, path string) {
	ps.positive(path+".interval", int64(p.Interval))
	ps.positive(path+".timeout", int64(p.Timeout))
	ps.positive(path+".down_after", int64(p.DownAfter))
	ps.positive(path+".up_after", int64(p.UpAfter))
}

func checkIfName(ps *problems, path, name string) {
	switch {
	case name == "":
		ps.add(path, "an interface name is required")
	case len(name) > 15:
		ps.add(path, "%q is longer than the kernel's 15-byte interface names", name)
	case strings.ContainsAny(name, "/ \t:"):
		ps.add(path, "%q is not a valid interface name", name)
	}
}

func checkTable(ps *problems, path string, t int) {
	if t < 1 || t >= 252 && t <= 255 || t > 1<<31-1 {
		ps.add(path, "%d is not a usable routing table (1..251 or above 255)", t)
	}
}

// loadKey decodes a hex key given inline or in a file. Keys shorter than
// 16 bytes are refused: the cookie's HMAC is only as strong as its key.
func loadKey(ps *problems, path, inline, file string) []byte {
	if inline != "" && file != "" {
		ps.add(path+".key", "set key or key_file, not both")
		return nil
	}
	src, field := inline, path+".key"
	if file != "" {
		field = path + ".key_file"
		b, err := os.ReadFile(file)
		if err != nil {
			ps.add(field, "cannot read: %v", err)
			return nil
		}
		src = strings.TrimSpace(string(b))
	}
	if src == "" {
		return nil
	}
	k, err := hex.DecodeString(src)
	if err != nil {
		ps.add(field, "is not hex (generate one with: hag genkey)")
		return nil
	}
	if len(k) < 16 {
		ps.add(field, "is %d bytes; at least 16 are required", len(k))
		return nil
	}
	return k
}

// NewKey returns a fresh random key in the hex form configs hold.
func NewKey() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never returns an error (Go 1.24)
	return hex.EncodeToString(b[:])
}
