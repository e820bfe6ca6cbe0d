package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"hybridgw/internal/config"
)

// The bench runs the daemons with copies of the example configs, changed
// only where a figure needs it; the report lists every change
// (benchConfigs.Changes).
const (
	// hcpe holds 10,000 idle flows in figure 5, all from one LAN host; its
	// default bounds are 8192 in all and 512 per host, and its memory
	// ceiling is sized for 8192.
	benchHCPEFlows    = 16384
	benchHCPEMemoryMB = 4096
	// hag: the same flows come from one CPE (default bound 4096), opened
	// faster than the default 500 new flows/s (burst 1000) allow; figure 7
	// also runs with these to find hag's ceiling beyond its rate limit.
	benchHAGFlowsPerCPE = 16384
	benchHAGRate        = 100000
	benchHAGBurst       = 100000
)

// benchConfigs are the config files a run uses.
type benchConfigs struct {
	HCPE     string // hybridgw's hcpe
	Bond     string // hybridgw-bond's hcpe: both uplinks in role bond
	HAG      string // hag with the bench's limits
	HAGLimit string // hag with the shipped limits (figure 7's first ramp)
	// AdminHCPE and AdminHAG are the admin sockets the copies name.
	AdminHCPE, AdminHAG string
	Changes             []string // what differs from the shipped files, for the report
	// Policy is hybridgw's uplink policy as its hcpe copy loads it: the
	// report describes it from here, never from what the bench expects.
	Policy PolicyInfo
}

// PolicyInfo is hcpe's uplink policy in the run: each uplink's role and
// the overflow thresholds.
type PolicyInfo struct {
	Roles       string  `json:"roles"` // "dsl primary, lte overflow"
	OverflowOn  float64 `json:"overflow_on"`
	OverflowOff float64 `json:"overflow_off"`
	MinHoldS    float64 `json:"min_hold_s"`
}

// policyInfo describes an hcpe config's policy.
func policyInfo(c *config.HCPE) PolicyInfo {
	var roles []string
	for _, u := range c.Uplinks {
		roles = append(roles, u.Name+" "+u.Role)
	}
	return PolicyInfo{Roles: strings.Join(roles, ", "), OverflowOn: c.Policy.OverflowOn, OverflowOff: c.Policy.OverflowOff, MinHoldS: c.Policy.MinHold.Seconds()}
}

// edit is one textual change to a config: old must occur exactly once.
type edit struct{ old, new string }

// rewrite applies edits to a config file's text. Each old string must occur
// exactly once, so a change to the example configs that the bench does not
// know about fails loudly instead of being measured silently.
func rewrite(name, in string, edits ...edit) (string, error) {
	for _, e := range edits {
		if n := strings.Count(in, e.old); n != 1 {
			return "", fmt.Errorf("%s: expected %q once, found it %d times", name, e.old, n)
		}
		in = strings.Replace(in, e.old, e.new, 1)
	}
	return in, nil
}

// writeConfigs writes the bench's copies of configs/hcpe.yaml and
// configs/hag.yaml into dir, with the admin sockets in adminDir (never the
// paths a real daemon or a test uses), and checks that each loads.
func writeConfigs(configs, dir, adminDir string) (*benchConfigs, error) {
	c := &benchConfigs{
		HCPE: filepath.Join(dir, "hcpe.yaml"), Bond: filepath.Join(dir, "hcpe-bond.yaml"),
		HAG: filepath.Join(dir, "hag.yaml"), HAGLimit: filepath.Join(dir, "hag-shipped-limits.yaml"),
		AdminHCPE: filepath.Join(adminDir, "hcpe.sock"), AdminHAG: filepath.Join(adminDir, "hag.sock"),
	}
	read := func(name string) (string, error) {
		b, err := os.ReadFile(filepath.Join(configs, name))
		return string(b), err
	}
	hcpe, err := read("hcpe.yaml")
	if err != nil {
		return nil, err
	}
	hag, err := read("hag.yaml")
	if err != nil {
		return nil, err
	}
	hcpeAdmin := edit{"listen: /run/hcpe/admin.sock", "listen: " + c.AdminHCPE}
	hagAdmin := edit{"listen: /run/hag/admin.sock", "listen: " + c.AdminHAG}
	hcpeFlows := []edit{{"flows: 8192", fmt.Sprintf("flows: %d", benchHCPEFlows)},
		{"flows_per_host: 512", fmt.Sprintf("flows_per_host: %d", benchHCPEFlows)},
		{"memory_limit_mb: 768", fmt.Sprintf("memory_limit_mb: %d", benchHCPEMemoryMB)}}
	files := []struct {
		path  string
		name  string
		in    string
		edits []edit
		load  func(string) error
	}{
		{c.HCPE, "hcpe.yaml", hcpe, append([]edit{hcpeAdmin}, hcpeFlows...), loadHCPE},
		{c.Bond, "hcpe.yaml", hcpe, append([]edit{hcpeAdmin, {"role: primary", "role: bond"}, {"role: overflow", "role: bond"}}, hcpeFlows...), loadHCPE},
		{c.HAG, "hag.yaml", hag, []edit{hagAdmin,
			{"flows_per_cpe: 4096", fmt.Sprintf("flows_per_cpe: %d", benchHAGFlowsPerCPE)},
			{"new_flows_per_second: 500", fmt.Sprintf("new_flows_per_second: %d", benchHAGRate)},
			{"new_flows_burst: 1000", fmt.Sprintf("new_flows_burst: %d", benchHAGBurst)}}, loadHAG},
		{c.HAGLimit, "hag.yaml", hag, []edit{hagAdmin}, loadHAG},
	}
	for _, f := range files {
		out, err := rewrite(filepath.Join(configs, f.name), f.in, f.edits...)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(f.path, []byte(out), 0o644); err != nil {
			return nil, err
		}
		if err := f.load(f.path); err != nil {
			return nil, fmt.Errorf("the bench's copy of %s does not load: %w", f.name, err)
		}
	}
	hc, err := config.LoadHCPE(c.HCPE)
	if err != nil {
		return nil, fmt.Errorf("the bench's copy of hcpe.yaml does not load: %w", err)
	}
	c.Policy = policyInfo(hc)
	c.Changes = []string{
		"hcpe and hag: `admin.listen` is a socket under the bench's own directory (the profiles of figure 4 are fetched there), not /run/hcpe or /run/hag.",
		fmt.Sprintf("hcpe (hybridgw and hybridgw-bond): `limits.flows` 8192 → %d and `flows_per_host` 512 → %d, so that figure 5 can hold 10,000 idle flows from its one LAN host, and `memory_limit_mb` 768 → %d, which 10,000 flows would come near (handshakes_in_flight 512 and handshakes_per_host 64 stay: figure 5 opens 32 at a time).", benchHCPEFlows, benchHCPEFlows, benchHCPEMemoryMB),
		fmt.Sprintf("hag (the hybridgw phase and figure 7's second ramp): `limits.flows_per_cpe` 4096 → %d, `new_flows_per_second` 500 → %d, `new_flows_burst` 1000 → %d: the 10,000 idle flows of figure 5 all come from one CPE and open faster than 500/s; figure 7's first ramp runs hag with the shipped limits.", benchHAGFlowsPerCPE, benchHAGRate, benchHAGBurst),
	}
	return c, nil
}

func loadHCPE(path string) error {
	_, err := config.LoadHCPE(path)
	return err
}

func loadHAG(path string) error {
	_, err := config.LoadHAG(path)
	return err
}
