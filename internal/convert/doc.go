// Package convert implements the 0-RTT TCP Convert protocol (RFC 8803) as
// hybridgw speaks it: a pure wire codec (Parse, Msg.Append, Msg.Len) plus
// client and server helpers that read and write one Convert message on a
// stream, and the HMAC cookie hag uses to authenticate a CPE.
//
// The codec does no I/O and, for valid input, no allocation: a parsed Msg
// holds slices that alias the buffer given to Parse, so the caller must keep
// that buffer unchanged for as long as it uses the Msg (copy what outlives it).
//
// # Fixed header (RFC 8803 §6.1)
//
// Every Convert message, in both directions, starts the bytestream with:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+---------------+---------------+-------------------------------+
//	|  Version = 1  | Total Length  |     Magic Number = 0x2263     |
//	+---------------+---------------+-------------------------------+
//
// Total Length counts 32-bit words including this header, so a message is at
// most 255*4 = 1020 bytes (MaxMsgLen) and anything after it on the stream is
// relay data. Zero is invalid and demands a reset. The drafts before the RFC
// had an "Unassigned" field where the magic now is; convert.md admits
// draft-era clients only if they send 0x2263, so Parse accepts no other value.
//
// # Generic TLV (§6.2.1)
//
//	+---------------+---------------+-------------------------------+
//	|     Type      |    Length     |            Value ...          |
//	+---------------+---------------+-------------------------------+
//
// Length is in 32-bit words and covers Type and Length; each type appears at
// most once; type 0 is reserved. Values are zero-padded to a word boundary.
//
// # Info TLV (§6.2.3), client → converter
//
//	+---------------+---------------+-------------------------------+
//	|   Type=0x01   |  Length = 1   |             Zero              |
//	+---------------+---------------+-------------------------------+
//
// # Supported TCP Extensions TLV (§6.2.4), converter → client
//
//	+---------------+---------------+-------------------------------+
//	|   Type=0x15   |    Length     |          Unassigned           |
//	+---------------+---------------+-------------------------------+
//	|    Kind #1    |    Kind #2    |   ... zero-padded             |
//	+---------------+---------------+-------------------------------+
//
// # Connect TLV (§6.2.5), Base (Length = 5) and Extended (Length > 5)
//
//	+---------------+---------------+-------------------------------+
//	|   Type=0x0A   |    Length     |       Remote Peer Port        |
//	+---------------+---------------+-------------------------------+
//	|          Remote Peer IP Address (128 bits, IPv4 as           |
//	|          ::ffff:a.b.c.d), not multicast, broadcast,          |
//	|          loopback or unspecified                              |
//	|                                                               |
//	+---------------------------------------------------------------+
//	/  TCP Options (Extended only): Kind, Len >= 2, Value; no EOL   /
//	/  or NOP; zero-padded to a word boundary (§6.2.5 Figure 19)    /
//	+---------------------------------------------------------------+
//
// # Extended TCP Header TLV (§6.2.6), converter → client
//
//	+---------------+---------------+-------------------------------+
//	|   Type=0x14   |    Length     |          Unassigned           |
//	+---------------+---------------+-------------------------------+
//	/   TCP options of the server's SYN+ACK, copied, zero-padded    /
//	+---------------------------------------------------------------+
//
// # Cookie TLV (§6.2.7), client → converter
//
//	+---------------+---------------+-------------------------------+
//	|   Type=0x16   |    Length     |             Zero              |
//	+---------------+---------------+-------------------------------+
//	/                 Opaque Cookie, zero-padded                    /
//	+---------------------------------------------------------------+
//
// # Error TLV (§6.2.8), converter → client
//
//	+---------------+---------------+---------------+---------------+
//	|   Type=0x1E   |    Length     |  Error Code   |     Value     |
//	+---------------+---------------+---------------+---------------+
//	/                  (optional) further Value ...                 /
//	+---------------------------------------------------------------+
//
// The Value depends on the code (§6.2.8): a zero-padded list of versions (0)
// or of TCP option kinds (33); a zero byte then an echo of the offending
// message (1, 2) or the converter's cookie (3); a back-off in seconds, 0
// meaning at least 30 s (64, 65); the ICMP code (97); zero otherwise.
//
// # Client Address TLV (private use, hybridgw), client → converter
//
//	+---------------+---------------+-------------------------------+
//	|   Type=0xC0   |  Length = 5   |          Source Port          |
//	+---------------+---------------+-------------------------------+
//	|        Source Address (128 bits, IPv4 as ::ffff:a.b.c.d)      |
//	|                                                               |
//	|                                                               |
//	|                                                               |
//	+---------------------------------------------------------------+
//
// hcpe terminates the LAN connection, so the LAN host's address cannot ride
// in the IP header of the MPTCP subflows; this TLV carries it to hag, which
// uses it only inside the prefixes delegated to that CPE (RFC §10.2.2 puts
// types 192–255 in Private Use).
//
// # Cookie token (hybridgw, inside the Cookie TLV)
//
// Version 2, which hcpe sends:
//
//	+---------------+---------------+---------------+---------------+
//	|  Version = 2  |    Key ID     |  ID Length N  |  CPE ID ...   /
//	+---------------+---------------+---------------+---------------+
//	/              CPE ID (N bytes, 1..64), continued               /
//	+---------------------------------------------------------------+
//	|                     Nonce (64 random bits)                    |
//	|                                                               |
//	+---------------------------------------------------------------+
//	|             Issue time, unix seconds (64 bits)                |
//	|                                                               |
//	+---------------------------------------------------------------+
//	|          HMAC-SHA256 truncated to 128 bits (16 bytes)         |
//	|                                                               |
//	+---------------------------------------------------------------+
//
// Version 1, which hcpe sent before key ids and hag still accepts as Key
// ID 0, has neither Key ID nor Nonce: Version = 1, ID Length, CPE ID,
// Issue time, MAC. Fields are not aligned; the Cookie TLV pads the token
// with zeros to a word boundary (at most 3 bytes, all zero).
//
// The MAC is keyed with the CPE's key that Key ID names and covers a
// domain label, every byte above it (version, key id, ID, nonce, time) and
// the Connect it authorises: the destination (16-byte address, 2-byte
// port) and, when the Client Address TLV is present, a 1 flag and that
// address and port (else a 0 flag). A captured cookie therefore names one
// CPE, one key, one destination and one LAN source, and expires after the
// verifier's skew window. The Key ID lets a converter hold a CPE's old and
// new key at once while CPEs move from one to the other. The nonce makes
// every cookie distinct, so a converter can remember the cookies it
// accepted within the skew window and accept each one once (hag does:
// internal/replay); a retry therefore needs a fresh cookie. 128 bits of
// MAC suffice because forging needs an online guess per try.
package convert
