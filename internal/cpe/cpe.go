// Package cpe assembles hcpe: the TUN device and gVisor netstack that
// intercept LAN TCP, the Convert client, kernel MPTCP towards hag, the uplink
// policy and the metrics.
package cpe

import (
	"context"
	"log/slog"

	"hybridgw/internal/config"
)

// CPE is one hcpe instance.
type CPE struct {
	cfg *config.HCPE
	log *slog.Logger
}

// New validates what the config alone cannot tell and starts nothing.
func New(cfg *config.HCPE, log *slog.Logger) (*CPE, error) {
	return &CPE{cfg: cfg, log: log}, nil
}

// Summary is what hcpe logs about its config at start.
func Summary(c *config.HCPE) []any {
	ups := make([]string, len(c.Uplinks))
	for i, u := range c.Uplinks {
		ups[i] = u.Name + "(" + u.Interface + "," + u.Role + ")"
	}
	return []any{"lan", c.LAN.Interfaces, "tun", c.TUN.Name, "uplinks", ups, "hag", c.HAG.Addresses, "port", c.HAG.Port}
}

// Run serves until ctx is cancelled.
func (c *CPE) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}
