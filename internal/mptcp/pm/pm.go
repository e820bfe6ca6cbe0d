package pm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/mdlayher/netlink"
)

// Generic netlink names and numbers from include/uapi/linux/mptcp_pm.h.
const (
	familyName  = "mptcp_pm"
	familyVer   = 1
	eventsGroup = "mptcp_pm_events"

	cmdAddAddr    = 1
	cmdDelAddr    = 2
	cmdGetAddr    = 3
	cmdFlushAddrs = 4
	cmdSetLimits  = 5
	cmdGetLimits  = 6
	cmdSetFlags   = 7

	attrAddr        = 1 // nested address
	attrRcvAddAddrs = 2 // u32
	attrSubflows    = 3 // u32

	addrAttrFamily = 1 // u16
	addrAttrID     = 2 // u8
	addrAttrAddr4  = 3 // 4 bytes, network order
	addrAttrAddr6  = 4 // 16 bytes
	addrAttrPort   = 5 // u16, host order
	addrAttrFlags  = 6 // u32
	addrAttrIfIdx  = 7 // s32

	afInet  = 2
	afInet6 = 10
)

// Flags are endpoint flags (MPTCP_PM_ADDR_FLAG_*).
type Flags uint32

const (
	// Signal: announce the address to the peer with ADD_ADDR.
	Signal Flags = 1 << 0
	// Subflow: open an extra subflow from this address to the peer's
	// initial address. hcpe's uplinks use this.
	Subflow Flags = 1 << 1
	// Backup: subflows from this address carry data only when no
	// non-backup subflow is usable. Changing it on a live endpoint sends
	// MP_PRIO on its subflows.
	Backup Flags = 1 << 2
	// Fullmesh: one subflow per known peer address. Not with Signal.
	Fullmesh Flags = 1 << 3
	// Implicit marks endpoints the kernel created for addresses in use
	// (e.g. the initial subflow); users cannot set it.
	Implicit Flags = 1 << 4
	// Laminar (Linux 6.18): subflows from this address to addresses the
	// peer announces, one per address.
	Laminar Flags = 1 << 5
)

var flagNames = []struct {
	f    Flags
	name string
}{{Signal, "signal"}, {Subflow, "subflow"}, {Backup, "backup"}, {Fullmesh, "fullmesh"}, {Implicit, "implicit"}, {Laminar, "laminar"}}

// String gives the flags as `ip mptcp endpoint` prints them.
func (f Flags) String() string {
	var parts []string
	for _, n := range flagNames {
		if f&n.f != 0 {
			parts = append(parts, n.name)
			f &^= n.f
		}
	}
	if f != 0 {
		parts = append(parts, fmt.Sprintf("%#x", uint32(f)))
	}
	return strings.Join(parts, " ")
}

// Endpoint is one local address the in-kernel path manager may use.
type Endpoint struct {
	// ID is 1–255; 0 on AddEndpoint lets the kernel pick.
	ID uint8
	// Addr is the local address. Required.
	Addr netip.Addr
	// Port, if non-zero, is the port a Signal endpoint announces (and
	// listens on).
	Port uint16
	// IfIndex binds the endpoint's subflows to a device: always set it,
	// or they leave by whatever route the kernel picks. The kernel stores
	// the index, so an endpoint on a recreated device must be re-added.
	IfIndex int
	Flags   Flags
}

// Limits are the per-connection limits of the in-kernel path manager,
// applied in the whole netns.
type Limits struct {
	// Subflows is the maximum number of extra subflows per connection
	// (default 2; the kernel rejects more than 8).
	Subflows uint32
	// AddAddrAccepted is the maximum number of ADD_ADDRs accepted from the
	// peer per connection (default 0).
	AddAddrAccepted uint32
}

// ErrNotFound reports that an endpoint does not exist.
var ErrNotFound = errors.New("pm: endpoint not found")

// encodeAddr writes the fields of an address nest. withID/withFamily select
// how the request is addressed: the kernel looks an endpoint up by id when
// the family is absent and by address otherwise.
func encodeAddr(ae *netlink.AttributeEncoder, e Endpoint, withFamily bool) error {
	if withFamily {
		a := e.Addr.Unmap()
		switch {
		case a.Is4():
			ae.Uint16(addrAttrFamily, afInet)
			b := a.As4()
			ae.Bytes(addrAttrAddr4, b[:])
		case a.Is6():
			ae.Uint16(addrAttrFamily, afInet6)
			b := a.As16()
			ae.Bytes(addrAttrAddr6, b[:])
		default:
			return fmt.Errorf("pm: endpoint needs an address, got %v", e.Addr)
		}
	}
	if e.ID != 0 {
		ae.Uint8(addrAttrID, e.ID)
	}
	if e.Port != 0 {
		ae.Uint16(addrAttrPort, e.Port) // host order, see package doc
	}
	if e.Flags != 0 {
		ae.Uint32(addrAttrFlags, uint32(e.Flags))
	}
	if e.IfIndex != 0 {
		ae.Int32(addrAttrIfIdx, int32(e.IfIndex))
	}
	return nil
}

// encodeAddrRequest builds the attributes of a request carrying one
// address nest (ADD_ADDR, DEL_ADDR, SET_FLAGS, GET_ADDR do).
func encodeAddrRequest(e Endpoint, withFamily bool) ([]byte, error) {
	ae := netlink.NewAttributeEncoder()
	var ferr error
	ae.Nested(attrAddr, func(nae *netlink.AttributeEncoder) error {
		ferr = encodeAddr(nae, e, withFamily)
		return ferr
	})
	if ferr != nil {
		return nil, ferr
	}
	return ae.Encode()
}

// encodeLimits builds a SET_LIMITS request.
func encodeLimits(l Limits) ([]byte, error) {
	ae := netlink.NewAttributeEncoder()
	ae.Uint32(attrRcvAddAddrs, l.AddAddrAccepted)
	ae.Uint32(attrSubflows, l.Subflows)
	return ae.Encode()
}

// decodeLimits decodes a GET_LIMITS reply.
func decodeLimits(b []byte) (Limits, error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return Limits{}, fmt.Errorf("pm: decoding limits: %w", err)
	}
	var l Limits
	for ad.Next() {
		switch ad.Type() {
		case attrRcvAddAddrs:
			l.AddAddrAccepted = ad.Uint32()
		case attrSubflows:
			l.Subflows = ad.Uint32()
		}
	}
	if err := ad.Err(); err != nil {
		return Limits{}, fmt.Errorf("pm: decoding limits: %w", err)
	}
	return l, nil
}

// decodeEndpoint decodes a GET_ADDR reply: the attributes of one message,
// holding the address nest.
func decodeEndpoint(b []byte) (Endpoint, error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return Endpoint{}, fmt.Errorf("pm: decoding endpoint: %w", err)
	}
	var e Endpoint
	found := false
	for ad.Next() {
		if ad.Type() != attrAddr {
			continue
		}
		found = true
		ad.Nested(func(nad *netlink.AttributeDecoder) error {
			var err error
			e, err = decodeAddrNest(nad)
			return err
		})
	}
	if err := ad.Err(); err != nil {
		return Endpoint{}, fmt.Errorf("pm: decoding endpoint: %w", err)
	}
	if !found {
		return Endpoint{}, errors.New("pm: decoding endpoint: no address attribute")
	}
	return e, nil
}

func decodeAddrNest(nad *netlink.AttributeDecoder) (Endpoint, error) {
	var e Endpoint
	var family uint16
	for nad.Next() {
		switch nad.Type() {
		case addrAttrFamily:
			family = nad.Uint16()
		case addrAttrID:
			e.ID = nad.Uint8()
		case addrAttrAddr4:
			b := nad.Bytes()
			if len(b) != 4 {
				return e, fmt.Errorf("IPv4 address of %d bytes", len(b))
			}
			e.Addr = netip.AddrFrom4([4]byte(b))
		case addrAttrAddr6:
			b := nad.Bytes()
			if len(b) != 16 {
				return e, fmt.Errorf("IPv6 address of %d bytes", len(b))
			}
			e.Addr = netip.AddrFrom16([16]byte(b))
		case addrAttrPort:
			e.Port = nad.Uint16()
		case addrAttrFlags:
			e.Flags = Flags(nad.Uint32())
		case addrAttrIfIdx:
			e.IfIndex = int(nad.Int32())
		}
	}
	if err := nad.Err(); err != nil {
		return e, err
	}
	if (family == afInet && !e.Addr.Is4()) || (family == afInet6 && !e.Addr.Is6()) {
		return e, fmt.Errorf("family %d does not match address %v", family, e.Addr)
	}
	return e, nil
}

// EventType is an MPTCP path-manager event (enum mptcp_event_type).
type EventType uint8

const (
	EventCreated         EventType = 1  // connection created (SYN); token, addresses
	EventEstablished     EventType = 2  // MP_CAPABLE handshake complete
	EventClosed          EventType = 3  // connection gone; token only
	EventAnnounced       EventType = 6  // peer announced an address (ADD_ADDR)
	EventRemoved         EventType = 7  // peer removed an address
	EventSubEstablished  EventType = 10 // a subflow joined
	EventSubClosed       EventType = 11 // a subflow closed; Error may say why
	EventSubPriority     EventType = 13 // a subflow's backup flag changed (MP_PRIO)
	EventListenerCreated EventType = 15
	EventListenerClosed  EventType = 16

	// EventLost is not a kernel event: the socket buffer overflowed and
	// events were dropped, so state derived from events may be stale.
	EventLost EventType = 255
)

var eventNames = map[EventType]string{
	EventCreated: "created", EventEstablished: "established", EventClosed: "closed",
	EventAnnounced: "announced", EventRemoved: "removed",
	EventSubEstablished: "sf_established", EventSubClosed: "sf_closed", EventSubPriority: "sf_priority",
	EventListenerCreated: "listener_created", EventListenerClosed: "listener_closed", EventLost: "lost",
}

// String gives the name `ip mptcp monitor` uses, in lower case.
func (t EventType) String() string {
	if n, ok := eventNames[t]; ok {
		return n
	}
	return fmt.Sprintf("event(%d)", uint8(t))
}

// Event attribute numbers (enum mptcp_event_attr).
const (
	evToken       = 1  // u32
	evFamily      = 2  // u16
	evLocID       = 3  // u8
	evRemID       = 4  // u8
	evSaddr4      = 5  // be32
	evSaddr6      = 6  // 16 bytes
	evDaddr4      = 7  // be32
	evDaddr6      = 8  // 16 bytes
	evSport       = 9  // be16
	evDport       = 10 // be16
	evBackup      = 11 // u8
	evError       = 12 // u8
	evFlags       = 13 // u16
	evTimeout     = 14 // u32
	evIfIdx       = 15 // s32
	evResetReason = 16 // u32
	evResetFlags  = 17 // u32
	evServerSide  = 18 // u8
)

// Event is one path-manager event. Which fields are set depends on Type
// (see include/uapi/linux/mptcp_pm.h); absent ones are zero.
type Event struct {
	Type EventType
	// Token identifies the connection; ConnInfo.Token of the socket.
	Token uint32
	// Family is AF_INET (2) or AF_INET6 (10).
	Family       uint16
	LocalID      uint8
	RemoteID     uint8
	Local        netip.AddrPort
	Remote       netip.AddrPort
	Backup       bool
	IfIndex      int
	Error        uint8 // sk_err of a closed subflow (an errno)
	Flags        uint16
	Timeout      uint32
	ResetReason  uint32
	ResetFlags   uint32
	ServerSide   bool
	HasIfIndex   bool
	HasBackup    bool
	HasErrorAttr bool
}

// decodeEvent decodes the attributes of one event message.
func decodeEvent(cmd uint8, b []byte) (Event, error) {
	ev := Event{Type: EventType(cmd)}
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return ev, fmt.Errorf("pm: decoding %v event: %w", ev.Type, err)
	}
	var saddr, daddr netip.Addr
	var sport, dport uint16
	addr := func(n int) netip.Addr {
		b := ad.Bytes()
		if len(b) != n {
			err = fmt.Errorf("address attribute %d of %d bytes", ad.Type(), len(b))
			return netip.Addr{}
		}
		if n == 4 {
			return netip.AddrFrom4([4]byte(b))
		}
		return netip.AddrFrom16([16]byte(b))
	}
	be16 := func() uint16 {
		b := ad.Bytes()
		if len(b) != 2 {
			err = fmt.Errorf("port attribute %d of %d bytes", ad.Type(), len(b))
			return 0
		}
		return binary.BigEndian.Uint16(b)
	}
	for ad.Next() && err == nil {
		switch ad.Type() {
		case evToken:
			ev.Token = ad.Uint32()
		case evFamily:
			ev.Family = ad.Uint16()
		case evLocID:
			ev.LocalID = ad.Uint8()
		case evRemID:
			ev.RemoteID = ad.Uint8()
		case evSaddr4, evSaddr6:
			saddr = addr(map[uint16]int{evSaddr4: 4, evSaddr6: 16}[ad.Type()])
		case evDaddr4, evDaddr6:
			daddr = addr(map[uint16]int{evDaddr4: 4, evDaddr6: 16}[ad.Type()])
		case evSport:
			sport = be16()
		case evDport:
			dport = be16()
		case evBackup:
			ev.Backup, ev.HasBackup = ad.Uint8() != 0, true
		case evError:
			ev.Error, ev.HasErrorAttr = ad.Uint8(), true
		case evFlags:
			ev.Flags = ad.Uint16()
		case evTimeout:
			ev.Timeout = ad.Uint32()
		case evIfIdx:
			ev.IfIndex, ev.HasIfIndex = int(ad.Int32()), true
		case evResetReason:
			ev.ResetReason = ad.Uint32()
		case evResetFlags:
			ev.ResetFlags = ad.Uint32()
		case evServerSide:
			ev.ServerSide = ad.Uint8() != 0
		}
	}
	if err == nil {
		err = ad.Err()
	}
	if err != nil {
		return ev, fmt.Errorf("pm: decoding %v event: %w", ev.Type, err)
	}
	if saddr.IsValid() {
		ev.Local = netip.AddrPortFrom(saddr.Unmap(), sport)
	}
	if daddr.IsValid() {
		ev.Remote = netip.AddrPortFrom(daddr.Unmap(), dport)
	}
	return ev, nil
}
