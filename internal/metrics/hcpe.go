package metrics

import "github.com/prometheus/client_golang/prometheus"

// HCPE is hcpe's collectors.
type HCPE struct {
	Registry *prometheus.Registry

	FlowsActive   prometheus.Gauge
	Flows         *prometheus.CounterVec   // result: ok, the Convert error's name, hag_unreachable, mptcp_unavailable
	FlowSetup     *prometheus.HistogramVec // result; LAN SYN seen → hag's Convert reply
	ConvertErrors *prometheus.CounterVec   // code
	UplinkBytes   *prometheus.CounterVec   // uplink, direction (up, down); from the kernel's subflow counters
	Subflows      *prometheus.GaugeVec     // uplink; established subflows now
	Fallbacks     *prometheus.CounterVec   // uplink, reason: stripped, syn_retries, blackhole
	NetstackDrops *prometheus.CounterVec   // reason: handshakes, handshakes_per_host, flows, flows_per_host, memory
	UplinkUp      *prometheus.GaugeVec     // uplink; 1 when the probes say it is alive
	UplinkBackup  *prometheus.GaugeVec     // uplink; 1 when its endpoint carries the backup flag
	UplinkRTT     *prometheus.GaugeVec     // uplink; smoothed probe RTT
	UplinkLoss    *prometheus.GaugeVec     // uplink; probe loss over the recent window
	FlowEnds      *prometheus.CounterVec   // reason

	UplinkStateChanges *prometheus.CounterVec // uplink, state (the new one: active, backup, down)
	UplinkStateSeconds *prometheus.CounterVec // uplink, state
	OverflowActive     *prometheus.GaugeVec   // uplink; 1 while an overflow uplink carries data because the primaries are saturated
	FlowRaces          *prometheus.CounterVec // uplink (the winner); first subflow raced onto another uplink

	UplinkStalls         *prometheus.CounterVec // uplink; running connections found stalled on it
	UplinkWithdrawals    *prometheus.CounterVec // uplink, by (stall, probes); endpoints withdrawn
	UplinkReinstatements *prometheus.CounterVec // uplink, reason (alive, unconfirmed)
	SubflowsAborted      *prometheus.CounterVec // uplink; subflows aborted at a withdrawal

	NativeMoves     *prometheus.CounterVec // uplink (moved to), reason: failover, return; native routes moved
	NativeUplink    *prometheus.GaugeVec   // uplink; 1 for the uplink native traffic leaves on now
	NativeFailover  prometheus.Gauge       // seconds from the dead uplink's last probe answer to the last failover move
	NativeCTFlushed prometheus.Counter     // NAT'ed conntrack entries flushed at moves

	PoolSize            prometheus.Gauge       // warm connections ready now
	PoolTarget          prometheus.Gauge       // what the sizer wants
	PoolHits            prometheus.Counter     // flows that took a warm connection
	PoolMisses          prometheus.Counter     // flows that dialled because the pool was empty
	PoolRefills         prometheus.Counter     // connections the pool opened
	PoolDiscarded       *prometheus.CounterVec // reason: dead, uplink_down, aged, hag_unreachable, shutdown
	KernelBlackholes    prometheus.Gauge       // MPTcpExtBlackhole, read from the kernel
	KernelSYNTXDisabled prometheus.Gauge       // MPTcpExtMPCapableSYNTXDisabled
}

// NewHCPE registers hcpe's collectors on a fresh registry.
func NewHCPE() *HCPE {
	m := &HCPE{
		Registry: newRegistry("hcpe"),
		FlowsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hcpe_flows_active", Help: "LAN flows currently carried to hag.",
		}),
		Flows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hcpe_flows_total", Help: "Intercepted LAN connections, by result.",
		}, []string{"result"}),
		FlowSetup: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "hcpe_flow_setup_duration_seconds", Help: "From the LAN SYN to hag's Convert reply, by result.", Buckets: setupBuckets,
		}, []string{"result"}),
		ConvertErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hcpe_convert_errors_total", Help: "Convert Error TLVs received from hag, by RFC 8803 error code.",
		}, []string{"code"}),
		UplinkBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hcpe_uplink_bytes_total", Help: "Payload bytes carried by MPTCP subflows, by uplink and direction (kernel subflow counters).",
		}, []string{"uplink", "direction"}),
		Subflows: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hcpe_uplink_subflows", Help: "Established MPTCP subflows, by uplink.",
		}, []string{"uplink"}),
		Fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hcpe_mptcp_fallbacks_total", Help: "Connections to hag that fell back from MPTCP to plain TCP, by uplink and reason (stripped, syn_retries, blackhole).",
		}, []string{"uplink", "reason"}),
		NetstackDrops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hcpe_netstack_drops_total", Help: "LAN SYNs dropped or refused (RST) by a bound, by reason.",
		}, []string{"reason"}),
		UplinkUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hcpe_uplink_up", Help: "1 when the uplink's health probes reach hag.",
		}, []string{"uplink"}),
		UplinkBackup: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hcpe_uplink_backup", Help: "1 when the uplink's MPTCP endpoint is a backup (carries data only when nothing else can).",
		}, []string{"uplink"}),
		UplinkRTT: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hcpe_uplink_rtt_seconds", Help: "Smoothed health-probe round-trip time to hag, by uplink.",
		}, []string{"uplink"}),
		UplinkLoss: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hcpe_uplink_probe_loss_ratio", Help: "Share of recent health probes that went unanswered, by uplink.",
		}, []string{"uplink"}),
		FlowEnds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hcpe_flow_ends_total", Help: "Carried flows that ended, by reason.",
		}, []string{"reason"}),
		UplinkStateChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hcpe_uplink_state_changes_total", Help: "Uplink state changes (active, backup, down), by uplink and the state entered.",
		}, []string{"uplink", "state"}),
		UplinkStateSeconds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hcpe_uplink_state_seconds_total", Help: "Time spent in each state (active, backup, down), by uplink.",
		}, []string{"uplink", "state"}),
		OverflowActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hcpe_uplink_overflow_active", Help: "1 while an overflow uplink carries data because the primaries run above their share.",
		}, []string{"uplink"}),
		FlowRaces: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hcpe_flow_setup_races_total", Help: "New flows whose handshake with hag was raced onto another uplink because the policy's choice did not answer in time, by the uplink that won.",
		}, []string{"uplink"}),
		UplinkStalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hcpe_uplink_stalls_total", Help: "Running connections found waiting on data the uplink's subflow lost while another uplink still delivered, by uplink.",
		}, []string{"uplink"}),
		UplinkWithdrawals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hcpe_uplink_withdrawals_total", Help: "Withdrawals of an uplink's MPTCP endpoints (its subflows closed, hag told with RM_ADDR), by uplink and what triggered it (stall, probes).",
		}, []string{"uplink", "by"}),
		UplinkReinstatements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hcpe_uplink_reinstatements_total", Help: "Withdrawn uplinks whose endpoints were added back (live flows regain a subflow on them), by uplink and reason (alive, unconfirmed).",
		}, []string{"uplink", "reason"}),
		SubflowsAborted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hcpe_uplink_subflows_aborted_total", Help: "Subflows to hag aborted when their uplink was withdrawn, by uplink.",
		}, []string{"uplink"}),
		NativeMoves: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hcpe_native_route_moves_total", Help: "Moves of the native routes (bypass.uplink's table) to another uplink, by the uplink moved to and reason (failover, return).",
		}, []string{"uplink", "reason"}),
		NativeUplink: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hcpe_native_uplink", Help: "1 for the uplink what the LAN sends natively leaves on now.",
		}, []string{"uplink"}),
		NativeFailover: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hcpe_native_failover_seconds", Help: "Last native failover: from the dead uplink's last answered probe to the route move.",
		}),
		NativeCTFlushed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hcpe_native_conntrack_flushed_total", Help: "Masqueraded conntrack entries of the uplink left behind, deleted when the native routes moved.",
		}),
		PoolSize: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hcpe_pool_connections", Help: "Warm MPTCP connections to hag ready for a new flow.",
		}),
		PoolTarget: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hcpe_pool_target_connections", Help: "Warm connections the pool aims for, from the recent flow arrival rate.",
		}),
		PoolHits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hcpe_pool_hits_total", Help: "New flows that took a warm connection.",
		}),
		PoolMisses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hcpe_pool_misses_total", Help: "New flows that found the pool empty and dialled hag.",
		}),
		PoolRefills: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hcpe_pool_refills_total", Help: "Warm connections the pool opened.",
		}),
		PoolDiscarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hcpe_pool_discarded_total", Help: "Warm connections closed unused, by reason (dead, uplink_down, unusable, aged, hag_unreachable, shutdown).",
		}, []string{"reason"}),
		KernelBlackholes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hcpe_mptcp_kernel_blackholes", Help: "The kernel's MPTcpExtBlackhole counter in hcpe's namespace: MPTCP blackholes it detected (0 while net.mptcp.blackhole_timeout = 0).",
		}),
		KernelSYNTXDisabled: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hcpe_mptcp_kernel_syn_tx_disabled", Help: "The kernel's MPTcpExtMPCapableSYNTXDisabled counter in hcpe's namespace: SYNs sent without MP_CAPABLE because of a detected blackhole.",
		}),
	}
	m.Registry.MustRegister(m.KernelBlackholes, m.KernelSYNTXDisabled, m.FlowsActive, m.Flows, m.FlowSetup, m.ConvertErrors, m.UplinkBytes, m.Subflows,
		m.Fallbacks, m.NetstackDrops, m.UplinkUp, m.UplinkBackup, m.UplinkRTT, m.UplinkLoss, m.FlowEnds,
		m.UplinkStateChanges, m.UplinkStateSeconds, m.OverflowActive, m.FlowRaces,
		m.UplinkStalls, m.UplinkWithdrawals, m.UplinkReinstatements, m.SubflowsAborted,
		m.NativeMoves, m.NativeUplink, m.NativeFailover, m.NativeCTFlushed,
		m.PoolSize, m.PoolTarget, m.PoolHits, m.PoolMisses, m.PoolRefills, m.PoolDiscarded)
	return m
}
