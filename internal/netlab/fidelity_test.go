package netlab

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"hybridgw/internal/linkem"
)

// The emulator's fidelity, measured end to end with plain kernel sockets
// between the cpe and hag namespaces: what docs/lab.md and the issue
// promise is that rate, RTT and loss are within ±5 % of the profile.

const fidelityTol = 0.05

// TestFidelityRate measures TCP goodput at the receiver over each link in
// each direction at the default profiles' rates.
//
// The profile's rate is the link's IP-packet rate (linkem counts IP bytes),
// so the receiver's goodput is converted to IP bytes with the segment
// overhead: full segments of MSS payload are MTU-byte packets. Both the
// goodput and the converted rate are logged. Goodput is counted over a
// window that starts after a warm-up (slow start and BBR's startup have
// filled the queue by then). The machine is shared: a low result is
// measured again (up to three times) rather than accepted with a wider
// tolerance; an emulator cannot deliver more than its rate, so noise only
// ever lowers the figure.
func TestFidelityRate(t *testing.T) {
	lab := New(t, Options{})
	for _, c := range []struct {
		link *Link
		dir  linkem.Dir
	}{
		{lab.DSL, Upstream}, {lab.DSL, Downstream}, {lab.LTE, Upstream}, {lab.LTE, Downstream},
	} {
		name := fmt.Sprintf("%s/%s", c.link.Name, dirName(c.dir))
		t.Run(name, func(t *testing.T) {
			want := float64(c.link.Profile(c.dir).RateBps)
			var got []float64
			for try := 0; try < 3; try++ {
				m, err := measureTCP(t.Context(), lab, c.link, c.dir, time.Second, 4*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				dev := m.wire/want - 1
				t.Logf("try %d: goodput %.3f Mbit/s, as IP rate %.3f Mbit/s (MSS %d), linkem counted %.3f Mbit/s; profile %.3f Mbit/s: %+.2f %%",
					try+1, m.goodput/1e6, m.wire/1e6, m.mss, m.counted/1e6, want/1e6, 100*dev)
				got = append(got, m.wire)
				if math.Abs(dev) <= fidelityTol {
					return
				}
			}
			t.Errorf("%s: rate %.3f Mbit/s in every try (%v), want %.3f ±5 %%", name, got[len(got)-1]/1e6, mbit(got), want/1e6)
		})
	}
}

func dirName(d linkem.Dir) string {
	if d == Upstream {
		return "up"
	}
	return "down"
}

func mbit(v []float64) string {
	var s []string
	for _, x := range v {
		s = append(s, strconv.FormatFloat(x/1e6, 'f', 3, 64))
	}
	return strings.Join(s, ", ")
}

type rateMeasurement struct {
	goodput, wire, counted float64 // bit/s
	mss                    int
}

// measureTCP sends over one link in one direction from a TCP socket in one
// namespace to a listener in the other and measures at the receiver.
func measureTCP(ctx context.Context, lab *Lab, link *Link, dir linkem.Dir, warm, window time.Duration) (rateMeasurement, error) {
	var m rateMeasurement
	sendNS, recvNS := lab.CPE, lab.HAG
	dst := link.HAG4
	src := link.CPE4
	if dir == Downstream {
		sendNS, recvNS, dst, src = lab.HAG, lab.CPE, link.CPE4, link.HAG4
	}
	var ln net.Listener
	if err := recvNS.Do(func() (err error) {
		ln, err = net.Listen("tcp", net.JoinHostPort(dst.String(), "0"))
		return
	}); err != nil {
		return m, fmt.Errorf("listening in %s: %w", recvNS.Name, err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(ctx, warm+window+10*time.Second)
	defer cancel()

	var conn net.Conn
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
	if err := sendNS.Do(func() (err error) { conn, err = d.DialContext(ctx, "tcp", ln.Addr().String()); return }); err != nil {
		return m, fmt.Errorf("dialing from %s: %w", sendNS.Name, err)
	}
	defer conn.Close()
	rc, err := ln.Accept()
	if err != nil {
		return m, fmt.Errorf("accepting in %s: %w", recvNS.Name, err)
	}
	defer rc.Close()
	m.mss, _ = tcpMSS(conn.(*net.TCPConn))

	var stop atomic.Bool
	go func() {
		buf := make([]byte, 128<<10)
		for !stop.Load() {
			if _, err := conn.Write(buf); err != nil {
				return
			}
		}
	}()
	defer stop.Store(true)

	buf := make([]byte, 256<<10)
	var n int64
	// The first byte starts the clock; the window opens after warm.
	if _, err := io.ReadFull(rc, buf[:1]); err != nil {
		return m, fmt.Errorf("receiving: %w", err)
	}
	first := time.Now()
	_ = rc.SetReadDeadline(first.Add(warm + window + 5*time.Second))
	for time.Since(first) < warm {
		if _, err := rc.Read(buf); err != nil {
			return m, fmt.Errorf("receiving during warm-up: %w", err)
		}
	}
	start := time.Now()
	s0 := link.Stats(dir)
	for {
		k, err := rc.Read(buf)
		n += int64(k)
		if err != nil {
			return m, fmt.Errorf("receiving: %w", err)
		}
		if el := time.Since(start); el >= window {
			s1 := link.Stats(dir)
			sec := el.Seconds()
			m.goodput = float64(n) * 8 / sec
			m.counted = float64(s1.Bytes-s0.Bytes) * 8 / sec
			mtu := link.MTU
			if m.mss == 0 {
				m.mss = mtu - 52 // IPv4, TCP with timestamps
			}
			m.wire = m.goodput * float64(mtu) / float64(m.mss)
			return m, nil
		}
	}
}

// tcpMSS is the connection's send MSS: the payload of a full segment,
// options excluded.
func tcpMSS(c *net.TCPConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var mss int
	var serr error
	if err := rc.Control(func(fd uintptr) { mss, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG) }); err != nil {
		return 0, err
	}
	return mss, serr
}

// TestFidelityRTT measures the RTT over each link with ping: the median of
// 40 echoes must be within ±5 % of twice the one-way delay.
func TestFidelityRTT(t *testing.T) {
	lab := New(t, Options{})
	for _, link := range []*Link{lab.DSL, lab.LTE} {
		for _, dst := range []string{link.HAG4.String(), link.HAG6.String()} {
			t.Run(link.Name+"/"+dst, func(t *testing.T) {
				want := link.Profile(Upstream).Delay + link.Profile(Downstream).Delay
				var meds []time.Duration
				for try := 0; try < 3; try++ {
					rtts, err := pingRTTs(lab.CPE, dst, 40)
					if err != nil {
						t.Fatal(err)
					}
					slices.Sort(rtts)
					med := rtts[len(rtts)/2]
					dev := float64(med)/float64(want) - 1
					t.Logf("try %d: median RTT %v (min %v, max %v, n %d); profile %v: %+.2f %%",
						try+1, med, rtts[0], rtts[len(rtts)-1], len(rtts), want, 100*dev)
					meds = append(meds, med)
					if math.Abs(dev) <= fidelityTol {
						return
					}
				}
				t.Errorf("median RTT %v in every try, want %v ±5 %%", meds, want)
			})
		}
	}
}

// pingRTTs returns the RTTs of count pings from ns to dst, 20 ms apart.
func pingRTTs(ns *NS, dst string, count int) ([]time.Duration, error) {
	out, err := ns.Output("ping", "-n", "-c", strconv.Itoa(count), "-i", "0.02", "-W", "2", dst)
	if err != nil {
		return nil, err
	}
	var rtts []time.Duration
	for _, l := range strings.Split(out, "\n") {
		_, after, ok := strings.Cut(l, " time=")
		if !ok {
			continue
		}
		ms, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(after), " ms"), 64)
		if err != nil {
			return nil, fmt.Errorf("parsing ping line %q: %w", l, err)
		}
		rtts = append(rtts, time.Duration(ms*float64(time.Millisecond)))
	}
	if len(rtts) < count*9/10 {
		return nil, fmt.Errorf("only %d of %d pings to %s answered:\n%s", len(rtts), count, dst, out)
	}
	return rtts, nil
}

// TestFidelityLoss measures Bernoulli loss of 1 % and 5 % with numbered UDP
// datagrams from cpe to hag over dsl, counted at the receiver.
//
// Tolerance: ±5 % relative, as the issue asks, made meaningful by the
// sample size. The loss count is binomial, so the measured rate has a
// relative standard deviation of sqrt((1-p)/(n·p)); n is chosen so that
// 5 % is at least three of those (n ≥ 9(1-p)/(0.05²·p): 356 400 datagrams
// at 1 %, 68 400 at 5 %), i.e. a correct emulator fails less than 0.3 % of
// the time. The seed is fixed and logged, so a run can be repeated exactly.
// The datagrams are paced and the link is unshaped, so nothing but the loss
// model drops them; the link's other drop counters and the cpe TUN's
// transmit drops are checked to be zero so that an overloaded machine is
// reported as such instead of as loss.
func TestFidelityLoss(t *testing.T) {
	lab := New(t, Options{})
	// A longer TUN ring absorbs scheduling hiccups of the forwarder on this
	// shared machine: those drops would happen before the emulator.
	if err := lab.CPE.Run("ip", "link", "set", lab.DSL.Name, "txqueuelen", "20000"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		p float64
		n int
	}{{0.01, 360_000}, {0.05, 70_000}} {
		t.Run(fmt.Sprintf("p=%g", c.p), func(t *testing.T) {
			const seed = 20261123
			prof := linkem.Profile{Loss: linkem.Loss{Model: linkem.LossBernoulli, P: c.p}, Seed: seed}
			lab.DSL.SetProfile(Upstream, prof)
			t.Cleanup(func() { lab.DSL.SetProfile(Upstream, DefaultDSL().Up.Linkem()) })
			before := lab.DSL.Stats(Upstream)
			txDrop0 := txDropped(t, lab.CPE, lab.DSL.Name)

			sent, got, err := udpBurst(t.Context(), lab, c.n, 30_000)
			if err != nil {
				t.Fatal(err)
			}
			st := lab.DSL.Stats(Upstream)
			other := (st.DroppedQueue - before.DroppedQueue) + (st.DroppedOverflow - before.DroppedOverflow) +
				(st.WriteErrors - before.WriteErrors) + (st.DroppedDown - before.DroppedDown)
			txDrop := txDropped(t, lab.CPE, lab.DSL.Name) - txDrop0
			loss := 1 - float64(got)/float64(sent)
			sigma := math.Sqrt(c.p * (1 - c.p) / float64(sent))
			t.Logf("seed %d: sent %d, received %d: loss %.4f %% (profile %.2f %%, %+.2f %% relative, σ %.2f %% relative); linkem loss drops %d, other drops %d, tun tx drops %d",
				seed, sent, got, 100*loss, 100*c.p, 100*(loss/c.p-1), 100*sigma/c.p, st.DroppedLoss-before.DroppedLoss, other, txDrop)
			if other != 0 || txDrop != 0 {
				t.Fatalf("datagrams were dropped by something other than the loss model (machine overloaded?): link %d, tun %d", other, txDrop)
			}
			if math.Abs(loss/c.p-1) > fidelityTol {
				t.Errorf("loss %.4f %%, want %.2f %% ±5 %% relative", 100*loss, 100*c.p)
			}
		})
	}
}

// txDropped reads a device's transmit drops; ip netns exec mounts the
// namespace's own /sys.
func txDropped(t *testing.T, ns *NS, dev string) uint64 {
	out, err := ns.Output("cat", "/sys/class/net/"+dev+"/statistics/tx_dropped")
	if err != nil {
		t.Fatalf("reading tx_dropped of %s: %v", dev, err)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(out), 10, 64)
	if err != nil {
		t.Fatalf("parsing tx_dropped of %s: %v", dev, err)
	}
	return v
}

// udpBurst sends n numbered datagrams from cpe's dsl address to hag's at
// pps per second and returns how many were sent and how many distinct ones
// arrived.
func udpBurst(ctx context.Context, lab *Lab, n, pps int) (sent, got int, err error) {
	var rx, tx *net.UDPConn
	if err := lab.HAG.Do(func() (err error) {
		rx, err = net.ListenUDP("udp4", &net.UDPAddr{IP: lab.DSL.HAG4.AsSlice()})
		return
	}); err != nil {
		return 0, 0, fmt.Errorf("listening in hag: %w", err)
	}
	defer rx.Close()
	setRcvBuf(rx, 16<<20)
	if err := lab.CPE.Do(func() (err error) {
		tx, err = net.DialUDP("udp4", &net.UDPAddr{IP: lab.DSL.CPE4.AsSlice()}, rx.LocalAddr().(*net.UDPAddr))
		return
	}); err != nil {
		return 0, 0, fmt.Errorf("dialing from cpe: %w", err)
	}
	defer tx.Close()

	seen := make([]bool, n)
	done := make(chan int)
	go func() {
		buf := make([]byte, 2048)
		count := 0
		for {
			k, err := rx.Read(buf)
			if err != nil {
				done <- count
				return
			}
			if k >= 8 {
				if s := binary.BigEndian.Uint64(buf); s < uint64(n) && !seen[s] {
					seen[s] = true
					count++
				}
			}
		}
	}()

	pkt := make([]byte, 64)
	const tick = 2 * time.Millisecond
	perTick := max(1, pps*int(tick)/int(time.Second))
	next := time.Now()
	for sent < n {
		if ctx.Err() != nil {
			break
		}
		for i := 0; i < perTick && sent < n; i++ {
			binary.BigEndian.PutUint64(pkt, uint64(sent))
			if _, err := tx.Write(pkt); err != nil {
				if errors.Is(err, syscall.ENOBUFS) {
					i-- // the local queue is full; the datagram was not sent
					time.Sleep(100 * time.Microsecond)
					continue
				}
				return sent, 0, fmt.Errorf("sending datagram %d: %w", sent, err)
			}
			sent++
		}
		next = next.Add(tick)
		time.Sleep(time.Until(next))
	}
	// Everything still in flight arrives within the link's delay.
	time.Sleep(500 * time.Millisecond)
	_ = rx.SetReadDeadline(time.Now())
	got = <-done
	return sent, got, ctx.Err()
}

func setRcvBuf(c *net.UDPConn, n int) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) { _ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n) })
}
