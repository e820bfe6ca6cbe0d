package linkem_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"hybridgw/internal/linkem"
	"hybridgw/internal/netlab"
)

// Documentation addresses on the emulated link: A is .1 / ::1, B is .2 / ::2.
const (
	addrA4, addrB4 = "192.0.2.1", "192.0.2.2"
	addrA6, addrB6 = "2001:db8:1::1", "2001:db8:1::2"
)

// lab is two namespaces joined by a running Link.
type lab struct {
	link   *linkem.Link
	a, b   *netlab.NS
	prefix string
}

// newLab builds namespaces A and B, joins them with a Link running the given
// profiles and registers cleanups that stop Run, remove the devices and the
// namespaces, and then check that nothing is left behind.
func newLab(t testing.TB, ab, ba linkem.Profile) *lab {
	t.Helper()
	netlab.RequireRoot(t)
	p := netlab.UniquePrefix()
	t.Cleanup(func() { // registered first, so it runs last
		if left, err := netlab.Leftovers(p); err != nil || len(left) > 0 {
			t.Errorf("namespaces left behind: %v %v", left, err)
		}
	})
	l := &lab{prefix: p, a: netlab.NewNS(t, p+"a"), b: netlab.NewNS(t, p+"b")}
	link, err := linkem.Open(linkem.Config{
		Name: "test",
		A:    linkem.End{NSPath: l.a.Path(), Dev: p + "ta"},
		B:    linkem.End{NSPath: l.b.Path(), Dev: p + "tb"},
		MTU:  1500,
		AtoB: ab, BtoA: ba,
	})
	if err != nil {
		t.Fatal(err)
	}
	l.link = link
	t.Cleanup(func() {
		if err := link.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := link.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		if out, err := l.a.Output("ip", "-o", "link", "show", "dev", p+"ta"); err == nil {
			t.Errorf("device still there after Close: %s", out)
		}
	})
	for _, c := range [][]string{
		{"a", "ip", "addr", "add", addrA4 + "/30", "dev", p + "ta"},
		{"a", "ip", "addr", "add", addrA6 + "/64", "dev", p + "ta", "nodad"},
		{"b", "ip", "addr", "add", addrB4 + "/30", "dev", p + "tb"},
		{"b", "ip", "addr", "add", addrB6 + "/64", "dev", p + "tb", "nodad"},
	} {
		ns := l.a
		if c[0] == "b" {
			ns = l.b
		}
		if err := ns.Run(c[1], c[2:]...); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- link.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Run did not return 5s after cancel")
		}
	})
	return l
}

var rttRE = regexp.MustCompile(`time=([0-9.]+) ms`)

// pingMedian returns the median RTT of count pings from A to addr. The
// median, not the mean, because one late wake-up on a shared 2-core box
// should not fail a delay test.
func (l *lab) pingMedian(t testing.TB, addr string, count int) time.Duration {
	t.Helper()
	out, err := l.a.Output("ping", "-n", "-c", strconv.Itoa(count), "-i", "0.05", "-W", "2", addr)
	if err != nil {
		t.Fatalf("ping %s: %v\n%s", addr, err, out)
	}
	var rtts []time.Duration
	for _, m := range rttRE.FindAllStringSubmatch(out, -1) {
		f, _ := strconv.ParseFloat(m[1], 64)
		rtts = append(rtts, time.Duration(f*float64(time.Millisecond)))
	}
	if len(rtts) < count*9/10 {
		t.Fatalf("only %d of %d replies:\n%s", len(rtts), count, out)
	}
	slices.Sort(rtts)
	return rtts[len(rtts)/2]
}

func TestLinkPingRTT(t *testing.T) {
	const delay = 10 * time.Millisecond
	p := linkem.Profile{RateBps: 50e6, Delay: delay}
	l := newLab(t, p, p)
	for _, addr := range []string{addrB4, addrB6} {
		med := l.pingMedian(t, addr, 20)
		t.Logf("%s: median rtt %v (profile: %v)", addr, med, 2*delay)
		// The emulator only adds delay, so the RTT is at least 2×delay;
		// timer wake-ups and the veth-less TUN path add well under 2 ms.
		if med < 2*delay || med > 2*delay+2*time.Millisecond {
			t.Errorf("%s: median rtt %v, want in [%v, %v]", addr, med, 2*delay, 2*delay+2*time.Millisecond)
		}
	}
	if s := l.link.Stats(linkem.AtoB); s.Packets < 40 {
		t.Errorf("AtoB stats %+v: want at least 40 packets", s)
	}
}

// listen opens a TCP listener inside B.
func (l *lab) listen(t testing.TB, addr string, mptcp bool) net.Listener {
	t.Helper()
	var ln net.Listener
	err := l.b.Do(func() (err error) {
		var lc net.ListenConfig
		lc.SetMultipathTCP(mptcp)
		ln, err = lc.Listen(context.Background(), "tcp", net.JoinHostPort(addr, "0"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// dial connects from inside A, with congestion control cc if not "".
func (l *lab) dial(t testing.TB, addr string, mptcp bool, cc ...string) *net.TCPConn {
	t.Helper()
	var c net.Conn
	err := l.a.Do(func() (err error) {
		d := net.Dialer{Timeout: 10 * time.Second}
		d.SetMultipathTCP(mptcp)
		if len(cc) > 0 {
			d.Control = func(_, _ string, rc syscall.RawConn) error {
				var serr error
				err := rc.Control(func(fd uintptr) {
					serr = syscall.SetsockoptString(int(fd), syscall.IPPROTO_TCP, syscall.TCP_CONGESTION, cc[0])
				})
				return errors.Join(err, serr)
			}
		}
		c, err = d.Dial("tcp", addr)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// accept accepts one connection with a timeout.
func accept(t testing.TB, ln net.Listener) *net.TCPConn {
	t.Helper()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() { c, err := ln.Accept(); ch <- res{c, err} }()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatal(r.err)
		}
		t.Cleanup(func() { r.c.Close() })
		return r.c.(*net.TCPConn)
	case <-time.After(10 * time.Second):
		ln.Close() // unblocks the Accept goroutine
		<-ch
		t.Fatal("accept timed out")
		return nil
	}
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime(t testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestLinkTCPRate(t *testing.T) {
	const (
		rate    = 25e6
		warmup  = time.Second
		measure = 3 * time.Second
	)
	ab := linkem.Profile{RateBps: rate, Delay: 5 * time.Millisecond}
	ba := linkem.Profile{RateBps: 100e6, Delay: 5 * time.Millisecond}
	l := newLab(t, ab, ba)
	ln := l.listen(t, addrB4, false)
	// Cubic, not the default BBR: a loss-based sender keeps the emulated
	// queue full, so the receiver sees the link's rate rather than BBR's
	// probing cycles (which left the link idle now and then, ~3-7% low).
	c := l.dial(t, ln.Addr().String(), false, "cubic")
	s := accept(t, ln)

	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { // sender: writes until the receiver closes
		buf := make([]byte, 64<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
	defer c.Close() // ends the sender before wg.Wait, also on failure

	// Measure at the receiver: skip slow start, then count bytes over a
	// fixed window.
	buf := make([]byte, 256<<10)
	read := func(until time.Time) int64 {
		var n int64
		s.SetReadDeadline(until)
		for {
			k, err := s.Read(buf)
			n += int64(k)
			if err != nil {
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("receiving: %v", err)
				}
				return n
			}
		}
	}
	read(time.Now().Add(warmup))
	cpu0, t0, st0 := cpuTime(t), time.Now(), l.link.Stats(linkem.AtoB)
	n := read(t0.Add(measure))
	elapsed, cpu, st := time.Since(t0), cpuTime(t)-cpu0, l.link.Stats(linkem.AtoB)
	got := float64(n*8) / elapsed.Seconds()
	// Goodput carries 1448 payload bytes per 1500-byte packet (IPv4, TCP
	// with timestamps), so that is what a link at the profile rate yields.
	want := rate * 1448 / 1500
	t.Logf("goodput %.2f Mbit/s, expected %.2f (profile %.0f Mbit/s IP, link forwarded %.2f); process CPU %.1f%% of a core (includes both TCP endpoints); stats %+v",
		got/1e6, want/1e6, rate/1e6, float64((st.Bytes-st0.Bytes)*8)/elapsed.Seconds()/1e6, 100*cpu.Seconds()/elapsed.Seconds(), st)
	if got < want*0.95 || got > want*1.05 {
		t.Errorf("goodput %.2f Mbit/s, want %.2f ±5%%", got/1e6, want/1e6)
	}
}

// pattern is deterministic test data.
func pattern(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// receiveAll reads everything from c into a hash, reporting progress.
func receiveAll(c net.Conn, progress *atomic.Int64) ([32]byte, error) {
	h := sha256.New()
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		h.Write(buf[:n])
		progress.Add(int64(n))
		if err == io.EOF {
			return [32]byte(h.Sum(nil)), nil
		}
		if err != nil {
			return [32]byte{}, err
		}
	}
}

func TestLinkDownStallsThenResumes(t *testing.T) {
	p := linkem.Profile{RateBps: 40e6, Delay: 2 * time.Millisecond}
	l := newLab(t, p, p)
	ln := l.listen(t, addrB6, false)
	c := l.dial(t, ln.Addr().String(), false)
	s := accept(t, ln)

	data := pattern(6<<20, 1)
	var (
		wg       sync.WaitGroup
		progress atomic.Int64
		sum      [32]byte
		rerr     error
	)
	defer wg.Wait()
	defer c.Close() // unblocks the sender if the test fails while down
	defer s.Close() // unblocks the receiver if the test fails early
	wg.Go(func() { sum, rerr = receiveAll(s, &progress) })
	wg.Go(func() {
		c.Write(data) // errors show up as a wrong hash
		c.CloseWrite()
	})

	waitFor(t, 10*time.Second, func() bool { return progress.Load() > 1<<20 })
	l.link.SetDown(true)
	// Packets already past the queue still arrive: allow for delay and the
	// 50 ms queue, then nothing may move.
	time.Sleep(200 * time.Millisecond)
	before := progress.Load()
	time.Sleep(time.Second)
	during := progress.Load()
	if during != before {
		t.Errorf("received %d bytes while the link was down", during-before)
	}
	if s := l.link.Stats(linkem.AtoB); s.DroppedDown == 0 {
		t.Errorf("no packets counted as dropped while down: %+v", s)
	}
	if !l.link.Profile(linkem.AtoB).Down || !l.link.Profile(linkem.BtoA).Down {
		t.Errorf("SetDown(true) did not reach both profiles")
	}
	l.link.SetDown(false)
	waitFor(t, 20*time.Second, func() bool { return progress.Load() == int64(len(data)) })
	wg.Wait()
	if rerr != nil {
		t.Fatalf("receiving: %v", rerr)
	}
	if sum != sha256.Sum256(data) {
		t.Fatal("data corrupted across down/up")
	}
	t.Logf("stalled at %d of %d bytes while down, completed after up; AtoB %+v", before, len(data), l.link.Stats(linkem.AtoB))
}

func waitFor(t testing.TB, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLinkStripMPTCP(t *testing.T) {
	for _, addr := range []string{addrB4, addrB6} {
		for _, strip := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/strip=%v", addr, strip), func(t *testing.T) {
				p := linkem.Profile{Delay: time.Millisecond}
				ab := p
				ab.StripMPTCP = strip
				l := newLab(t, ab, p)
				ln := l.listen(t, addr, true)
				c := l.dial(t, ln.Addr().String(), true)
				s := accept(t, ln)
				cm, err1 := c.MultipathTCP()
				sm, err2 := s.MultipathTCP()
				if err := errors.Join(err1, err2); err != nil {
					t.Fatal(err)
				}
				if cm != !strip || sm != !strip {
					t.Errorf("MultipathTCP client %v server %v, want %v (strip %v)", cm, sm, !strip, strip)
				}
				data := pattern(2<<20, 2)
				var (
					wg       sync.WaitGroup
					progress atomic.Int64
					sum      [32]byte
					rerr     error
				)
				wg.Go(func() { sum, rerr = receiveAll(s, &progress) })
				if _, err := c.Write(data); err != nil {
					t.Errorf("sending: %v", err)
				}
				c.CloseWrite()
				s.SetReadDeadline(time.Now().Add(20 * time.Second))
				wg.Wait()
				if rerr != nil || sum != sha256.Sum256(data) {
					t.Fatalf("data not intact: %v", rerr)
				}
				st := l.link.Stats(linkem.AtoB)
				if strip != (st.Stripped > 0) {
					t.Errorf("stripped %d packets with strip=%v", st.Stripped, strip)
				}
				t.Logf("mptcp client=%v server=%v; AtoB %+v", cm, sm, st)
			})
		}
	}
}

// BenchmarkForwarderUnshaped pushes one TCP flow from A to B through an
// unshaped link with a 1500-byte MTU and reports goodput at the receiver.
// Each iteration is 1 MiB; run with e.g. -benchtime=500x.
func BenchmarkForwarderUnshaped(b *testing.B) {
	l := newLab(b, linkem.Profile{}, linkem.Profile{})
	ln := l.listen(b, addrB4, false)
	c := l.dial(b, ln.Addr().String(), false)
	s := accept(b, ln)
	chunk := pattern(1<<20, 3)
	var (
		wg       sync.WaitGroup
		progress atomic.Int64
		rerr     error
	)
	b.SetBytes(int64(len(chunk)))
	b.ResetTimer()
	cpu0, t0 := cpuTime(b), time.Now()
	defer wg.Wait()
	defer s.Close() // unblocks the receiver if sending fails
	wg.Go(func() { _, rerr = receiveAll(s, &progress) })
	for range b.N {
		if _, err := c.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	c.CloseWrite()
	wg.Wait()
	elapsed, cpu := time.Since(t0), cpuTime(b)-cpu0
	b.StopTimer()
	if rerr != nil || progress.Load() != int64(b.N*len(chunk)) {
		b.Fatalf("received %d of %d bytes: %v", progress.Load(), b.N*len(chunk), rerr)
	}
	b.ReportMetric(float64(progress.Load()*8)/elapsed.Seconds()/1e6, "Mbit/s")
	b.ReportMetric(100*cpu.Seconds()/elapsed.Seconds(), "%cpu")
	st := l.link.Stats(linkem.AtoB)
	b.Logf("AtoB %+v", st)
}
