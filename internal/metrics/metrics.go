// Package metrics holds the Prometheus registries and collectors of both
// daemons. One registry per process; names follow
// <daemon>_<subsystem>_<what>_<unit>, counters end in _total, and labels are
// bounded (uplink, result, code, direction, limit) — never a flow.
package metrics

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"hybridgw/internal/httpserve"
	"hybridgw/internal/version"
)

// setupBuckets spans a LAN RTT to a slow mobile dial: seconds, 1 ms .. 10 s.
var setupBuckets = []float64{.001, .0025, .005, .01, .02, .035, .05, .075, .1, .15, .25, .5, 1, 2.5, 5, 10}

func newRegistry(daemon string) *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	bi := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: daemon + "_build_info", Help: "Build of the running " + daemon + "; the value is always 1.",
	}, []string{"version", "commit"})
	bi.WithLabelValues(version.Version, version.Commit).Set(1)
	r.MustRegister(bi)
	return r
}

// Serve exposes reg on addr at /metrics until ctx is cancelled. An empty
// addr disables it.
func Serve(ctx context.Context, addr string, reg *prometheus.Registry, log *slog.Logger) error {
	if addr == "" {
		<-ctx.Done()
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return httpserve.Run(ctx, srv, ln, "metrics", log)
}

// Label turns a name such as an RFC 8803 error ("Not Authorized") into a
// label value ("not_authorized"): readable in PromQL, and bounded because
// the names are.
func Label(name string) string {
	out := make([]byte, 0, len(name))
	for i := 0; i < len(name); i++ {
		ch := name[i]
		switch {
		case ch >= 'A' && ch <= 'Z':
			out = append(out, ch+'a'-'A')
		case ch == ' ' || ch == '-':
			out = append(out, '_')
		case ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || ch == '_':
			out = append(out, ch)
		}
	}
	return string(out)
}
