package netstack

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

const (
	// outboundQueueLen is the channel endpoint's queue towards the TUN.
	// gVisor drops what does not fit (TCP then retransmits), so it holds
	// several windows' worth of bursts; 1024 full-size packets are 1.5 MB.
	outboundQueueLen = 1024
	// writeBatch is how many queued packets one TUN write takes. wireguard-go
	// coalesces consecutive segments of a batch into one super-packet, so
	// larger batches mean fewer syscalls; each batch slot needs a 64 KiB
	// buffer to coalesce into, so this is also 4 MiB of memory.
	writeBatch = 64
	// maxCoalesced is the largest packet wireguard-go builds by coalescing.
	maxCoalesced = 65535
)

// run is Run's body; see Run for the shutdown order.
func (s *Stack) run(ctx context.Context) error {
	ep := channel.New(outboundQueueLen, uint32(s.cfg.MTU), "")
	var link stack.LinkEndpoint = ep
	vw, gso := s.cfg.Device.(virtioWriter)
	gso = gso && vw.Offloads()
	if gso {
		// Host GSO: gVisor's TCP sends segments of up to gsoMaxSize with
		// only the pseudo-header checksum, and the kernel splits them
		// into MTU-sized packets and finishes the checksums (see
		// writeLoopGSO). Without it gVisor sends one MTU at a time, and
		// per-segment work in gVisor was half of hcpe's CPU.
		ep.SupportedGSOKind = stack.HostGSOSupported
		// Receive side: the kernel's super-packets go to gVisor whole
		// (readLoopGRO); their checksums are partial or validated
		// already, and readLoopGRO verifies those that are neither.
		ep.LinkEPCapabilities |= stack.CapabilityRXChecksumOffload
		link = &gsoEndpoint{ep}
	}
	gs, err := newGVisor(link)
	if err != nil {
		return errors.Join(err, s.cfg.Device.Close())
	}
	// gVisor's own in-flight bound is set to ours; ours is checked first
	// and is never looser, so gVisor's never fires (its drops would be
	// uncounted and would break our accounting, see handlePacket).
	tcpFwd := tcp.NewForwarder(gs, initialRcvBuffer, s.cfg.MaxInFlight, s.fwd.handle)
	s.fwd.attach(gs, tcpFwd, s.writeRaw)
	gs.SetTransportProtocolHandler(tcp.ProtocolNumber, s.fwd.handlePacket)

	var wg sync.WaitGroup
	readErr := make(chan error, 1)
	wg.Go(func() {
		if gso {
			readErr <- s.readLoopGRO(ep, vw)
		} else {
			readErr <- s.readLoop(ep)
		}
	})
	wctx, stopWriter := context.WithCancel(context.Background())
	writerDone := make(chan struct{})
	wg.Go(func() {
		defer close(writerDone)
		if gso {
			s.writeLoopGSO(wctx, ep, vw)
		} else {
			s.writeLoop(wctx, ep)
		}
	})

	select {
	case <-ctx.Done():
	case err = <-readErr:
	}
	s.fwd.shutdown()
	gs.Close()
	// The writer flushes what is queued (the RSTs of aborted flows) and
	// exits; only then is the device closed under it.
	stopWriter()
	<-writerDone
	derr := s.cfg.Device.Close()
	ep.Close()
	wg.Wait()
	gs.Wait()
	if err == nil && derr != nil {
		err = fmt.Errorf("netstack: closing device: %w", derr)
	}
	return err
}

// readLoop reads batches from the TUN and injects every packet into gVisor.
// It returns nil when the device is closed during shutdown.
func (s *Stack) readLoop(ep *channel.Endpoint) error {
	dev := s.cfg.Device
	n := max(dev.BatchSize(), 1)
	bufs := make([][]byte, n)
	sizes := make([]int, n)
	for i := range bufs {
		bufs[i] = make([]byte, s.cfg.MTU)
	}
	streak := 0
	for {
		cnt, err := dev.Read(bufs, sizes, 0)
		for i := range cnt {
			inject(ep, bufs[i][:sizes[i]])
		}
		if err == nil {
			streak = 0
			continue
		}
		if done, err := s.readFailed(err, &streak); done {
			return err
		}
	}
}

// readFailed handles a failed TUN read for both read loops; done is true
// when the loop must end, with the error to return (nil at shutdown).
func (s *Stack) readFailed(err error, streak *int) (done bool, _ error) {
	if s.fwd.isShutdown() {
		// The device is being closed under us; whatever it reports now
		// (closed file, wireguard-go's netlink listener ending) is the end.
		return true, nil
	}
	if errors.Is(err, os.ErrClosed) {
		return true, fmt.Errorf("netstack: reading TUN: %w", err)
	}
	// Per-packet errors (a malformed virtio header, a GSO packet with more
	// segments than buffers) lose that packet only. Log the first of a
	// streak; back off if the device keeps failing.
	s.c.tunReadErrors.Add(1)
	if *streak == 0 {
		s.cfg.Logger.Warn("netstack: reading TUN", "err", err)
	}
	*streak++
	if *streak > 100 {
		time.Sleep(10 * time.Millisecond)
	}
	return false, nil
}

// inject hands one IP packet to gVisor, which copies it.
func inject(ep *channel.Endpoint, b []byte) {
	if len(b) == 0 {
		return
	}
	var proto = header.IPv4ProtocolNumber
	switch b[0] >> 4 {
	case 4:
	case 6:
		proto = header.IPv6ProtocolNumber
	default:
		return
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
	ep.InjectInbound(proto, pkt)
	pkt.DecRef()
}

// writeLoop takes what gVisor queued, up to writeBatch packets at a time,
// and writes each batch with one Write so that wireguard-go can coalesce
// it. When ctx is cancelled it writes what is still queued and returns.
func (s *Stack) writeLoop(ctx context.Context, ep *channel.Endpoint) {
	bufs := make([][]byte, writeBatch)
	for i := range bufs {
		bufs[i] = make([]byte, Offset, Offset+maxCoalesced)
	}
	for {
		pkt := ep.ReadContext(ctx)
		if pkt == nil {
			pkt = ep.Read() // ctx is done: flush
		}
		if pkt == nil {
			return
		}
		n := 0
		for pkt != nil {
			// Write may have swapped and extended the slices while
			// coalescing; each still has its own full capacity.
			b := bufs[n][:Offset]
			for _, v := range pkt.AsSlices() {
				b = append(b, v...)
			}
			pkt.DecRef()
			bufs[n] = b
			n++
			if n == len(bufs) {
				break
			}
			pkt = ep.Read()
		}
		if _, err := s.cfg.Device.Write(bufs[:n], Offset); err != nil {
			s.c.tunWriteErrors.Add(1)
		}
	}
}

// writeRaw writes one packet that did not come from gVisor (an ICMP error)
// straight to the TUN; b has Offset bytes of headroom.
func (s *Stack) writeRaw(b []byte) {
	if _, err := s.cfg.Device.Write([][]byte{b}, Offset); err != nil {
		s.c.tunWriteErrors.Add(1)
	}
}

// virtioWriter is a Device opened with offloads that takes packets with
// their own virtio-net header; *tun.Device is one.
type virtioWriter interface {
	Offloads() bool
	WriteVirtio(b []byte) error
	ReadVirtio(b []byte) (int, error)
}

// gsoMaxSize is the largest segment gVisor's TCP builds with host GSO: an
// IP packet's 16-bit length (gVisor keeps the payload at most this minus
// the largest TCP/IP header). channel.Endpoint's own limit is 32 KiB.
const gsoMaxSize = 1<<16 - 1

// gsoEndpoint raises channel.Endpoint's GSO size limit.
type gsoEndpoint struct{ *channel.Endpoint }

// GSOMaxSize implements stack.GSOEndpoint.
func (*gsoEndpoint) GSOMaxSize() uint32 { return gsoMaxSize }

// virtio_net_hdr constants (linux/virtio_net.h).
const (
	virtioNetHdrLen       = 10
	virtioNetHdrNeedsCsum = 1
	virtioNetHdrDataValid = 2
	virtioNetHdrGSOTCPv4  = 1
	virtioNetHdrGSOTCPv6  = 4
)

// putVirtioHdr writes pkt's virtio-net header into h (virtioNetHdrLen
// bytes, host byte order as the TUN expects without TUNSETVNETLE). A packet
// of a TCP endpoint carries a partial checksum (pseudo-header only) even
// when it is no larger than the MSS, so every such packet asks the kernel
// to finish it; other packets (RSTs of the stack, ICMP) are complete.
func putVirtioHdr(h []byte, pkt *stack.PacketBuffer) {
	clear(h[:virtioNetHdrLen])
	g := pkt.GSOOptions
	if g.Type == stack.GSONone {
		return
	}
	ne := binary.NativeEndian
	ne.PutUint16(h[2:], uint16(pkt.HeaderSize()))
	if g.NeedsCsum {
		h[0] = virtioNetHdrNeedsCsum
		ne.PutUint16(h[6:], g.L3HdrLen)
		ne.PutUint16(h[8:], g.CsumOffset)
	}
	if pkt.Data().Size() > int(g.MSS) {
		switch g.Type {
		case stack.GSOTCPv4:
			h[1] = virtioNetHdrGSOTCPv4
		case stack.GSOTCPv6:
			h[1] = virtioNetHdrGSOTCPv6
		}
		ne.PutUint16(h[4:], g.MSS)
	}
}

// writeLoopGSO is writeLoop for a device with offloads: every packet goes
// out in its own write with its virtio-net header, and segments larger
// than the MTU are split by the kernel. A write per packet is what
// wireguard-go's batched Write does too after coalescing.
func (s *Stack) writeLoopGSO(ctx context.Context, ep *channel.Endpoint, vw virtioWriter) {
	buf := make([]byte, 0, virtioNetHdrLen+gsoMaxSize)
	for {
		pkt := ep.ReadContext(ctx)
		if pkt == nil {
			pkt = ep.Read() // ctx is done: flush
		}
		if pkt == nil {
			return
		}
		b := buf[:virtioNetHdrLen]
		putVirtioHdr(b, pkt)
		for _, v := range pkt.AsSlices() {
			b = append(b, v...)
		}
		pkt.DecRef()
		if err := vw.WriteVirtio(b); err != nil {
			s.c.tunWriteErrors.Add(1)
		}
	}
}

// readLoopGRO is readLoop for a device with offloads: each read is one
// packet as the kernel queued it, a TCP super-packet of up to 64 KiB
// included, and goes to gVisor whole, so gVisor's TCP handles one segment
// where wireguard-go's Read would have split it into MTU-sized ones and
// computed each one's checksum. The NIC advertises receive checksum
// offload, so gVisor checks no TCP checksum; what the kernel did not mark
// as partial (locally built, e.g. by a LAN host in this namespace or
// behind a veth) or as validated (by a NIC) is verified here.
func (s *Stack) readLoopGRO(ep *channel.Endpoint, vw virtioWriter) error {
	buf := make([]byte, virtioNetHdrLen+gsoMaxSize)
	streak := 0
	for {
		n, err := vw.ReadVirtio(buf)
		if err == nil {
			streak = 0
			if n > virtioNetHdrLen {
				p := buf[virtioNetHdrLen:n]
				if buf[0]&(virtioNetHdrNeedsCsum|virtioNetHdrDataValid) != 0 || checksumOK(p) {
					inject(ep, p)
				} else {
					s.c.tunReadErrors.Add(1)
				}
			}
			continue
		}
		if done, err := s.readFailed(err, &streak); done {
			return err
		}
	}
}

// checksumOK verifies the TCP checksum of an IP packet whose checksum
// nobody validated. The kernel checked the IPv4 header on the way in.
// Packets that are not TCP pass (gVisor has no other transport that would
// take them); TCP behind IPv6 extension headers or in IPv4 fragments,
// which no LAN stack sends, fails.
func checksumOK(p []byte) bool {
	var tcp header.TCP
	var xsum uint16
	switch p[0] >> 4 {
	case 4:
		h := header.IPv4(p)
		if !h.IsValid(len(p)) {
			return false
		}
		if h.Protocol() != uint8(header.TCPProtocolNumber) {
			return true
		}
		if h.More() || h.FragmentOffset() != 0 {
			return false
		}
		tcp = header.TCP(p[h.HeaderLength():h.TotalLength()])
		xsum = header.PseudoHeaderChecksum(header.TCPProtocolNumber, h.SourceAddress(), h.DestinationAddress(), uint16(len(tcp)))
	case 6:
		h := header.IPv6(p)
		if !h.IsValid(len(p)) {
			return false
		}
		switch header.IPv6ExtensionHeaderIdentifier(h.NextHeader()) {
		case header.IPv6ExtensionHeaderIdentifier(header.TCPProtocolNumber):
		case header.IPv6HopByHopOptionsExtHdrIdentifier, header.IPv6RoutingExtHdrIdentifier,
			header.IPv6FragmentExtHdrIdentifier, header.IPv6DestinationOptionsExtHdrIdentifier:
			return false
		default:
			return true
		}
		tcp = header.TCP(p[header.IPv6MinimumSize : header.IPv6MinimumSize+int(h.PayloadLength())])
		xsum = header.PseudoHeaderChecksum(header.TCPProtocolNumber, h.SourceAddress(), h.DestinationAddress(), uint16(len(tcp)))
	default:
		return true
	}
	return checksum.Checksum(tcp, xsum) == 0xffff
}
