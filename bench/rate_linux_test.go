package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"hybridgw/internal/convert"
)

func TestErrKind(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("waiting for hag's reply: %w", &convert.RemoteError{ErrorTLV: convert.NewError(convert.ResourceExceeded, 1)}), errKindConvertP + "Resource Exceeded"},
		{fmt.Errorf("connecting to hag: %w", context.DeadlineExceeded), errKindTimeout},
		{fmt.Errorf("waiting for hag's reply: %w", os.ErrDeadlineExceeded), errKindTimeout},
		{fmt.Errorf("connecting: %w", syscall.ECONNREFUSED), errKindRefused},
		{fmt.Errorf("connecting: %w", syscall.EADDRNOTAVAIL), errKindPorts},
		{fmt.Errorf("reading: %w", io.EOF), errKindReset},
		{fmt.Errorf("reading: %w", syscall.ECONNRESET), errKindReset},
		{fmt.Errorf("socket: %w", syscall.EMFILE), errKindNofile},
		{fmt.Errorf("something else"), errKindOther},
	} {
		if got := errKind(tc.err); got != tc.want {
			t.Errorf("errKind(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

// finish names the limit, the token bucket and a pass that only the burst
// allowed.
func TestRateFinish(t *testing.T) {
	r := RateRun{RateLimit: 500, RateBurst: 1000, SustainedPerS: 800, Steps: []RateStep{
		{Target: 800, Seconds: 3, Pass: true},
		{Target: 1200, Seconds: 3, ErrPct: 40, Errors: map[string]int{errKindConvertP + "Resource Exceeded": 1400},
			LimitHits: map[string]float64{"new_flows_rate": 1400}, Kernel: map[string]float64{"hag ListenDrops": 20, "hag MPJoinNoTokenFound": 20}},
	}}
	r.finish(3 * time.Second)
	for _, want := range []string{"limit new_flows_rate refused 1400", "500 new flows/s sustained, bursts of 1000", "2400 flows fit in the burst plus 3 s of refill (2500)", "20 of them MP_JOINs"} {
		if !strings.Contains(r.Why, want) {
			t.Errorf("why %q lacks %q", r.Why, want)
		}
	}
	if r.BrokeAt != 1200 {
		t.Errorf("broke at %d, want 1200", r.BrokeAt)
	}
	all := RateRun{Steps: []RateStep{{Target: 6400, Pass: true}}}
	all.finish(time.Second)
	if all.BrokeAt != 0 || !strings.Contains(all.Why, "every step passed") {
		t.Errorf("a ramp that never broke: %+v", all)
	}
}

func TestFDFit(t *testing.T) {
	b := &bench{nofile: 20000}
	// Before anything is measured: two per flow.
	if n, _ := b.fdFit(map[string]float64{}, map[string]int{"hag": 15, "bench": 25}); n != 9800 {
		t.Errorf("unmeasured fit %d, want 9800", n)
	}
	n, who := b.fdFit(map[string]float64{"hag": 6, "hcpe": 1, "bench": 2}, map[string]int{"hag": 15, "hcpe": 20, "bench": 25})
	if n != 3200 || who != "hag" {
		t.Errorf("fit %d bound by %s, want 3200 by hag", n, who)
	}
}
