package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Figure 5, memory with idle open flows: RSS, heap, goroutines and
// descriptors of each system's processes at each count of idle flows.

// afterCloseWait is how long after closing every flow figure 5 reads what
// the daemons still hold: issue 17's bound (descriptors and RSS back within
// 10 % of the baseline within 5 s). Closing 9,800 flows took hcpe more
// than 3 s here.
const afterCloseWait = 5 * time.Second

// idleOpenAtOnce is how many of figure 5's flows are opened at a time.
const idleOpenAtOnce = 32

// MemRow is figure 5 for one process and count of idle flows.
type MemRow struct {
	System        string     `json:"system"`
	Process       string     `json:"process"`
	Asked         int        `json:"asked_flows"`  // the count -idle-flows (or another system's run) asked for
	Target        int        `json:"target_flows"` // the count aimed at: Asked, or the most the open-file limit allows
	Flows         int        `json:"flows"`        // the count established
	FDsBase       int        `json:"fds_base"`     // open descriptors before, with the flows, after closing
	FDsLoaded     int        `json:"fds_loaded"`
	FDsAfter      int        `json:"fds_after_close,omitempty"`
	FDsPerFlow    float64    `json:"fds_per_flow"`
	PipesLoaded   int        `json:"pipes_loaded"` // of FDsLoaded
	Closed        bool       `json:"after_close_measured"`
	RSSBaseMB     float64    `json:"rss_base_mb"`
	RSSLoadedMB   float64    `json:"rss_loaded_mb"`
	RSSAfterMB    float64    `json:"rss_after_close_mb"`
	PerFlowKB     float64    `json:"rss_per_flow_kb"`
	HeapBaseMB    float64    `json:"heap_inuse_base_mb,omitempty"`
	HeapLoadedMB  float64    `json:"heap_inuse_loaded_mb,omitempty"`
	HeapAfterMB   float64    `json:"heap_inuse_after_close_mb,omitempty"`
	HeapPerFlowKB float64    `json:"heap_per_flow_kb,omitempty"`
	Goroutines    [3]float64 `json:"goroutines_base_loaded_after,omitempty"`
	OpenSeconds   float64    `json:"open_seconds"`
	Err           string     `json:"error,omitempty"`
}

// HungRow is one count of figure 5 where LAN connections got no answer:
// how many, and how many of those that did open reused a port of figure
// 2's connections from the last minute, against what chance gives.
type HungRow struct {
	System   string  `json:"system"`
	Failed   int     `json:"failed"`
	Tried    int     `json:"tried"`
	Reused   int     `json:"opened_reusing_recent_port"`
	Expected float64 `json:"expected_reuse_by_chance"`
}

// idleCounts are figure 5's counts of idle flows in this report, ascending.
func (r *Report) idleCounts() []int {
	var out []int
	for _, m := range r.Memory {
		if t := m.target(); !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return out
}

// target is the count of idle flows a row was asked for (reports before
// there were several counts have only Flows).
func (m MemRow) target() int {
	if m.Target != 0 {
		return m.Target
	}
	return m.Flows
}

// memRow is a system's process's row at its largest count of idle flows.
func (r *Report) memRow(sys, proc string) *MemRow {
	var best *MemRow
	for i := range r.Memory {
		if m := &r.Memory[i]; m.System == sys && m.Process == proc && m.FDsPerFlow > 0 && (best == nil || m.Flows > best.Flows) {
			best = m
		}
	}
	return best
}

// maxFlows is the most idle flows a system held in figure 5.
func (r *Report) maxFlows(sys string) int {
	n := 0
	for _, m := range r.Memory {
		if m.System == sys {
			n = max(n, m.Flows)
		}
	}
	return n
}

// perFlowKB sums the RSS per flow of a system's processes at a count of
// idle flows; 0 if unknown.
func (r *Report) perFlowKB(sys string, flows int) float64 {
	var v float64
	for _, m := range r.Memory {
		if m.System == sys && m.target() == flows {
			v += m.PerFlowKB
		}
	}
	return v
}

// renderMemory writes figure 5's section, with the heap profiles.
func (r *Report) renderMemory(b *strings.Builder) {
	if len(r.Memory) == 0 {
		return
	}
	w := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	w("\n## 5. Memory with idle open flows\n\n")
	t := newTable(b, "system", "process", "flows", "RSS base MB", "RSS with flows MB", "RSS after close MB", "RSS per flow KB", "heap in use base / loaded / after MB", "heap per flow KB", "goroutines base / loaded / after", "descriptors base / loaded / after (per flow; pipes)")
	for _, e := range r.Memory {
		heap, gr := "", ""
		after := "–"
		if e.Closed {
			after = f1(e.RSSAfterMB)
		}
		if e.HeapLoadedMB > 0 {
			ha, ga := "–", "–"
			if e.Closed {
				ha, ga = f1(e.HeapAfterMB), num(e.Goroutines[2], 0)
			}
			heap = f1(e.HeapBaseMB) + " / " + f1(e.HeapLoadedMB) + " / " + ha
			gr = num(e.Goroutines[0], 0) + " / " + num(e.Goroutines[1], 0) + " / " + ga
		}
		hpf := ""
		if e.HeapPerFlowKB != 0 {
			hpf = f1(e.HeapPerFlowKB)
		}
		flows := fmt.Sprint(e.Flows)
		if e.Target != 0 && e.Target != e.Flows {
			flows += fmt.Sprintf(" (of %d)", e.Target)
		}
		if e.Asked != 0 && e.Asked != e.Target {
			flows += fmt.Sprintf(" (%d asked)", e.Asked)
		}
		fds := ""
		if e.FDsLoaded > 0 {
			fa := "–"
			if e.Closed {
				fa = fmt.Sprint(e.FDsAfter)
			}
			fds = fmt.Sprintf("%d / %d / %s (%.1f; %d)", e.FDsBase, e.FDsLoaded, fa, e.FDsPerFlow, e.PipesLoaded)
		}
		t.row(e.System, e.Process, flows, f1(e.RSSBaseMB), f1(e.RSSLoadedMB), after, f1(e.PerFlowKB), heap, hpf, gr, fds+errCell(e.Err))
	}
	w("\nEach flow is a LAN connection to the server that exchanged one byte each way (so it is established end to end) and then sits idle; flows are opened %d at a time on the default profiles, the smaller count first; its flows stay open while the larger count's are added, and every per-flow figure is (loaded − base) ÷ flows open. Heap figures are the daemons' own `go_memstats_heap_inuse_bytes` (no forced GC, so they include garbage not yet collected, and they can exceed RSS: spans allocated but never touched are not resident). \"After close\" is %.0f s after all flows were closed (measured once, after the largest count): a Go daemon that has not collected since still shows the heap, so the goroutine count returning to its base is the better sign that nothing per flow is left behind.\n\n", idleOpenAtOnce, afterCloseWait.Seconds())
	if ps := r.profilesOf("figure 5"); len(ps) > 0 {
		w("### Heap profiles: hcpe and hag with the idle flows open\n\n")
		w("`/debug/pprof/heap` (in-use bytes as of the daemon's last GC, by allocating function), read with `go tool pprof -top -sample_index=inuse_space`.\n\n")
		for _, p := range ps {
			profileMD(b, p)
		}
	}

}
