// Package probe measures each uplink's path to hag with authenticated UDP
// echo probes: a Prober per uplink on hcpe, one Server on hag.
//
// # Why UDP
//
// A TCP probe would itself be subject to retransmission timeouts (an RTO
// of 200 ms to seconds, growing exponentially) and, opened as MPTCP or
// steered by the kernel's routing of subflows, could end up measuring
// another path than the one it is meant to. A UDP socket bound to an
// uplink's source address (and, optionally, its device) follows exactly
// that uplink's source-routing table, one packet per probe with nothing
// retransmitted, so a lost probe is a lost probe and the RTT is the path's
// RTT including its current queue. UDP also stays out of the TUN: hcpe
// diverts only TCP.
//
// # Wire format
//
// One message per datagram, big-endian, the same layout both ways:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-------------------------------+---------------+---------------+
//	|     Magic = 0x6870 ("hp")     |  Version = 1  |     Type      |
//	+-------------------------------+---------------+---------------+
//	|                        Sequence Number                        |
//	+---------------------------------------------------------------+
//	|                                                               |
//	+                   Send Timestamp (64 bits)                    +
//	|                                                               |
//	+---------------+-----------------------------------------------+
//	|  CPE ID Len   |          CPE ID (1..64 bytes) ...             /
//	+---------------+-----------------------------------------------+
//	/         MAC: HMAC-SHA256 truncated to 16 bytes (MACLen)       /
//	+---------------------------------------------------------------+
//
// Type is 1 for a request (hcpe → hag) and 2 for a reply. The sender of a
// request chooses Sequence and Send Timestamp (the prober's monotonic
// clock, opaque to hag); a reply echoes both. The MAC is HMAC-SHA256 keyed
// with the CPE's key (the same key as its Convert cookies) over a label
// and every byte before the MAC, Type included, so a request cannot be
// reflected back as a reply. A message is 34 to 97 bytes (MinLen, MaxLen).
//
// # Server rules
//
// hag answers only a datagram that is exactly one well-formed request from
// a known CPE whose MAC verifies; everything else is dropped unanswered and
// counted. A reply is the same size as its request, so the server can
// never amplify, and replies are rate-limited per source address and port
// (CGNAT puts many CPEs behind one address, each on its own port), with
// the number of tracked sources bounded.
//
// # Detection time
//
// A Prober sends every Interval and counts a miss when a probe has had no
// answer within Timeout; DownAfter consecutive misses make the uplink
// dead. If the path dies at t, the first lost probe leaves by t+Interval
// at the latest, the DownAfter-th by t+DownAfter·Interval, and its miss is
// counted Timeout later:
//
//	detection ≤ DownAfter·Interval + Timeout
//
// which at the defaults (200 ms, 300 ms, 3) is 900 ms: a black-holing
// uplink is dead within one second (DetectionBound, tested).
package probe
