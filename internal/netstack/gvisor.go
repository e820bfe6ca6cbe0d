package netstack

import (
	"fmt"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// nicID is the stack's only NIC, the TUN.
const nicID tcpip.NICID = 1

// Buffer sizes of the LAN-side TCP endpoints. They bound the memory a flow
// can hold in gVisor: at most maxBuffer queued towards the upstream
// (receive) and maxBuffer queued towards the LAN host (send).
const (
	// initialRcvBuffer is the receive buffer a forwarded endpoint starts
	// with (and the window in its SYN-ACK). It covers the LAN's
	// bandwidth-delay product at Wi-Fi latencies (500 Mbit/s x 4 ms);
	// auto-tuning grows it for faster flows.
	initialRcvBuffer = 256 << 10
	// defaultSndBuffer covers 1 Gbit/s x 8 ms towards the LAN host. gVisor
	// does not auto-tune send buffers.
	defaultSndBuffer = 1 << 20
	// maxBuffer caps both buffers. Uploads queue in the receive buffer
	// whenever the uplinks are slower than the LAN, which is the normal
	// case, so this is the worst-case memory per uploading flow; 4 MiB is
	// 0.7 s at 50 Mbit/s, plenty to keep the MPTCP sender busy.
	maxBuffer = 4 << 20
)

// newGVisor builds the gVisor stack with ep as its only NIC. Every setting
// that differs from gVisor's defaults is here, with the reason.
func newGVisor(ep stack.LinkEndpoint) (*stack.Stack, error) {
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
		// No UDP or ICMP transport: the steering rules only send TCP here,
		// and whatever else arrives is dropped by the network layer.
	})
	fail := func(what string, err tcpip.Error) (*stack.Stack, error) {
		s.Close()
		s.Wait()
		return nil, fmt.Errorf("configuring gVisor: %s: %s", what, err)
	}

	// SACK is off by default in gVisor. Every LAN host offers it; without
	// it a single lost segment towards a Wi-Fi client costs a round trip
	// per hole.
	sack := tcpip.TCPSACKEnabled(true)
	if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, &sack); err != nil {
		return fail("enabling SACK", err)
	}
	// Loss recovery: RACK-TLP, gVisor's default, set explicitly so that a
	// change of default upstream cannot flip it silently. Measured here
	// (BenchmarkThroughput/download-loss1%, gVisor sending over the TUN to a
	// kernel socket with 1% random loss, reno): RACK on 580-1930 Mbit/s,
	// off 430-570. Tailscale also found RACK off 5x slower on reordering
	// paths, and Wi-Fi aggregation reorders.
	rack := tcpip.TCPRACKLossDetection
	if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, &rack); err != nil {
		return fail("enabling RACK", err)
	}
	// Congestion control: reno, gVisor's default, set explicitly because
	// the choice was measured. The LAN leg's RTT is well under a
	// millisecond; reno grows per RTT, gVisor's cubic per unit of time, so
	// after a loss cubic takes far longer to regain the window. Same
	// benchmark: reno 580-1930 Mbit/s, cubic 36-47 Mbit/s.
	cc := tcpip.CongestionControlOption("reno")
	if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, &cc); err != nil {
		return fail("selecting reno", err)
	}
	// Buffers: see the constants. gVisor's defaults (1 MiB/1 MiB, max 4 MiB)
	// are close; the point of setting them is to choose and bound them.
	rcv := tcpip.TCPReceiveBufferSizeRangeOption{Min: tcp.MinBufferSize, Default: initialRcvBuffer, Max: maxBuffer}
	if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, &rcv); err != nil {
		return fail("setting receive buffer range", err)
	}
	snd := tcpip.TCPSendBufferSizeRangeOption{Min: tcp.MinBufferSize, Default: defaultSndBuffer, Max: maxBuffer}
	if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, &snd); err != nil {
		return fail("setting send buffer range", err)
	}
	// Receive-buffer auto-tuning (off by default): a flow's buffer grows
	// from initialRcvBuffer towards maxBuffer only while the relay drains it
	// fast, so idle or upstream-limited flows do not pin 4 MiB each.
	mrb := tcpip.TCPModerateReceiveBufferOption(true)
	if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, &mrb); err != nil {
		return fail("enabling receive buffer auto-tuning", err)
	}
	// SYN-ACK retransmissions: 3 instead of 6. Every handshake waiting for
	// the LAN host's final ACK already holds an upstream connection and an
	// in-flight slot; a host that has not answered in ~15 s (1+2+4+8 s) over
	// one LAN hop has gone away.
	synRetries := tcpip.TCPSynRetriesOption(3)
	if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, &synRetries); err != nil {
		return fail("setting SYN retries", err)
	}

	// No TIME-WAIT. A SYN that hits an endpoint in TIME-WAIT is handed only
	// to a listening endpoint (RFC 1122's "MAY accept a new SYN"), and
	// hcpe has none, only the forwarder: after hcpe closed a LAN flow
	// first (the server closed first), a LAN host that reuses its port
	// within the 60 s default has its SYNs dropped until its connect
	// times out. make bench saw 31 of 3,324 connects hang so. TIME-WAIT
	// guards against old duplicates across a network; on one LAN hop there
	// are none, and a retransmitted FIN after it is answered by a RST,
	// which closes the host's already-closing socket.
	tw := tcpip.TCPTimeWaitTimeoutOption(0)
	if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, &tw); err != nil {
		return fail("setting the TIME-WAIT timeout", err)
	}

	if err := s.CreateNIC(nicID, ep); err != nil {
		return fail("creating NIC", err)
	}
	// Promiscuous: accept packets for any destination address, since every
	// LAN flow is addressed to some server on the Internet, not to us.
	if err := s.SetPromiscuousMode(nicID, true); err != nil {
		return fail("enabling promiscuous mode", err)
	}
	// Spoofing: let the forwarded endpoints answer from those servers'
	// addresses.
	if err := s.SetSpoofing(nicID, true); err != nil {
		return fail("enabling spoofing", err)
	}
	// Everything the stack sends goes back into the TUN; the kernel routes
	// it to the LAN host.
	s.SetRouteTable([]tcpip.Route{
		{Destination: header.IPv4EmptySubnet, NIC: nicID},
		{Destination: header.IPv6EmptySubnet, NIC: nicID},
	})
	return s, nil
}
