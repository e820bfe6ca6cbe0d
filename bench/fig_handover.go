package main

import (
	"fmt"
	"math"
	"strings"
)

// Figure 3, handover: DSL set down during a download on the default pair,
// repeated -handover-runs times per system; the report gives the median
// run and the worst.

// recoveryShare is the share of LTE's downstream rate that counts as
// "back" after the handover.
const recoveryShare = 0.8

// HandoverRow is one run of figure 3 for one system.
type HandoverRow struct {
	System        string  `json:"system"`
	Run           int     `json:"run,omitempty"` // 1, 2, … of the system's repetitions
	DownAtS       float64 `json:"dsl_down_at_s"`
	Seconds       float64 `json:"seconds"`
	BeforeMbps    float64 `json:"before_mbps"`
	LongestGapMs  float64 `json:"longest_gap_ms"`
	GapBeforeMs   float64 `json:"longest_gap_before_ms"`
	Stalled       bool    `json:"stalled_to_end"`
	ThresholdMbps float64 `json:"threshold_mbps"`
	RecoveryMs    float64 `json:"recovery_ms"` // -1: never
	AfterMbps     float64 `json:"after_mbps"`  // the last AfterS seconds
	AfterS        float64 `json:"after_window_s,omitempty"`
	LTEUtilAfter  float64 `json:"lte_utilisation_after"`
	Err           string  `json:"error,omitempty"`
}

// handoverStat is a system's runs of figure 3 together.
type handoverStat struct {
	System  string
	Runs    []HandoverRow // without error
	Failed  int
	Gap     spread // longest gap, ms; Max is the worst
	Stalled int    // runs stalled to the end
	Rec     spread // time back to the threshold, ms, over the runs that got back
	Never   int    // runs that never got back
	Before  spread
	After   spread
	LTEUtil spread
	GapPre  spread
	DownAt  spread
}

// recWorst is the worst time back in ms, or -1 when a run never got back.
func (h *handoverStat) recWorst() float64 {
	if h.Never > 0 {
		return -1
	}
	return h.Rec.Max
}

// recMedian is the median time back over all runs, a run that never got
// back counting as the longest; -1 when the median run never got back.
func (h *handoverStat) recMedian() float64 {
	vs := make([]float64, 0, len(h.Runs))
	for _, e := range h.Runs {
		v := e.RecoveryMs
		if v < 0 {
			v = math.Inf(1)
		}
		vs = append(vs, v)
	}
	m := median(vs)
	if math.IsInf(m, 1) || math.IsNaN(m) {
		return -1
	}
	return m
}

// handoverOf is a system's figure 3, nil if no run completed.
func (r *Report) handoverOf(sys string) *handoverStat {
	h := &handoverStat{System: sys}
	var gaps, recs, before, after, util, pre, down []float64
	for _, e := range r.Handover {
		if e.System != sys {
			continue
		}
		if e.Err != "" {
			h.Failed++
			continue
		}
		h.Runs = append(h.Runs, e)
		gaps = append(gaps, e.LongestGapMs)
		if e.Stalled {
			h.Stalled++
		}
		if e.RecoveryMs < 0 {
			h.Never++
		} else {
			recs = append(recs, e.RecoveryMs)
		}
		before, after, util = append(before, e.BeforeMbps), append(after, e.AfterMbps), append(util, e.LTEUtilAfter)
		pre, down = append(pre, e.GapBeforeMs), append(down, e.DownAtS)
	}
	if len(h.Runs) == 0 {
		return nil
	}
	h.Gap, h.Rec, h.Before, h.After, h.LTEUtil = spreadOf(gaps), spreadOf(recs), spreadOf(before), spreadOf(after), spreadOf(util)
	h.GapPre, h.DownAt = spreadOf(pre), spreadOf(down)
	return h
}

// handoverSystems are the systems of figure 3 in the order measured.
func (r *Report) handoverSystems() []string {
	var out []string
	for _, e := range r.Handover {
		if len(out) == 0 || out[len(out)-1] != e.System {
			out = append(out, e.System)
		}
	}
	return out
}

func recCell(ms float64) string {
	if ms < 0 {
		return "never"
	}
	return num(ms, 0)
}

// renderHandover writes figure 3's section.
func (r *Report) renderHandover(b *strings.Builder) {
	if len(r.Handover) == 0 {
		return
	}
	w := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	w("\n## 3. Handover: DSL set down during a download\n\n")
	t := newTable(b, "system", "runs", "DSL down at s", "before Mbit/s", "longest gap ms: median / worst", "each run's longest gap ms", "(longest gap before, worst)", "time back to LTE's rate ms: median / worst", "after Mbit/s (median)", "LTE util after (median)")
	for _, sys := range r.handoverSystems() {
		h := r.handoverOf(sys)
		var errs string
		for _, e := range r.Handover {
			if e.System == sys && e.Err != "" {
				errs = errCell(e.Err)
			}
		}
		if h == nil {
			t.row(sys, "0", "", "", "", "", "", "", "", errs)
			continue
		}
		var each []string
		for _, e := range h.Runs {
			s := num(e.LongestGapMs, 0)
			if e.Stalled {
				s += " (stalled)"
			}
			each = append(each, s)
		}
		gap := num(h.Gap.Med, 0) + " / " + num(h.Gap.Max, 0)
		if h.Stalled > 0 {
			gap += fmt.Sprintf(" (%d of %d stalled to the end)", h.Stalled, len(h.Runs))
		}
		runs := fmt.Sprint(len(h.Runs))
		if h.Failed > 0 {
			runs += fmt.Sprintf(" (+%d failed)", h.Failed)
		}
		t.row(sys, runs, f1(h.DownAt.Med), f1(h.Before.Med), gap, strings.Join(each, ", "), num(h.GapPre.Max, 0),
			recCell(h.recMedian())+" / "+recCell(h.recWorst()), f1(h.After.Med), pct(h.LTEUtil.Med)+errs)
	}
	if len(r.Handover) > 0 {
		e := r.Handover[0]
		w("\nEach system's download ran the number of times in the runs column, one after another; \"worst\" is the longest of them. \"Back to LTE's rate\": the first 250 ms window that starts after the event and carries at least %.1f Mbit/s (%.0f %% of LTE's downstream rate). The gap is the longest time between two socket reads that returned data, over reads after the event.", e.ThresholdMbps, 100*recoveryShare)
		if e.AfterS > 0 {
			w(" \"After\" is the last %.0f s of the %.0f s download.", e.AfterS, e.Seconds)
		}
		w("\n\n")
	}
}
