package gateway

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"hybridgw/internal/config"
	"hybridgw/internal/convert"
	"hybridgw/internal/replay"
)

// refusal is a decision to answer with a Convert Error TLV. Why is for the
// log line an operator reads at 3am; the client only sees the code.
type refusal struct {
	code convert.ErrorCode
	tlv  convert.ErrorTLV
	why  string
	// reason, when set, is the hag_refusals_total label this refusal counts
	// under.
	reason string
}

func (r *refusal) Error() string { return r.code.String() + ": " + r.why }

func refuse(code convert.ErrorCode, why string) *refusal {
	return &refusal{code: code, tlv: convert.NewError(code, 0), why: why}
}

// authorize decides which CPE a request comes from, from the connection's
// source address and the Cookie TLV, per each CPE's auth mode:
//
//   - cookie: the cookie must verify with the key of the CPE it names (the
//     key id the cookie names, among the CPE's one or two keys);
//   - source: the peer address must lie in the CPE's WAN prefixes;
//   - cookie+source: both, for the same CPE.
//
// A request without a cookie from a source that only a cookie CPE covers is
// answered Missing Cookie (3), which tells an RFC client what to add. The
// verified cookie is returned too (nil without one): whether it was used
// before is decided later (Gateway.decide), once the flow is admitted.
func authorize(cfg *config.HAG, peer netip.Addr, m *convert.Msg, now time.Time) (*config.CPE, *convert.Cookie, *refusal) {
	peer = peer.Unmap()
	if m.Cookie != nil {
		keys := func(id string) ([]convert.CookieKey, bool) {
			c := cfg.CPEByID(id)
			if c == nil || c.Auth == "source" {
				return nil, false
			}
			ks := make([]convert.CookieKey, len(c.CookieKeys))
			for i, k := range c.CookieKeys {
				ks[i] = convert.CookieKey{ID: uint8(k.ID), Secret: k.Raw}
			}
			return ks, true
		}
		ck, err := convert.VerifyCookie(m.Cookie, keys, m.Connect.Dst, m.ClientAddr, now, cfg.Limits.CookieMaxSkew)
		if err != nil {
			r := refuse(convert.NotAuthorized, "cookie from "+peer.String()+" rejected: "+err.Error())
			r.reason = cookieReason(err)
			return nil, nil, r
		}
		c := cfg.CPEByID(ck.CPEID)
		if c.Auth == "cookie+source" && !inAny(peer, c.WAN) {
			return nil, nil, refuse(convert.NotAuthorized, "CPE "+ck.CPEID+" connected from "+peer.String()+", outside its wan_prefixes")
		}
		return c, &ck, nil
	}
	var needsCookie *config.CPE
	for i := range cfg.CPEs {
		c := &cfg.CPEs[i]
		if !inAny(peer, c.WAN) {
			continue
		}
		if c.Auth == "source" {
			return c, nil, nil
		}
		needsCookie = c
	}
	if needsCookie != nil {
		return nil, nil, &refusal{code: convert.MissingCookie, tlv: convert.NewError(convert.MissingCookie, 0),
			why: "no cookie from " + peer.String() + " (CPE " + needsCookie.ID + " authenticates by cookie)"}
	}
	return nil, nil, refuse(convert.NotAuthorized, "no CPE is configured for source "+peer.String())
}

// cookieReason is the hag_refusals_total reason of a cookie that did not
// verify. unknown_key is what a CPE still on a key removed after a
// rotation produces.
func cookieReason(err error) string {
	switch {
	case errors.Is(err, convert.ErrCookieUnknownCPE):
		return "cookie_unknown_cpe"
	case errors.Is(err, convert.ErrCookieUnknownKey):
		return "cookie_unknown_key"
	case errors.Is(err, convert.ErrCookieExpired):
		return "cookie_expired"
	}
	return "cookie_invalid"
}

// useCookie accepts a verified cookie once: the first use is remembered
// until the cookie expires, a second is refused Not Authorized (RFC 8803
// §6.2.8: an invalid Cookie TLV). When the filter is at its bound, hag
// cannot tell, so the flow is refused Resource Exceeded rather than risk
// accepting a replay.
func useCookie(f *replay.Filter, ck *convert.Cookie, now time.Time, backoff time.Duration) *refusal {
	switch f.Add(ck.Tag, ck.Issued, now) {
	case replay.Replayed:
		return replayed(ck)
	case replay.Full:
		r := refuse(convert.ResourceExceeded, "cookie replay filter full (limits.cookie_replay_entries)")
		r.tlv = convert.NewError(convert.ResourceExceeded, backOffSeconds(backoff))
		r.reason = "cookie_replay_full"
		return r
	}
	return nil
}

func replayed(ck *convert.Cookie) *refusal {
	r := refuse(convert.NotAuthorized, fmt.Sprintf("cookie of CPE %s (key id %d, issued %d) was used before", ck.CPEID, ck.KeyID, ck.Issued))
	r.reason = "cookie_replay"
	return r
}

func inAny(a netip.Addr, ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// checkDestination refuses what a converter must never connect to: itself
// (an open relay into its own services), loopback, link-local, multicast,
// unspecified; the IANA special-purpose ranges unless allow opens them
// (specialPurpose); and the operator's denied prefixes, which win over
// allow. All are answered Not Authorized, RFC 8803's code for
// "administratively prohibited".
func checkDestination(dst netip.Addr, own func(netip.Addr) bool, allow, deny []netip.Prefix) *refusal {
	dst = dst.Unmap()
	if name, hard := specialPurpose(dst); name != "" && (hard || !inAny(dst, allow)) {
		r := refuse(convert.NotAuthorized, "destination "+dst.String()+" is special-purpose ("+name+")")
		r.reason = "destination_special"
		return r
	}
	if own != nil && own(dst) {
		r := refuse(convert.NotAuthorized, "destination "+dst.String()+" is one of hag's own addresses")
		r.reason = "destination_self"
		return r
	}
	if inAny(dst, deny) {
		r := refuse(convert.NotAuthorized, "destination "+dst.String()+" is in deny.destinations")
		r.reason = "destination_denied"
		return r
	}
	return nil
}

// source is how hag binds its connection to the server.
type source struct {
	Addr        netip.AddrPort // zero: let the kernel choose
	Transparent bool           // Addr is not local: IP(V6)_TRANSPARENT
	Preserved   bool           // the server will see the client's address
}

// chooseSource picks the source of the server connection:
//
//   - the Client Address TLV's address when the family's egress policy is
//     "preserve" and the address lies in the CPE's client_prefixes; outside
//     them it is refused (32), never silently replaced, because a CPE that
//     asks for an address it does not own is spoofing. Under "share" the
//     TLV's address is not used, so it is not checked either;
//   - without the TLV, RFC 8803 address preservation: the peer's own
//     address when it lies in the CPE's client_prefixes;
//   - otherwise hag's shared address for the family ("" lets routing pick).
func chooseSource(cfg *config.HAG, cpe *config.CPE, peer netip.Addr, m *convert.Msg) (source, *refusal) {
	dst := m.Connect.Dst.Addr().Unmap()
	policy, shared := cfg.Egress.IPv6, cfg.Egress.Src6
	if dst.Is4() {
		policy, shared = cfg.Egress.IPv4, cfg.Egress.Src4
	}
	share := source{}
	if shared.IsValid() {
		share.Addr = netip.AddrPortFrom(shared, 0)
	}
	if ca := m.ClientAddr; ca.IsValid() {
		a := ca.Addr().Unmap()
		if policy != "preserve" || a.Is4() != dst.Is4() {
			// The address would not be used (a home LAN's private IPv4
			// behind address sharing): there is nothing to spoof.
			return share, nil
		}
		if !inAny(a, cpe.Clients) {
			return source{}, refuse(convert.NotAuthorized, "client address "+a.String()+" is outside the client_prefixes of CPE "+cpe.ID)
		}
		return source{Addr: netip.AddrPortFrom(a, ca.Port()), Transparent: true, Preserved: true}, nil
	}
	peer = peer.Unmap()
	if policy == "preserve" && peer.Is4() == dst.Is4() && inAny(peer, cpe.Clients) {
		return source{Addr: netip.AddrPortFrom(peer, 0), Transparent: true, Preserved: true}, nil
	}
	return share, nil
}

// supportedOptions are the TCP options hag's kernel negotiates with the
// server by itself (MSS, window scale, SACK, timestamps); an Extended
// Connect asking for anything else is answered Unsupported TCP Option.
var supportedOptions = [...]byte{2, 3, 4, 5, 8}

// checkOptions lists option kinds of an Extended Connect that hag cannot
// honour.
func checkOptions(opts []byte) *refusal {
	var bad []byte
	for i := 0; i < len(opts); {
		kind := opts[i]
		if kind == 0 {
			break
		}
		if kind == 1 {
			i++
			continue
		}
		if i+1 >= len(opts) || opts[i+1] < 2 {
			return refuse(convert.MalformedMessage, "Connect TCP options are malformed")
		}
		ok := false
		for _, s := range supportedOptions {
			ok = ok || s == kind
		}
		if !ok {
			bad = append(bad, kind)
		}
		i += int(opts[i+1])
	}
	if len(bad) == 0 {
		return nil
	}
	r := refuse(convert.UnsupportedTCPOption, "Connect asks for unsupported TCP options")
	r.tlv = convert.NewListError(convert.UnsupportedTCPOption, bad...)
	return r
}
