package main

import (
	"fmt"
	"math"
	"strings"
)

// Figure 2, time to first byte: sequential small exchanges on the default
// pair, connect → the first byte of the answer.

// Figure 2's exchange: a request the size of an HTTP GET of a small
// object, and its answer.
const (
	reqLen  = 100
	respLen = 1000
)

// TTFBRow is figure 2 for one system.
type TTFBRow struct {
	System       string  `json:"system"`
	Runs         int     `json:"runs"`
	Failures     int     `json:"failures"`
	ConnectMedMs float64 `json:"connect_median_ms"`
	MedianMs     float64 `json:"median_ms"`
	P99Ms        float64 `json:"p99_ms"`
	MinMs        float64 `json:"min_ms"`
	MaxMs        float64 `json:"max_ms"`
	ExtraRTTMed  float64 `json:"extra_rtts_median"` // over direct, in DSL RTTs
	ExtraRTTP99  float64 `json:"extra_rtts_p99"`
	SetupMeanMs  float64 `json:"hcpe_setup_mean_ms,omitempty"` // hcpe's own histogram
	// hcpe's warm pool over the runs: a miss dials hag afresh (one more
	// round trip), so the misses explain a slow tail.
	PoolHits   float64 `json:"hcpe_pool_hits,omitempty"`
	PoolMisses float64 `json:"hcpe_pool_misses,omitempty"`
	Err        string  `json:"error,omitempty"`
}

func (r *Report) ttfbOf(system string) (TTFBRow, bool) {
	for _, e := range r.TTFB {
		if e.System == system && e.Runs > 0 {
			return e, true
		}
	}
	return TTFBRow{}, false
}

// dslRTTms is the default pair's DSL RTT, the unit of "extra RTTs"; NaN
// when the report has no default pair.
func (r *Report) dslRTTms() float64 {
	for _, p := range r.Lab.Pairs {
		if p.Name == "default" {
			return p.DSLRTTms
		}
	}
	return math.NaN()
}

// renderTTFB writes figure 2's section.
func (r *Report) renderTTFB(b *strings.Builder) {
	if len(r.TTFB) == 0 {
		return
	}
	w := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	w("\n## 2. Time to first byte (connect → first response byte, %d-byte request, %d-byte answer)\n\n", reqLen, respLen)
	t := newTable(b, "system", "runs", "failures", "connect median ms", "TTFB median ms", "TTFB p99 ms", "min / max ms", "extra RTTs over direct (median)", "extra RTTs (p99)")
	for _, e := range r.TTFB {
		t.row(e.System, fmt.Sprint(e.Runs), fmt.Sprint(e.Failures), f1(e.ConnectMedMs), f1(e.MedianMs), f1(e.P99Ms), f1(e.MinMs)+" / "+f1(e.MaxMs), f2(e.ExtraRTTMed), f2(e.ExtraRTTP99)+errCell(e.Err))
	}
	for _, e := range r.TTFB {
		if e.SetupMeanMs > 0 {
			w("\nhcpe's own `hcpe_flow_setup_duration_seconds` (LAN SYN → hag's Convert reply) averaged %.1f ms over these runs; its warm pool had %.0f hits and %.0f misses (a miss dials hag afresh, one more round trip).\n", e.SetupMeanMs, e.PoolHits, e.PoolMisses)
		}
	}
	w("\nOne RTT is the DSL RTT of the default profile (%s ms), the path every system's first subflow takes. Runs are sequential on the default profile pair", f1(r.dslRTTms()))
	if len(r.TTFB) > 0 && r.TTFB[0].Runs > 0 {
		n := r.TTFB[0].Runs
		w("; p99 of %d is the %s smallest value (nearest rank)", n, ordinal(int(math.Ceil(0.99*float64(n)))))
	}
	w(".\n\n")
}

func ordinal(n int) string {
	suffix := "th"
	switch {
	case n%100 >= 11 && n%100 <= 13:
	case n%10 == 1:
		suffix = "st"
	case n%10 == 2:
		suffix = "nd"
	case n%10 == 3:
		suffix = "rd"
	}
	return fmt.Sprintf("%d%s", n, suffix)
}
