package gateway

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"hybridgw/internal/config"
)

// flowLogs decides, per flow, whether hag writes that flow's lines
// (log.flows): at thousands of new flows per second a JSON line per open
// and per close, each its own write(2), is a large part of hag's cost per
// flow (make bench figure 7), while the counters (hag_flows_total,
// hag_refusals_total, hag_flow_ends_total) count every flow whatever is
// logged.
//
//   - info: every flow's lines, open and close at info;
//   - debug: open and close at debug (written only with log.level debug),
//     refusals and other per-flow warnings at their level for every flow;
//   - sample: every line of at most log.flows_per_second flows a second
//     (so below that rate hag logs every flow), none of the flows beyond;
//     how many were left out is logged once a second and counted in
//     hag_log_flows_unlogged_total.
type flowLogs struct {
	mode   string
	perSec int
	open   slog.Level // of "flow open" and "flow closed"

	mu       sync.Mutex
	window   int64 // the Unix second being counted
	admitted int   // flows logged in window
	unlogged int   // flows left out since the last report
}

func newFlowLogs(c config.HAGLog) *flowLogs {
	f := &flowLogs{mode: c.Flows, perSec: c.FlowsPerSecond, open: slog.LevelInfo}
	if c.Flows == config.FlowLogDebug {
		f.open = slog.LevelDebug
	}
	return f
}

// admit says whether the flow starting now is logged.
func (f *flowLogs) admit(now time.Time) bool {
	if f.mode != config.FlowLogSample {
		return true
	}
	sec := now.Unix()
	f.mu.Lock()
	defer f.mu.Unlock()
	if sec != f.window {
		f.window, f.admitted = sec, 0
	}
	if f.admitted < f.perSec {
		f.admitted++
		return true
	}
	f.unlogged++
	return false
}

// takeUnlogged returns how many flows were left out since the last call.
func (f *flowLogs) takeUnlogged() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.unlogged
	f.unlogged = 0
	return n
}

// discard is the logger of a flow whose lines are left out. Callers that
// build costly attributes check Enabled first.
var discard = slog.New(slog.DiscardHandler)

// flowLogger is the logger of one flow: with its id and peer when the
// flow is logged, discard when it is left out (no attributes are
// formatted for it).
func (g *Gateway) flowLogger(id uint64, peer netip.AddrPort, now time.Time) *slog.Logger {
	if !g.flowLog.admit(now) {
		g.m.LogFlowsUnlogged.Inc()
		return discard
	}
	return g.log.With("flow", id, "peer", peer.String())
}

// reportUnlogged logs how many flows' lines were left out in the last
// interval, if any.
func (g *Gateway) reportUnlogged() {
	if n := g.flowLog.takeUnlogged(); n > 0 {
		g.log.Info("flows not logged (log.flows: sample)", "flows", n, "flows_per_second", g.flowLog.perSec)
	}
}

// flowLines says whether log writes a flow's open and close lines, at
// the level log.flows gives them; callers check it before they build the
// lines' attributes.
func (g *Gateway) flowLines(log *slog.Logger) (slog.Level, bool) {
	return g.flowLog.open, log.Enabled(context.Background(), g.flowLog.open)
}
