package linkem

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun"
)

const (
	timerSlack = 800 * time.Microsecond
	// spinMaxHeld is the most packets a direction may hold for its loop to
	// spin out the last timerSlack before a release instead of re-arming.
	spinMaxHeld = 4
	// batchSize is the most packets one read yields (a 64 KiB GSO packet
	// split at the MSS) and one write takes.
	batchSize = conn.IdealBatchSize
	// writeOffset is the headroom wireguard's tun.Write needs in front of
	// each packet for the virtio-net header (10 bytes), kept aligned.
	writeOffset = 16
	// maxGRO is how large a GRO-coalesced write may grow: the kernel takes
	// up to 64 KiB super-packets, and coalescing needs the room in the
	// first packet's buffer.
	maxGRO = 65535
	// maxReadErrors in a row means the device is broken, not one bad packet.
	maxReadErrors = 1000
)

type sysLink struct {
	devs      [2]tun.Device // indexed by Dir of the packets read from it: A is read for AtoB
	running   atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// Open validates cfg and creates both TUN devices, each in its namespace,
// with the MTU set and the link up; it assigns no addresses and starts
// nothing. The devices exist until Close.
func Open(cfg Config) (*Link, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("linkem %s: invalid config: %w", cfg.Name, err)
	}
	l := newLink(cfg)
	for i, e := range [2]End{cfg.A, cfg.B} {
		dev, err := createTUN(e, cfg.MTU)
		if err != nil {
			_ = l.Close()
			return nil, fmt.Errorf("linkem %s: creating TUN %s in %q: %w", cfg.Name, e.Dev, e.NSPath, err)
		}
		l.sys.devs[i] = dev
	}
	return l, nil
}

// createTUN creates a vnet_hdr TUN device inside end's namespace. The work
// runs on a fresh goroutine locked to its thread: if switching back fails,
// the goroutine exits still locked and the runtime discards the thread
// rather than let other goroutines run in the wrong namespace.
func createTUN(end End, mtu int) (tun.Device, error) {
	var (
		dev tun.Device
		err error
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		if end.NSPath == "" {
			dev, err = openTUN(end.Dev, mtu)
			runtime.UnlockOSThread()
			return
		}
		var orig, target *os.File
		if orig, err = os.Open("/proc/thread-self/ns/net"); err != nil {
			err = fmt.Errorf("opening current namespace: %w", err)
			return
		}
		defer orig.Close()
		if target, err = os.Open(end.NSPath); err != nil {
			err = fmt.Errorf("opening namespace: %w", err)
			return
		}
		defer target.Close()
		if err = unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			err = fmt.Errorf("entering namespace: %w", err)
			return
		}
		dev, err = openTUN(end.Dev, mtu)
		if berr := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); berr != nil {
			err = errors.Join(err, fmt.Errorf("returning from namespace: %w", berr))
			return // thread stays locked and is discarded
		}
		runtime.UnlockOSThread()
	}()
	<-done
	if err != nil && dev != nil {
		_ = dev.Close()
		dev = nil
	}
	return dev, err
}

// openTUN creates the device in the current thread's namespace. We open
// /dev/net/tun ourselves and hand the fd to wireguard's unmonitored
// constructor: the monitored CreateTUN starts event goroutines that block
// forever unless someone drains Events, which we have no use for.
func openTUN(name string, mtu int) (tun.Device, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("device name: %w", err)
	}
	// vnet_hdr lets the kernel hand us 64 KiB GSO packets in one read and
	// take GRO-coalesced ones in one write; wireguard splits and merges.
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("TUNSETIFF: %w", err)
	}
	dev, _, err := tun.CreateUnmonitoredTUNFromFD(fd)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("setting up offloads: %w", err)
	}
	if err := setMTUUp(name, mtu); err != nil {
		dev.Close()
		return nil, err
	}
	return dev, nil
}

// setMTUUp sets the MTU and IFF_UP with ioctls on a socket opened in the
// current namespace, which is where the ioctls then act.
func setMTUUp(name string, mtu int) error {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening control socket: %w", err)
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return fmt.Errorf("device name: %w", err)
	}
	ifr.SetUint32(uint32(mtu))
	if err := unix.IoctlIfreq(s, unix.SIOCSIFMTU, ifr); err != nil {
		return fmt.Errorf("setting MTU %d: %w", mtu, err)
	}
	if err := unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("reading flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("setting up: %w", err)
	}
	return nil
}

// Run forwards in both directions until ctx is done, then returns nil after
// both its goroutines have exited. It returns an error if a device fails or
// is closed under it. Run may be called again after it returns, but not
// concurrently.
//
// Each direction is one goroutine running one loop: release what is due,
// write it, then read from the near device with the read deadline set to
// the next release time. The deadline is the direction's only timer, and a
// packet arriving and a packet falling due wake the same goroutine, so
// nothing is handed between goroutines (which, at a few thousand packets a
// second, is where a reader/writer pair spends its CPU).
//
// Shutdown order: ctx done → each loop's gate is closed, which sets its
// read deadline in the past for good → the loops see ctx and return → Run
// returns. The devices stay open until Close.
func (l *Link) Run(ctx context.Context) error {
	if !l.sys.running.CompareAndSwap(false, true) {
		return fmt.Errorf("linkem %s: already running", l.cfg.Name)
	}
	defer l.sys.running.Store(false)
	if l.sys.devs[0] == nil || l.sys.devs[1] == nil {
		return fmt.Errorf("linkem %s: not open: %w", l.cfg.Name, os.ErrClosed)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	gates := [2]*gate{{f: l.sys.devs[0].File()}, {f: l.sys.devs[1].File()}}
	stop := context.AfterFunc(ctx, func() {
		for _, g := range gates {
			g.close()
		}
	})
	defer stop()

	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for d := range l.dirs {
		wg.Go(func() {
			err := l.forward(ctx, l.sys.devs[d], l.sys.devs[1-d], l.dirs[d], gates[d])
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("linkem %s %v: %w", l.cfg.Name, Dir(d), err))
				mu.Unlock()
				cancel() // one broken direction stops the link
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// gate serialises setting a device's read deadline with shutdown, so that
// the loop cannot re-arm a deadline after shutdown set it in the past.
type gate struct {
	mu     sync.Mutex
	closed bool
	f      *os.File
}

// arm sets the read deadline to t (zero: none) and reports false once the
// gate is closed.
func (g *gate) arm(t time.Time) (bool, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false, nil
	}
	if err := g.f.SetReadDeadline(t); err != nil {
		return false, fmt.Errorf("setting read deadline: %w", err)
	}
	return true, nil
}

func (g *gate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	// Fails only if the file is closed, which ends the Read too.
	_ = g.f.SetReadDeadline(time.Unix(1, 0))
}

// forward moves packets from src through dir to dst until ctx is done.
func (l *Link) forward(ctx context.Context, src, dst tun.Device, dir *direction, g *gate) error {
	mtu := l.cfg.MTU
	bufs := make([][]byte, batchSize)
	backing := make([]byte, batchSize*mtu)
	for i := range bufs {
		bufs[i] = backing[i*mtu : (i+1)*mtu]
	}
	sizes := make([]int, batchSize)
	pkts := make([][]byte, batchSize)
	stage := make([][]byte, batchSize)
	for i := range stage {
		// Only the first page of each is touched unless GRO coalesces into
		// it, so the virtual size costs little resident memory.
		stage[i] = make([]byte, writeOffset+maxGRO)
	}
	out := make([][]byte, batchSize)
	var (
		badReads int
		armed    time.Time
		fired    bool
		woke     bool // the deadline fired: the next packet is due within timerSlack
	)
	for {
		next, err := l.flush(dst, dir, stage, out)
		if err != nil {
			return err
		}
		// Go's timers wake up late (the netpoller waits in whole
		// milliseconds; measured here: 0.78 ms median on a 7.5 ms wait),
		// which added ~1.6 ms to every round trip. Arm the deadline
		// timerSlack early; when it fires with the next packet not yet due,
		// never release it early (a real link never delivers before its
		// time): on a nearly idle direction (a ping, a handshake) yield
		// until it is due, which is exact and cheap; on a busy one re-arm
		// at the due time itself, as spinning or sleeping there blocked
		// reads and cost 17 % of the rate at 20 Mbit/s and a core of CPU.
		// The lateness either costs is counted (Stats.Late*).
		if woke && !next.IsZero() && time.Until(next) <= timerSlack {
			woke = false
			if dir.held() <= spinMaxHeld {
				for time.Now().Before(next) {
					runtime.Gosched()
				}
				continue
			}
		} else if !next.IsZero() {
			next = next.Add(-timerSlack)
		}
		woke = false
		// Re-arming costs a runtime timer update (and sometimes a netpoller
		// wake-up): skip it when the deadline already in place is right.
		if !next.Equal(armed) || fired {
			if ok, err := g.arm(next); !ok {
				return err // nil after shutdown
			}
			armed, fired = next, false
		}
		n, err := src.Read(bufs, sizes, 0)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				fired, woke = true, true
				continue // the next packet is due
			}
			if errors.Is(err, os.ErrClosed) {
				return fmt.Errorf("reading: %w", err)
			}
			// A malformed GSO packet or too many segments: count it and go
			// on, but do not spin on a device that only errors.
			dir.ctr.readErrors.Add(1)
			if badReads++; badReads > maxReadErrors {
				return fmt.Errorf("reading: %d errors in a row, last: %w", badReads, err)
			}
			if n == 0 {
				continue
			}
		} else {
			badReads = 0
		}
		for i := range n {
			pkts[i] = bufs[i][:sizes[i]]
		}
		dir.admit(time.Now(), pkts[:n])
	}
}

// flush writes every packet that is due, in batches, and returns when the
// next one will be (zero: none queued).
func (l *Link) flush(dst tun.Device, dir *direction, stage, out [][]byte) (time.Time, error) {
	for {
		n, bytes, next := dir.release(time.Now(), stage, writeOffset, out)
		if n == 0 {
			return next, nil
		}
		if _, err := dst.Write(out[:n], writeOffset); err != nil {
			if errors.Is(err, os.ErrClosed) {
				return time.Time{}, fmt.Errorf("writing: %w", err)
			}
			// EIO while the far device is down, for instance: the packets
			// are lost, as on a dead line.
			dir.ctr.writeErrors.Add(1)
		} else {
			dir.ctr.packets.Add(uint64(n))
			dir.ctr.bytes.Add(bytes)
		}
		if n < len(stage) {
			return next, nil
		}
	}
}

// Close removes both TUN devices (closing a non-persistent TUN's only fd
// deletes it). It is idempotent. A running Run fails with os.ErrClosed, so
// cancel Run's context and wait for it first.
func (l *Link) Close() error {
	l.sys.closeOnce.Do(func() {
		var errs []error
		for _, dev := range l.sys.devs {
			if dev != nil {
				if err := dev.Close(); err != nil {
					errs = append(errs, err)
				}
			}
		}
		if err := errors.Join(errs...); err != nil {
			l.sys.closeErr = fmt.Errorf("linkem %s: closing devices: %w", l.cfg.Name, err)
		}
	})
	return l.sys.closeErr
}
