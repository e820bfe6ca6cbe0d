package gateway

import (
	"testing"
	"time"

	"hybridgw/internal/config"
)

// TestLimiter walks the limiter through each of its bounds. Every check in
// acquire and release has a step here that fails when the check is deleted
// (issue 21: burst cap, per-CPE count and its decrement, total count,
// idempotent release, rate refill).
func TestLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	type step struct {
		cpe     string
		at      time.Duration // after now
		want    string        // "" admitted, or the limit named
		release int           // >0: release the n-th admitted flow (1-based) before this step, -n: twice
	}
	tests := []struct {
		name  string
		cfg   config.HAGLimits
		steps []step
	}{
		{"per CPE and total", config.HAGLimits{FlowsTotal: 3, FlowsPerCPE: 2, NewFlowsPerSecond: 1, NewFlowsBurst: 10}, []step{
			{cpe: "a"}, {cpe: "a"}, {cpe: "a", want: "flows_per_cpe"},
			{cpe: "b"}, {cpe: "c", want: "flows_total"},
		}},
		{"release frees the CPE's slot and the total's, once", config.HAGLimits{FlowsTotal: 3, FlowsPerCPE: 2, NewFlowsPerSecond: 1, NewFlowsBurst: 10}, []step{
			{cpe: "a"}, {cpe: "a"}, {cpe: "b"},
			// Releasing a's first flow twice must free one slot, not two:
			// a gets one flow back, and the total is full again after it.
			{cpe: "a", release: -1},
			{cpe: "c", want: "flows_total"},
			{cpe: "a", want: "flows_total"},
		}},
		{"per-CPE slot freed by release", config.HAGLimits{FlowsTotal: 100, FlowsPerCPE: 1, NewFlowsPerSecond: 1, NewFlowsBurst: 10}, []step{
			{cpe: "a"}, {cpe: "a", want: "flows_per_cpe"},
			{cpe: "a", release: 1},
			{cpe: "a", want: "flows_per_cpe"},
		}},
		{"burst then rate", config.HAGLimits{FlowsTotal: 100, FlowsPerCPE: 100, NewFlowsPerSecond: 1, NewFlowsBurst: 2}, []step{
			{cpe: "a"}, {cpe: "a"}, {cpe: "a", want: "new_flows_rate"},
			{cpe: "b"}, // buckets are per CPE
			{cpe: "a", at: time.Second},
			{cpe: "a", at: time.Second, want: "new_flows_rate"},
		}},
		// A long idle period must not bank more than the burst: with the
		// cap deleted, 100 s at 1/s would admit 100 flows at once.
		{"burst caps the refill", config.HAGLimits{FlowsTotal: 100, FlowsPerCPE: 100, NewFlowsPerSecond: 1, NewFlowsBurst: 2}, []step{
			{cpe: "a"},
			{cpe: "a", at: 100 * time.Second}, {cpe: "a", at: 100 * time.Second},
			{cpe: "a", at: 100 * time.Second, want: "new_flows_rate"},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newLimiter(tc.cfg)
			var admitted []func()
			for i, s := range tc.steps {
				if s.release != 0 {
					r := admitted[max(s.release, -s.release)-1]
					r()
					if s.release < 0 {
						r()
					}
				}
				release, lim := l.acquire(s.cpe, now.Add(s.at))
				if lim != s.want {
					t.Fatalf("step %d (%s): limit %q, want %q", i, s.cpe, lim, s.want)
				}
				if (release == nil) != (lim != "") {
					t.Fatalf("step %d: release %v with limit %q", i, release != nil, lim)
				}
				if release != nil {
					admitted = append(admitted, release)
				}
			}
		})
	}
}
