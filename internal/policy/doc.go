// Package policy holds hcpe's pure decisions about uplinks and flows: which
// uplinks carry data (roles, overflow, the RTT-difference guard), whether
// an uplink is alive (the health state machine fed by probes), and which
// LAN flows bypass conversion. It does no I/O, reads no clock and imports
// nothing of ours: callers pass the time and the measurements in, so tests
// drive every decision with explicit values.
//
// The kernel offers only the default MPTCP scheduler, which uses every
// non-backup subflow and falls back to backup ones only when none is left
// (protocol.md §3.4). Roles are therefore enforced by flipping an uplink's
// backup flag (SET_FLAGS, which sends MP_PRIO): that steers hag's sending
// as well as ours, because since Linux 6.10 a subflow is treated as backup
// when either peer asked for it.
//
// Roles:
//
//   - bond: always used (unless the RTT guard demotes it).
//   - primary: always used while alive; the link the operator sells first.
//   - overflow: a backup while the primaries carry less than a share of
//     their nominal rate, used while they are saturated (in either
//     direction, with hysteresis and a minimum hold time), and used
//     outright when no primary is alive.
//   - backup: used only when no primary, overflow or bond uplink is alive.
package policy
