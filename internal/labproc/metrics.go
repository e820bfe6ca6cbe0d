package labproc

import (
	"bufio"
	"slices"
	"strconv"
	"strings"
)

// lines calls f with every sample line of a Prometheus text exposition:
// the series (name and labels) and its value.
func lines(exposition string, f func(series string, v float64)) {
	sc := bufio.NewScanner(strings.NewReader(exposition))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		f(line[:i], v)
	}
}

// Sum is the sum of the samples of metric name whose series contains
// every fragment (such as `uplink="dsl"`), and whether any matched.
func Sum(exposition, name string, fragments ...string) (sum float64, found bool) {
	lines(exposition, func(series string, v float64) {
		if !strings.HasPrefix(series, name+"{") && series != name {
			return
		}
		for _, f := range fragments {
			if !strings.Contains(series, f) {
				return
			}
		}
		sum += v
		found = true
	})
	return sum, found
}

// HasFamily says whether the exposition declares metric name (its
// "# TYPE" line), which it does even before a labelled family has a
// series.
func HasFamily(exposition, name string) bool {
	return strings.Contains("\n"+exposition, "\n# TYPE "+name+" ")
}

// Series returns every series of the named metrics, keyed by the series
// as exposed (name and labels, e.g. `hag_limit_hits_total{limit="handshakes"}`).
func Series(exposition string, names ...string) map[string]float64 {
	out := map[string]float64{}
	lines(exposition, func(series string, v float64) {
		name, _, _ := strings.Cut(series, "{")
		if slices.Contains(names, name) {
			out[series] = v
		}
	})
	return out
}

// Pick returns, for each wanted name, the sum of its samples over all
// label sets, or for a name written with its labels (`m{l="v"}`), that
// one series. A name with no sample is left out.
func Pick(exposition string, names ...string) map[string]float64 {
	bare := make([]string, len(names))
	for i, n := range names {
		bare[i], _, _ = strings.Cut(n, "{")
	}
	series := Series(exposition, bare...)
	out := map[string]float64{}
	for _, n := range names {
		if strings.Contains(n, "{") {
			if v, ok := series[n]; ok {
				out[n] = v
			}
			continue
		}
		for k, v := range series {
			if k == n || strings.HasPrefix(k, n+"{") {
				out[n] += v
			}
		}
	}
	return out
}

// LabelValue is the value of the first label of a series key
// (`m{l="v"}` → v), or the key itself without labels.
func LabelValue(series string) string {
	_, rest, ok := strings.Cut(series, "=\"")
	if !ok {
		return series
	}
	v, _, _ := strings.Cut(rest, "\"")
	return v
}
