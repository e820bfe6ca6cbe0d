package main

import (
	"math"
	"reflect"
	"testing"
	"time"
)

func msd(n int) time.Duration { return time.Duration(n) * time.Millisecond }

// steady builds samples of n bytes every step from from to to.
func steady(from, to, step time.Duration, n int) []sample {
	var ss []sample
	for t := from + step; t <= to; t += step {
		ss = append(ss, sample{At: t, N: n})
	}
	return ss
}

func TestBytesInAndMbps(t *testing.T) {
	ss := steady(0, time.Second, msd(10), 1250) // 1250 B / 10 ms = 1 Mbit/s
	if got := bytesIn(ss, 0, time.Second); got != 125000 {
		t.Errorf("bytesIn = %d, want 125000", got)
	}
	if got := mbps(bytesIn(ss, 0, time.Second), time.Second); math.Abs(got-1) > 1e-9 {
		t.Errorf("mbps = %v, want 1", got)
	}
	if got := bytesIn(ss, msd(500), time.Second); got != 62500 {
		t.Errorf("bytesIn second half = %d, want 62500", got)
	}
}

func TestLongestGapAndRecovery(t *testing.T) {
	// 40 Mbit/s (50 KB every 10 ms) until 4 s, nothing until 4.6 s, then
	// 20 Mbit/s until 5 s and 40 Mbit/s after.
	ss := steady(0, msd(4000), msd(10), 50000)
	ss = append(ss, steady(msd(4600), msd(5000), msd(10), 25000)...)
	ss = append(ss, steady(msd(5000), msd(8000), msd(10), 50000)...)
	gap, stalled := longestGap(ss, msd(4000), msd(8000))
	if gap != msd(610) || stalled {
		// the last read before the event is at 4.0 s, the next at 4.61 s
		t.Errorf("gap = %v stalled %v, want 610ms false", gap, stalled)
	}
	// 32 Mbit/s over 250 ms windows starting after 4 s: reached once a
	// window holds enough 40 Mbit/s samples, i.e. soon after 5 s.
	rec := recovery(ss, msd(4000), msd(8000), msd(250), 32)
	if rec < msd(1000) || rec > msd(1250) {
		t.Errorf("recovery = %v, want within (1s, 1.25s]", rec)
	}
	// A transfer that stops for good.
	dead := steady(0, msd(4000), msd(10), 50000)
	gap, stalled = longestGap(dead, msd(4000), msd(8000))
	if gap != msd(4000) || !stalled {
		t.Errorf("dead: gap = %v stalled %v, want 4s true", gap, stalled)
	}
	if rec := recovery(dead, msd(4000), msd(8000), msd(250), 32); rec != -1 {
		t.Errorf("dead: recovery = %v, want -1", rec)
	}
}

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 200; i >= 1; i-- {
		ds = append(ds, msd(i))
	}
	if got := percentile(ds, 50); got != msd(100) {
		t.Errorf("p50 = %v", got)
	}
	if got := percentile(ds, 99); got != msd(198) {
		t.Errorf("p99 = %v, want the 198th value", got)
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("p50 of nothing = %v", got)
	}
}

func TestJSONableNaN(t *testing.T) {
	r := &Report{Efficiency: []EffRow{{System: "x", Efficiency: math.NaN()}}}
	j := jsonable(reflect.ValueOf(r)).(map[string]any)
	row := j["efficiency"].([]any)[0].(map[string]any)
	if v, ok := row["efficiency"]; !ok || v != nil {
		t.Errorf("NaN encoded as %v, want null", v)
	}
}
