package main

import (
	"os"
	"strings"
	"testing"

	"hybridgw/internal/config"
)

// The bench's copies of the example configs load, and differ from them
// only where the report says.
func TestWriteConfigs(t *testing.T) {
	dir := t.TempDir()
	c, err := writeConfigs("../configs", dir, "/tmp/bench-admin")
	if err != nil {
		t.Fatal(err)
	}
	h, err := config.LoadHCPE(c.HCPE)
	if err != nil {
		t.Fatal(err)
	}
	if h.Limits.Flows != benchHCPEFlows || h.Admin.Listen != "/tmp/bench-admin/hcpe.sock" || h.Uplinks[0].Role != "primary" {
		t.Errorf("hcpe copy: flows %d, admin %q, role %q", h.Limits.Flows, h.Admin.Listen, h.Uplinks[0].Role)
	}
	bond, err := config.LoadHCPE(c.Bond)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range bond.Uplinks {
		if u.Role != "bond" {
			t.Errorf("bond copy: uplink %s has role %s", u.Name, u.Role)
		}
	}
	g, err := config.LoadHAG(c.HAG)
	if err != nil {
		t.Fatal(err)
	}
	if g.Limits.FlowsPerCPE != benchHAGFlowsPerCPE || g.Limits.NewFlowsPerSecond != benchHAGRate || g.Limits.NewFlowsBurst != benchHAGBurst || g.Admin.Listen != "/tmp/bench-admin/hag.sock" {
		t.Errorf("hag copy: limits %+v, admin %q", g.Limits, g.Admin.Listen)
	}
	shipped, err := config.LoadHAG("../configs/hag.yaml")
	if err != nil {
		t.Fatal(err)
	}
	gl, err := config.LoadHAG(c.HAGLimit)
	if err != nil {
		t.Fatal(err)
	}
	if gl.Limits != shipped.Limits || gl.Admin.Listen != "/tmp/bench-admin/hag.sock" {
		t.Errorf("shipped-limits copy: limits %+v (shipped %+v), admin %q", gl.Limits, shipped.Limits, gl.Admin.Listen)
	}
	// Nothing else changed: the copy is the original with the edits.
	orig, _ := os.ReadFile("../configs/hag.yaml")
	cp, _ := os.ReadFile(c.HAGLimit)
	if got := strings.Replace(string(cp), "/tmp/bench-admin/hag.sock", "/run/hag/admin.sock", 1); got != string(orig) {
		t.Error("shipped-limits copy differs from configs/hag.yaml beyond admin.listen")
	}
	if len(c.Changes) == 0 {
		t.Error("no changes listed for the report")
	}
}

func TestRewriteNeedsEachEditOnce(t *testing.T) {
	if _, err := rewrite("x.yaml", "a: 1\na: 1\n", edit{"a: 1", "a: 2"}); err == nil {
		t.Error("an edit matching twice was applied")
	}
	if _, err := rewrite("x.yaml", "a: 1\n", edit{"b: 1", "b: 2"}); err == nil || !strings.Contains(err.Error(), "x.yaml") {
		t.Errorf("an edit matching nothing: err %v", err)
	}
	out, err := rewrite("x.yaml", "a: 1\nb: 1\n", edit{"a: 1", "a: 2"})
	if err != nil || out != "a: 2\nb: 1\n" {
		t.Errorf("rewrite = %q, %v", out, err)
	}
}
