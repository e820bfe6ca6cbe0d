package gateway_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"hybridgw/internal/convert"
	"hybridgw/internal/mptcp"
	"hybridgw/internal/netlab"
)

// The test topology: a CPE namespace joined to hag by one veth pair, hag
// joined to a server namespace. The CPE side here is the test itself,
// speaking MPTCP + TFO with Convert messages it builds byte by byte, so the
// real hag binary is judged against the RFC, not against our own client.
var (
	hagV4    = netip.MustParseAddr("198.51.100.2")
	hagV6    = netip.MustParseAddr("2001:db8:d5::2")
	srvV4    = netip.MustParseAddr("203.0.113.10")
	srvV6    = netip.MustParseAddr("2001:db8:20::10")
	hagWANv4 = netip.MustParseAddr("203.0.113.1")
	clientV6 = netip.MustParseAddrPort("[2001:db8:10::10]:40123")
	testKey  = bytes.Repeat([]byte{0x42}, 32)
)

const hagPort = 5124

var hagBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hag-test-")
	if err != nil {
		panic(err)
	}
	hagBin = filepath.Join(dir, "hag")
	out, err := exec.Command("go", "build", "-o", hagBin, "hybridgw/cmd/hag").CombinedOutput()
	if err != nil {
		os.RemoveAll(dir)
		fmt.Fprintf(os.Stderr, "building hag: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type topo struct {
	cpe, hag, srv *netlab.NS
}

func newTopo(t *testing.T) *topo {
	p := netlab.UniquePrefix()
	tp := &topo{cpe: netlab.NewNS(t, p+"cpe"), hag: netlab.NewNS(t, p+"hag"), srv: netlab.NewNS(t, p+"srv")}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(netlab.Run("ip", "link", "add", "dsl", "netns", tp.cpe.Name, "type", "veth", "peer", "name", "dsl", "netns", tp.hag.Name))
	must(netlab.Run("ip", "link", "add", "wan", "netns", tp.hag.Name, "type", "veth", "peer", "name", "wan", "netns", tp.srv.Name))
	for _, ns := range []*netlab.NS{tp.cpe, tp.hag, tp.srv} {
		must(ns.Run("sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"))
	}
	for _, c := range [][]string{
		{"cpe", "addr", "add", "198.51.100.1/30", "dev", "dsl"}, {"cpe", "addr", "add", "2001:db8:d5::1/64", "dev", "dsl", "nodad"},
		{"hag", "addr", "add", "198.51.100.2/30", "dev", "dsl"}, {"hag", "addr", "add", "2001:db8:d5::2/64", "dev", "dsl", "nodad"},
		{"hag", "addr", "add", "203.0.113.1/24", "dev", "wan"}, {"hag", "addr", "add", "2001:db8:20::1/64", "dev", "wan", "nodad"},
		{"srv", "addr", "add", "203.0.113.10/24", "dev", "wan"}, {"srv", "addr", "add", "2001:db8:20::10/64", "dev", "wan", "nodad"},
		{"cpe", "link", "set", "dsl", "up"}, {"hag", "link", "set", "dsl", "up"}, {"hag", "link", "set", "wan", "up"}, {"srv", "link", "set", "wan", "up"},
		{"srv", "route", "add", "default", "via", "203.0.113.1"}, {"srv", "-6", "route", "add", "default", "via", "2001:db8:20::1"},
	} {
		ns := map[string]*netlab.NS{"cpe": tp.cpe, "hag": tp.hag, "srv": tp.srv}[c[0]]
		must(ns.Run("ip", c[1:]...))
	}
	// Resolve neighbours before the first SYN: a SYN held back by neighbour
	// discovery on a fresh veth can outlast a short dial timeout.
	for _, p := range [][2]string{{"cpe", "198.51.100.2"}, {"cpe", "2001:db8:d5::2"}, {"hag", "203.0.113.10"}, {"hag", "2001:db8:20::10"}} {
		ns := map[string]*netlab.NS{"cpe": tp.cpe, "hag": tp.hag}[p[0]]
		must(ns.Run("ping", "-c", "1", "-W", "5", p[1]))
	}
	return tp
}

const hagConfig = `log: {level: debug, format: json}
listen:
  addresses: [198.51.100.2, "2001:db8:d5::2"]
%s
cpes:
  - id: cpe-test
    key: %s
    auth: cookie+source
    wan_prefixes: [198.51.100.0/30, "2001:db8:d5::/64"]
    client_prefixes: ["2001:db8:10::/56"]
egress: {ipv4: share, ipv6: preserve}
allow:
  destinations: [192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, "2001:db8::/32"]
deny:
  destinations: [203.0.113.200/32]
limits:
  flows_per_cpe: 8
  handshakes_in_flight: 2000
  convert_read_timeout: 2s
  pool_idle: 2s
  pool_per_cpe: 16
  dial_timeout: 1s
  shutdown_grace: 1s
metrics: {listen: "127.0.0.1:9102"}
admin: {listen: ""}
`

// startHag runs the hag binary in the hag namespace and stops it with
// SIGTERM at cleanup, checking that it exits 0 within a second and removed
// its transparent-socket routing.
// startHag returns hag's pid (ip netns exec execs hag in place).
func startHag(t *testing.T, tp *topo) int { return startHagListen(t, tp, "") }

// startHagListen is startHag with extra lines in hagConfig's listen section,
// and edits (old, new pairs) applied to the rest.
func startHagListen(t *testing.T, tp *topo, listen string, edits ...string) int {
	pid, _ := startHagConfig(t, tp, strings.NewReplacer(edits...).Replace(fmt.Sprintf(hagConfig, listen, hex.EncodeToString(testKey))))
	return pid
}

// startHagConfig is startHag with the whole config text; it also returns
// the config file's path, for a test that edits it and reloads.
func startHagConfig(t *testing.T, tp *topo, text string) (pid int, cfg string) {
	dir := t.TempDir()
	cfg = filepath.Join(dir, "hag.yaml")
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "hag.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", tp.hag.Name, hagBin, "run", "-c", cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	pid = cmd.Process.Pid
	var startup time.Duration // exec to listening, measured below
	t.Cleanup(func() {
		defer logf.Close()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		start := time.Now()
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("hag exited with %v after SIGTERM", err)
			}
			// hagConfig's shutdown_grace is 1 s: hag may use all of it,
			// then must exit within half as long again, plus what this
			// run's load added to its start (exec, config, routing,
			// listeners), which is about the work of its teardown.
			if d, grace := time.Since(start), time.Second; d > grace*3/2+startup {
				t.Errorf("hag took %v to stop, over its %v shutdown grace by more than half and its %v start", d, grace, startup)
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Error("hag did not stop within 10s of SIGTERM")
		}
		if out, _ := tp.hag.Output("ip", "rule"); strings.Contains(out, "fwmark") {
			t.Errorf("hag left its fwmark rule behind:\n%s", out)
		}
		if out, _ := tp.hag.Output("nft", "list", "tables"); strings.Contains(out, "hybridgw") {
			t.Errorf("hag left its nftables table behind:\n%s", out)
		}
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("hag log:\n%s", b)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ := tp.hag.Output("ss", "-Hltn", "sport", "= :5124")
		if strings.Count(out, "LISTEN") >= 2 {
			startup = time.Since(started)
			return pid, cfg
		}
		select {
		case err := <-exited:
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("hag exited at start: %v\n%s", err, b)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("hag did not listen within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Convert messages built by hand from RFC 8803 §6.

func header(words int) []byte { return []byte{1, byte(words), 0x22, 0x63} }

func connectTLV(dst netip.AddrPort, opts ...byte) []byte {
	l := 20 + len(opts)
	for l%4 != 0 {
		l++
	}
	b := make([]byte, l)
	b[0], b[1] = 0x0a, byte(l/4)
	binary.BigEndian.PutUint16(b[2:], dst.Port())
	a := dst.Addr().As16()
	copy(b[4:], a[:])
	copy(b[20:], opts)
	return b
}

func clientAddrTLV(src netip.AddrPort) []byte {
	b := make([]byte, 20)
	b[0], b[1] = 0xc0, 5
	binary.BigEndian.PutUint16(b[2:], src.Port())
	a := src.Addr().As16()
	copy(b[4:], a[:])
	return b
}

func cookieTLV(c []byte) []byte {
	b := append([]byte{0x16, 0, 0, 0}, c...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	b[1] = byte(len(b) / 4)
	return b
}

func message(tlvs ...[]byte) []byte {
	body := bytes.Join(tlvs, nil)
	return append(header(1+len(body)/4), body...)
}

// request is a well-formed, authorised Connect for dst with the client
// address (when valid) and a cookie made with key (key id 0).
func request(t *testing.T, dst, client netip.AddrPort, key []byte) []byte {
	return requestKey(t, dst, client, convert.CookieKey{Secret: key})
}

// requestKey is request with a cookie made with key (and its id).
func requestKey(t *testing.T, dst, client netip.AddrPort, key convert.CookieKey) []byte {
	t.Helper()
	c, err := convert.MakeCookie(key, "cpe-test", time.Now(), dst, client)
	if err != nil {
		t.Fatal(err)
	}
	tlvs := [][]byte{connectTLV(dst)}
	if client.IsValid() {
		tlvs = append(tlvs, clientAddrTLV(client))
	}
	return message(append(tlvs, cookieTLV(c))...)
}

func (tp *topo) dial(t *testing.T, hag netip.Addr, first []byte) *net.TCPConn {
	t.Helper()
	var c *net.TCPConn
	err := tp.cpe.Do(func() (err error) {
		// No SYN data: hag's listener takes none without a TFO cookie
		// (listen.fast_open is off), as hcpe's default hag.fast_open.
		c, err = mptcp.Dial(context.Background(), mptcp.DialOptions{Remote: netip.AddrPortFrom(hag, hagPort), Timeout: 5 * time.Second}, nil)
		if err == nil {
			_, err = c.Write(first)
		}
		return err
	})
	if err != nil {
		t.Fatalf("dialing hag: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readReply reads one Convert message and returns the Error code, or -1
// for a success reply.
func readReply(t *testing.T, c net.Conn) int {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	h := make([]byte, 4)
	if _, err := io.ReadFull(c, h); err != nil {
		t.Fatalf("reading reply header: %v", err)
	}
	if h[0] != 1 || h[2] != 0x22 || h[3] != 0x63 || h[1] == 0 {
		t.Fatalf("bad reply header % x", h)
	}
	rest := make([]byte, int(h[1])*4-4)
	if _, err := io.ReadFull(c, rest); err != nil {
		t.Fatalf("reading reply: %v", err)
	}
	for i := 0; i+1 < len(rest) && rest[i+1] > 0; i += int(rest[i+1]) * 4 {
		if rest[i] == 0x1e {
			return int(rest[i+2])
		}
	}
	return -1
}

// servers runs the test servers in the srv namespace: :8080 is
// netlab.EchoHash (the client half-closes first); :8081 netlab.SendSeeded,
// after which the server reads the client's hash of the download and
// reports whether it matches (the server half-closes first); :8082 holds a
// connection until the client closes.
type servers struct {
	results chan error
}

func startServers(t *testing.T, tp *topo) *servers {
	s := &servers{results: make(chan error, 64)}
	netlab.ServeTCP(t, tp.srv, "[::]:8080", netlab.EchoHash)
	netlab.ServeTCP(t, tp.srv, "[::]:8081", func(c net.Conn) {
		sum, err := netlab.SendSeeded(c)
		if err == nil {
			var got []byte
			if got, err = io.ReadAll(c); err == nil && !bytes.Equal(got, sum) {
				err = errors.New("client's hash of the download differs")
			}
		}
		s.results <- err
	})
	netlab.ServeTCP(t, tp.srv, "[::]:8082", func(c net.Conn) { io.Copy(io.Discard, c) })
	return s
}

func TestHAG(t *testing.T) {
	netlab.RequireRoot(t)
	tp := newTopo(t)
	// Black hole for the Network Failure case: the server drops SYNs to 9999.
	if err := tp.srv.Run("nft", "add table inet t; add chain inet t in { type filter hook input priority 0; }; add rule inet t in tcp dport 9999 drop"); err != nil {
		t.Fatal(err)
	}
	srv := startServers(t, tp)
	hagPID := startHag(t, tp)

	t.Run("upload v6 preserves the client address, client half-closes first", func(t *testing.T) {
		dst := netip.AddrPortFrom(srvV6, 8080)
		c := tp.dial(t, hagV6, request(t, dst, clientV6, testKey))
		if code := readReply(t, c); code != -1 {
			t.Fatalf("Convert error %d", code)
		}
		if ok, err := mptcp.Check(c); err != nil || !ok {
			t.Errorf("CPE–hag connection is not MPTCP: %v %v", ok, err)
		}
		data := make([]byte, 3<<20+7)
		rand.NewChaCha8([32]byte{1}).Read(data)
		if _, err := c.Write(data); err != nil {
			t.Fatal(err)
		}
		c.CloseWrite()
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("%s %x", clientV6, sha256.Sum256(data))
		if string(got) != want {
			t.Fatalf("server answered %q, want %q", got, want)
		}
	})

	t.Run("upload v4 shares hag's address", func(t *testing.T) {
		dst := netip.AddrPortFrom(srvV4, 8080)
		c := tp.dial(t, hagV4, request(t, dst, netip.AddrPort{}, testKey))
		if code := readReply(t, c); code != -1 {
			t.Fatalf("Convert error %d", code)
		}
		c.Write([]byte("hello"))
		c.CloseWrite()
		got, _ := io.ReadAll(c)
		if !strings.HasPrefix(string(got), hagWANv4.String()+":") {
			t.Fatalf("server saw %q, want hag's %s", got, hagWANv4)
		}
	})

	for _, v := range []struct {
		name     string
		hag, dst netip.Addr
		client   netip.AddrPort
	}{{"v4", hagV4, srvV4, netip.AddrPort{}}, {"v6", hagV6, srvV6, clientV6}} {
		t.Run("download "+v.name+", server half-closes first", func(t *testing.T) {
			dst := netip.AddrPortFrom(v.dst, 8081)
			c := tp.dial(t, v.hag, request(t, dst, v.client, testKey))
			if code := readReply(t, c); code != -1 {
				t.Fatalf("Convert error %d", code)
			}
			const n = 5<<20 + 3
			c.Write(netlab.SourceRequest(n, 77))
			h := sha256.New()
			got, err := io.Copy(h, c)
			if err != nil || got != n {
				t.Fatalf("received %d bytes (%v), want %d", got, err, n)
			}
			// The server has half-closed; our direction still carries data.
			if _, err := c.Write(h.Sum(nil)); err != nil {
				t.Fatalf("writing after the server's FIN: %v", err)
			}
			c.CloseWrite()
			select {
			case err := <-srv.results:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("server never judged the download")
			}
		})
	}

	otherKey := bytes.Repeat([]byte{7}, 32)
	errCases := []struct {
		name string
		hag  netip.Addr
		msg  func() []byte
		want convert.ErrorCode
	}{
		{"closed port", hagV6, func() []byte { return request(t, netip.AddrPortFrom(srvV6, 9), clientV6, testKey) }, convert.ConnectionReset},
		{"unroutable prefix", hagV6, func() []byte {
			return request(t, netip.MustParseAddrPort("[2001:db8:99::1]:80"), clientV6, testKey)
		}, convert.DestinationUnreachable},
		{"black-holed server", hagV4, func() []byte { return request(t, netip.AddrPortFrom(srvV4, 9999), netip.AddrPort{}, testKey) }, convert.NetworkFailure},
		{"denied destination", hagV4, func() []byte {
			return request(t, netip.MustParseAddrPort("203.0.113.200:80"), netip.AddrPort{}, testKey)
		}, convert.NotAuthorized},
		{"special-purpose destination (private use)", hagV4, func() []byte {
			return request(t, netip.MustParseAddrPort("10.0.0.1:80"), netip.AddrPort{}, testKey)
		}, convert.NotAuthorized},
		{"hag's own address", hagV4, func() []byte { return request(t, netip.AddrPortFrom(hagWANv4, 22), netip.AddrPort{}, testKey) }, convert.NotAuthorized},
		{"wrong cookie", hagV6, func() []byte { return request(t, netip.AddrPortFrom(srvV6, 8080), clientV6, otherKey) }, convert.NotAuthorized},
		{"foreign client prefix", hagV6, func() []byte {
			return request(t, netip.AddrPortFrom(srvV6, 8080), netip.MustParseAddrPort("[2001:db8:99::10]:1000"), testKey)
		}, convert.NotAuthorized},
		{"missing cookie", hagV6, func() []byte { return message(connectTLV(netip.AddrPortFrom(srvV6, 8080))) }, convert.MissingCookie},
		{"unsupported version", hagV6, func() []byte {
			m := request(t, netip.AddrPortFrom(srvV6, 8080), clientV6, testKey)
			m[0] = 2
			return m
		}, convert.UnsupportedVersion},
		{"malformed: Connect too short", hagV6, func() []byte {
			return message([]byte{0x0a, 1, 0, 80})
		}, convert.MalformedMessage},
		{"malformed: Connect to loopback", hagV6, func() []byte {
			return message(connectTLV(netip.MustParseAddrPort("[::ffff:127.0.0.1]:80")))
		}, convert.MalformedMessage},
		{"unsupported message: unknown TLV", hagV6, func() []byte {
			return message(connectTLV(netip.AddrPortFrom(srvV6, 8080)), []byte{0x50, 1, 0, 0})
		}, convert.UnsupportedMessage},
		{"unsupported TCP option", hagV6, func() []byte {
			dst := netip.AddrPortFrom(srvV6, 8080)
			ck, _ := convert.MakeCookie(convert.CookieKey{Secret: testKey}, "cpe-test", time.Now(), dst, clientV6)
			return message(connectTLV(dst, 99, 2), clientAddrTLV(clientV6), cookieTLV(ck))
		}, convert.UnsupportedTCPOption},
	}
	for _, tc := range errCases {
		t.Run("error "+tc.name, func(t *testing.T) {
			c := tp.dial(t, tc.hag, tc.msg())
			if got := readReply(t, c); got != int(tc.want) {
				t.Fatalf("got code %d, want %d (%s)", got, tc.want, tc.want)
			}
			// The converter closes normally after the Error TLV.
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Read(make([]byte, 1)); err != io.EOF {
				t.Errorf("after the Error TLV: %v, want EOF", err)
			}
		})
	}

	// An address hag gains after start is its own too: without the address
	// watcher hag would dial itself and answer Connection Reset.
	t.Run("error address added after start", func(t *testing.T) {
		added := netip.MustParseAddr("198.51.100.77")
		if err := tp.hag.Run("ip", "addr", "add", added.String()+"/32", "dev", "lo"); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tp.hag.Run("ip", "addr", "del", added.String()+"/32", "dev", "lo") }()
		got := -1
		for i := 0; i < 30 && got != int(convert.NotAuthorized); i++ {
			got = readReply(t, tp.dial(t, hagV4, request(t, netip.AddrPortFrom(added, 80), netip.AddrPort{}, testKey)))
			if got != int(convert.NotAuthorized) {
				time.Sleep(100 * time.Millisecond)
			}
		}
		if got != int(convert.NotAuthorized) {
			t.Fatalf("connect to an address added after start: code %d, want %d", got, convert.NotAuthorized)
		}
	})

	t.Run("error limit hit", func(t *testing.T) {
		dst := netip.AddrPortFrom(srvV6, 8082)
		var held []*net.TCPConn
		for i := 0; i < 8; i++ {
			c := tp.dial(t, hagV6, request(t, dst, clientV6, testKey))
			if code := readReply(t, c); code != -1 {
				t.Fatalf("flow %d: Convert error %d", i, code)
			}
			held = append(held, c)
		}
		c := tp.dial(t, hagV6, request(t, dst, clientV6, testKey))
		if got := readReply(t, c); got != int(convert.ResourceExceeded) {
			t.Fatalf("ninth flow got %d, want Resource Exceeded", got)
		}
		for _, h := range held {
			h.Close()
		}
	})

	t.Run("silent clients are closed at the deadline and do not starve others", func(t *testing.T) {
		const n = 1000
		idle := make([]*net.TCPConn, 0, n)
		start := time.Now()
		for i := 0; i < n; i++ {
			idle = append(idle, tp.dial(t, hagV4, nil))
		}
		t.Logf("opened %d silent connections in %v", n, time.Since(start))
		// A well-behaved client gets through while they wait.
		okStart := time.Now()
		c := tp.dial(t, hagV6, request(t, netip.AddrPortFrom(srvV6, 8080), clientV6, testKey))
		if code := readReply(t, c); code != -1 {
			t.Fatalf("well-behaved client got Convert error %d", code)
		}
		c.CloseWrite()
		if _, err := io.ReadAll(c); err != nil {
			t.Fatal(err)
		}
		t.Logf("well-behaved flow completed in %v during the flood", time.Since(okStart))
		// Silent connections are what hcpe's warm pool opens: up to
		// pool_per_cpe of them wait, the rest are closed at once, and the
		// first is closed at the 2 s pool_idle.
		_ = idle[0].SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := idle[0].Read(make([]byte, 1))
		waited := time.Since(start)
		if err != io.EOF {
			t.Fatalf("silent client: %v, want EOF", err)
		}
		if waited < 1900*time.Millisecond || waited > 6*time.Second {
			t.Errorf("silent client closed after %v, want about the 2s deadline", waited)
		}
		for _, c := range idle {
			c.Close()
		}
	})

	// Last but metrics: the refused flow holds its flows_per_cpe slot until
	// hag's gentle close sees the client go, which would race the limit test.
	// Out of descriptors: hag can still accept (one descriptor left) but
	// not dial, and must answer Resource Exceeded instead of dropping the
	// connection. The limit is set on the running hag to one descriptor
	// above what it holds; a flow ending meanwhile frees one more, so it
	// is retried a few times.
	t.Run("error out of descriptors", func(t *testing.T) {
		var old unix.Rlimit
		if err := unix.Prlimit(hagPID, unix.RLIMIT_NOFILE, nil, &old); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := unix.Prlimit(hagPID, unix.RLIMIT_NOFILE, &old, nil); err != nil {
				t.Errorf("restoring hag's descriptor limit: %v", err)
			}
		}()
		got := -2
		for i := 0; i < 5 && got != int(convert.ResourceExceeded); i++ {
			// The kernel hands out the lowest free number, so a limit at the
			// second-lowest free number leaves exactly one for accept.
			fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", hagPID))
			if err != nil {
				t.Fatal(err)
			}
			open := map[uint64]bool{}
			for _, e := range fds {
				var n uint64
				if _, err := fmt.Sscan(e.Name(), &n); err == nil {
					open[n] = true
				}
			}
			var free []uint64
			for n := uint64(0); len(free) < 2; n++ {
				if !open[n] {
					free = append(free, n)
				}
			}
			lim := unix.Rlimit{Cur: free[1], Max: old.Max}
			if err := unix.Prlimit(hagPID, unix.RLIMIT_NOFILE, &lim, nil); err != nil {
				t.Fatal(err)
			}
			c := tp.dial(t, hagV4, request(t, netip.AddrPortFrom(srvV4, 8080), netip.AddrPort{}, testKey))
			got = readReply(t, c)
			if err := unix.Prlimit(hagPID, unix.RLIMIT_NOFILE, &old, nil); err != nil {
				t.Fatal(err)
			}
			if got == -1 {
				c.Close() // a flow got through: give its slot back
				time.Sleep(100 * time.Millisecond)
			}
			t.Logf("attempt %d: %d descriptors open, limit %d, reply code %d", i, len(open), lim.Cur, got)
		}
		if got != int(convert.ResourceExceeded) {
			t.Fatalf("got code %d, want %d (%s)", got, convert.ResourceExceeded, convert.ResourceExceeded)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		out, err := tp.hag.Output("bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9102; printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			`hag_flows_total{result="ok"}`, `hag_convert_errors_total{code="not_authorized"}`, `hag_convert_errors_total{code="connection_reset"}`,
			`hag_limit_hits_total{limit="flows_per_cpe"} 1`, `hag_relay_bytes_total{direction="to_client"}`, `hag_dial_duration_seconds_bucket`,
			`hag_pool_ends_total{reason="idle"}`, `hag_limit_hits_total{limit="pool_per_cpe"}`,
			`hag_refusals_total{reason="destination_special"} 1`, `hag_refusals_total{reason="destination_self"} 2`,
			`hag_refusals_total{reason="destination_denied"} 1`, `hag_refusals_total{reason="descriptors"} 1`,
		} {
			if !strings.Contains(out, want) {
				t.Errorf("metrics lack %s", want)
			}
		}
	})
}
