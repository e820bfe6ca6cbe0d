package e2e

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"hybridgw/internal/netlab"
)

var (
	server4 = netip.MustParseAddr(netlab.Server4)
	server6 = netip.MustParseAddr(netlab.Server6)
)

func TestSystem(t *testing.T) {
	netlab.RequireRoot(t)
	s := startSystem(t)

	t.Run("AddressPreservation", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		peer6, err := s.upload(ctx, netip.AddrPortFrom(server6, 8080), 1<<20, 1)
		if err != nil {
			t.Fatalf("IPv6 upload: %v", err)
		}
		if !strings.HasPrefix(peer6, "["+netlab.Client6+"]:") {
			t.Errorf("server saw %s for the IPv6 client, want the client's own %s", peer6, netlab.Client6)
		}
		peer4, err := s.upload(ctx, netip.AddrPortFrom(server4, 8080), 1<<20, 2)
		if err != nil {
			t.Fatalf("IPv4 upload: %v", err)
		}
		if !strings.HasPrefix(peer4, netlab.HAGWAN4+":") {
			t.Errorf("server saw %s for the IPv4 client, want hag's %s", peer4, netlab.HAGWAN4)
		}
		t.Logf("server saw IPv6 client as %s, IPv4 client as %s", peer6, peer4)
	})
}
