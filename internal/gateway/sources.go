package gateway

import (
	"net/netip"
	"sync"

	"hybridgw/internal/hostkey"
)

// sourceSlots counts handshakes in flight per source: one IPv4 address or
// one IPv6 /64 (a host picks any address in its /64 at will). An entry
// lives only while it holds a slot, so the map is bounded by the global
// handshake limit, not by traffic.
type sourceSlots struct {
	max int

	mu sync.Mutex
	n  map[netip.Prefix]int
}

func newSourceSlots(max int) *sourceSlots {
	return &sourceSlots{max: max, n: map[netip.Prefix]int{}}
}

func sourceKey(a netip.Addr) netip.Prefix { return hostkey.Of(a) }

// setMax replaces the bound (a reload); slots held stay held.
func (s *sourceSlots) setMax(max int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.max = max
}

// take holds one slot for a, or returns nil when its source has max.
func (s *sourceSlots) take(a netip.Addr) (release func()) {
	k := sourceKey(a)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n[k] >= s.max {
		return nil
	}
	s.n[k]++
	return sync.OnceFunc(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.n[k]--; s.n[k] <= 0 {
			delete(s.n, k)
		}
	})
}
