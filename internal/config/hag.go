package config

import (
	"fmt"
	"net/netip"
	"time"
)

// HAG is hag's configuration file.
type HAG struct {
	Log         Log         `yaml:"log"`
	Listen      HAGListen   `yaml:"listen"`
	CPEs        []CPE       `yaml:"cpes"`
	Egress      Egress      `yaml:"egress"`
	Transparent Transparent `yaml:"transparent"`
	Deny        Deny        `yaml:"deny"`
	Allow       Allow       `yaml:"allow"`
	Limits      HAGLimits   `yaml:"limits"`
	Metrics     Listen      `yaml:"metrics"`
	Admin       AdminListen `yaml:"admin"`

	file string
}

// HAGListen is where hag accepts MPTCP connections from CPEs.
type HAGListen struct {
	Addresses []string `yaml:"addresses"`
	Port      int      `yaml:"port"`
	// FastOpen accepts the Convert message in the SYN (TCP Fast Open),
	// only from clients holding an RFC 7413 cookie for their address.
	FastOpen bool `yaml:"fast_open"`
	// FastOpenNoCookieUnsafe accepts SYN data without a cookie: hag then
	// reads a request whose source address nobody has proven yet. hag
	// still authorises only after the third ACK, but a spoofer fills the
	// handshake slots at no cost. For closed labs only.
	FastOpenNoCookieUnsafe bool `yaml:"fast_open_no_cookie_unsafe"`

	Addrs []netip.Addr `yaml:"-"`
}

// CPE is one customer premises device hag serves.
type CPE struct {
	ID string `yaml:"id"`
	// Key or KeyFile is the CPE's one key, with key id 0 (what hcpe sends
	// without hag.key_id). Keys holds up to two keys with their ids, for a
	// rotation; set one or the other.
	Key            string   `yaml:"key"`
	KeyFile        string   `yaml:"key_file"`
	Keys           []CPEKey `yaml:"keys"`
	Auth           string   `yaml:"auth"`            // cookie, source, cookie+source
	WANPrefixes    []string `yaml:"wan_prefixes"`    // where its subflows come from
	ClientPrefixes []string `yaml:"client_prefixes"` // prefixes delegated to its LAN

	// CookieKeys is every key with its id and secret, from key/key_file
	// (id 0) or keys.
	CookieKeys []CPEKey       `yaml:"-"`
	WAN        []netip.Prefix `yaml:"-"`
	Clients    []netip.Prefix `yaml:"-"`
}

// MaxCPEKeys is how many keys a CPE entry may hold: the one in use and the
// next, while CPEs move from one to the other.
const MaxCPEKeys = 2

// CPEKey is one cookie key of a CPE.
type CPEKey struct {
	ID      int    `yaml:"id"` // 0..255, as hcpe's hag.key_id
	Key     string `yaml:"key"`
	KeyFile string `yaml:"key_file"`

	Raw []byte `yaml:"-"`
}

// Egress chooses the source address of hag's connections to servers, per
// family: "preserve" uses the client's own address (Client Address TLV, or
// RFC 8803 address preservation), "share" uses hag's.
type Egress struct {
	IPv4    string `yaml:"ipv4"`
	IPv6    string `yaml:"ipv6"`
	Source4 string `yaml:"source4"` // shared source address; "" lets routing choose
	Source6 string `yaml:"source6"`

	Src4 netip.Addr `yaml:"-"`
	Src6 netip.Addr `yaml:"-"`
}

// Transparent is the policy routing hag installs so that replies to
// sockets bound to client addresses are delivered locally.
type Transparent struct {
	Install      bool `yaml:"install"` // false: the operator set it up; hag only checks
	Mark         int  `yaml:"mark"`
	Table        int  `yaml:"table"`
	RulePriority int  `yaml:"rule_priority"`
}

// Allow opens destinations in the IANA special-purpose ranges, which hag
// refuses by default (a lab on documentation prefixes, a private server
// network behind hag). deny.destinations still wins over it.
type Allow struct {
	Destinations []string `yaml:"destinations"`

	Prefixes []netip.Prefix `yaml:"-"`
}

// Deny lists destinations hag refuses to connect to.
type Deny struct {
	Destinations []string `yaml:"destinations"`

	Prefixes []netip.Prefix `yaml:"-"`
}

// HAGLimits bound what CPEs can make hag hold.
type HAGLimits struct {
	FlowsPerCPE        int `yaml:"flows_per_cpe"`
	FlowsTotal         int `yaml:"flows_total"`
	HandshakesInFlight int `yaml:"handshakes_in_flight"`
	// HandshakesPerSource bounds handshakes in flight from one IPv4
	// address or one IPv6 /64, so one host cannot take every slot.
	HandshakesPerSource int           `yaml:"handshakes_per_source"`
	NewFlowsPerSecond   float64       `yaml:"new_flows_per_second"` // per CPE
	NewFlowsBurst       int           `yaml:"new_flows_burst"`
	ConvertReadTimeout  time.Duration `yaml:"convert_read_timeout"`
	// PoolIdle is how long an established connection may wait for its
	// first byte: hcpe's warm pool opens connections before it has a flow
	// for them. Such connections count per peer address against
	// PoolPerCPE, not against HandshakesInFlight: the MPTCP handshake has
	// proved the source, and waiting costs hag one socket each.
	PoolIdle      time.Duration `yaml:"pool_idle"`
	PoolPerCPE    int           `yaml:"pool_per_cpe"`
	DialTimeout   time.Duration `yaml:"dial_timeout"`
	IdleTimeout   time.Duration `yaml:"idle_timeout"`
	CookieMaxSkew time.Duration `yaml:"cookie_max_skew"`
	// CookieReplayEntries bounds the cookies hag remembers so that each is
	// accepted once (internal/replay); at the bound new cookies are refused.
	CookieReplayEntries int           `yaml:"cookie_replay_entries"`
	NotSentLowat        int           `yaml:"notsent_lowat"` // bytes; bounds what piles up per flow
	ResourceBackoff     time.Duration `yaml:"resource_backoff"`
	ShutdownGrace       time.Duration `yaml:"shutdown_grace"`
}

// File is the path the config was loaded from.
func (c *HAG) File() string { return c.file }

// LoadHAG reads, defaults and validates a hag config file.
func LoadHAG(file string) (*HAG, error) { return load(file, DefaultHAG()) }

func (c *HAG) setFile(f string) { c.file = f }

// CPEByID returns the CPE with id, or nil.
func (c *HAG) CPEByID(id string) *CPE {
	for i := range c.CPEs {
		if c.CPEs[i].ID == id {
			return &c.CPEs[i]
		}
	}
	return nil
}

// cpeKeys resolves a CPE entry's keys: key/key_file as key id 0, or the
// keys list, with unique ids in 0..255 and at most MaxCPEKeys of them.
func cpeKeys(ps *problems, p string, cp *CPE) []CPEKey {
	if len(cp.Keys) == 0 {
		if raw := loadKey(ps, p, cp.Key, cp.KeyFile); raw != nil {
			return []CPEKey{{ID: 0, Key: cp.Key, KeyFile: cp.KeyFile, Raw: raw}}
		}
		return nil
	}
	if cp.Key != "" || cp.KeyFile != "" {
		ps.add(p+".keys", "set key (or key_file) or keys, not both; a single key is key id 0")
		return nil
	}
	if len(cp.Keys) > MaxCPEKeys {
		ps.add(p+".keys", "has %d keys; at most %d (the one in use and the next, during a rotation)", len(cp.Keys), MaxCPEKeys)
		return nil
	}
	var out []CPEKey
	seen := map[int]bool{}
	for i, k := range cp.Keys {
		kp := fmt.Sprintf("%s.keys[%d]", p, i)
		switch {
		case k.ID < 0 || k.ID > 255:
			ps.add(kp+".id", "%d is outside 0..255", k.ID)
		case seen[k.ID]:
			ps.add(kp+".id", "key id %d is used by another key of this CPE", k.ID)
		}
		seen[k.ID] = true
		if k.Key == "" && k.KeyFile == "" {
			ps.add(kp+".key", "is required (key or key_file)")
			continue
		}
		if k.Raw = loadKey(ps, kp, k.Key, k.KeyFile); k.Raw != nil {
			out = append(out, k)
		}
	}
	return out
}

func (c *HAG) validate(ps *problems) {
	c.Log.validate(ps)
	if len(c.Listen.Addresses) == 0 {
		ps.add("listen.addresses", "at least one listen address is required (\"::\" for all)")
	}
	for i, a := range c.Listen.Addresses {
		if ad := ps.addr(fmt.Sprintf("listen.addresses[%d]", i), a); ad.IsValid() {
			c.Listen.Addrs = append(c.Listen.Addrs, ad)
		}
	}
	if c.Listen.Port < 1 || c.Listen.Port > 65535 {
		ps.add("listen.port", "%d is not a TCP port", c.Listen.Port)
	}
	if len(c.CPEs) == 0 {
		ps.add("cpes", "at least one CPE is required")
	}
	ids := map[string]bool{}
	for i := range c.CPEs {
		cp := &c.CPEs[i]
		p := fmt.Sprintf("cpes[%d]", i)
		switch {
		case cp.ID == "":
			ps.add(p+".id", "is required")
		case len(cp.ID) > 64:
			ps.add(p+".id", "is longer than 64 bytes")
		case ids[cp.ID]:
			ps.add(p+".id", "%q is used by another CPE", cp.ID)
		}
		ids[cp.ID] = true
		ps.oneOf(p+".auth", cp.Auth, "cookie", "source", "cookie+source")
		cp.CookieKeys = cpeKeys(ps, p, cp)
		if cp.Auth != "source" && len(cp.CookieKeys) == 0 {
			ps.add(p+".key", "is required with auth %q (key, key_file or keys)", cp.Auth)
		}
		cp.WAN = ps.prefixes(p+".wan_prefixes", cp.WANPrefixes)
		if cp.Auth != "cookie" && len(cp.WAN) == 0 {
			ps.add(p+".wan_prefixes", "at least one prefix is required with auth %q", cp.Auth)
		}
		cp.Clients = ps.prefixes(p+".client_prefixes", cp.ClientPrefixes)
	}
	// Source-only authorisation identifies a CPE by where it connects from,
	// so two such CPEs must not share WAN space.
	for i := range c.CPEs {
		for j := i + 1; j < len(c.CPEs); j++ {
			for _, a := range c.CPEs[i].WAN {
				for _, b := range c.CPEs[j].WAN {
					if a.Overlaps(b) && (c.CPEs[i].Auth == "source" || c.CPEs[j].Auth == "source") {
						ps.add(fmt.Sprintf("cpes[%d].wan_prefixes", j), "%s overlaps %s of %s", b, a, c.CPEs[i].ID)
					}
				}
			}
		}
	}

	if c.Listen.FastOpenNoCookieUnsafe && !c.Listen.FastOpen {
		ps.add("listen.fast_open_no_cookie_unsafe", "needs listen.fast_open: true")
	}
	ps.oneOf("egress.ipv4", c.Egress.IPv4, "preserve", "share")
	ps.oneOf("egress.ipv6", c.Egress.IPv6, "preserve", "share")
	if c.Egress.Source4 != "" {
		c.Egress.Src4 = ps.addr("egress.source4", c.Egress.Source4)
		if c.Egress.Src4.IsValid() && !c.Egress.Src4.Is4() {
			ps.add("egress.source4", "%s is not an IPv4 address", c.Egress.Src4)
		}
	}
	if c.Egress.Source6 != "" {
		c.Egress.Src6 = ps.addr("egress.source6", c.Egress.Source6)
		if c.Egress.Src6.IsValid() && !c.Egress.Src6.Is6() {
			ps.add("egress.source6", "%s is not an IPv6 address", c.Egress.Src6)
		}
	}
	ps.positive("transparent.mark", int64(c.Transparent.Mark))
	checkTable(ps, "transparent.table", c.Transparent.Table)
	if c.Transparent.RulePriority < 1 || c.Transparent.RulePriority > 32000 {
		ps.add("transparent.rule_priority", "%d is out of range 1..32000", c.Transparent.RulePriority)
	}
	c.Deny.Prefixes = ps.prefixes("deny.destinations", c.Deny.Destinations)
	c.Allow.Prefixes = ps.prefixes("allow.destinations", c.Allow.Destinations)

	l := &c.Limits
	ps.positive("limits.flows_per_cpe", int64(l.FlowsPerCPE))
	ps.positive("limits.flows_total", int64(l.FlowsTotal))
	ps.positive("limits.handshakes_in_flight", int64(l.HandshakesInFlight))
	ps.positive("limits.handshakes_per_source", int64(l.HandshakesPerSource))
	if l.NewFlowsPerSecond <= 0 {
		ps.add("limits.new_flows_per_second", "must be greater than 0")
	}
	ps.positive("limits.new_flows_burst", int64(l.NewFlowsBurst))
	ps.positive("limits.convert_read_timeout", int64(l.ConvertReadTimeout))
	ps.positive("limits.dial_timeout", int64(l.DialTimeout))
	ps.positive("limits.pool_idle", int64(l.PoolIdle))
	ps.positive("limits.pool_per_cpe", int64(l.PoolPerCPE))
	if l.IdleTimeout < 0 {
		ps.add("limits.idle_timeout", "must not be negative (0 disables it)")
	}
	ps.positive("limits.cookie_max_skew", int64(l.CookieMaxSkew))
	ps.positive("limits.cookie_replay_entries", int64(l.CookieReplayEntries))
	if l.NotSentLowat < 0 {
		ps.add("limits.notsent_lowat", "must not be negative (0 leaves the kernel default)")
	}
	ps.positive("limits.resource_backoff", int64(l.ResourceBackoff))
	ps.positive("limits.shutdown_grace", int64(l.ShutdownGrace))
	ps.listen("metrics.listen", c.Metrics.Listen)
	ps.adminListen(c.Admin)
}
