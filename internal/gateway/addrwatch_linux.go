package gateway

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// watch follows the kernel's address updates (RTM_NEWADDR/RTM_DELADDR) in
// hag's namespace until ctx ends. It subscribes before listing, so an
// address added between newOwnSet and the subscription is still seen.
// ready is closed once the subscription is live.
func (s *ownSet) watch(ctx context.Context, ready chan<- struct{}) error {
	ch := make(chan netlink.AddrUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	errs := make(chan error, 1)
	if err := netlink.AddrSubscribeWithOptions(ch, done, netlink.AddrSubscribeOptions{
		ListExisting: true,
		ErrorCallback: func(err error) {
			select {
			case errs <- err:
			default:
			}
		},
	}); err != nil {
		close(ready)
		return fmt.Errorf("subscribing to address updates: %w", err)
	}
	close(ready)
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errs:
			return fmt.Errorf("address updates: %w", err)
		case u, ok := <-ch:
			if !ok {
				return fmt.Errorf("address updates: subscription closed")
			}
			if a, ok := netip.AddrFromSlice(u.LinkAddress.IP); ok {
				s.set(a, u.NewAddr)
			}
		}
	}
}
