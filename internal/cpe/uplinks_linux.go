package cpe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"hybridgw/internal/config"
	"hybridgw/internal/mptcp/pm"
	"hybridgw/internal/tun"
)

// rulePriorityOffset places the per-uplink source rules after the TUN
// steering rules (which use P..P+2): a LAN packet never has an uplink
// source address, so the order between them only matters for readability.
const rulePriorityOffset = 10

// uplinks keeps, for every configured uplink and each of its addresses,
// three things in step with the interface as it is now:
//
//   - a source rule `from ADDR lookup TABLE` and a default route out of the
//     uplink in TABLE, so a subflow bound to that address leaves there;
//   - an MPTCP path-manager endpoint with the subflow flag (and backup when
//     the policy says so), so every connection opens a subflow from it.
//
// Interfaces come and go and LTE addresses change, and an endpoint holds an
// interface index, so reconcile runs on every address or link event and
// once a second, re-adding what a recreated interface lost.
type uplinks struct {
	cfg *config.HCPE
	log *slog.Logger
	pm  *pm.PM

	mu  sync.Mutex
	ups []*uplink
}

type uplink struct {
	cfg    *config.Uplink
	prio   int
	ifidx  int
	up     bool // interface exists and is up
	backup bool // endpoint flag wanted
	addrs  map[netip.Addr]uint8
}

func newUplinks(cfg *config.HCPE, log *slog.Logger, p *pm.PM) *uplinks {
	u := &uplinks{cfg: cfg, log: log, pm: p}
	for i := range cfg.Uplinks {
		c := &cfg.Uplinks[i]
		u.ups = append(u.ups, &uplink{cfg: c, prio: cfg.TUN.RulePriority + rulePriorityOffset + i,
			backup: c.Role == "backup", addrs: map[netip.Addr]uint8{}})
	}
	return u
}

// cleanStale removes what a crashed run left: our tagged rules and
// routes, and every path-manager endpoint (hcpe owns the namespace's
// MPTCP endpoints).
func (u *uplinks) cleanStale() error {
	var errs []error
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		rules, err := netlink.RuleList(fam)
		if err != nil {
			return fmt.Errorf("listing rules: %w", err)
		}
		lo := u.cfg.TUN.RulePriority + rulePriorityOffset
		for _, r := range rules {
			if r.Protocol == tun.RouteProtocol && r.Priority >= lo && r.Priority < lo+64 {
				r := r
				if err := netlink.RuleDel(&r); err != nil {
					errs = append(errs, fmt.Errorf("deleting stale rule prio %d: %w", r.Priority, err))
				}
			}
		}
		for _, up := range u.ups {
			routes, _ := netlink.RouteListFiltered(fam, &netlink.Route{Table: up.cfg.Table}, netlink.RT_FILTER_TABLE)
			for _, rt := range routes {
				if rt.Protocol == tun.RouteProtocol {
					rt := rt
					// ESRCH if the kernel removed it with its link
					// meanwhile; that is the goal anyway.
					_ = netlink.RouteDel(&rt)
				}
			}
		}
	}
	if err := u.pm.Flush(); err != nil {
		errs = append(errs, fmt.Errorf("flushing MPTCP endpoints: %w", err))
	}
	return errors.Join(errs...)
}

// run reconciles until ctx ends, then removes everything it installed.
func (u *uplinks) run(ctx context.Context, ready chan<- struct{}) {
	addrCh := make(chan netlink.AddrUpdate, 64)
	linkCh := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	// A subscription fails only when no netlink socket can be opened
	// (EMFILE, ENOMEM); the ticker below then reconciles alone, a second
	// late, so it is logged and not fatal.
	if err := netlink.AddrSubscribe(addrCh, done); err != nil {
		u.log.Warn("address changes seen only by the 1 s poll", "err", err)
	}
	if err := netlink.LinkSubscribe(linkCh, done); err != nil {
		u.log.Warn("link changes seen only by the 1 s poll", "err", err)
	}
	u.reconcile()
	close(ready)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			u.removeAll()
			return
		case <-addrCh:
		case <-linkCh:
		case <-t.C:
		}
		// Events come in bursts (an interface brings several addresses).
		drain(addrCh)
		drain(linkCh)
		u.reconcile()
	}
}

func drain[T any](ch <-chan T) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

func (u *uplinks) reconcile() {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, up := range u.ups {
		u.reconcileOne(up)
	}
}

func (u *uplinks) reconcileOne(up *uplink) {
	log := u.log.With("uplink", up.cfg.Name)
	link, err := netlink.LinkByName(up.cfg.Interface)
	want := map[netip.Addr]bool{}
	ifidx := 0
	if err == nil && link.Attrs().OperState != netlink.OperDown && link.Attrs().Flags&net.FlagUp != 0 {
		ifidx = link.Attrs().Index
		if up.cfg.Auto {
			as, _ := netlink.AddrList(link, netlink.FAMILY_ALL)
			for _, a := range as {
				ip, ok := netip.AddrFromSlice(a.IP)
				if !ok || !ip.Unmap().IsGlobalUnicast() || a.Flags&unix.IFA_F_TENTATIVE != 0 {
					continue
				}
				want[ip.Unmap()] = true
			}
		} else {
			for _, a := range up.cfg.Addrs {
				want[a] = true
			}
		}
	}
	wasUp := up.up
	up.up = ifidx != 0 && len(want) > 0
	if up.up != wasUp {
		log.Info("uplink interface state", "up", up.up, "interface", up.cfg.Interface, "ifindex", ifidx)
	}
	if ifidx != up.ifidx {
		// A recreated interface leaves endpoints on a dead index: start over.
		for a := range up.addrs {
			u.removeAddr(up, a)
		}
		up.ifidx = ifidx
	}
	for a := range up.addrs {
		if !want[a] {
			log.Info("uplink address gone", "addr", a.String())
			u.removeAddr(up, a)
		}
	}
	if ifidx == 0 {
		return
	}
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		if err := netlink.RouteReplace(u.route(up, fam)); err != nil {
			log.Debug("uplink default route", "family", fam, "err", err)
		}
	}
	for a := range want {
		if _, ok := up.addrs[a]; ok {
			continue
		}
		if err := netlink.RuleAdd(u.rule(up, a)); err != nil && !errors.Is(err, unix.EEXIST) {
			log.Error("adding uplink source rule", "addr", a.String(), "err", err)
			continue
		}
		flags := pm.Subflow
		if up.backup {
			flags |= pm.Backup
		}
		id, err := u.pm.AddEndpoint(pm.Endpoint{Addr: a, IfIndex: ifidx, Flags: flags})
		if err != nil {
			log.Error("adding MPTCP endpoint", "addr", a.String(), "err", err)
			// Undo the rule just added; ENOENT only if it is gone already.
			_ = netlink.RuleDel(u.rule(up, a))
			continue
		}
		up.addrs[a] = id
		log.Info("uplink address in use", "addr", a.String(), "endpoint", id, "flags", flags.String(), "table", up.cfg.Table)
	}
}

func (u *uplinks) rule(up *uplink, a netip.Addr) *netlink.Rule {
	r := netlink.NewRule()
	r.Priority = up.prio
	r.Table = up.cfg.Table
	r.Protocol = tun.RouteProtocol
	r.Src = &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}
	r.Family = unix.AF_INET
	if a.Is6() {
		r.Family = unix.AF_INET6
	}
	return r
}

func (u *uplinks) route(up *uplink, fam int) *netlink.Route {
	bits := 32
	if fam == unix.AF_INET6 {
		bits = 128
	}
	rt := &netlink.Route{Family: fam, LinkIndex: up.ifidx, Table: up.cfg.Table, Protocol: tun.RouteProtocol,
		Dst: &net.IPNet{IP: make(net.IP, bits/8), Mask: net.CIDRMask(0, bits)}}
	for _, gw := range up.cfg.GWs {
		if gw.Is4() == (fam == unix.AF_INET) {
			rt.Gw = gw.AsSlice()
		}
	}
	if rt.Gw == nil {
		rt.Scope = netlink.SCOPE_LINK
	}
	return rt
}

func (u *uplinks) removeAddr(up *uplink, a netip.Addr) {
	if id := up.addrs[a]; id != 0 {
		if err := u.pm.DelEndpoint(id); err != nil && !errors.Is(err, pm.ErrNotFound) {
			u.log.Warn("deleting MPTCP endpoint", "uplink", up.cfg.Name, "addr", a.String(), "err", err)
		}
	}
	// ENOENT when the rule never went in (its endpoint failed) or was
	// removed by hand; either way it is gone.
	_ = netlink.RuleDel(u.rule(up, a))
	delete(up.addrs, a)
}

func (u *uplinks) removeAll() {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, up := range u.ups {
		for a := range up.addrs {
			u.removeAddr(up, a)
		}
		for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
			// ESRCH for a family the uplink has no route in, or a route
			// the kernel dropped with its link.
			_ = netlink.RouteDel(u.route(up, fam))
		}
	}
}

// source picks the address the initial subflow of a new connection to a
// hag address of family v6 binds to: the policy's first uplink when it has
// such an address; else the first live, non-backup uplink with one, in
// config order; a backup uplink only when nothing else is alive.
func (u *uplinks) source(v6 bool, first string, alive func(name string) bool) (netip.Addr, string, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, up := range u.ups {
		if up.cfg.Name == first && up.up {
			for a := range up.addrs {
				if a.Is6() == v6 {
					return a, up.cfg.Name, true
				}
			}
		}
	}
	for _, pass := range []bool{false, true} {
		for _, up := range u.ups {
			if !up.up || up.backup != pass || (alive != nil && !alive(up.cfg.Name)) {
				continue
			}
			for a := range up.addrs {
				if a.Is6() == v6 {
					return a, up.cfg.Name, true
				}
			}
		}
	}
	return netip.Addr{}, "", false
}

// nameOf maps a local subflow address to its uplink.
func (u *uplinks) nameOf(a netip.Addr) string {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, up := range u.ups {
		if _, ok := up.addrs[a.Unmap()]; ok {
			return up.cfg.Name
		}
	}
	return "other"
}

// setBackup changes an uplink's endpoint flags; the kernel sends MP_PRIO on
// its live subflows, which steers hag's sending as well as ours.
func (u *uplinks) setBackup(name string, backup bool) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, up := range u.ups {
		if up.cfg.Name != name || up.backup == backup {
			continue
		}
		up.backup = backup
		flags := pm.Subflow
		if backup {
			flags |= pm.Backup
		}
		var errs []error
		for _, id := range up.addrs {
			if err := u.pm.SetFlags(pm.Endpoint{ID: id}, flags); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	return nil
}

// addrOf returns one of the uplink's addresses of the family, if any.
func (u *uplinks) addrOf(name string, v6 bool) (netip.Addr, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, up := range u.ups {
		if up.cfg.Name != name || !up.up {
			continue
		}
		for a := range up.addrs {
			if a.Is6() == v6 {
				return a, true
			}
		}
	}
	return netip.Addr{}, false
}
