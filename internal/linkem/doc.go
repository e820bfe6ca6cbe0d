// Package linkem emulates an access link (DSL, LTE) between two network
// namespaces, because this kernel has no netem.
//
// It has two layers:
//
//   - Model is a pure model of one link direction with no I/O: a token-bucket
//     rate, a bounded tail-drop queue, one-way delay with optional jitter,
//     random loss (Bernoulli or Gilbert-Elliott, seeded) and an up/down state.
//     It is driven by explicit time: Enqueue(now, size) says when a packet
//     leaves the far end of the link, or why it was dropped. Tests run it
//     under testing/synctest.
//   - Link (Linux only) joins two TUN devices, one in each namespace, through
//     two Models, one per direction. Each direction is one goroutine: it
//     reads batches (vnet_hdr + GSO, split into MTU-sized packets, so the
//     model sees wire packets), and its single timer (the read deadline, set
//     to the next release time) makes it release every packet whose time has
//     come in one batched, GRO-coalesced write. Packets live in a
//     preallocated arena, so the data path does not allocate per packet.
//
// A direction can also act as an MPTCP-stripping middlebox (RFC 8041 §3.1):
// it overwrites TCP option kind 30 with NOPs and patches the checksum, so
// kernel MPTCP across it falls back to plain TCP.
package linkem
