package e2e

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"hybridgw/internal/netlab"
)

// TestHostBounds runs hcpe's bounds on what one LAN host can make it hold,
// with the real daemons: over limits.flows_per_host a LAN SYN is answered
// with a RST and counted, and at its memory ceiling (limits.memory_limit_mb,
// here 1 MiB, which hcpe is always over) every new flow is.
func TestHostBounds(t *testing.T) {
	netlab.RequireRoot(t)
	dst := netip.AddrPortFrom(server6, 8080) // EchoHash: holds until we half-close
	refused := func(t *testing.T, s *system, reason string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		c, err := s.dial(ctx, dst)
		if err == nil {
			c.Close()
			t.Fatal("a LAN flow over the bound was opened")
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("LAN flow over the bound: %v, want connection refused (a RST)", err)
		}
		waitFor(t, "hcpe_netstack_drops_total{reason=\""+reason+"\"} = 1", 5*time.Second, func() bool {
			v, err := s.tryMetric(s.lab.CPE, 9101, "hcpe_netstack_drops_total", `reason="`+reason+`"`)
			return err == nil && v == 1
		})
	}
	t.Run("flows_per_host", func(t *testing.T) {
		s := startSystem(t, "flows_per_host: 512", "flows_per_host: 3")
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		var held []*net.TCPConn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for i := range 3 {
			c, err := s.dial(ctx, dst)
			if err != nil {
				t.Fatalf("LAN flow %d of 3: %v", i+1, err)
			}
			held = append(held, c)
		}
		refused(t, s, "flows_per_host")
	})
	t.Run("memory", func(t *testing.T) {
		s := startSystem(t, "memory_limit_mb: 768", "memory_limit_mb: 1")
		refused(t, s, "memory")
	})
}
