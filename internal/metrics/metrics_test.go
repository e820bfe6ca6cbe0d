package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

func lint(t *testing.T, reg *prometheus.Registry, prefix string) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	probs, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range probs {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	for _, mf := range mfs {
		n := mf.GetName()
		if !strings.HasPrefix(n, prefix) && !strings.HasPrefix(n, "go_") && !strings.HasPrefix(n, "process_") {
			t.Errorf("metric %s lacks the %s prefix", n, prefix)
		}
	}
}

func TestHAGMetricsLint(t *testing.T) {
	m := NewHAG(func(string) float64 { return 0 })
	// Vectors appear in the exposition only once a child exists.
	m.Flows.WithLabelValues("ok").Inc()
	m.ConvertErrors.WithLabelValues("not_authorized").Inc()
	m.DialDuration.WithLabelValues("ok").Observe(0.01)
	m.LimitHits.WithLabelValues("flows_total").Inc()
	m.FlowEnds.WithLabelValues("eof").Inc()
	lint(t, m.Registry, "hag_")
}
