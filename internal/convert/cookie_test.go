package convert

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

var (
	cpeKey   = []byte("0123456789abcdef0123456789abcdef")
	nextKey  = []byte("abcdefabcdefabcdefabcdefabcdefab")
	otherKey = []byte("fedcba9876543210fedcba9876543210")
	issued   = time.Unix(1_800_000_000, 0)
)

// keys is a converter's key table: cpe-1 in the middle of a rotation from
// key id 0 to key id 1, cpe-2 with one key.
func keys(id string) ([]CookieKey, bool) {
	switch id {
	case "cpe-1":
		return []CookieKey{{0, cpeKey}, {1, nextKey}}, true
	case "cpe-2":
		return []CookieKey{{7, otherKey}}, true
	}
	return nil, false
}

func mustCookie(tb testing.TB, id string, key CookieKey, now time.Time, dst, client netip.AddrPort) []byte {
	tb.Helper()
	c, err := MakeCookie(key, id, now, dst, client)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// v1Cookie is what hcpe built before key ids: version 1, no key id, no
// nonce, MAC over the same Connect.
func v1Cookie(key []byte, id string, now time.Time, dst, client netip.AddrPort) []byte {
	b := append([]byte{1, byte(len(id))}, id...)
	b = binary.BigEndian.AppendUint64(b, uint64(now.Unix()))
	return append(b, cookieMAC(key, b, dst, client)...)
}

// TestCookieLayout checks the version 2 token byte for byte against the
// layout drawn in the package doc.
func TestCookieLayout(t *testing.T) {
	nonce := [8]byte{0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7}
	c, err := appendCookie([]byte{0xee}, CookieKey{ID: 1, Secret: nextKey}, "cpe-1", issued.Unix(), nonce, v6dst, v6client)
	if err != nil {
		t.Fatal(err)
	}
	if c[0] != 0xee {
		t.Fatal("appendCookie overwrote what b held")
	}
	c = c[1:]
	want := []byte{2, 1, 5, 'c', 'p', 'e', '-', '1', 0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7}
	want = binary.BigEndian.AppendUint64(want, uint64(issued.Unix()))
	want = append(want, cookieMAC(nextKey, want, v6dst, v6client)...)
	if !bytes.Equal(c, want) {
		t.Fatalf("token\n % x\nwant\n % x", c, want)
	}
	if len(c) != 3+5+8+8+16 {
		t.Errorf("token is %d bytes", len(c))
	}
	got, err := VerifyCookie(c, keys, v6dst, v6client, issued, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if got.CPEID != "cpe-1" || got.KeyID != 1 || got.Issued != issued.Unix() || got.Tag != binary.BigEndian.Uint64(c[len(c)-16:]) {
		t.Errorf("VerifyCookie = %+v", got)
	}
}

func TestCookieRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name        string
		key         CookieKey
		dst, client netip.AddrPort
	}{
		{"v6 with client", CookieKey{0, cpeKey}, v6dst, v6client},
		{"v4 with client", CookieKey{0, cpeKey}, v4dst, v4client},
		{"no client address tlv", CookieKey{0, cpeKey}, v6dst, netip.AddrPort{}},
		{"second key of a rotation", CookieKey{1, nextKey}, v6dst, v6client},
	} {
		c := mustCookie(t, "cpe-1", tc.key, issued, tc.dst, tc.client)
		if len(c) != 3+5+8+8+16 {
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
		if !bytes.Equal(got.Cookie[:len(c)], c) {
			t.Fatalf("%s: cookie changed on the wire", tc.name)
		}
		// As received, and with the most padding a TLV adds (a CPE ID of
		// another length would need it).
		for _, ck := range [][]byte{got.Cookie, append(bytes.Clone(c), 0, 0, 0)} {
			v, err := VerifyCookie(ck, keys, got.Connect.Dst, got.ClientAddr, issued.Add(10*time.Second), time.Minute)
			if err != nil || v.CPEID != "cpe-1" || v.KeyID != tc.key.ID || v.Issued != issued.Unix() {
				t.Errorf("%s: VerifyCookie(% x) = %+v, %v", tc.name, ck, v, err)
			}
		}
	}
	// The wire carries IPv4 as ::ffff:a.b.c.d; both spellings verify.
	c := mustCookie(t, "cpe-1", CookieKey{0, cpeKey}, issued, v4dst, netip.AddrPort{})
	mapped := netip.AddrPortFrom(netip.AddrFrom16(v4dst.Addr().As16()), v4dst.Port())
	if _, err := VerifyCookie(c, keys, mapped, netip.AddrPort{}, issued, time.Minute); err != nil {
		t.Errorf("mapped dst: %v", err)
	}
	// Two cookies for the same Connect in the same second differ (nonce),
	// so a converter that accepts each cookie once still serves both.
	a, b := mustCookie(t, "cpe-1", CookieKey{0, cpeKey}, issued, v6dst, v6client), mustCookie(t, "cpe-1", CookieKey{0, cpeKey}, issued, v6dst, v6client)
	va, _ := VerifyCookie(a, keys, v6dst, v6client, issued, time.Minute)
	vb, _ := VerifyCookie(b, keys, v6dst, v6client, issued, time.Minute)
	if bytes.Equal(a, b) || va.Tag == vb.Tag {
		t.Errorf("two cookies for one Connect are equal: % x (tags %x, %x)", a, va.Tag, vb.Tag)
	}
}

// TestCookieV1 keeps hcpe builds from before key ids working: a version 1
// token verifies with the CPE's key id 0, and only with it.
func TestCookieV1(t *testing.T) {
	c := v1Cookie(cpeKey, "cpe-1", issued, v6dst, v6client)
	v, err := VerifyCookie(append(c, 0, 0), keys, v6dst, v6client, issued, time.Minute)
	if err != nil || v.KeyID != 0 || v.CPEID != "cpe-1" || v.Tag != binary.BigEndian.Uint64(c[len(c)-16:]) {
		t.Fatalf("v1 cookie: %+v, %v", v, err)
	}
	if _, err := VerifyCookie(v1Cookie(nextKey, "cpe-1", issued, v6dst, v6client), keys, v6dst, v6client, issued, time.Minute); !errors.Is(err, ErrCookieBadMAC) {
		t.Errorf("v1 cookie with key id 1's secret: %v, want ErrCookieBadMAC", err)
	}
	if _, err := VerifyCookie(v1Cookie(otherKey, "cpe-2", issued, v6dst, v6client), keys, v6dst, v6client, issued, time.Minute); !errors.Is(err, ErrCookieUnknownKey) {
		t.Errorf("v1 cookie for a CPE without key id 0: %v, want ErrCookieUnknownKey", err)
	}
}

func TestCookieRejections(t *testing.T) {
	good := mustCookie(t, "cpe-1", CookieKey{0, cpeKey}, issued, v6dst, v6client)
	tamper := func(i int) []byte {
		c := bytes.Clone(good)
		c[i] ^= 0x01
		return c
	}
	v1 := v1Cookie(cpeKey, "cpe-1", issued, v6dst, v6client)
	tests := []struct {
		name        string
		cookie      []byte
		dst, client netip.AddrPort
		now         time.Time
		want        error
	}{
		{"empty", nil, v6dst, v6client, issued, ErrCookieMalformed},
		{"one byte", []byte{2}, v6dst, v6client, issued, ErrCookieMalformed},
		{"two bytes", []byte{2, 0}, v6dst, v6client, issued, ErrCookieMalformed},
		{"version 0", append([]byte{0}, good[1:]...), v6dst, v6client, issued, ErrCookieMalformed},
		{"version 3", append([]byte{3}, good[1:]...), v6dst, v6client, issued, ErrCookieMalformed},
		// A v2 body read as v1 is one byte off everywhere.
		{"v2 body as version 1", append([]byte{1}, good[1:]...), v6dst, v6client, issued, ErrCookieMalformed},
		{"zero id length", append([]byte{2, 0, 0}, good[3:]...), v6dst, v6client, issued, ErrCookieMalformed},
		{"id length over 64", append([]byte{2, 0, 65}, good[3:]...), v6dst, v6client, issued, ErrCookieMalformed},
		{"truncated", good[:len(good)-1], v6dst, v6client, issued, ErrCookieMalformed},
		{"v1 truncated", v1[:len(v1)-1], v6dst, v6client, issued, ErrCookieMalformed},
		{"non-zero padding", append(bytes.Clone(good), 0, 1), v6dst, v6client, issued, ErrCookieMalformed},
		{"too much padding", append(bytes.Clone(good), 0, 0, 0, 0), v6dst, v6client, issued, ErrCookieMalformed},
		{"unknown cpe", mustCookie(t, "cpe-9", CookieKey{0, cpeKey}, issued, v6dst, v6client), v6dst, v6client, issued, ErrCookieUnknownCPE},
		{"unknown key id", mustCookie(t, "cpe-1", CookieKey{2, cpeKey}, issued, v6dst, v6client), v6dst, v6client, issued, ErrCookieUnknownKey},
		{"key id of the other key", mustCookie(t, "cpe-1", CookieKey{1, cpeKey}, issued, v6dst, v6client), v6dst, v6client, issued, ErrCookieBadMAC},
		{"key id tampered", tamper(1), v6dst, v6client, issued, ErrCookieBadMAC},
		{"key of another cpe", mustCookie(t, "cpe-1", CookieKey{0, otherKey}, issued, v6dst, v6client), v6dst, v6client, issued, ErrCookieBadMAC},
		{"id swapped to another cpe", append([]byte{2, 7, 5}, append([]byte("cpe-2"), good[8:]...)...), v6dst, v6client, issued, ErrCookieBadMAC},
		{"other destination", good, netip.MustParseAddrPort("[2001:db8::2]:443"), v6client, issued, ErrCookieBadMAC},
		{"other port", good, netip.MustParseAddrPort("[2001:db8::1]:444"), v6client, issued, ErrCookieBadMAC},
		{"other client", good, v6dst, netip.MustParseAddrPort("[2001:db8:1::11]:54321"), issued, ErrCookieBadMAC},
		{"other client port", good, v6dst, netip.MustParseAddrPort("[2001:db8:1::10]:54322"), issued, ErrCookieBadMAC},
		{"client tlv dropped", good, v6dst, netip.AddrPort{}, issued, ErrCookieBadMAC},
		{"v1 other destination", v1, netip.MustParseAddrPort("[2001:db8::2]:443"), v6client, issued, ErrCookieBadMAC},
		{"nonce tampered", tamper(3 + 5), v6dst, v6client, issued, ErrCookieBadMAC},
		{"time tampered", tamper(3 + 5 + 8 + 7), v6dst, v6client, issued, ErrCookieBadMAC},
		{"mac tampered", tamper(len(good) - 1), v6dst, v6client, issued, ErrCookieBadMAC},
		{"expired", good, v6dst, v6client, issued.Add(61 * time.Second), ErrCookieExpired},
		{"from the future", good, v6dst, v6client, issued.Add(-61 * time.Second), ErrCookieExpired},
		{"v1 expired", v1, v6dst, v6client, issued.Add(61 * time.Second), ErrCookieExpired},
	}
	for _, tt := range tests {
		v, err := VerifyCookie(tt.cookie, keys, tt.dst, tt.client, tt.now, time.Minute)
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: VerifyCookie = %+v, %v; want %v", tt.name, v, err, tt.want)
		}
		if code, ok := CodeOf(err); !ok || code != NotAuthorized {
			t.Errorf("%s: CodeOf = %v, %v; want Not Authorized", tt.name, code, ok)
		}
	}
	// Inside the window on both sides.
	for _, d := range []time.Duration{-time.Minute, time.Minute} {
		if _, err := VerifyCookie(good, keys, v6dst, v6client, issued.Add(d), time.Minute); err != nil {
			t.Errorf("skew %v: %v", d, err)
		}
	}
}

func TestMakeCookieIDBounds(t *testing.T) {
	k := CookieKey{0, cpeKey}
	if _, err := MakeCookie(k, "", issued, v6dst, v6client); err == nil {
		t.Error("empty CPE ID accepted")
	}
	if _, err := MakeCookie(k, strings.Repeat("x", MaxCPEIDLen+1), issued, v6dst, v6client); err == nil {
		t.Error("over-long CPE ID accepted")
	}
	if _, err := MakeCookie(CookieKey{}, "cpe-1", issued, v6dst, v6client); err == nil {
		t.Error("empty key accepted")
	}
	c := mustCookie(t, "cpe-1", k, issued, v6dst, v6client)
	emptyKey := func(string) ([]CookieKey, bool) { return []CookieKey{{0, []byte{}}}, true }
	if _, err := VerifyCookie(c, emptyKey, v6dst, v6client, issued, time.Minute); !errors.Is(err, ErrCookieUnknownKey) {
		t.Errorf("empty configured key: %v, want ErrCookieUnknownKey", err)
	}
	// The largest cookie still fits in a Connect message beside everything else.
	c = mustCookie(t, strings.Repeat("x", MaxCPEIDLen), CookieKey{255, cpeKey}, issued, v6dst, v6client)
	m := ConnectMsg(v6dst, v6client, c)
	if _, err := m.Append(nil); err != nil {
		t.Errorf("largest cookie does not fit: %v", err)
	}
}

// FuzzVerifyCookie checks that hostile cookies never panic and never
// verify, whatever their version, key id or length.
func FuzzVerifyCookie(f *testing.F) {
	f.Add(mustCookie(f, "cpe-1", CookieKey{0, cpeKey}, issued, v6dst, v6client))
	f.Add(mustCookie(f, "cpe-1", CookieKey{1, nextKey}, issued, v6dst, v4client))
	f.Add(mustCookie(f, "cpe-2", CookieKey{7, otherKey}, issued, v4dst, netip.AddrPort{}))
	f.Add(v1Cookie(cpeKey, "cpe-1", issued, v6dst, v6client))
	f.Add([]byte{1, 255})
	f.Add([]byte{2, 0, 255})
	f.Add([]byte{2, 1, 5, 'c', 'p', 'e', '-', '1'})
	f.Fuzz(func(t *testing.T, c []byte) {
		v, err := VerifyCookie(c, keys, v4dst, v4client, issued, time.Minute)
		if err == nil {
			t.Fatalf("forged cookie %x verified as %+v", c, v)
		}
	})
}
