package main

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
)

// Figure 4, the CPU ceiling: links unshaped, one flow and -flows flows,
// each -cpu-runs times; CPU per process over each transfer, and profiles
// of hcpe and hag during hybridgw's first one-flow transfer.

// emulatorBound is how close to the emulator's own ceiling (figure 6) a
// transfer must come before the report says the emulator bounds it.
const emulatorBound = 0.85

// CPURow is one run of figure 4 (or figure 9) for one system and flow
// count.
type CPURow struct {
	System       string             `json:"system"`
	Flows        int                `json:"flows"`
	Run          int                `json:"run,omitempty"` // 1, 2, … of the case's repetitions
	Seconds      float64            `json:"seconds"`
	GoodputMbps  float64            `json:"goodput_mbps"`
	Cores        map[string]float64 `json:"cores"` // process → CPU seconds per second
	DaemonCores  float64            `json:"daemon_cores"`
	PerGbps      float64            `json:"daemon_cores_per_gbps"`
	BenchCores   float64            `json:"bench_process_cores"` // emulator + client + server
	MachineCores float64            `json:"machine_busy_cores"`
	Err          string             `json:"error,omitempty"`
}

// cpuRuns are a case's runs of figure 4 that completed without error.
func (r *Report) cpuRuns(sys string, flows int) []CPURow {
	var out []CPURow
	for _, c := range r.CPU {
		if c.System == sys && c.Flows == flows && c.Err == "" {
			out = append(out, c)
		}
	}
	return out
}

// cpuOf is a case's median run of figure 4 (every field the median over
// its runs), nil if none completed.
func (r *Report) cpuOf(sys string, flows int) *CPURow {
	rows := r.cpuRuns(sys, flows)
	if len(rows) == 0 {
		return nil
	}
	med := func(f func(CPURow) float64) float64 { return spreadBy(rows, f).Med }
	c := &CPURow{System: sys, Flows: flows, Seconds: rows[0].Seconds, Cores: map[string]float64{},
		GoodputMbps:  med(func(c CPURow) float64 { return c.GoodputMbps }),
		DaemonCores:  med(func(c CPURow) float64 { return c.DaemonCores }),
		PerGbps:      med(func(c CPURow) float64 { return c.PerGbps }),
		BenchCores:   med(func(c CPURow) float64 { return c.BenchCores }),
		MachineCores: med(func(c CPURow) float64 { return c.MachineCores }),
	}
	for _, k := range slices.Sorted(maps.Keys(rows[0].Cores)) {
		c.Cores[k] = med(func(c CPURow) float64 { return c.Cores[k] })
	}
	return c
}

type cpuCase struct {
	system string
	flows  int
}

// renderCPU writes figure 4's section, with the profiles taken during it.
func (r *Report) renderCPU(b *strings.Builder) {
	w := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	w("\n## 4. CPU ceiling (links unshaped: no rate, no delay)\n\n")
	t := newTable(b, "system", "flows", "runs", "goodput Mbit/s, median (min–max)", "per-process cores (median)", "daemon cores (median)", "daemon cores per Gbit/s, median (min–max)", "bench process cores (emulator+client+server)", "machine busy cores")
	var cases []cpuCase
	for _, e := range r.CPU {
		if c := (cpuCase{e.System, e.Flows}); !slices.Contains(cases, c) {
			cases = append(cases, c)
		}
	}
	best := 0.0 // the fastest case's median goodput
	for _, c := range cases {
		rows := r.cpuRuns(c.system, c.flows)
		errs := ""
		for _, e := range r.CPU {
			if e.System == c.system && e.Flows == c.flows && e.Err != "" {
				errs = errCell(e.Err)
			}
		}
		m := r.cpuOf(c.system, c.flows)
		if m == nil {
			t.row(c.system, fmt.Sprint(c.flows), "0", "", "", "", "", "", errs)
			continue
		}
		best = max(best, m.GoodputMbps)
		perG := spreadBy(rows, func(c CPURow) float64 { return c.PerGbps }).cell(2, 1)
		if c.system == sysDirect {
			perG = "n/a (no daemon)"
		}
		t.row(c.system, fmt.Sprint(c.flows), fmt.Sprint(len(rows)), spreadBy(rows, func(c CPURow) float64 { return c.GoodputMbps }).cell(1, 1),
			coresCell(m.Cores), f2(m.DaemonCores), perG, f2(m.BenchCores), f2(m.MachineCores)+errs)
	}
	w("\nEach case ran the number of times in the runs column; the table gives the median run and the least and greatest in brackets, and every run is in report.json. CPU is utime+stime from /proc/<pid>/stat over the transfer; \"cores\" is CPU seconds per second. Kernel work done in softirq context (TCP, MPTCP, the TUN devices) is charged to whichever process happens to run, so the per-process numbers undercount the kernel's share; the machine figure counts everything on the box, other engineers' tests included. %s\n\n", r.emulatorBounds(best))

	if ps := r.profilesOf("figure 4"); len(ps) > 0 {
		w("### CPU profiles: hcpe and hag during hybridgw's one-flow transfer\n\n")
		w("Taken over the daemons' admin sockets (`/debug/pprof/profile`) while hybridgw's first one-flow download above ran, and read with `go tool pprof -top` and the binary. Go's profiler samples user and system CPU time, so a sample in a system call stands for the kernel's work on that call (TUN and socket reads and writes, splice); softirq work the kernel does outside the process (forwarding, the TUN queues, the other side's TCP) is not in it. \"flat\" is time in the function itself, \"cum\" includes what it called. The categories sum the flat column of every function.\n\n")
		for _, p := range ps {
			profileMD(b, p)
		}
		if s := r.cpuReading(); s != "" {
			w("**Reading.** %s\n\n", s)
		}
	}
}

// emulatorBounds says whether this run shows the link emulator bounding
// figure 4's throughput: its fastest case against the emulator's own
// ceiling in figure 6.
func (r *Report) emulatorBounds(best float64) string {
	// Figure 4's transfers are downloads: the downstream ceiling, or the
	// lowest one when no row says its direction.
	ceiling := math.NaN()
	for _, e := range r.Emulator {
		if e.Err == "" && strings.Contains(e.Path, "downstream") {
			ceiling = e.GoodputMbps
		}
	}
	if math.IsNaN(ceiling) {
		for _, e := range r.Emulator {
			if e.Err == "" && (math.IsNaN(ceiling) || e.GoodputMbps < ceiling) {
				ceiling = e.GoodputMbps
			}
		}
	}
	switch {
	case best <= 0:
		return ""
	case math.IsNaN(ceiling) || ceiling <= 0:
		return "Figure 6 (the emulator's own ceiling) was not measured in this run, so it cannot tell whether the emulator bounds these throughputs."
	case best >= emulatorBound*ceiling:
		return fmt.Sprintf("The fastest case here (%.0f Mbit/s) came to %.0f %% of the emulator's own ceiling in figure 6 (%.0f Mbit/s, one flow, no daemon), so the emulator likely bounds these throughputs: they are lower bounds of what the daemons could do, and the comparison that matters is cores per Gbit/s.",
			best, 100*best/ceiling, ceiling)
	default:
		return fmt.Sprintf("The fastest case here (%.0f Mbit/s) stayed at %.0f %% of the emulator's own ceiling in figure 6 (%.0f Mbit/s, one flow, no daemon), so the emulator is not what bounds these throughputs: the daemons and the machine are (the cores columns).",
			best, 100*best/ceiling, ceiling)
	}
}
