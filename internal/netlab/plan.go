package netlab

import "net/netip"

// The lab's address plan, exactly as docs/lab.md draws it. Only
// documentation prefixes are used; nothing here is routed anywhere else.
// The constants are for configs and command lines; Plan carries the same
// addresses as netip values for code.
const (
	// lan: client – hcpe (veth, device "lan" on both sides).
	LANPrefix4    = "192.0.2.0/24"
	LANPrefix6    = "2001:db8:10::/64"
	Delegated6    = "2001:db8:10::/56" // the CPE's delegated IPv6 prefix
	Client4       = "192.0.2.10"
	Client6       = "2001:db8:10::10"
	CPELAN4       = "192.0.2.1"
	CPELAN6       = "2001:db8:10::1"
	DSLPrefix4    = "198.51.100.0/30"
	DSLPrefix6    = "2001:db8:d5::/64"
	CPEDSL4       = "198.51.100.1"
	HAGDSL4       = "198.51.100.2"
	CPEDSL6       = "2001:db8:d5::1"
	HAGDSL6       = "2001:db8:d5::2"
	LTEPrefix4    = "198.51.100.4/30"
	LTEPrefix6    = "2001:db8:17e::/64"
	CPELTE4       = "198.51.100.5"
	HAGLTE4       = "198.51.100.6"
	CPELTE6       = "2001:db8:17e::1"
	HAGLTE6       = "2001:db8:17e::2"
	Service4      = "198.51.100.100" // hag's service address, on its loopback
	Service6      = "2001:db8:ffff::1"
	WANPrefix4    = "203.0.113.0/24"
	WANPrefix6    = "2001:db8:20::/64"
	HAGWAN4       = "203.0.113.1"
	HAGWAN6       = "2001:db8:20::1"
	Server4       = "203.0.113.10"
	Server6       = "2001:db8:20::10"
	DefaultMTU    = 1500
	DefaultPrefix = "hg-" // default namespace name prefix
	nsLAN         = "lan"
	nsCPE         = "cpe"
	nsHAG         = "hag"
	nsSRV         = "srv"
	devLAN        = "lan"
	devWAN        = "wan"
	devDSL        = "dsl"
	devLTE        = "lte"
	tableDSL      = 1001 // cpe: source-routing table for the dsl uplink addresses
	tableLTE      = 1002 // cpe: source-routing table for the lte uplink addresses
	rulePrioSrc   = 1000 // cpe: priority of the "from <uplink address>" rules
)

// Uplink is the address plan of one emulated access link.
type Uplink struct {
	Name             string // "dsl" or "lte": also the device name on both sides
	Prefix4, Prefix6 netip.Prefix
	CPE4, HAG4       netip.Addr
	CPE6, HAG6       netip.Addr
	Table            int // cpe routing table used for traffic sourced from CPE4/CPE6
}

// Plan is the lab's address plan as netip values.
type Plan struct {
	LANPrefix4, LANPrefix6 netip.Prefix
	Delegated6             netip.Prefix
	Client4, Client6       netip.Addr
	CPELAN4, CPELAN6       netip.Addr
	DSL, LTE               Uplink
	Service4, Service6     netip.Addr
	WANPrefix4, WANPrefix6 netip.Prefix
	HAGWAN4, HAGWAN6       netip.Addr
	Server4, Server6       netip.Addr
}

// DefaultPlan returns the address plan of docs/lab.md.
func DefaultPlan() Plan {
	a, p := netip.MustParseAddr, netip.MustParsePrefix
	return Plan{
		LANPrefix4: p(LANPrefix4), LANPrefix6: p(LANPrefix6), Delegated6: p(Delegated6),
		Client4: a(Client4), Client6: a(Client6), CPELAN4: a(CPELAN4), CPELAN6: a(CPELAN6),
		DSL: Uplink{Name: devDSL, Prefix4: p(DSLPrefix4), Prefix6: p(DSLPrefix6),
			CPE4: a(CPEDSL4), HAG4: a(HAGDSL4), CPE6: a(CPEDSL6), HAG6: a(HAGDSL6), Table: tableDSL},
		LTE: Uplink{Name: devLTE, Prefix4: p(LTEPrefix4), Prefix6: p(LTEPrefix6),
			CPE4: a(CPELTE4), HAG4: a(HAGLTE4), CPE6: a(CPELTE6), HAG6: a(HAGLTE6), Table: tableLTE},
		Service4: a(Service4), Service6: a(Service6),
		WANPrefix4: p(WANPrefix4), WANPrefix6: p(WANPrefix6),
		HAGWAN4: a(HAGWAN4), HAGWAN6: a(HAGWAN6), Server4: a(Server4), Server6: a(Server6),
	}
}
