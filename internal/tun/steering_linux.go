package tun

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// installed is what Install added, so that Remove deletes exactly that.
type installed struct {
	h      *netlink.Handle
	rules  []*netlink.Rule
	routes []*netlink.Route
}

// handle opens a netlink handle in s.Namespace (or the caller's).
func (s *Steering) handle() (*netlink.Handle, error) {
	if s.Namespace == "" {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return nil, fmt.Errorf("opening rtnetlink: %w", err)
		}
		return h, nil
	}
	ns, err := netns.GetFromPath(s.Namespace)
	if err != nil {
		return nil, fmt.Errorf("opening namespace %s: %w", s.Namespace, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("opening rtnetlink in %s: %w", s.Namespace, err)
	}
	return h, nil
}

// Install removes whatever a previous run left (CleanStale), then adds the
// default routes to the TUN in Table and the rules described in the package
// comment, for IPv4 and IPv6. On error it removes what it had added.
func (s *Steering) Install() error {
	if s.state != nil {
		return errors.New("installing steering: already installed")
	}
	if err := s.validate(); err != nil {
		return fmt.Errorf("installing steering: %w", err)
	}
	h, err := s.handle()
	if err != nil {
		return fmt.Errorf("installing steering: %w", err)
	}
	if err := cleanStale(h, s.Table, s.Priority); err != nil {
		h.Close()
		return fmt.Errorf("installing steering: %w", err)
	}
	st := &installed{h: h}
	s.state = st
	link, err := h.LinkByName(s.Device)
	if err != nil {
		return errors.Join(fmt.Errorf("installing steering: looking up TUN %s: %w", s.Device, err), s.Remove())
	}
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		bits := 32
		if fam == unix.AF_INET6 {
			bits = 128
		}
		r := &netlink.Route{
			Family:    fam,
			LinkIndex: link.Attrs().Index,
			Dst:       &net.IPNet{IP: make(net.IP, bits/8), Mask: net.CIDRMask(0, bits)},
			Table:     s.Table,
			Protocol:  RouteProtocol,
		}
		if err := h.RouteAdd(r); err != nil {
			return errors.Join(fmt.Errorf("installing steering: adding default route via %s to table %d: %w", s.Device, s.Table, err), s.Remove())
		}
		st.routes = append(st.routes, r)
	}
	for _, r := range s.rules() {
		if err := h.RuleAdd(r); err != nil {
			return errors.Join(fmt.Errorf("installing steering: adding rule %s: %w", describeRule(r), err), s.Remove())
		}
		st.rules = append(st.rules, r)
	}
	return nil
}

// rules lists the rules to install, in the order they are added: the nop
// target first so that no goto ever points at a missing rule, the steering
// rules last so that nothing is steered before its bypasses are in place.
func (s *Steering) rules() []*netlink.Rule {
	var out []*netlink.Rule
	rule := func(fam, prio int) *netlink.Rule {
		r := netlink.NewRule()
		r.Family = fam
		r.Priority = prio
		r.Protocol = RouteProtocol
		return r
	}
	skip := s.Priority + 2
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		r := rule(fam, skip)
		r.Type = frActNop
		out = append(out, r)
	}
	if s.NativeTable != 0 {
		for _, lan := range s.LANs {
			for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
				r := rule(fam, skip)
				r.IifName = lan
				r.Table = unix.RT_TABLE_MAIN
				r.SuppressPrefixlen = 0
				out = append(out, r)
				r = rule(fam, skip)
				r.IifName = lan
				r.Table = s.NativeTable
				out = append(out, r)
			}
		}
	}
	for _, lan := range s.LANs {
		for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
			for _, p := range s.BypassDst {
				if famOf(p) != fam {
					continue
				}
				r := rule(fam, s.Priority)
				r.IifName = lan
				r.Dst = ipNet(p)
				r.Goto = skip
				out = append(out, r)
			}
			for _, p := range s.BypassSrc {
				if famOf(p) != fam {
					continue
				}
				r := rule(fam, s.Priority)
				r.IifName = lan
				r.Src = ipNet(p)
				r.Goto = skip
				out = append(out, r)
			}
			for _, pr := range s.BypassPorts {
				r := rule(fam, s.Priority)
				r.IifName = lan
				r.IPProto = unix.IPPROTO_TCP
				r.Dport = netlink.NewRulePortRange(pr.First, pr.Last)
				r.Goto = skip
				out = append(out, r)
			}
		}
	}
	for _, lan := range s.LANs {
		for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
			r := rule(fam, s.Priority+1)
			r.IifName = lan
			r.IPProto = unix.IPPROTO_TCP
			r.Table = s.Table
			out = append(out, r)
		}
	}
	return out
}

// frActNop is the fib rule action "nop" (FR_ACT_NOP): match and continue.
const frActNop = 3

// Remove deletes the rules and routes Install added, in reverse order (the
// steering rules first), and tolerates ones already gone: closing the TUN
// removes its routes. It is idempotent and safe after a failed Install.
func (s *Steering) Remove() error {
	st := s.state
	if st == nil {
		return nil
	}
	s.state = nil
	defer st.h.Close()
	var errs []error
	for i := len(st.rules) - 1; i >= 0; i-- {
		r := st.rules[i]
		if err := st.h.RuleDel(r); err != nil && !isGone(err) {
			errs = append(errs, fmt.Errorf("removing steering: deleting rule %s: %w", describeRule(r), err))
		}
	}
	for _, r := range st.routes {
		if err := st.h.RouteDel(r); err != nil && !isGone(err) {
			errs = append(errs, fmt.Errorf("removing steering: deleting route %v from table %d: %w", r.Dst, r.Table, err))
		}
	}
	return errors.Join(errs...)
}

// CleanStale deletes every rule tagged RouteProtocol with a priority in
// Priority..Priority+2 and every route tagged RouteProtocol in Table, which is
// what a run that crashed before Remove leaves behind. Install calls it first;
// calling it on its own, for example from an ExecStopPost hook, is also safe.
func (s *Steering) CleanStale() error {
	h, err := s.handle()
	if err != nil {
		return fmt.Errorf("cleaning stale steering: %w", err)
	}
	defer h.Close()
	return cleanStale(h, s.Table, s.Priority)
}

func cleanStale(h *netlink.Handle, table, prio int) error {
	var errs []error
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		rules, err := h.RuleList(fam)
		if err != nil {
			errs = append(errs, fmt.Errorf("cleaning stale steering: listing rules: %w", err))
			continue
		}
		for i := range rules {
			r := &rules[i]
			if r.Protocol != RouteProtocol || r.Priority < prio || r.Priority > prio+2 {
				continue
			}
			if err := h.RuleDel(r); err != nil && !isGone(err) {
				errs = append(errs, fmt.Errorf("cleaning stale steering: deleting rule %s: %w", describeRule(r), err))
			}
		}
		routes, err := h.RouteListFiltered(fam, &netlink.Route{Table: table, Protocol: RouteProtocol},
			netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
		if err != nil {
			errs = append(errs, fmt.Errorf("cleaning stale steering: listing routes in table %d: %w", table, err))
			continue
		}
		for i := range routes {
			if err := h.RouteDel(&routes[i]); err != nil && !isGone(err) {
				errs = append(errs, fmt.Errorf("cleaning stale steering: deleting route %v from table %d: %w", routes[i].Dst, table, err))
			}
		}
	}
	return errors.Join(errs...)
}

// isGone reports whether a delete failed only because the object no longer
// exists (removed by hand, or with its device).
func isGone(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENODEV)
}

func famOf(p netip.Prefix) int {
	if p.Addr().Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

func ipNet(p netip.Prefix) *net.IPNet {
	p = p.Masked()
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// describeRule renders a rule the way `ip rule` would, for error messages.
func describeRule(r *netlink.Rule) string {
	s := fmt.Sprintf("pref %d", r.Priority)
	if r.Family == unix.AF_INET6 {
		s = "-6 " + s
	}
	if r.IifName != "" {
		s += " iif " + r.IifName
	}
	if r.Src != nil {
		s += " from " + r.Src.String()
	}
	if r.Dst != nil {
		s += " to " + r.Dst.String()
	}
	if r.IPProto != 0 {
		s += fmt.Sprintf(" ipproto %d", r.IPProto)
	}
	if r.Dport != nil {
		s += fmt.Sprintf(" dport %d-%d", r.Dport.Start, r.Dport.End)
	}
	switch {
	case r.Goto >= 0:
		s += fmt.Sprintf(" goto %d", r.Goto)
	case r.Type == frActNop:
		s += " nop"
	case r.Table != 0:
		s += fmt.Sprintf(" lookup %d", r.Table)
	}
	return s
}
