package metrics

import (
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// touchAll creates one child in every metric vector of a collectors struct
// (by reflection, so a vector added later is covered without editing this
// test): vectors appear in Gather only once they have a child.
func touchAll(t *testing.T, m any) {
	t.Helper()
	v := reflect.ValueOf(m).Elem()
	for i := 0; i < v.NumField(); i++ {
		meth := v.Field(i).MethodByName("GetMetricWithLabelValues")
		if !meth.IsValid() {
			continue
		}
		ok := false
		for n := 0; n <= 8 && !ok; n++ {
			args := make([]reflect.Value, n)
			for j := range args {
				args[j] = reflect.ValueOf("x")
			}
			ok = meth.Call(args)[1].IsNil()
		}
		if !ok {
			t.Fatalf("could not create a child of %s", v.Type().Field(i).Name)
		}
	}
}

// docMetric is one row of a metric table in docs/metrics.md.
type docMetric struct {
	typ    string
	labels []string
	line   int
}

// readDoc parses the "| metric | type | labels | meaning |" tables.
func readDoc(t *testing.T) map[string]docMetric {
	t.Helper()
	b, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := map[string]docMetric{}
	inTable := false
	for n, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "| metric | type | labels |") {
			inTable = true
			continue
		}
		if !strings.HasPrefix(line, "|") {
			inTable = false
			continue
		}
		if !inTable || strings.HasPrefix(line, "|---") {
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) < 5 {
			t.Errorf("docs/metrics.md:%d: a metric row needs 4 cells: %q", n+1, line)
			continue
		}
		name := strings.Trim(strings.TrimSpace(cells[1]), "`")
		var labels []string
		if l := strings.TrimSpace(cells[3]); l != "—" && l != "-" && l != "" {
			for _, x := range strings.Split(l, ",") {
				labels = append(labels, strings.TrimSpace(x))
			}
		}
		slices.Sort(labels)
		if _, dup := doc[name]; dup {
			t.Errorf("docs/metrics.md:%d: %s is listed twice", n+1, name)
		}
		doc[name] = docMetric{typ: strings.TrimSpace(cells[2]), labels: labels, line: n + 1}
	}
	return doc
}

// TestMetricsDoc checks docs/metrics.md and the registries agree both ways:
// every hag_/hcpe_ metric registered is documented with its type and
// labels, and every documented metric is registered. It also lints both
// registries with every vector populated.
func TestMetricsDoc(t *testing.T) {
	doc := readDoc(t)
	if len(doc) == 0 {
		t.Fatal("no metric tables found in docs/metrics.md")
	}
	hag := NewHAG(func(string) float64 { return 0 })
	touchAll(t, hag)
	hcpe := NewHCPE()
	touchAll(t, hcpe)
	lint(t, hag.Registry, "hag_")
	lint(t, hcpe.Registry, "hcpe_")

	seen := map[string]bool{}
	for _, reg := range []*prometheus.Registry{hag.Registry, hcpe.Registry} {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			name := mf.GetName()
			if !strings.HasPrefix(name, "hag_") && !strings.HasPrefix(name, "hcpe_") {
				continue
			}
			seen[name] = true
			d, ok := doc[name]
			if !ok {
				t.Errorf("%s is registered but not documented in docs/metrics.md", name)
				continue
			}
			typ := map[dto.MetricType]string{
				dto.MetricType_COUNTER: "counter", dto.MetricType_GAUGE: "gauge",
				dto.MetricType_HISTOGRAM: "histogram", dto.MetricType_SUMMARY: "summary",
			}[mf.GetType()]
			if d.typ != typ {
				t.Errorf("docs/metrics.md:%d: %s is a %s, documented as %q", d.line, name, typ, d.typ)
			}
			var labels []string
			for _, m := range mf.GetMetric() {
				for _, lp := range m.GetLabel() {
					if !slices.Contains(labels, lp.GetName()) {
						labels = append(labels, lp.GetName())
					}
				}
			}
			slices.Sort(labels)
			if !slices.Equal(labels, d.labels) {
				t.Errorf("docs/metrics.md:%d: %s has labels %v, documented as %v", d.line, name, labels, d.labels)
			}
		}
	}
	for name, d := range doc {
		if !seen[name] {
			t.Errorf("docs/metrics.md:%d: %s is documented but not registered", d.line, name)
		}
	}
}
