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

func TestHCPEMetricsLint(t *testing.T) {
	m := NewHCPE()
	m.Flows.WithLabelValues("ok").Inc()
	m.FlowSetup.WithLabelValues("ok").Observe(0.02)
	m.ConvertErrors.WithLabelValues("connection_reset").Inc()
	m.UplinkBytes.WithLabelValues("dsl", "down").Add(1)
	m.Subflows.WithLabelValues("dsl").Set(1)
	m.NetstackDrops.WithLabelValues("flows").Inc()
	m.UplinkUp.WithLabelValues("dsl").Set(1)
	m.UplinkBackup.WithLabelValues("lte").Set(0)
	m.UplinkRTT.WithLabelValues("dsl").Set(0.015)
	m.UplinkLoss.WithLabelValues("dsl").Set(0)
	m.FlowEnds.WithLabelValues("eof").Inc()
	lint(t, m.Registry, "hcpe_")
}
