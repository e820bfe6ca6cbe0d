package convert

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

const (
	cookieVersion = 1
	cookieMACLen  = 16
	// MaxCPEIDLen bounds the CPE ID in a cookie; it keeps the token well
	// inside one Convert message beside a Connect and a Client Address.
	MaxCPEIDLen = 64
	cookieLabel = "hybridgw convert cookie v1"
)

// cookieError is a cookie rejection; every one is answered with Not
// Authorized (§6.2.7).
type cookieError struct{ s string }

func (e *cookieError) Error() string          { return e.s }
func (e *cookieError) ConvertCode() ErrorCode { return NotAuthorized }

// Cookie rejections, distinct so hag can count them apart.
var (
	ErrCookieMalformed  error = &cookieError{"convert: malformed cookie"}
	ErrCookieUnknownCPE error = &cookieError{"convert: cookie names an unknown CPE"}
	ErrCookieBadMAC     error = &cookieError{"convert: cookie MAC does not verify"}
	ErrCookieExpired    error = &cookieError{"convert: cookie time outside the allowed skew"}
)

// MakeCookie returns the cookie token (see the package doc) that authorises
// CPE cpeID to Connect to dst for LAN source client (the zero AddrPort when
// the Connect carries no Client Address TLV), stamped with now.
func MakeCookie(key []byte, cpeID string, now time.Time, dst, client netip.AddrPort) ([]byte, error) {
	if len(key) == 0 {
		return nil, errors.New("convert: empty cookie key")
	}
	if len(cpeID) == 0 || len(cpeID) > MaxCPEIDLen {
		return nil, fmt.Errorf("convert: CPE ID length %d outside 1..%d", len(cpeID), MaxCPEIDLen)
	}
	b := make([]byte, 0, 2+len(cpeID)+8+cookieMACLen)
	b = append(b, cookieVersion, byte(len(cpeID)))
	b = append(b, cpeID...)
	b = binary.BigEndian.AppendUint64(b, uint64(now.Unix()))
	return append(b, cookieMAC(key, b, dst, client)...), nil
}

// VerifyCookie checks a cookie from a Cookie TLV (zero padding allowed)
// against the Connect it came with and returns the CPE it names. lookupKey
// maps a CPE ID to its key. The issue time must lie within maxSkew of now
// in either direction, which tolerates clock drift as well as age.
func VerifyCookie(cookie []byte, lookupKey func(cpeID string) ([]byte, bool),
	dst, client netip.AddrPort, now time.Time, maxSkew time.Duration) (string, error) {
	if len(cookie) < 2 || cookie[0] != cookieVersion {
		return "", ErrCookieMalformed
	}
	idLen := int(cookie[1])
	n := 2 + idLen + 8 + cookieMACLen
	if idLen == 0 || idLen > MaxCPEIDLen || len(cookie) < n || len(cookie)-n > 3 {
		return "", ErrCookieMalformed
	}
	for _, c := range cookie[n:] {
		if c != 0 {
			return "", ErrCookieMalformed
		}
	}
	id := string(cookie[2 : 2+idLen])
	key, ok := lookupKey(id)
	if !ok || len(key) == 0 {
		// An empty key would make every MAC computable by anyone.
		return "", fmt.Errorf("%w: %q", ErrCookieUnknownCPE, id)
	}
	body := cookie[:n-cookieMACLen]
	// MAC before time: an unauthenticated timestamp must not decide anything.
	if !hmac.Equal(cookie[n-cookieMACLen:n], cookieMAC(key, body, dst, client)) {
		return "", fmt.Errorf("%w (CPE %q)", ErrCookieBadMAC, id)
	}
	issued := int64(binary.BigEndian.Uint64(body[2+idLen:]))
	if d := now.Unix() - issued; d > int64(maxSkew/time.Second) || -d > int64(maxSkew/time.Second) {
		return "", fmt.Errorf("%w (CPE %q, issued %ds from now)", ErrCookieExpired, id, -d)
	}
	return id, nil
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
