package labproc

import (
	"maps"
	"testing"
)

const exposition = `# HELP hcpe_uplink_bytes_total Payload bytes
# TYPE hcpe_uplink_bytes_total counter
hcpe_uplink_bytes_total{direction="down",uplink="dsl"} 1.4e+07
hcpe_uplink_bytes_total{direction="down",uplink="lte"} 2.5e+07
hcpe_uplink_bytes_total{direction="up",uplink="dsl"} 1234
hcpe_uplink_bytes_total_other{uplink="dsl"} 9
hcpe_uplink_up{uplink="dsl"} 1
hcpe_uplink_up{uplink="lte"} 1
# TYPE hag_refusals_total counter
go_goroutines 12
broken_line_without_value
hcpe_bad_value{uplink="dsl"} x
`

func TestSum(t *testing.T) {
	for _, tc := range []struct {
		name  string
		frags []string
		want  float64
		found bool
	}{
		{"hcpe_uplink_bytes_total", []string{`uplink="dsl"`, `direction="down"`}, 1.4e7, true},
		{"hcpe_uplink_bytes_total", []string{`direction="down"`}, 3.9e7, true},
		{"hcpe_uplink_bytes_total", nil, 3.9e7 + 1234, true}, // not _other: a longer name
		{"hcpe_uplink_up", nil, 2, true},
		{"go_goroutines", nil, 12, true},
		{"hcpe_uplink_subflows", nil, 0, false},
		{"hag_refusals_total", nil, 0, false}, // declared, no series yet
		{"hcpe_bad_value", nil, 0, false},
	} {
		got, found := Sum(exposition, tc.name, tc.frags...)
		if got != tc.want || found != tc.found {
			t.Errorf("Sum(%s, %q) = %v, %v; want %v, %v", tc.name, tc.frags, got, found, tc.want, tc.found)
		}
	}
}

func TestHasFamily(t *testing.T) {
	for name, want := range map[string]bool{
		"hcpe_uplink_bytes_total": true,
		"hag_refusals_total":      true,
		"hcpe_uplink_up":          false, // series but no TYPE line in this sample
		"hcpe_uplink_bytes":       false,
	} {
		if got := HasFamily(exposition, name); got != want {
			t.Errorf("HasFamily(%s) = %v, want %v", name, got, want)
		}
	}
}

func TestPickAndSeries(t *testing.T) {
	got := Pick(exposition, "hcpe_uplink_up", `hcpe_uplink_bytes_total{direction="up",uplink="dsl"}`, "hcpe_uplink_subflows", `hcpe_uplink_up{uplink="nope"}`)
	want := map[string]float64{"hcpe_uplink_up": 2, `hcpe_uplink_bytes_total{direction="up",uplink="dsl"}`: 1234}
	if !maps.Equal(got, want) {
		t.Errorf("Pick = %v, want %v", got, want)
	}
	s := Series(exposition, "hcpe_uplink_up")
	if len(s) != 2 || s[`hcpe_uplink_up{uplink="lte"}`] != 1 {
		t.Errorf("Series = %v", s)
	}
	for in, want := range map[string]string{`hag_limit_hits_total{limit="handshakes"}`: "handshakes", "go_goroutines": "go_goroutines"} {
		if got := LabelValue(in); got != want {
			t.Errorf("LabelValue(%s) = %q, want %q", in, got, want)
		}
	}
}
