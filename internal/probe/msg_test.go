package probe

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

func unhex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestAppendLayout(t *testing.T) {
	m := Msg{Type: Request, Seq: 0x01020304, Timestamp: 0x1112131415161718, CPEID: []byte("cpe-1")}
	b, err := m.Append([]byte{0xee}, testKey) // appends after what is there
	if err != nil {
		t.Fatal(err)
	}
	want := unhex(t, "ee 6870 01 01 01020304 1112131415161718 05 6370652d31")
	if !bytes.Equal(b[:len(want)], want) {
		t.Fatalf("header\n got %x\nwant %x", b[:len(want)], want)
	}
	if len(b)-1 != m.Len() || m.Len() != 17+5+MACLen {
		t.Fatalf("len %d, Len() %d", len(b)-1, m.Len())
	}
	// Known-answer MAC, so that hcpe and hag of different builds agree.
	if got := hex.EncodeToString(b[len(want):]); got != wantMAC {
		t.Fatalf("MAC %s, want %s", got, wantMAC)
	}
}

// wantMAC is HMAC-SHA256(testKey, "hybridgw probe v1" || header)[:16], computed
// independently with Python's hmac module.
const wantMAC = "181f7751e27f7ddb2d585b049214ac65"

func TestParse(t *testing.T) {
	valid := func(typ Type, id string) []byte {
		m := Msg{Type: typ, Seq: 7, Timestamp: 99, CPEID: []byte(id)}
		b, err := m.Append(nil, testKey)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	long := strings.Repeat("x", MaxIDLen)
	mod := func(b []byte, i int, v byte) []byte { b = bytes.Clone(b); b[i] = v; return b }
	cases := []struct {
		name string
		b    []byte
		err  error
		n    int
	}{
		{"request", valid(Request, "cpe-1"), nil, MinLen + 4},
		{"reply", valid(Reply, "c"), nil, MinLen},
		{"longest id", valid(Request, long), nil, MaxLen},
		{"trailing bytes are not consumed", append(valid(Request, "cpe-1"), 0, 0), nil, MinLen + 4},
		{"empty", nil, ErrShort, 0},
		{"magic", mod(valid(Request, "cpe-1"), 0, 0x48), ErrMagic, 0},
		{"version", mod(valid(Request, "cpe-1"), 2, 2), ErrVersion, 0},
		{"type 0", mod(valid(Request, "cpe-1"), 3, 0), ErrType, 0},
		{"type 3", mod(valid(Request, "cpe-1"), 3, 3), ErrType, 0},
		{"id len 0", mod(valid(Request, "cpe-1"), 16, 0), ErrIDLen, 0},
		{"id len 65", mod(append(valid(Request, long), 0), 16, 65), ErrIDLen, 0},
		{"id len beyond the datagram", mod(valid(Request, "cpe-1"), 16, 6), ErrShort, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, n, err := Parse(c.b)
			if !errors.Is(err, c.err) || n != c.n {
				t.Fatalf("n=%d err=%v, want n=%d err=%v", n, err, c.n, c.err)
			}
			if err != nil {
				return
			}
			if m.Seq != 7 || m.Timestamp != 99 || m.Len() != n {
				t.Fatalf("%+v", m)
			}
			if !m.Verify(testKey) {
				t.Fatal("valid MAC rejected")
			}
		})
	}
}

func TestEveryTruncationRejected(t *testing.T) {
	m := Msg{Type: Request, Seq: 1, Timestamp: 2, CPEID: []byte("cpe-truncate")}
	b, _ := m.Append(nil, testKey)
	for i := range len(b) {
		if _, n, err := Parse(b[:i]); err == nil || n != 0 {
			t.Fatalf("prefix of %d bytes: n=%d err=%v", i, n, err)
		}
	}
}

func TestVerify(t *testing.T) {
	m := Msg{Type: Request, Seq: 1, Timestamp: 2, CPEID: []byte("cpe-1")}
	b, _ := m.Append(nil, testKey)
	p, _, _ := Parse(b)
	if !p.Verify(testKey) {
		t.Fatal("own MAC rejected")
	}
	if p.Verify([]byte("another key of 32 bytes.........")) || p.Verify(nil) {
		t.Fatal("wrong key verified")
	}
	var zero Msg
	if zero.Verify(testKey) {
		t.Fatal("unparsed message verified")
	}
	// Every bit the MAC covers matters, the type included: a request cannot
	// be reflected as a reply.
	for i := range len(b) {
		c := bytes.Clone(b)
		c[i] ^= 0x01
		if q, _, err := Parse(c); err == nil && q.Verify(testKey) {
			t.Fatalf("flipped bit in byte %d still verifies", i)
		}
	}
	c := bytes.Clone(b)
	c[3] = byte(Reply)
	if q, _, _ := Parse(c); q.Verify(testKey) {
		t.Fatal("request re-typed as reply verifies")
	}
}

func TestAppendErrors(t *testing.T) {
	for _, m := range []Msg{
		{Type: 0, CPEID: []byte("a")},
		{Type: Request},
		{Type: Request, CPEID: make([]byte, MaxIDLen+1)},
	} {
		if b, err := m.Append([]byte{1}, testKey); err == nil || len(b) != 1 {
			t.Errorf("%+v: %x %v", m, b, err)
		}
	}
	m := Msg{Type: Request, CPEID: []byte("a")}
	if _, err := m.Append(nil, nil); err == nil {
		t.Error("empty key accepted")
	}
}

func TestParseAllocs(t *testing.T) {
	m := Msg{Type: Request, Seq: 1, Timestamp: 2, CPEID: []byte("cpe-1")}
	b, _ := m.Append(nil, testKey)
	if a := testing.AllocsPerRun(100, func() { _, _, _ = Parse(b) }); a != 0 {
		t.Fatalf("Parse allocates %v times", a)
	}
}

func FuzzParse(f *testing.F) {
	for _, id := range []string{"c", "cpe-1", strings.Repeat("x", MaxIDLen)} {
		for _, typ := range []Type{Request, Reply} {
			m := Msg{Type: typ, Seq: 42, Timestamp: 1 << 40, CPEID: []byte(id)}
			b, _ := m.Append(nil, testKey)
			f.Add(b)
		}
	}
	f.Add([]byte{0x68, 0x70, 1, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, n, err := Parse(b)
		if err != nil {
			if n != 0 {
				t.Fatalf("consumed %d with error %v", n, err)
			}
			return
		}
		if n < MinLen || n > MaxLen || n > len(b) || n != m.Len() {
			t.Fatalf("consumed %d of %d, Len %d", n, len(b), m.Len())
		}
		b1, err := m.Append(nil, testKey)
		if err != nil {
			t.Fatalf("Append of a parsed message: %v", err)
		}
		m2, n2, err := Parse(b1)
		if err != nil || n2 != len(b1) || n2 != n || !m2.Verify(testKey) {
			t.Fatalf("re-parse: n=%d err=%v", n2, err)
		}
		if m2.Type != m.Type || m2.Seq != m.Seq || m2.Timestamp != m.Timestamp || !bytes.Equal(m2.CPEID, m.CPEID) {
			t.Fatalf("round trip changed %+v to %+v", m, m2)
		}
		// Same header bytes: only the MAC may differ.
		if !bytes.Equal(b1[:n-MACLen], b[:n-MACLen]) {
			t.Fatalf("re-encoding changed the header: %x vs %x", b1, b[:n])
		}
		// A fuzzed MAC verifies only if it is the real one.
		if m.Verify(testKey) != bytes.Equal(b1[n-MACLen:], b[n-MACLen:n]) {
			t.Fatal("Verify disagrees with Append")
		}
	})
}
