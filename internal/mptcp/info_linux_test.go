package mptcp

import (
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestTCPInfoOffsets checks the hand-written tcp_info offsets against
// x/sys's struct, which is generated from the kernel headers.
func TestTCPInfoOffsets(t *testing.T) {
	var ti unix.TCPInfo
	ti.State, ti.Ca_state, ti.Retransmits, ti.Options = 1, 2, 3, 7
	ti.Rto, ti.Snd_mss, ti.Rcv_mss, ti.Unacked, ti.Lost, ti.Retrans = 200000, 1448, 1400, 5, 6, 7
	ti.Rtt, ti.Rttvar, ti.Snd_ssthresh, ti.Snd_cwnd, ti.Total_retrans = 1500, 300, 50, 10, 11
	ti.Pacing_rate, ti.Bytes_acked, ti.Bytes_received = 12, 13, 14
	ti.Segs_out, ti.Segs_in, ti.Notsent_bytes, ti.Min_rtt = 15, 16, 17, 18
	ti.Delivery_rate, ti.Bytes_sent, ti.Bytes_retrans = 19, 20, 21
	ti.Last_data_sent, ti.Last_data_recv, ti.Last_ack_recv = 22, 23, 24
	b := unsafe.Slice((*byte)(unsafe.Pointer(&ti)), unsafe.Sizeof(ti))
	got, err := DecodeTCPInfo(b)
	if err != nil {
		t.Fatal(err)
	}
	want := TCPInfo{
		State: 1, CAState: 2, Retransmits: 3, Options: 7, RTO: 200 * time.Millisecond,
		SndMSS: 1448, RcvMSS: 1400, Unacked: 5, Lost: 6, Retrans: 7,
		RTT: 1500 * time.Microsecond, RTTVar: 300 * time.Microsecond, SndSsthresh: 50, SndCwnd: 10, TotalRetrans: 11,
		PacingRate: 12, BytesAcked: 13, BytesRecv: 14, SegsOut: 15, SegsIn: 16, NotsentBytes: 17,
		MinRTT: 18 * time.Microsecond, DeliveryRate: 19, BytesSent: 20, BytesRetrans: 21,
		LastDataSent: 22 * time.Millisecond, LastDataRecv: 23 * time.Millisecond, LastAckRecv: 24 * time.Millisecond, Len: len(b),
	}
	if got != want {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	// A short (old-kernel) tcp_info keeps the fields it has.
	got, err = DecodeTCPInfo(b[:tcpInfoMinLen])
	if err != nil || got.RTT != want.RTT || got.BytesSent != 0 || got.PacingRate != 0 {
		t.Errorf("short tcp_info: %+v, %v", got, err)
	}
	if _, err := DecodeTCPInfo(b[:tcpInfoMinLen-1]); err == nil {
		t.Error("too-short tcp_info decoded without error")
	}
}
