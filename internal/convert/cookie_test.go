package convert

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

var (
	cpeKey   = []byte("0123456789abcdef0123456789abcdef")
	otherKey = []byte("fedcba9876543210fedcba9876543210")
	issued   = time.Unix(1_800_000_000, 0)
)

func lookup(id string) ([]byte, bool) {
	switch id {
	case "cpe-1":
		return cpeKey, true
	case "cpe-2":
		return otherKey, true
	}
	return nil, false
}

func mustCookie(tb testing.TB, id string, key []byte, now time.Time, dst, client netip.AddrPort) []byte {
	tb.Helper()
	c, err := MakeCookie(key, id, now, dst, client)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func TestCookieRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name        string
		dst, client netip.AddrPort
	}{
		{"v6 with client", v6dst, v6client},
		{"v4 with client", v4dst, v4client},
		{"no client address tlv", v6dst, netip.AddrPort{}},
	} {
		c := mustCookie(t, "cpe-1", cpeKey, issued, tc.dst, tc.client)
		if len(c) != 2+5+8+16 {
			t.Errorf("%s: cookie is %d bytes", tc.name, len(c))
		}
		// Through the wire: the Cookie TLV adds zero padding.
		m := ConnectMsg(tc.dst, tc.client, c)
		b, err := m.Append(nil)
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Cookie) == len(c) {
			t.Fatalf("%s: test expects padding on the wire", tc.name)
		}
		id, err := VerifyCookie(got.Cookie, lookup, got.Connect.Dst, got.ClientAddr, issued.Add(10*time.Second), time.Minute)
		if err != nil || id != "cpe-1" {
			t.Errorf("%s: VerifyCookie = %q, %v", tc.name, id, err)
		}
	}
	// The wire carries IPv4 as ::ffff:a.b.c.d; both spellings verify.
	c := mustCookie(t, "cpe-1", cpeKey, issued, v4dst, netip.AddrPort{})
	mapped := netip.AddrPortFrom(netip.AddrFrom16(v4dst.Addr().As16()), v4dst.Port())
	if _, err := VerifyCookie(c, lookup, mapped, netip.AddrPort{}, issued, time.Minute); err != nil {
		t.Errorf("mapped dst: %v", err)
	}
}

func TestCookieRejections(t *testing.T) {
	good := mustCookie(t, "cpe-1", cpeKey, issued, v6dst, v6client)
	tamper := func(i int) []byte {
		c := bytes.Clone(good)
		c[i] ^= 0x01
		return c
	}
	tests := []struct {
		name        string
		cookie      []byte
		dst, client netip.AddrPort
		now         time.Time
		want        error
	}{
		{"empty", nil, v6dst, v6client, issued, ErrCookieMalformed},
		{"one byte", []byte{1}, v6dst, v6client, issued, ErrCookieMalformed},
		{"bad version", append([]byte{2}, good[1:]...), v6dst, v6client, issued, ErrCookieMalformed},
		{"zero id length", append([]byte{1, 0}, good[2:]...), v6dst, v6client, issued, ErrCookieMalformed},
		{"truncated", good[:len(good)-1], v6dst, v6client, issued, ErrCookieMalformed},
		{"non-zero padding", append(bytes.Clone(good), 0, 1), v6dst, v6client, issued, ErrCookieMalformed},
		{"too much padding", append(bytes.Clone(good), 0, 0, 0, 0), v6dst, v6client, issued, ErrCookieMalformed},
		{"unknown cpe", mustCookie(t, "cpe-9", cpeKey, issued, v6dst, v6client), v6dst, v6client, issued, ErrCookieUnknownCPE},
		{"key of another cpe", mustCookie(t, "cpe-1", otherKey, issued, v6dst, v6client), v6dst, v6client, issued, ErrCookieBadMAC},
		{"id swapped to another cpe", append([]byte{1, 5}, append([]byte("cpe-2"), good[7:]...)...), v6dst, v6client, issued, ErrCookieBadMAC},
		{"other destination", good, netip.MustParseAddrPort("[2001:db8::2]:443"), v6client, issued, ErrCookieBadMAC},
		{"other port", good, netip.MustParseAddrPort("[2001:db8::1]:444"), v6client, issued, ErrCookieBadMAC},
		{"other client", good, v6dst, netip.MustParseAddrPort("[2001:db8:1::11]:54321"), issued, ErrCookieBadMAC},
		{"client tlv dropped", good, v6dst, netip.AddrPort{}, issued, ErrCookieBadMAC},
		{"time tampered", tamper(2 + 5 + 7), v6dst, v6client, issued, ErrCookieBadMAC},
		{"mac tampered", tamper(len(good) - 1), v6dst, v6client, issued, ErrCookieBadMAC},
		{"expired", good, v6dst, v6client, issued.Add(61 * time.Second), ErrCookieExpired},
		{"from the future", good, v6dst, v6client, issued.Add(-61 * time.Second), ErrCookieExpired},
	}
	for _, tt := range tests {
		id, err := VerifyCookie(tt.cookie, lookup, tt.dst, tt.client, tt.now, time.Minute)
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: VerifyCookie = %q, %v; want %v", tt.name, id, err, tt.want)
		}
		if code, ok := CodeOf(err); !ok || code != NotAuthorized {
			t.Errorf("%s: CodeOf = %v, %v; want Not Authorized", tt.name, code, ok)
		}
	}
	// Inside the window on both sides.
	for _, d := range []time.Duration{-time.Minute, time.Minute} {
		if _, err := VerifyCookie(good, lookup, v6dst, v6client, issued.Add(d), time.Minute); err != nil {
			t.Errorf("skew %v: %v", d, err)
		}
	}
}

func TestMakeCookieIDBounds(t *testing.T) {
	if _, err := MakeCookie(cpeKey, "", issued, v6dst, v6client); err == nil {
		t.Error("empty CPE ID accepted")
	}
	if _, err := MakeCookie(cpeKey, strings.Repeat("x", MaxCPEIDLen+1), issued, v6dst, v6client); err == nil {
		t.Error("over-long CPE ID accepted")
	}
	if _, err := MakeCookie(nil, "cpe-1", issued, v6dst, v6client); err == nil {
		t.Error("empty key accepted")
	}
	c := mustCookie(t, "cpe-1", cpeKey, issued, v6dst, v6client)
	emptyKey := func(string) ([]byte, bool) { return []byte{}, true }
	if _, err := VerifyCookie(c, emptyKey, v6dst, v6client, issued, time.Minute); !errors.Is(err, ErrCookieUnknownCPE) {
		t.Errorf("empty configured key: %v, want ErrCookieUnknownCPE", err)
	}
	// The largest cookie still fits in a Connect message beside everything else.
	c = mustCookie(t, strings.Repeat("x", MaxCPEIDLen), cpeKey, issued, v6dst, v6client)
	m := ConnectMsg(v6dst, v6client, c)
	if _, err := m.Append(nil); err != nil {
		t.Errorf("largest cookie does not fit: %v", err)
	}
}

// FuzzVerifyCookie checks that hostile cookies never panic and never verify.
func FuzzVerifyCookie(f *testing.F) {
	f.Add(mustCookie(f, "cpe-1", cpeKey, issued, v6dst, v6client))
	f.Add([]byte{1, 255})
	f.Fuzz(func(t *testing.T, c []byte) {
		id, err := VerifyCookie(c, lookup, v4dst, v4client, issued, time.Minute)
		if err == nil {
			t.Fatalf("forged cookie %x verified as %q", c, id)
		}
	})
}
