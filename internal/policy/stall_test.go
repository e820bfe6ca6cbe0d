package policy

import (
	"slices"
	"testing"
	"time"
)

func TestStalled(t *testing.T) {
	p := DefaultStallParams() // after 30 ms or 2 RTTs, slack 10 ms, active 300 ms
	sf := func(up string, rtt, sinceData, sinceAck time.Duration, unacked uint32) SubflowView {
		return SubflowView{Uplink: up, RTT: rtt, SinceData: sinceData, SinceAck: sinceAck, Unacked: unacked, Received: true, Acked: true}
	}
	type sample struct {
		at   time.Duration
		conn ConnView
		want []string
	}
	cases := []struct {
		name    string
		samples []sample
		fresh   bool
	}{
		{"download: DSL falls silent, LTE still delivers behind the hole", []sample{
			{0, ConnView{RcvNxt: 100, Subflows: []SubflowView{sf("dsl", 15*ms, 0, 0, 0), sf("lte", 35*ms, 0, 0, 0)}}, nil},
			{10 * ms, ConnView{RcvNxt: 200, Subflows: []SubflowView{sf("dsl", 15*ms, 0, 0, 0), sf("lte", 35*ms, 0, 0, 0)}}, nil},
			{30 * ms, ConnView{RcvNxt: 200, Subflows: []SubflowView{sf("dsl", 15*ms, 20*ms, 0, 0), sf("lte", 35*ms, 1*ms, 0, 0)}}, nil},
			{40 * ms, ConnView{RcvNxt: 200, Subflows: []SubflowView{sf("dsl", 15*ms, 30*ms, 0, 0), sf("lte", 35*ms, 1*ms, 0, 0)}}, []string{"dsl"}},
		}, false},
		{"download: a slow path's hole with both paths delivering is no stall", []sample{
			{0, ConnView{RcvNxt: 100, Subflows: []SubflowView{sf("dsl", 15*ms, 0, 0, 0), sf("lte", 35*ms, 0, 0, 0)}}, nil},
			{60 * ms, ConnView{RcvNxt: 100, Subflows: []SubflowView{sf("dsl", 15*ms, 1*ms, 0, 0), sf("lte", 35*ms, 2*ms, 0, 0)}}, nil},
		}, false},
		{"download: everything silent is an idle sender, not a dead path", []sample{
			{0, ConnView{RcvNxt: 100, Subflows: []SubflowView{sf("dsl", 15*ms, 0, 0, 0), sf("lte", 35*ms, 4*time.Second, 0, 0)}}, nil},
			{200 * ms, ConnView{RcvNxt: 100, Subflows: []SubflowView{sf("dsl", 15*ms, 200*ms, 0, 0), sf("lte", 35*ms, 4200*ms, 0, 0)}}, nil},
		}, false},
		{"download: a backup silent long before the stall is not blamed", []sample{
			{0, ConnView{RcvNxt: 100, Subflows: []SubflowView{sf("dsl", 15*ms, 0, 0, 0), sf("lte", 35*ms, 5*time.Second, 0, 0)}}, nil},
			{100 * ms, ConnView{RcvNxt: 100, Subflows: []SubflowView{sf("dsl", 15*ms, 1*ms, 0, 0), sf("lte", 35*ms, 5100*ms, 0, 0)}}, nil},
		}, false},
		{"download: LTE is given two of its RTTs", []sample{
			{0, ConnView{RcvNxt: 100, Subflows: []SubflowView{sf("dsl", 15*ms, 0, 0, 0), sf("lte", 35*ms, 0, 0, 0)}}, nil},
			{50 * ms, ConnView{RcvNxt: 100, Subflows: []SubflowView{sf("dsl", 15*ms, 1*ms, 0, 0), sf("lte", 35*ms, 50*ms, 0, 0)}}, nil},
			{70 * ms, ConnView{RcvNxt: 100, Subflows: []SubflowView{sf("dsl", 15*ms, 1*ms, 0, 0), sf("lte", 35*ms, 70*ms, 0, 0)}}, []string{"lte"}},
		}, false},
		{"upload: DSL's data unacknowledged while LTE's ACKs arrive", []sample{
			{0, ConnView{SndUna: 100, WriteSeq: 500, Subflows: []SubflowView{sf("dsl", 15*ms, 0, 0, 10), sf("lte", 35*ms, 0, 0, 10)}}, nil},
			{20 * ms, ConnView{SndUna: 100, WriteSeq: 900, Subflows: []SubflowView{sf("dsl", 15*ms, 0, 20*ms, 10), sf("lte", 35*ms, 0, 1*ms, 10)}}, nil},
			{30 * ms, ConnView{SndUna: 100, WriteSeq: 900, Subflows: []SubflowView{sf("dsl", 15*ms, 0, 30*ms, 10), sf("lte", 35*ms, 0, 1*ms, 10)}}, []string{"dsl"}},
		}, false},
		{"upload: nothing outstanding is no stall", []sample{
			{0, ConnView{SndUna: 500, WriteSeq: 500, Subflows: []SubflowView{sf("dsl", 15*ms, 0, 0, 0), sf("lte", 35*ms, 0, 0, 0)}}, nil},
			{100 * ms, ConnView{SndUna: 500, WriteSeq: 500, Subflows: []SubflowView{sf("dsl", 15*ms, 0, 100*ms, 0), sf("lte", 35*ms, 0, 1*ms, 0)}}, nil},
		}, false},
		{"upload: a subflow with nothing in flight is not blamed", []sample{
			{0, ConnView{SndUna: 100, WriteSeq: 500, Subflows: []SubflowView{sf("dsl", 15*ms, 0, 0, 0), sf("lte", 35*ms, 0, 0, 10)}}, nil},
			{40 * ms, ConnView{SndUna: 100, WriteSeq: 500, Subflows: []SubflowView{sf("dsl", 15*ms, 0, 40*ms, 0), sf("lte", 35*ms, 0, 1*ms, 10)}}, nil},
		}, false},
		{"download: a fresh join that never carried data is not blamed", []sample{
			{0, ConnView{RcvNxt: 100, Subflows: []SubflowView{{Uplink: "dsl", RTT: 15 * ms}, sf("lte", 35*ms, 0, 0, 0)}}, nil},
			{40 * ms, ConnView{RcvNxt: 100, Subflows: []SubflowView{{Uplink: "dsl", RTT: 15 * ms, SinceData: 40 * ms, SinceAck: 40 * ms}, sf("lte", 35*ms, 1*ms, 0, 0)}}, nil},
		}, false},
		{"a path carrying data for less than Learn is not blamed", []sample{
			{0, ConnView{RcvNxt: 100, Subflows: []SubflowView{sf("dsl", 15*ms, 0, 0, 0), sf("lte", 35*ms, 0, 0, 0)}}, nil},
			{900 * ms, ConnView{RcvNxt: 200, Subflows: []SubflowView{sf("dsl", 15*ms, 0, 0, 0), sf("lte", 35*ms, 0, 0, 0)}}, nil},
			{970 * ms, ConnView{RcvNxt: 200, Subflows: []SubflowView{sf("dsl", 15*ms, 1*ms, 0, 0), sf("lte", 35*ms, 70*ms, 0, 0)}}, nil},
			{1900 * ms, ConnView{RcvNxt: 300, Subflows: []SubflowView{sf("dsl", 15*ms, 0, 0, 0), sf("lte", 35*ms, 0, 0, 0)}}, nil},
			{1970 * ms, ConnView{RcvNxt: 300, Subflows: []SubflowView{sf("dsl", 15*ms, 1*ms, 0, 0), sf("lte", 35*ms, 70*ms, 0, 0)}}, []string{"lte"}},
		}, true},
		{"two subflows of the dead uplink are one blame", []sample{
			{0, ConnView{RcvNxt: 100, Subflows: []SubflowView{sf("dsl", 15*ms, 0, 0, 0), sf("dsl", 15*ms, 0, 0, 0), sf("lte", 35*ms, 0, 0, 0)}}, nil},
			{40 * ms, ConnView{RcvNxt: 100, Subflows: []SubflowView{sf("dsl", 15*ms, 40*ms, 0, 0), sf("dsl", 15*ms, 35*ms, 0, 0), sf("lte", 35*ms, 1*ms, 0, 0)}}, []string{"dsl"}},
		}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Every uplink has carried data for a while before the first
			// sample, unless the case says otherwise.
			tr := StallTrack{Carrying: map[string]time.Time{"dsl": t0.Add(-time.Minute), "lte": t0.Add(-time.Minute)}}
			if c.fresh {
				tr.Carrying = nil
			}
			for i, s := range c.samples {
				var got []string
				tr, got, _ = Stalled(tr, t0.Add(s.at), s.conn, p)
				if !slices.Equal(got, s.want) {
					t.Errorf("sample %d (t=%v): blamed %v, want %v", i, s.at, got, s.want)
				}
			}
		})
	}
}
