// Package admin is the local admin API of hcpe and hag and the commands
// that read it: the JSON wire types, an HTTP server on a unix socket (or a
// TCP address), its client, and the `status` and `flows` commands with
// their tables.
//
// The API is local: it answers
//
//	GET  /v1/status  hcpe: CPEStatus; hag: HAGStatus
//	GET  /v1/flows   hcpe: CPEFlows;  hag: HAGFlows
//	POST /v1/reload  both: Reloaded (re-reads its config file, as SIGHUP)
//
// on admin.listen (default /run/hcpe/admin.sock, /run/hag/admin.sock; a
// path or "unix:PATH" is a unix socket with mode 0660, anything else a TCP
// host:port). It is separate from /metrics: Prometheus gets bounded,
// aggregated series there, an operator gets every flow here.
//
// The same listener serves Go's profiler (net/http/pprof) under
// /debug/pprof/, for go tool pprof:
//
//	GET /debug/pprof/profile?seconds=N  CPU profile over N seconds (N < 30, the server's write timeout)
//	GET /debug/pprof/heap               heap profile (also goroutine, allocs, mutex, block, threadcreate)
//	GET /debug/pprof/trace?seconds=N    execution trace
//	GET /debug/pprof/cmdline, /symbol   as net/http/pprof documents them
//
// It is on the admin listener only, never on the metrics port: a profile
// shows the code and command line and costs CPU while it runs, so it is
// for whoever may open the admin socket (root and the daemon's group by
// default). A TCP admin.listen exposes it to anyone who can reach that
// address. Fetch downloads one, e.g.
//
//	curl --unix-socket /run/hag/admin.sock -o hag.pprof 'http://hag/debug/pprof/profile?seconds=10'
//	go tool pprof -top /usr/bin/hag hag.pprof
//
// Field names are stable once released; new fields may appear. Byte
// counts are the kernel's or the relay's since the flow started (or the
// daemon did, for totals); durations are milliseconds, rates bits per
// second.
package admin

import (
	"net/netip"
	"time"
)

// Reloaded is the answer to POST /v1/reload when the new config was
// applied. A refused config answers 422 with its problems instead.
type Reloaded struct {
	Config     string   `json:"config"`
	NotApplied []string `json:"not_applied,omitempty"` // changed settings that need a restart
}

// CPEStatus is hcpe's GET /v1/status.
type CPEStatus struct {
	Version string    `json:"version"`
	Started time.Time `json:"started"` // when the admin API came up, about when hcpe did
	HAG     HAGPeer   `json:"hag"`
	// FirstUplink is where the policy starts new flows now ("" when no
	// uplink is known alive).
	FirstUplink string       `json:"first_uplink"`
	Uplinks     []UplinkInfo `json:"uplinks"`
	Totals      CPETotals    `json:"totals"`
	Pool        PoolInfo     `json:"pool"`
}

// PoolInfo is hcpe's warm pool of connections to hag.
type PoolInfo struct {
	Enabled   bool    `json:"enabled"` // pool.ceiling > 0
	Ready     int     `json:"ready"`   // warm connections now
	Target    int     `json:"target"`  // what the arrival rate asks for
	Floor     int     `json:"floor"`
	Ceiling   int     `json:"ceiling"`
	FlowRate  float64 `json:"flow_rate"` // new flows per second over pool.window
	Hits      uint64  `json:"hits"`
	Misses    uint64  `json:"misses"`
	Refills   uint64  `json:"refills"`
	Discarded uint64  `json:"discarded"`
}

// HAGPeer is the hag an hcpe talks to, from its config.
type HAGPeer struct {
	Addresses []netip.Addr `json:"addresses"`
	Port      int          `json:"port"`
	CPEID     string       `json:"cpe_id"`
	// Reachable is true while at least one uplink's health probes reach
	// hag (without a key, while one uplink has an address).
	Reachable bool `json:"reachable"`
}

// Uplink states, in UplinkInfo.State.
const (
	StateActive  = "active"  // alive, carrying data (no backup flag)
	StateBackup  = "backup"  // alive, its subflows carry the backup flag
	StateDown    = "down"    // interface up with an address, probes fail
	StateNoLink  = "no-link" // interface missing, down or without an address
	StateUnknown = "unknown" // no policy decision yet
)

// UplinkInfo is one of hcpe's uplinks.
type UplinkInfo struct {
	Name      string       `json:"name"`
	Interface string       `json:"interface"`
	Role      string       `json:"role"` // primary, overflow, backup, bond (as configured, after reloads)
	State     string       `json:"state"`
	Addresses []netip.Addr `json:"addresses"` // in use as MPTCP endpoints
	Alive     bool         `json:"alive"`     // probes reach hag
	// Backup is the MPTCP backup flag the policy gives the uplink's
	// endpoints now; Usable says whether new flows may start on it.
	Backup bool   `json:"backup"`
	Usable bool   `json:"usable"`
	Reason string `json:"reason"` // the policy's reason, e.g. primary-saturated
	// RTTMs and Loss are the health probes' smoothed RTT to hag and the
	// share of recent probes unanswered (0 without probes).
	RTTMs float64 `json:"rtt_ms"`
	Loss  float64 `json:"loss"`
	// DownBps and UpBps are the interface's current rates (all traffic,
	// converted or not, from the kernel's interface counters over the last
	// second); NominalDownBps/NominalUpBps are the configured ones.
	DownBps        int64 `json:"down_bps"`
	UpBps          int64 `json:"up_bps"`
	NominalDownBps int64 `json:"nominal_down_bps"`
	NominalUpBps   int64 `json:"nominal_up_bps"`
	// BytesDown and BytesUp are what hcpe's MPTCP subflows carried over
	// the uplink since start (hcpe_uplink_bytes_total).
	BytesDown uint64 `json:"bytes_down"`
	BytesUp   uint64 `json:"bytes_up"`
	Subflows  int    `json:"subflows"` // established subflows of live flows
}

// CPETotals sums hcpe's flows.
type CPETotals struct {
	FlowsActive int    `json:"flows_active"`
	FlowsOK     uint64 `json:"flows_ok"`      // converted since start
	FlowsFailed uint64 `json:"flows_refused"` // every other result (hcpe_flows_total)
	Fallbacks   uint64 `json:"mptcp_fallbacks"`
	BytesDown   uint64 `json:"bytes_down"` // all uplinks
	BytesUp     uint64 `json:"bytes_up"`
	// Results counts flows by hcpe_flows_total's result label.
	Results map[string]uint64 `json:"results,omitempty"`
}

// CPEFlows is hcpe's GET /v1/flows.
type CPEFlows struct {
	Flows []CPEFlow `json:"flows"`
}

// CPEFlow is one LAN connection carried to hag.
type CPEFlow struct {
	ID          uint64         `json:"id"`
	Source      netip.AddrPort `json:"source"`      // the LAN host
	Destination netip.AddrPort `json:"destination"` // the server
	Started     time.Time      `json:"started"`
	AgeMs       int64          `json:"age_ms"`
	// ToServer and ToClient are the bytes relayed so far, LAN side.
	ToServer int64  `json:"to_server"`
	ToClient int64  `json:"to_client"`
	Uplink   string `json:"uplink"` // of the initial subflow
	MPTCP    bool   `json:"mptcp"`  // false: fell back to plain TCP
	// Fallback says why a plain-TCP flow is plain: stripped (a middlebox
	// removed MP_CAPABLE), syn_retries (the kernel retried the SYN without
	// it), blackhole (the kernel's blackhole detection disabled it).
	Fallback string `json:"fallback,omitempty"`
	// Subflows is empty once the connection closes or when it fell back.
	Subflows []Subflow `json:"subflows"`
}

// Subflow is one TCP subflow of a flow's MPTCP connection, from the
// kernel's tcp_info.
type Subflow struct {
	// Uplink is hcpe's uplink owning the local address ("other" when none
	// does); empty in hag's answers.
	Uplink string         `json:"uplink,omitempty"`
	Local  netip.AddrPort `json:"local"`
	Remote netip.AddrPort `json:"remote"`
	RTTMs  float64        `json:"rtt_ms"`
	// BytesAcked are the bytes the peer acknowledged (sent: to hag on
	// hcpe, to the CPE on hag), BytesReceived those received.
	BytesAcked    uint64 `json:"bytes_acked"`
	BytesReceived uint64 `json:"bytes_received"`
	Retrans       uint32 `json:"retrans"` // total retransmitted segments
	// Backup (hcpe only) is the uplink's backup flag as the policy set it
	// now, not a per-subflow reading: the kernel reports no subflow's
	// backup bit through getsockopt, and MP_PRIO follows the uplink's
	// endpoint flag, so the two agree once the change reached the peer.
	Backup *bool `json:"backup,omitempty"`
}

// HAGStatus is hag's GET /v1/status.
type HAGStatus struct {
	Version   string        `json:"version"`
	Started   time.Time     `json:"started"`
	Listeners []Listener    `json:"listeners"`
	CPEs      []CPESeen     `json:"cpes"`
	Flows     HAGFlowCounts `json:"flows"`
	Errors    HAGErrors     `json:"errors"`
}

// Listener is one of hag's listening addresses.
type Listener struct {
	Address string `json:"address"`
	// Protocols served there: "mptcp" (Convert over MPTCP+TFO) and
	// "probes" (UDP health probes on the same port).
	Protocols []string `json:"protocols"`
}

// CPESeen is a configured CPE and what hag saw of it since start.
type CPESeen struct {
	ID          string     `json:"id"`
	Auth        string     `json:"auth"`
	FlowsActive int        `json:"flows_active"`
	Flows       uint64     `json:"flows"`               // relayed since start
	LastSeen    *time.Time `json:"last_seen,omitempty"` // last flow opened or active
	// Peers are the addresses the CPE's active flows came from (their
	// initial subflows').
	Peers    []netip.Addr `json:"peers,omitempty"`
	ToServer int64        `json:"to_server"`
	ToClient int64        `json:"to_client"`
	// Configured is false for flows of a CPE no longer in the config.
	Configured bool `json:"configured"`
}

// HAGFlowCounts sums hag's flows.
type HAGFlowCounts struct {
	Active             int               `json:"active"`
	HandshakesInFlight int64             `json:"handshakes_in_flight"`
	ToServer           int64             `json:"to_server"` // bytes relayed since start
	ToClient           int64             `json:"to_client"`
	Results            map[string]uint64 `json:"results"` // hag_flows_total by result
}

// HAGErrors are hag's error counters since start.
type HAGErrors struct {
	ConvertErrors  map[string]uint64 `json:"convert_errors"` // Error TLVs sent, by code
	LimitHits      map[string]uint64 `json:"limit_hits"`
	FlowEnds       map[string]uint64 `json:"flow_ends"` // by reason; eof is normal
	MPTCPFallbacks uint64            `json:"mptcp_fallbacks"`
}

// HAGFlows is hag's GET /v1/flows.
type HAGFlows struct {
	Flows []HAGFlow `json:"flows"`
}

// HAGFlow is one flow relayed by hag.
type HAGFlow struct {
	ID  uint64 `json:"id"`
	CPE string `json:"cpe"`
	// Peer is the CPE's address of the initial subflow; Client the LAN
	// host the Convert message named (zero if it named none).
	Peer        netip.AddrPort `json:"peer"`
	Client      netip.AddrPort `json:"client"`
	Destination netip.AddrPort `json:"destination"`
	// Source is the address hag dialled the server from.
	Source    netip.AddrPort `json:"source"`
	Preserved bool           `json:"preserved"` // Source is the client's own address
	Started   time.Time      `json:"started"`
	AgeMs     int64          `json:"age_ms"`
	ToServer  int64          `json:"to_server"`
	ToClient  int64          `json:"to_client"`
	MPTCP     bool           `json:"mptcp"`
	Subflows  []Subflow      `json:"subflows"`
}

// Ms converts a duration to the API's milliseconds.
func Ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
