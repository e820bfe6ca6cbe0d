package tun

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/vishvananda/netlink"
	wgtun "golang.zx2c4.com/wireguard/tun"
)

// Device is an open TUN interface. Read and Write use wireguard-go's batch
// API; Read and Write may be called concurrently with each other, and Close
// unblocks both.
type Device struct {
	dev   wgtun.Device
	name  string
	index int
	mtu   int

	events    sync.WaitGroup // the goroutine draining dev.Events()
	closeOnce sync.Once
	closeErr  error
}

// Open creates the TUN device name with the given MTU in the calling
// thread's network namespace (lock the thread and setns first to create it
// elsewhere; the device stays there), sets reverse-path filtering on it to
// loose and brings it up. The device disappears when it is closed.
func Open(name string, mtu int) (*Device, error) {
	// 1280 is IPv6's minimum; above 65535 the virtio header cannot describe it.
	if mtu < 1280 || mtu > 65535 {
		return nil, fmt.Errorf("opening TUN %s: MTU %d is outside 1280..65535", name, mtu)
	}
	dev, err := wgtun.CreateTUN(name, mtu)
	if err != nil {
		return nil, fmt.Errorf("creating TUN %s: %w", name, err)
	}
	d := &Device{dev: dev, mtu: mtu}
	// wireguard-go reports link events on a small buffered channel and
	// blocks when nobody reads it; drain it until Close closes it.
	d.events.Go(func() {
		for range dev.Events() {
		}
	})
	if d.name, err = dev.Name(); err != nil {
		return nil, errors.Join(fmt.Errorf("reading name of TUN %s: %w", name, err), d.Close())
	}
	link, err := netlink.LinkByName(d.name)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("looking up TUN %s: %w", d.name, err), d.Close())
	}
	d.index = link.Attrs().Index
	// Packets coming out of the TUN carry the remote servers' addresses as
	// source, and those are routed via the uplinks, not via the TUN; strict
	// reverse-path filtering (rp_filter=1, common on routers) would drop
	// them. Loose mode (2) only asks that some route back exists. The
	// effective value is max(all, dev), so 2 wins over a global 1.
	if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+d.name+"/rp_filter", []byte("2"), 0); err != nil {
		return nil, errors.Join(fmt.Errorf("setting loose rp_filter on TUN %s: %w", d.name, err), d.Close())
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return nil, errors.Join(fmt.Errorf("bringing up TUN %s: %w", d.name, err), d.Close())
	}
	return d, nil
}

// Name is the interface name.
func (d *Device) Name() string { return d.name }

// Index is the interface index.
func (d *Device) Index() int { return d.index }

// MTU is the MTU the device was opened with.
func (d *Device) MTU() int { return d.mtu }

// BatchSize is the most packets one Read returns and the batch size at which
// Write coalesces best (128 with offloads, 1 without).
func (d *Device) BatchSize() int { return d.dev.BatchSize() }

// Read reads one or more IP packets into bufs[i][offset:], setting sizes[i],
// and returns how many. A TSO super-packet is split into segments, so bufs
// must have BatchSize elements of at least offset+MTU bytes. After Close it
// returns an error wrapping os.ErrClosed.
func (d *Device) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	return d.dev.Read(bufs, sizes, offset)
}

// Write writes the IP packets bufs[i][offset:]; offset must be at least
// Offset. Consecutive TCP segments of one flow are coalesced in place, which
// needs spare capacity in the buffers (up to 64 KiB). It returns the number of
// bytes written (wireguard-go's convention) and the errors of any packets that
// failed, joined.
func (d *Device) Write(bufs [][]byte, offset int) (int, error) {
	return d.dev.Write(bufs, offset)
}

// Close closes the device, which removes the interface together with every
// route through it; pending Reads and Writes return. It is idempotent.
func (d *Device) Close() error {
	d.closeOnce.Do(func() {
		d.closeErr = d.dev.Close()
		// Close makes wireguard-go's listeners exit, which closes Events.
		d.events.Wait()
		if d.closeErr != nil {
			d.closeErr = fmt.Errorf("closing TUN %s: %w", d.name, d.closeErr)
		}
	})
	return d.closeErr
}

// VirtioNetHdrLen is the size of the virtio-net header that precedes every
// packet on a TUN opened with offloads (struct virtio_net_hdr, no mergeable
// buffers).
const VirtioNetHdrLen = 10

// Offloads reports whether the device was opened with IFF_VNET_HDR and TSO
// enabled, so that WriteVirtio may hand the kernel TCP segments larger than
// the MTU to split. wireguard-go enables both together and only then batches
// (BatchSize > 1).
func (d *Device) Offloads() bool { return d.dev.BatchSize() > 1 }

// WriteVirtio writes one packet b that starts with its own virtio-net header
// (VirtioNetHdrLen bytes, see Offloads), bypassing wireguard-go's
// coalescing: the caller already built the super-packet and says in the
// header how the kernel is to segment it and finish its checksum. One write
// on a TUN is one packet, so this is safe next to concurrent Writes.
func (d *Device) WriteVirtio(b []byte) error {
	if _, err := d.dev.File().Write(b); err != nil {
		return fmt.Errorf("writing to TUN %s: %w", d.name, err)
	}
	return nil
}

// ReadVirtio reads one packet, preceded by its virtio-net header, into b
// (which needs VirtioNetHdrLen+65535 bytes), bypassing wireguard-go's
// splitting: a TSO super-packet from the kernel stays whole. Use it only
// when Offloads is true and never together with Read. After Close it
// returns an error wrapping os.ErrClosed.
func (d *Device) ReadVirtio(b []byte) (int, error) {
	n, err := d.dev.File().Read(b)
	if err != nil {
		return n, fmt.Errorf("reading from TUN %s: %w", d.name, err)
	}
	return n, nil
}
