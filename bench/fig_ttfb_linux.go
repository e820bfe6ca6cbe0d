package main

import (
	"context"
	"slices"
	"time"
)

// ttfbMetrics are hcpe's metrics figure 2 reads before and after its runs.
var ttfbMetrics = []string{"hcpe_flow_setup_duration_seconds_sum", "hcpe_flow_setup_duration_seconds_count", "hcpe_pool_hits_total", "hcpe_pool_misses_total"}

// ttfbFigure is figure 2 on the default pair.
func (b *bench) ttfbFigure(ctx context.Context, s *system) {
	b.settle(ctx)
	row := TTFBRow{System: s.name}
	var h0 map[string]float64
	if s.name == sysHybrid {
		h0, _ = scrape(ctx, b.lab.CPE, "127.0.0.1:9101", ttfbMetrics...)
	}
	var conn, first []time.Duration
	var lastErr error
	for i := 0; i < b.opts.TTFBRuns && ctx.Err() == nil; i++ {
		c, f, port, err := ttfb(ctx, b.lab.LAN, b.dst)
		if port != 0 && err == nil {
			b.lanPorts[port] = time.Now()
		}
		if err != nil {
			row.Failures++
			lastErr = err
			if row.Failures > b.opts.TTFBRuns/10 {
				break
			}
			continue
		}
		conn, first = append(conn, c), append(first, f)
	}
	row.Runs = len(first)
	if lastErr != nil {
		row.Err = lastErr.Error()
	}
	if len(first) > 0 {
		row.ConnectMedMs = ms(percentile(conn, 50))
		row.MedianMs = ms(percentile(first, 50))
		row.P99Ms = ms(percentile(first, 99))
		row.MinMs = ms(slices.Min(first))
		row.MaxMs = ms(slices.Max(first))
	}
	if s.name == sysHybrid && h0 != nil {
		if h1, err := scrape(ctx, b.lab.CPE, "127.0.0.1:9101", ttfbMetrics...); err == nil {
			row.PoolHits = h1["hcpe_pool_hits_total"] - h0["hcpe_pool_hits_total"]
			row.PoolMisses = h1["hcpe_pool_misses_total"] - h0["hcpe_pool_misses_total"]
			if n := h1["hcpe_flow_setup_duration_seconds_count"] - h0["hcpe_flow_setup_duration_seconds_count"]; n > 0 {
				row.SetupMeanMs = 1000 * (h1["hcpe_flow_setup_duration_seconds_sum"] - h0["hcpe_flow_setup_duration_seconds_sum"]) / n
			}
		}
	}
	b.rep.TTFB = append(b.rep.TTFB, row)
	b.logf("fig2 %s: TTFB median %.1f ms p99 %.1f ms (connect %.1f ms), %d failures", s.name, row.MedianMs, row.P99Ms, row.ConnectMedMs, row.Failures)
}
