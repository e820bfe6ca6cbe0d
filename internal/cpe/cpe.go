// Package cpe assembles hcpe: the TUN device and gVisor netstack that
// intercept LAN TCP, the Convert client, kernel MPTCP towards hag over every
// uplink, and the metrics.
package cpe

import (
	"log/slog"
	"sync"
	"sync/atomic"

	"hybridgw/internal/config"
	"hybridgw/internal/metrics"
	"hybridgw/internal/relay"
	"hybridgw/internal/tun"
)

// CPE is one hcpe instance.
type CPE struct {
	cfg    *config.HCPE
	log    *slog.Logger
	m      *metrics.HCPE
	ups    *uplinks
	health *health
	pool   *warmPool // nil when pool.ceiling is 0
	// withdrawals takes dead uplinks' endpoints away from running
	// connections and gives them back.
	withdrawals *withdrawals
	poller      *relay.Poller

	reloadMu sync.Mutex // guards what a reload changes
	steer    *tun.Steering
	slot     int
	bypass   config.Bypass

	flowSeq atomic.Uint64
	mu      sync.Mutex
	flows   map[*flow]struct{}
	ready   chan struct{}

	// Owned by the poll goroutine (pollExt) except extSeen, which
	// classifies fallbacks.
	extErrLogged, blackholeLogged bool
	extSeen                       atomic.Uint64 // MPTcpExtMPCapableSYNTXDisabled at the last poll
}

// New checks what the config alone cannot tell and starts nothing.
func New(cfg *config.HCPE, log *slog.Logger) (*CPE, error) {
	return &CPE{cfg: cfg, log: log, m: metrics.NewHCPE(), flows: map[*flow]struct{}{}, ready: make(chan struct{})}, nil
}

// Summary is what hcpe logs about its config at start.
func Summary(c *config.HCPE) []any {
	ups := make([]string, len(c.Uplinks))
	for i, u := range c.Uplinks {
		ups[i] = u.Name + "(" + u.Interface + "," + u.Role + ")"
	}
	return []any{"lan", c.LAN.Interfaces, "tun", c.TUN.Name, "uplinks", ups, "hag", c.HAG.Addresses, "port", c.HAG.Port}
}

// Metrics is hcpe's registry, for tests and the admin API.
func (c *CPE) Metrics() *metrics.HCPE { return c.m }

// Ready is closed once hcpe intercepts LAN TCP.
func (c *CPE) Ready() <-chan struct{} { return c.ready }
