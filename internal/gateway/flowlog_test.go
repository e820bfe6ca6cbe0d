package gateway

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"hybridgw/internal/config"
	"hybridgw/internal/metrics"
)

// TestFlowLogs: log.flows sample logs at most flows_per_second flows a
// second, leaves the rest out and counts them; info and debug log every
// flow, debug its open and close lines at debug level.
func TestFlowLogs(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	tests := []struct {
		mode       string
		perSec     int
		at         []time.Duration // flow starts after t0
		wantLogged int
		wantLevel  slog.Level
	}{
		{config.FlowLogSample, 3, []time.Duration{0, 100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond, 900 * time.Millisecond}, 3, slog.LevelInfo},
		{config.FlowLogSample, 3, []time.Duration{0, 999 * time.Millisecond, time.Second, 1100 * time.Millisecond, 1200 * time.Millisecond, 1300 * time.Millisecond}, 5, slog.LevelInfo},
		{config.FlowLogInfo, 3, []time.Duration{0, 1, 2, 3, 4, 5}, 6, slog.LevelInfo},
		{config.FlowLogDebug, 3, []time.Duration{0, 1, 2, 3, 4, 5}, 6, slog.LevelDebug},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			var out bytes.Buffer
			g := &Gateway{log: slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug})), m: metrics.NewHAG(func(string) float64 { return 0 }),
				flowLog: newFlowLogs(config.HAGLog{Flows: tt.mode, FlowsPerSecond: tt.perSec})}
			logged := 0
			for i, d := range tt.at {
				log := g.flowLogger(uint64(i), netip.MustParseAddrPort("198.51.100.1:4000"), t0.Add(d))
				if lvl, ok := g.flowLines(log); ok {
					if lvl != tt.wantLevel {
						t.Errorf("flow lines at %v, want %v", lvl, tt.wantLevel)
					}
					log.Log(t.Context(), lvl, "flow open")
					logged++
				}
			}
			if logged != tt.wantLogged || strings.Count(out.String(), `"msg":"flow open"`) != tt.wantLogged {
				t.Fatalf("%d flows logged (%d lines), want %d:\n%s", logged, strings.Count(out.String(), "flow open"), tt.wantLogged, out.String())
			}
			left := len(tt.at) - tt.wantLogged
			var d dto.Metric
			if err := g.m.LogFlowsUnlogged.Write(&d); err != nil || d.GetCounter().GetValue() != float64(left) {
				got := d.GetCounter().GetValue()
				t.Errorf("hag_log_flows_unlogged_total = %v, want %d", got, left)
			}
			g.reportUnlogged()
			if left > 0 && !strings.Contains(out.String(), `"flows":`+strconv.Itoa(left)) {
				t.Errorf("no report of the %d flows left out:\n%s", left, out.String())
			}
			if g.flowLog.takeUnlogged() != 0 {
				t.Error("the report did not reset the count")
			}
		})
	}
}
