package admin

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Samples is one gathering of a daemon's registry, for the providers:
// the admin API reports the same numbers /metrics does, read without
// creating series.
type Samples map[string][]*dto.Metric

// Gather reads every metric family of g.
func Gather(g prometheus.Gatherer) (Samples, error) {
	mfs, err := g.Gather()
	if err != nil {
		return nil, err
	}
	s := Samples{}
	for _, mf := range mfs {
		s[mf.GetName()] = mf.GetMetric()
	}
	return s, nil
}

// Value is the sum of name's samples whose labels include every given
// name/value pair (pairs: "uplink", "dsl", ...); ok is false when none
// matched.
func (s Samples) Value(name string, pairs ...string) (v float64, ok bool) {
	for _, m := range s[name] {
		if !hasLabels(m, pairs) {
			continue
		}
		v += value(m)
		ok = true
	}
	return v, ok
}

// By sums name's samples by the value of label.
func (s Samples) By(name, label string) map[string]uint64 {
	out := map[string]uint64{}
	for _, m := range s[name] {
		for _, lp := range m.GetLabel() {
			if lp.GetName() == label {
				out[lp.GetValue()] += uint64(value(m))
			}
		}
	}
	return out
}

func hasLabels(m *dto.Metric, pairs []string) bool {
	for i := 0; i+1 < len(pairs); i += 2 {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == pairs[i] && lp.GetValue() == pairs[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}
