package main

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// sample is one read that returned data: when (since the transfer's
// start) and how many bytes.
type sample struct {
	At time.Duration
	N  int
}

// bytesIn sums the bytes of samples received in (from, to].
func bytesIn(ss []sample, from, to time.Duration) int64 {
	var n int64
	for _, s := range ss {
		if s.At > from && s.At <= to {
			n += int64(s.N)
		}
	}
	return n
}

// mbps is a byte count over a duration in Mbit/s.
func mbps(bytes int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(bytes) * 8 / d.Seconds() / 1e6
}

// merge returns the samples of several transfers that share a start, in
// time order.
func merge(sets ...[]sample) []sample {
	var out []sample
	for _, s := range sets {
		out = append(out, s...)
	}
	slices.SortFunc(out, func(a, b sample) int { return int(a.At - b.At) })
	return out
}

// longestGap is the longest time between two reads that returned data,
// over the gaps that end after from (the gap that spans "from" counts in
// full). until is the end of the test: a transfer still silent at until
// has a gap that lasts until then, and stalled reports it.
func longestGap(ss []sample, from, until time.Duration) (gap time.Duration, stalled bool) {
	last := time.Duration(0)
	for _, s := range ss {
		if s.At > until {
			break
		}
		if s.At > from {
			gap = max(gap, s.At-last)
		}
		last = s.At
	}
	if g := until - max(last, from); until-last > gap && g > 0 {
		// Silent at the end: count it only if it outlasts every other gap
		// and the transfer never got going again.
		return until - last, true
	}
	return gap, false
}

// recovery is how long after "from" the received rate, over a window
// that starts no earlier than "from", first reached thresholdMbps. It
// returns -1 if it never did before until.
func recovery(ss []sample, from, until, window time.Duration, thresholdMbps float64) time.Duration {
	need := int64(thresholdMbps * 1e6 / 8 * window.Seconds())
	// Slide the window end over every sample time: the first end at which
	// the window holds enough bytes.
	i := 0 // first sample inside the window
	var inWin int64
	for j, s := range ss {
		if s.At <= from {
			i = j + 1
			continue
		}
		if s.At > until {
			break
		}
		inWin += int64(s.N)
		lo := max(from, s.At-window)
		for i < j && ss[i].At <= lo {
			if ss[i].At > from {
				inWin -= int64(ss[i].N)
			}
			i++
		}
		if s.At-from >= window && inWin >= need {
			return s.At - from
		}
	}
	return -1
}

// percentile returns the p-th percentile (0..100) of ds by the nearest-
// rank method; p99 of 200 values is the 198th smallest.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	rank = min(max(rank, 1), len(s))
	return s[rank-1]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// ratio is a/b, or NaN (rendered "n/a") when b is 0.
func ratio(a, b float64) float64 {
	if b == 0 {
		return math.NaN()
	}
	return a / b
}

// spread is a measure repeated n times: its median, least and greatest.
type spread struct {
	N             int
	Med, Min, Max float64
}

// spreadOf summarises vs, leaving out NaNs (not applicable); N is 0 when
// nothing is left.
func spreadOf(vs []float64) spread {
	var ok []float64
	for _, v := range vs {
		if !math.IsNaN(v) {
			ok = append(ok, v)
		}
	}
	if len(ok) == 0 {
		return spread{Med: math.NaN(), Min: math.NaN(), Max: math.NaN()}
	}
	slices.Sort(ok)
	med := ok[len(ok)/2]
	if len(ok)%2 == 0 {
		med = (ok[len(ok)/2-1] + ok[len(ok)/2]) / 2
	}
	return spread{N: len(ok), Med: med, Min: ok[0], Max: ok[len(ok)-1]}
}

// spreadBy is the spread of one field over rows.
func spreadBy[T any](rows []T, f func(T) float64) spread {
	vs := make([]float64, len(rows))
	for i, r := range rows {
		vs[i] = f(r)
	}
	return spreadOf(vs)
}

// median is spreadOf(vs).Med.
func median(vs []float64) float64 { return spreadOf(vs).Med }

// cell renders the median and, when there was more than one value, the
// range: "88.1 (86.0–89.2)". scale multiplies every value (100 for a
// share shown in per cent).
func (s spread) cell(prec int, scale float64) string {
	if s.N == 0 {
		return "n/a"
	}
	if s.N == 1 {
		return num(s.Med*scale, prec)
	}
	return fmt.Sprintf("%s (%s–%s)", num(s.Med*scale, prec), num(s.Min*scale, prec), num(s.Max*scale, prec))
}
