package main

import (
	"fmt"
	"strings"
)

// Figure 6, the link emulator's own ceiling: linkem unshaped, one TCP
// flow between the cpe and hag namespaces, no daemon.

// EmuRow is figure 6: the emulator's unshaped ceiling.
type EmuRow struct {
	Path         string  `json:"path"`
	MTU          int     `json:"mtu"`
	Seconds      float64 `json:"seconds"`
	GoodputMbps  float64 `json:"goodput_mbps"`
	BenchCores   float64 `json:"bench_process_cores"`
	MachineCores float64 `json:"machine_busy_cores"`
	GoalMet      bool    `json:"goal_1gbps_met"`
	Err          string  `json:"error,omitempty"`
}

// renderEmulator writes figure 6's section.
func (r *Report) renderEmulator(b *strings.Builder) {
	if len(r.Emulator) == 0 {
		return
	}
	w := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	w("\n## 6. Emulator ceiling (linkem unshaped, one TCP flow, cpe ↔ hag over the dsl link)\n\n")
	t := newTable(b, "path", "MTU", "s", "goodput Mbit/s", "bench process cores", "machine busy cores", "≥ 1 Gbit/s")
	for _, e := range r.Emulator {
		t.row(e.Path, fmt.Sprint(e.MTU), f1(e.Seconds), f1(e.GoodputMbps), f2(e.BenchCores), f2(e.MachineCores), yes(e.GoalMet)+errCell(e.Err))
	}
	w("\n")

}
