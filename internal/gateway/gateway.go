// Package gateway assembles hag: MPTCP listeners, the Convert server,
// authorisation, the dial to the server and the relay, with its metrics.
package gateway

import (
	"context"
	"log/slog"

	"hybridgw/internal/config"
)

// Gateway is one hag instance.
type Gateway struct {
	cfg *config.HAG
	log *slog.Logger
}

// New validates what the config alone cannot tell and starts nothing.
func New(cfg *config.HAG, log *slog.Logger) (*Gateway, error) {
	return &Gateway{cfg: cfg, log: log}, nil
}

// Summary is what hag logs about its config at start.
func Summary(c *config.HAG) []any {
	return []any{"listen", c.Listen.Addresses, "port", c.Listen.Port, "cpes", len(c.CPEs),
		"egress_v4", c.Egress.IPv4, "egress_v6", c.Egress.IPv6}
}

// Run serves until ctx is cancelled.
func (g *Gateway) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}
