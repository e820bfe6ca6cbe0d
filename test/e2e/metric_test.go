package e2e

import "testing"

// TestSumMetric: a metric missing from the exposition is an error, so that
// a renamed metric fails the waits for "== 0" instead of passing them.
func TestSumMetric(t *testing.T) {
	const exp = `# HELP hcpe_uplink_up Whether the uplink is up.
# TYPE hcpe_uplink_up gauge
hcpe_uplink_up{uplink="dsl"} 1
hcpe_uplink_up{uplink="lte"} 0
# HELP hcpe_mptcp_fallbacks_total Fallbacks.
# TYPE hcpe_mptcp_fallbacks_total counter
hcpe_mptcp_fallbacks_total 3
`
	for _, tc := range []struct {
		name      string
		metric    string
		fragments []string
		want      float64
		wantErr   bool
	}{
		{"sum of a family", "hcpe_uplink_up", nil, 1, false},
		{"one label set", "hcpe_uplink_up", []string{`uplink="dsl"`}, 1, false},
		{"label set at zero", "hcpe_uplink_up", []string{`uplink="lte"`}, 0, false},
		{"label set not observed yet", "hcpe_uplink_up", []string{`uplink="wifi"`}, 0, false},
		{"no labels", "hcpe_mptcp_fallbacks_total", nil, 3, false},
		{"prefix of another name", "hcpe_mptcp_fallbacks", nil, 0, true},
		{"renamed or missing", "hcpe_uplink_alive", nil, 0, true},
		{"catalogued, no series observed yet", "hcpe_pool_discarded_total", []string{`reason="dead"`}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := sumMetric(exp, tc.metric, tc.fragments...)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("sumMetric(%s, %v) = %v, %v; want %v, error %v", tc.metric, tc.fragments, got, err, tc.want, tc.wantErr)
			}
		})
	}
}
