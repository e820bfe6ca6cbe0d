package gateway

import (
	"net"
	"net/netip"
	"sync"
)

// ownSet is hag's own addresses, read by every Convert request and updated
// by the address watcher: an address added after start must be refused as
// a destination as soon as the kernel has it.
type ownSet struct {
	mu sync.RWMutex
	m  map[netip.Addr]bool
}

// newOwnSet starts from the addresses the host has now.
func newOwnSet() *ownSet {
	s := &ownSet{m: map[netip.Addr]bool{}}
	as, _ := net.InterfaceAddrs()
	for _, a := range as {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			s.m[p.Addr().Unmap()] = true
		}
	}
	return s
}

func (s *ownSet) set(a netip.Addr, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if on {
		s.m[a.Unmap()] = true
	} else {
		delete(s.m, a.Unmap())
	}
}

func (s *ownSet) has(a netip.Addr) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.m[a.Unmap()]
}
