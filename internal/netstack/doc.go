// Package netstack terminates the LAN's TCP in a gVisor netstack attached to
// hcpe's TUN device, and hands each flow to the caller only after the
// caller's upstream connection has succeeded ("dial first, then accept").
//
// For every SYN from the LAN the Stack calls Config.Dial with the flow's
// original source and destination. Only when Dial succeeds does it complete
// the LAN handshake and call Config.Handle (or Start) with the LAN side (a *Conn) and
// the upstream; when Dial fails the LAN host gets a RST (so it sees
// ECONNREFUSED, as with a direct connection to a refusing server), or the
// ICMP error or silence that a *DialError asks for. Until then the LAN host
// sees nothing but its own SYN retransmissions.
//
// Untrusted LAN traffic can grow three things here, and each is bounded:
// handshakes in flight (globally and per LAN source address) and flows.
// A SYN over a bound is dropped without an answer, exactly as a full kernel
// SYN queue would, so that the host retries with its normal back-off rather
// than failing at once, and it is counted in Stats.
//
// The data path, on a TUN opened with offloads: every read is one packet
// as the kernel queued it, a TSO super-packet of up to 64 KiB included, and
// goes to gVisor whole with its checksum taken as validated (the kernel
// marked it partial or validated; anything else is verified here). gVisor's
// TCP uses host GSO: it sends segments of up to 64 KiB with only the
// pseudo-header checksum, each written with a virtio-net header that asks
// the kernel to split it and finish the checksums. Without offloads the
// TUN is read in batches and what gVisor sends is written in batches so
// that wireguard-go can coalesce it. gVisor itself is configured in one
// place, newGVisor, with the reason for every non-default setting.
package netstack
