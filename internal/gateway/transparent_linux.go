package gateway

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"hybridgw/internal/config"
)

// nftTable is the nftables table hag owns; it is deleted and re-created at
// start, so a crashed run leaves nothing that the next one does not replace.
const nftTable = "hybridgw_hag"

// transparent is the routing that delivers a server's replies to hag's
// sockets bound to client addresses (machine-facts §6, recipe B): packets
// for a transparent socket get a mark, the mark selects a table whose
// default route is local. Without it the SYN+ACK would be forwarded on, or
// answered with an ICMP unreachable, and every preserved-source dial would
// time out.
type transparent struct {
	cfg config.Transparent
}

// installTransparent installs the nftables mark rule, the fwmark rules and
// the local routes for both families. Leftovers of an earlier run are
// replaced.
func installTransparent(cfg config.Transparent) (*transparent, error) {
	t := &transparent{cfg: cfg}
	_ = t.remove() // stale state from a crashed run
	if err := t.installNFT(); err != nil {
		return nil, fmt.Errorf("installing nftables table %s (needs CAP_NET_ADMIN and nf_tables with the socket expression): %w", nftTable, err)
	}
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		if err := netlink.RuleAdd(t.rule(fam)); err != nil && !errors.Is(err, unix.EEXIST) {
			_ = t.remove()
			return nil, fmt.Errorf("adding fwmark %#x rule to table %d (%s): %w", cfg.Mark, cfg.Table, famName(fam), err)
		}
		if err := netlink.RouteReplace(t.route(fam)); err != nil {
			_ = t.remove()
			return nil, fmt.Errorf("adding local default route to table %d (%s): %w", cfg.Table, famName(fam), err)
		}
	}
	return t, nil
}

func famName(fam int) string {
	if fam == unix.AF_INET {
		return "IPv4"
	}
	return "IPv6"
}

func (t *transparent) rule(fam int) *netlink.Rule {
	r := netlink.NewRule()
	r.Family = fam
	r.Priority = t.cfg.RulePriority
	r.Mark = uint32(t.cfg.Mark)
	r.Table = t.cfg.Table
	return r
}

func (t *transparent) route(fam int) *netlink.Route {
	lo, _ := net.InterfaceByName("lo")
	idx := 1
	if lo != nil {
		idx = lo.Index
	}
	dst := &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
	if fam == unix.AF_INET6 {
		dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
	}
	return &netlink.Route{Family: fam, Dst: dst, Table: t.cfg.Table, Type: unix.RTN_LOCAL, Scope: netlink.SCOPE_HOST, LinkIndex: idx}
}

func (t *transparent) installNFT() error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	tbl := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: nftTable})
	ch := c.AddChain(&nftables.Chain{
		Name: "prerouting", Table: tbl, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityMangle,
	})
	mark := make([]byte, 4)
	binary.NativeEndian.PutUint32(mark, uint32(t.cfg.Mark))
	// meta l4proto tcp socket transparent 1 meta mark set MARK
	c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Socket{Key: expr.SocketKeyTransparent, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{1}},
		&expr.Immediate{Register: 1, Data: mark},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
	}})
	return c.Flush()
}

// remove deletes everything install added; what is already gone is fine.
func (t *transparent) remove() error {
	var errs []error
	if c, err := nftables.New(); err == nil {
		c.DelTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: nftTable})
		if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("deleting nftables table %s: %w", nftTable, err))
		}
	}
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		for netlink.RuleDel(t.rule(fam)) == nil {
		}
		if err := netlink.RouteDel(t.route(fam)); err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("deleting local route in table %d: %w", t.cfg.Table, err))
		}
	}
	return errors.Join(errs...)
}
