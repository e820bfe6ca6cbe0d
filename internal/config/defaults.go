package config

import "time"

// Every default lives here, so the example configs, the docs and the code
// cannot disagree about what an omitted field means.

// DefaultPort is hag's listen port: RFC 8803 has no IANA port, and 5124 is
// the one Wireshark's Convert dissector assumes.
const DefaultPort = 5124

// DefaultHCPE is hcpe's configuration before the file is applied.
func DefaultHCPE() *HCPE {
	return &HCPE{
		Log: Log{Level: "info", Format: "auto"},
		TUN: TUN{Name: "hcpe0", MTU: 1500, Table: 100, RulePriority: 1000},
		HAG: HAGPeer{Port: DefaultPort, ConnectTimeout: 5 * time.Second},
		Limits: CPELimit{
			HandshakesInFlight: 512,
			HandshakesPerHost:  64,
			Flows:              8192,
			// A browser keeps up to 256 connections; 512 leaves room for
			// a busy host while 16 hosts are needed to fill limits.flows.
			FlowsPerHost:  512,
			IdleTimeout:   2 * time.Hour,
			ShutdownGrace: 5 * time.Second,
			// 8192 idle flows take about 400 MB (make bench figure 5);
			// the ceiling stays under deploy/systemd/hcpe.service's
			// MemoryMax=1G, so hcpe refuses flows before the kernel
			// kills it.
			MemoryLimitMB: 768,
		},
		Policy: Policy{
			// DSL already queues above 80 % of its rate; the gap to 60 %
			// keeps one load change from crossing both thresholds.
			OverflowOn: 0.8, OverflowOff: 0.6,
			// A new LTE subflow needs a few RTTs to ramp up; one page load
			// must not toggle MP_PRIO twice.
			MinHold: 5 * time.Second,
			// Normal LTE-over-DSL RTT gaps (20-60 ms) do not trip it.
			RTTGuard: 150 * time.Millisecond, RTTGuardHysteresis: 50 * time.Millisecond,
		},
		// Two warm connections cover a page load's first connections; 16
		// covers a burst without holding many idle sockets at hag. max_idle
		// stays well under hag's pool_idle so hcpe replaces a connection
		// before hag closes it.
		Pool:  Pool{Floor: 2, Ceiling: 16, Window: 10 * time.Second, MaxIdle: 30 * time.Second},
		Admin: AdminListen{Listen: "/run/hcpe/admin.sock"},
	}
}

// DefaultProbe applies to an uplink whose probe block is omitted: three
// 200 ms misses mark it down well inside the one second the policy promises.
func DefaultProbe() Probe {
	return Probe{Interval: 200 * time.Millisecond, Timeout: 300 * time.Millisecond, DownAfter: 3, UpAfter: 2}
}

// resolve fills what defaults depend on the file: each uplink's routing
// table (the ones after tun.table, in order) and the fields of its probe
// block left out. YAML cannot give a list element defaults before it is
// decoded, so these cannot be in DefaultHCPE.
func (c *HCPE) resolve() {
	for i := range c.Uplinks {
		u := &c.Uplinks[i]
		if u.Table == 0 {
			u.Table = c.TUN.Table + 1 + i
		}
		u.Probe.fill(DefaultProbe())
	}
}

// fill takes omitted probe fields from def: YAML cannot give a list
// element defaults before it is decoded.
func (p *Probe) fill(def Probe) {
	if p.Interval == 0 {
		p.Interval = def.Interval
	}
	if p.Timeout == 0 {
		p.Timeout = def.Timeout
	}
	if p.DownAfter == 0 {
		p.DownAfter = def.DownAfter
	}
	if p.UpAfter == 0 {
		p.UpAfter = def.UpAfter
	}
}

// DefaultHAG is hag's configuration before the file is applied.
func DefaultHAG() *HAG {
	return &HAG{
		Log:         Log{Level: "info", Format: "auto"},
		Listen:      HAGListen{Addresses: []string{"::"}, Port: DefaultPort},
		Egress:      Egress{IPv4: "share", IPv6: "preserve"},
		Transparent: Transparent{Install: true, Mark: 0x4847, Table: 4847, RulePriority: 100},
		Limits: HAGLimits{
			FlowsPerCPE:         4096,
			FlowsTotal:          65536,
			HandshakesInFlight:  1024,
			HandshakesPerSource: 64,
			NewFlowsPerSecond:   500,
			NewFlowsBurst:       1000,
			ConvertReadTimeout:  5 * time.Second,
			PoolIdle:            60 * time.Second,
			PoolPerCPE:          64,
			DialTimeout:         10 * time.Second,
			IdleTimeout:         2 * time.Hour,
			CookieMaxSkew:       2 * time.Minute,
			// One CPE at new_flows_per_second for the 4-minute validity of a
			// cookie (±cookie_max_skew) holds 121,000 entries; the bound holds
			// 4,400 new flows/s, more than hag sustains (bench figure 7), in
			// about 35 MB (34 bytes an entry: internal/replay BenchmarkAdd).
			CookieReplayEntries: 1 << 20,
			NotSentLowat:        256 << 10,
			ResourceBackoff:     time.Second,
			ShutdownGrace:       5 * time.Second,
		},
		Admin: AdminListen{Listen: "/run/hag/admin.sock"},
	}
}
