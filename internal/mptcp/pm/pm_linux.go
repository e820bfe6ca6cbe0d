package pm

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// PM is a path-manager client bound to one network namespace. Its methods
// are safe for concurrent use (requests are serialised on one socket).
type PM struct {
	c      *genetlink.Conn
	family genetlink.Family
	ns     *os.File // the netns, for the event socket

	closeOnce sync.Once
	closeErr  error
}

// Open connects to the mptcp_pm family in the calling thread's network
// namespace. It needs CAP_NET_ADMIN for every command but Limits.
func Open() (*PM, error) {
	// Remember the namespace now: Events opens another socket later,
	// perhaps from a thread in a different netns.
	ns, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil, fmt.Errorf("pm: opening current netns: %w", err)
	}
	c, err := genetlink.Dial(&netlink.Config{NetNS: int(ns.Fd())})
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("pm: dialing generic netlink: %w", err)
	}
	// The kernel explains EINVAL in an extended ACK ("address not found").
	if err := c.SetOption(netlink.ExtendedAcknowledge, true); err != nil {
		c.Close()
		ns.Close()
		return nil, fmt.Errorf("pm: enabling netlink extended ACKs: %w", err)
	}
	f, err := c.GetFamily(familyName)
	if err != nil {
		c.Close()
		ns.Close()
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("pm: generic netlink family %s not found (kernel without MPTCP?): %w", familyName, err)
		}
		return nil, fmt.Errorf("pm: resolving generic netlink family %s: %w", familyName, err)
	}
	return &PM{c: c, family: f, ns: ns}, nil
}

// Close releases the netlink socket. It is idempotent. Event subscriptions
// have their own sockets and end with their contexts.
func (p *PM) Close() error {
	p.closeOnce.Do(func() {
		p.closeErr = errors.Join(p.c.Close(), p.ns.Close())
	})
	return p.closeErr
}

func (p *PM) execute(cmd uint8, attrs []byte, flags netlink.HeaderFlags) ([]genetlink.Message, error) {
	return p.c.Execute(genetlink.Message{
		Header: genetlink.Header{Command: cmd, Version: familyVer},
		Data:   attrs,
	}, p.family.ID, netlink.Request|flags)
}

// SetLimits sets the netns-wide per-connection limits; they apply to
// connections created afterwards.
func (p *PM) SetLimits(l Limits) error {
	b, err := encodeLimits(l)
	if err != nil {
		return fmt.Errorf("pm: encoding limits: %w", err)
	}
	if _, err := p.execute(cmdSetLimits, b, netlink.Acknowledge); err != nil {
		return fmt.Errorf("pm: setting limits subflows %d add_addr_accepted %d: %w", l.Subflows, l.AddAddrAccepted, err)
	}
	return nil
}

// Limits reads the netns-wide limits.
func (p *PM) Limits() (Limits, error) {
	msgs, err := p.execute(cmdGetLimits, nil, 0)
	if err != nil {
		return Limits{}, fmt.Errorf("pm: reading limits: %w", err)
	}
	if len(msgs) != 1 {
		return Limits{}, fmt.Errorf("pm: reading limits: %d replies", len(msgs))
	}
	return decodeLimits(msgs[0].Data)
}

// AddEndpoint adds an endpoint and returns its id (the kernel's choice
// when e.ID is 0). Adding an address that already is an endpoint fails
// with EEXIST.
func (p *PM) AddEndpoint(e Endpoint) (uint8, error) {
	b, err := encodeAddrRequest(e, true)
	if err != nil {
		return 0, err
	}
	if _, err := p.execute(cmdAddAddr, b, netlink.Acknowledge); err != nil {
		return 0, fmt.Errorf("pm: adding endpoint %v: %w", e.Addr, err)
	}
	if e.ID != 0 {
		return e.ID, nil
	}
	// ADD_ADDR does not return the id it chose; find the endpoint, which
	// is unique by address and port.
	eps, err := p.Endpoints()
	if err != nil {
		return 0, fmt.Errorf("pm: finding id of new endpoint %v: %w", e.Addr, err)
	}
	for _, got := range eps {
		if got.Addr == e.Addr.Unmap() && got.Port == e.Port {
			return got.ID, nil
		}
	}
	return 0, fmt.Errorf("pm: new endpoint %v missing from the list: %w", e.Addr, ErrNotFound)
}

// DelEndpoint removes endpoint id; its subflows are closed and, for a
// signal endpoint, REMOVE_ADDR is sent. ErrNotFound if there is none.
func (p *PM) DelEndpoint(id uint8) error {
	if id == 0 {
		return errors.New("pm: deleting endpoint: id 0 is the initial subflow's address, not an endpoint")
	}
	b, err := encodeAddrRequest(Endpoint{ID: id}, false)
	if err != nil {
		return err
	}
	if _, err := p.execute(cmdDelAddr, b, netlink.Acknowledge); err != nil {
		return fmt.Errorf("pm: deleting endpoint %d: %w", id, notFound(err))
	}
	return nil
}

// Endpoint reads one endpoint by id.
func (p *PM) Endpoint(id uint8) (Endpoint, error) {
	b, err := encodeAddrRequest(Endpoint{ID: id}, false)
	if err != nil {
		return Endpoint{}, err
	}
	msgs, err := p.execute(cmdGetAddr, b, 0)
	if err != nil {
		return Endpoint{}, fmt.Errorf("pm: reading endpoint %d: %w", id, notFound(err))
	}
	if len(msgs) != 1 {
		return Endpoint{}, fmt.Errorf("pm: reading endpoint %d: %d replies", id, len(msgs))
	}
	return decodeEndpoint(msgs[0].Data)
}

// Endpoints lists all endpoints of the netns.
func (p *PM) Endpoints() ([]Endpoint, error) {
	msgs, err := p.execute(cmdGetAddr, nil, netlink.Dump)
	if err != nil {
		return nil, fmt.Errorf("pm: listing endpoints: %w", err)
	}
	out := make([]Endpoint, 0, len(msgs))
	for _, m := range msgs {
		e, err := decodeEndpoint(m.Data)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// SetFlags changes the backup and fullmesh flags of an endpoint (the only
// ones the kernel lets change), addressed by e.ID if non-zero, else by
// e.Addr (and e.Port). flags is the new full value of those two bits: a
// backup change sends MP_PRIO on the endpoint's live subflows.
func (p *PM) SetFlags(e Endpoint, flags Flags) error {
	req := Endpoint{ID: e.ID, Addr: e.Addr, Port: e.Port, Flags: flags}
	byAddr := e.ID == 0
	if byAddr && !e.Addr.IsValid() {
		return errors.New("pm: setting flags: endpoint needs an id or an address")
	}
	b, err := encodeAddrRequest(req, byAddr)
	if err != nil {
		return err
	}
	if _, err := p.execute(cmdSetFlags, b, netlink.Acknowledge); err != nil {
		return fmt.Errorf("pm: setting flags %q on endpoint %s: %w", flags, endpointName(e), notFound(err))
	}
	return nil
}

// Flush removes every endpoint of the netns.
func (p *PM) Flush() error {
	if _, err := p.execute(cmdFlushAddrs, nil, netlink.Acknowledge); err != nil {
		return fmt.Errorf("pm: flushing endpoints: %w", err)
	}
	return nil
}

func endpointName(e Endpoint) string {
	if e.ID != 0 {
		return fmt.Sprintf("id %d", e.ID)
	}
	if e.Port != 0 {
		return netip.AddrPortFrom(e.Addr, e.Port).String()
	}
	return e.Addr.String()
}

// notFound adds ErrNotFound to the kernel's answer for a missing endpoint:
// EINVAL with an extack such as "address not found" (6.x), or ENOENT.
func notFound(err error) error {
	var oe *netlink.OpError
	if errors.As(err, &oe) && (errors.Is(oe.Err, unix.ENOENT) ||
		errors.Is(oe.Err, unix.EINVAL) && strings.Contains(strings.ToLower(oe.Message), "not found")) {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}

// Events subscribes to the path-manager events of the PM's netns (it needs
// CAP_NET_ADMIN there). Events arrive on the channel until ctx ends or the
// socket fails; then the channel is closed. A consumer that falls behind
// makes the kernel drop events; that is reported as an EventLost event
// rather than silently.
func (p *PM) Events(ctx context.Context) (<-chan Event, error) {
	var group uint32
	for _, g := range p.family.Groups {
		if g.Name == eventsGroup {
			group = g.ID
		}
	}
	if group == 0 {
		return nil, fmt.Errorf("pm: family %s has no %s multicast group", familyName, eventsGroup)
	}
	c, err := genetlink.Dial(&netlink.Config{NetNS: int(p.ns.Fd())})
	if err != nil {
		return nil, fmt.Errorf("pm: dialing generic netlink for events: %w", err)
	}
	if err := c.JoinGroup(group); err != nil {
		c.Close()
		return nil, fmt.Errorf("pm: joining %s: %w", eventsGroup, err)
	}
	// A bigger buffer rides out bursts (many connections closing at once).
	// It cannot fail on a socket just opened; the kernel caps it at
	// net.core.rmem_max silently.
	_ = c.SetReadBuffer(1 << 20)
	ch := make(chan Event, 64)
	stop := context.AfterFunc(ctx, func() { c.Close() })
	go func() {
		defer close(ch)
		defer stop()
		defer c.Close()
		send := func(ev Event) bool {
			select {
			case ch <- ev:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for {
			msgs, _, err := c.Receive()
			if err != nil {
				if ctx.Err() == nil && errors.Is(err, unix.ENOBUFS) {
					if !send(Event{Type: EventLost}) {
						return
					}
					continue
				}
				return
			}
			for _, m := range msgs {
				ev, err := decodeEvent(m.Header.Command, m.Data)
				if err != nil {
					continue // one bad message should not end the stream
				}
				if !send(ev) {
					return
				}
			}
		}
	}()
	return ch, nil
}
