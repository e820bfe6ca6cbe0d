package convert

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

const (
	// cookieV1 is the token before key ids: no Key ID, no nonce. hag still
	// accepts it, as key id 0, from hcpe builds that predate key rotation.
	cookieV1 = 1
	// cookieV2 carries a Key ID and a random nonce, so that every cookie
	// is distinct and a converter can accept each one once.
	cookieV2       = 2
	cookieMACLen   = 16
	cookieNonceLen = 8
	// MaxCPEIDLen bounds the CPE ID in a cookie; it keeps the token well
	// inside one Convert message beside a Connect and a Client Address.
	MaxCPEIDLen = 64
	cookieLabel = "hybridgw convert cookie v1"
)

// CookieKey is one key of a CPE: the secret and the id its cookies name,
// so that a converter can hold two keys of a CPE during a rotation.
type CookieKey struct {
	ID     uint8
	Secret []byte
}

// Cookie is what a verified cookie says.
type Cookie struct {
	CPEID  string
	KeyID  uint8
	Issued int64 // unix seconds
	// Tag names this cookie among all others (the first 8 bytes of its
	// MAC): a replay carries the same tag, and nobody without the key can
	// make a cookie with a chosen one.
	Tag uint64
}

// cookieError is a cookie rejection; every one is answered with Not
// Authorized (§6.2.7).
type cookieError struct{ s string }

func (e *cookieError) Error() string          { return e.s }
func (e *cookieError) ConvertCode() ErrorCode { return NotAuthorized }

// Cookie rejections, distinct so hag can count them apart.
var (
	ErrCookieMalformed  error = &cookieError{"convert: malformed cookie"}
	ErrCookieUnknownCPE error = &cookieError{"convert: cookie names an unknown CPE"}
	ErrCookieUnknownKey error = &cookieError{"convert: cookie names a key id the CPE does not have"}
	ErrCookieBadMAC     error = &cookieError{"convert: cookie MAC does not verify"}
	ErrCookieExpired    error = &cookieError{"convert: cookie time outside the allowed skew"}
)

// MakeCookie returns a version 2 cookie token (see the package doc) that
// authorises CPE cpeID, with key, to Connect to dst for LAN source client
// (the zero AddrPort when the Connect carries no Client Address TLV),
// stamped with now and a fresh random nonce: two calls never return the
// same cookie, so a retry needs a new one.
func MakeCookie(key CookieKey, cpeID string, now time.Time, dst, client netip.AddrPort) ([]byte, error) {
	var nonce [cookieNonceLen]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, fmt.Errorf("convert: cookie nonce: %w", err)
	}
	return appendCookie(nil, key, cpeID, now.Unix(), nonce, dst, client)
}

func appendCookie(b []byte, key CookieKey, cpeID string, issued int64, nonce [cookieNonceLen]byte, dst, client netip.AddrPort) ([]byte, error) {
	if len(key.Secret) == 0 {
		return nil, errors.New("convert: empty cookie key")
	}
	if len(cpeID) == 0 || len(cpeID) > MaxCPEIDLen {
		return nil, fmt.Errorf("convert: CPE ID length %d outside 1..%d", len(cpeID), MaxCPEIDLen)
	}
	start := len(b)
	b = append(b, cookieV2, key.ID, byte(len(cpeID)))
	b = append(b, cpeID...)
	b = append(b, nonce[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(issued))
	return append(b, cookieMAC(key.Secret, b[start:], dst, client)...), nil
}

// VerifyCookie checks a cookie from a Cookie TLV (zero padding allowed)
// against the Connect it came with and returns what it says. keys maps a
// CPE ID to its keys (false: no such CPE). The issue time must lie within
// maxSkew of now in either direction, which tolerates clock drift as well
// as age. A version 1 token names key id 0.
func VerifyCookie(cookie []byte, keys func(cpeID string) ([]CookieKey, bool),
	dst, client netip.AddrPort, now time.Time, maxSkew time.Duration) (Cookie, error) {
	var c Cookie
	if len(cookie) < 3 {
		return c, ErrCookieMalformed
	}
	var idAt int // where ID Length is
	switch cookie[0] {
	case cookieV1:
		idAt = 1
	case cookieV2:
		idAt, c.KeyID = 2, cookie[1]
	default:
		return c, ErrCookieMalformed
	}
	idLen := int(cookie[idAt])
	n := idAt + 1 + idLen + 8 + cookieMACLen
	if cookie[0] == cookieV2 {
		n += cookieNonceLen
	}
	if idLen == 0 || idLen > MaxCPEIDLen || len(cookie) < n || len(cookie)-n > 3 {
		return c, ErrCookieMalformed
	}
	for _, b := range cookie[n:] {
		if b != 0 {
			return c, ErrCookieMalformed
		}
	}
	c.CPEID = string(cookie[idAt+1 : idAt+1+idLen])
	ks, ok := keys(c.CPEID)
	if !ok {
		return c, fmt.Errorf("%w: %q", ErrCookieUnknownCPE, c.CPEID)
	}
	var secret []byte
	for _, k := range ks {
		if k.ID == c.KeyID {
			secret = k.Secret
		}
	}
	if len(secret) == 0 {
		// An empty key would make every MAC computable by anyone.
		return c, fmt.Errorf("%w (CPE %q, key id %d)", ErrCookieUnknownKey, c.CPEID, c.KeyID)
	}
	body, mac := cookie[:n-cookieMACLen], cookie[n-cookieMACLen:n]
	// MAC before time: an unauthenticated timestamp must not decide anything.
	if !hmac.Equal(mac, cookieMAC(secret, body, dst, client)) {
		return c, fmt.Errorf("%w (CPE %q, key id %d)", ErrCookieBadMAC, c.CPEID, c.KeyID)
	}
	c.Issued = int64(binary.BigEndian.Uint64(body[len(body)-8:]))
	c.Tag = binary.BigEndian.Uint64(mac)
	if d := now.Unix() - c.Issued; d > int64(maxSkew/time.Second) || -d > int64(maxSkew/time.Second) {
		return c, fmt.Errorf("%w (CPE %q, issued %ds from now)", ErrCookieExpired, c.CPEID, -d)
	}
	return c, nil
}

// cookieMAC binds the token body to the Connect it authorises. Addresses go
// in as 16 bytes so an IPv4 address and its ::ffff: form agree, matching
// what the wire carries.
func cookieMAC(key, body []byte, dst, client netip.AddrPort) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(cookieLabel))
	h.Write(body)
	var a [1 + 2*18]byte
	b := appendAddrPort(a[:0], dst)
	if client.IsValid() {
		b = appendAddrPort(append(b, 1), client)
	} else {
		b = append(b, 0)
	}
	h.Write(b)
	return h.Sum(nil)[:cookieMACLen]
}
