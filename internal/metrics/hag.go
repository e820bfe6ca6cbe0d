package metrics

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// HAG is hag's collectors.
type HAG struct {
	Registry *prometheus.Registry

	FlowsActive        prometheus.Gauge
	Flows              *prometheus.CounterVec // result: ok or the Convert error's name
	ConvertErrors      *prometheus.CounterVec // code: the RFC 8803 error code's name
	DialDuration       *prometheus.HistogramVec
	MPTCPFallbacks     prometheus.Counter
	Subflows           prometheus.Histogram
	LimitHits          *prometheus.CounterVec // limit: flows_total, flows_per_cpe, handshakes, new_flows_rate
	HandshakesInFlight prometheus.Gauge
	FlowEnds           *prometheus.CounterVec // reason: eof, reset, idle, shutdown, error
	PoolWaiting        prometheus.Gauge       // hcpe's warm connections before their first byte
	PoolEnds           *prometheus.CounterVec // reason: closed, idle, error
	Refusals           *prometheus.CounterVec // reason: RefusalReasons
	Reloads            *prometheus.CounterVec // result: ok, refused

	replayEntries atomic.Pointer[func() float64] // SetCookieReplayEntries
}

// RefusalReasons are the reasons hag_refusals_total exports from the start.
var RefusalReasons = []string{"handshake_limit", "handshake_limit_source", "handshake_unproven",
	"destination_special", "destination_self", "destination_denied", "descriptors", "pool_limit", "join_source",
	"cookie_invalid", "cookie_expired", "cookie_unknown_cpe", "cookie_unknown_key", "cookie_replay", "cookie_replay_full"}

// NewHAG registers hag's collectors on a fresh registry. bytes reports the
// bytes relayed so far in a direction ("to_server", "to_client"), live flows
// included, so a long download shows up while it runs and not at its end.
func NewHAG(bytes func(direction string) float64) *HAG {
	m := &HAG{
		Registry: newRegistry("hag"),
		FlowsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hag_flows_active", Help: "Flows currently relayed.",
		}),
		Flows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hag_flows_total", Help: "Convert requests handled, by result (ok or the Convert error sent).",
		}, []string{"result"}),
		ConvertErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hag_convert_errors_total", Help: "Convert Error TLVs sent, by RFC 8803 error code.",
		}, []string{"code"}),
		DialDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "hag_dial_duration_seconds", Help: "Time to connect to the server, by result.", Buckets: setupBuckets,
		}, []string{"result"}),
		MPTCPFallbacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hag_mptcp_fallbacks_total", Help: "Accepted connections that fell back from MPTCP to plain TCP.",
		}),
		Subflows: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "hag_mptcp_subflows", Help: "Subflows a flow had when it ended (1 = the initial subflow only).",
			Buckets: []float64{1, 2, 3, 4, 6, 8},
		}),
		LimitHits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hag_limit_hits_total", Help: "Requests refused by a limit, by limit.",
		}, []string{"limit"}),
		HandshakesInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hag_handshakes_in_flight", Help: "Connections between accept and the Convert reply.",
		}),
		Refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hag_refusals_total", Help: "Connections and requests hag refused, by reason.",
		}, []string{"reason"}),
		FlowEnds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hag_flow_ends_total", Help: "Relayed flows that ended, by reason.",
		}, []string{"reason"}),
		PoolWaiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hag_pool_waiting", Help: "Established connections (hcpe's warm pool) waiting for their first byte.",
		}),
		PoolEnds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hag_pool_ends_total", Help: "Warm-pool connections that ended before their first byte, by reason (closed, idle, error).",
		}, []string{"reason"}),
		Reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hag_config_reloads_total", Help: "Config reloads (SIGHUP or hag reload), by result: ok, or refused (the running config stayed).",
		}, []string{"result"}),
	}
	for _, dir := range []string{"to_server", "to_client"} {
		m.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "hag_relay_bytes_total", Help: "Bytes relayed, by direction.", ConstLabels: prometheus.Labels{"direction": dir},
		}, func() float64 { return bytes(dir) }))
	}
	m.Registry.MustRegister(m.FlowsActive, m.Flows, m.ConvertErrors, m.DialDuration,
		m.MPTCPFallbacks, m.Subflows, m.LimitHits, m.HandshakesInFlight, m.FlowEnds,
		m.PoolWaiting, m.PoolEnds, m.Refusals, m.Reloads)
	for _, r := range RefusalReasons {
		m.Refusals.WithLabelValues(r)
	}
	for _, r := range []string{"ok", "refused"} {
		m.Reloads.WithLabelValues(r)
	}
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "hag_cookie_replay_entries", Help: "Cookies remembered so that each is accepted once; compare with limits.cookie_replay_entries.",
	}, func() float64 {
		if n := m.replayEntries.Load(); n != nil {
			return (*n)()
		}
		return 0
	}))
	return m
}

// SetCookieReplayEntries names what reports the size of hag's cookie
// replay filter (hag_cookie_replay_entries).
func (m *HAG) SetCookieReplayEntries(n func() float64) { m.replayEntries.Store(&n) }
