package main

import (
	"fmt"
	"maps"
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
	if len(r.CPU) == 0 {
		return
	}
	w := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	w("\n## 4. CPU ceiling (links unshaped: no rate, no delay)\n\n")
	t := newTable(b, "system", "flows", "runs", "goodput Mbit/s, median (min–max)", "per-process cores (median)", "daemon cores (median)", "daemon cores per Gbit/s, median (min–max)", "bench process cores (emulator+client+server)", "machine busy cores")
	var cases []cpuCase
	for _, e := range r.CPU {
		if c := (cpuCase{e.System, e.Flows}); !slices.Contains(cases, c) {
			cases = append(cases, c)
		}
	}
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
		perG := spreadBy(rows, func(c CPURow) float64 { return c.PerGbps }).cell(2, 1)
		if c.system == sysDirect {
			perG = "n/a (no daemon)"
		}
		t.row(c.system, fmt.Sprint(c.flows), fmt.Sprint(len(rows)), spreadBy(rows, func(c CPURow) float64 { return c.GoodputMbps }).cell(1, 1),
			coresCell(m.Cores), f2(m.DaemonCores), perG, f2(m.BenchCores), f2(m.MachineCores)+errs)
	}
	w("\nEach case ran the number of times in the runs column; the table gives the median run and the least and greatest in brackets, and every run is in report.json. CPU is utime+stime from /proc/<pid>/stat over the transfer; \"cores\" is CPU seconds per second. Kernel work done in softirq context (TCP, MPTCP, the TUN devices) is charged to whichever process happens to run, so the per-process numbers undercount the kernel's share; the machine figure counts everything on the box, other engineers' tests included. %s\n\n", r.emulatorBounds())

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
// figure 4's throughput. What the emulator carried in this run is the
// larger of its own ceiling (figure 6, downstream) and what direct TCP,
// with no daemon, got through it here; a system's case that comes within
// emulatorBound of that may be bounded by the emulator, one that stays
// below is not.
func (r *Report) emulatorBounds() string {
	capacity, from := 0.0, ""
	for _, e := range r.Emulator {
		if e.Err == "" && strings.Contains(e.Path, "downstream") && e.GoodputMbps > capacity {
			capacity, from = e.GoodputMbps, "its own ceiling in figure 6, one flow, no daemon"
		}
	}
	for _, n := range []int{1, r.Flows} {
		if d := r.cpuOf(sysDirect, n); d != nil && d.GoodputMbps > capacity {
			capacity, from = d.GoodputMbps, fmt.Sprintf("direct TCP with %d flow(s) here, no daemon", n)
		}
	}
	var near, below []string
	for _, e := range r.CPU {
		if e.System == sysDirect || e.Err != "" {
			continue
		}
		m := r.cpuOf(e.System, e.Flows)
		what := fmt.Sprintf("%s with %d flow(s) %.0f %%", e.System, e.Flows, 100*m.GoodputMbps/capacity)
		if slices.Contains(near, what) || slices.Contains(below, what) {
			continue
		}
		if m.GoodputMbps >= emulatorBound*capacity {
			near = append(near, what)
		} else {
			below = append(below, what)
		}
	}
	switch {
	case len(near)+len(below) == 0:
		return ""
	case capacity <= 0:
		return "Neither figure 6 (the emulator's own ceiling) nor direct TCP was measured in this run, so it cannot tell whether the emulator bounds these throughputs."
	case len(near) == 0:
		return fmt.Sprintf("The emulator carried up to %.0f Mbit/s in this run (%s); every daemon case stayed below %.0f %% of that (%s), so the emulator is not what bounds them: the daemons and the machine are (the cores columns).",
			capacity, from, 100*emulatorBound, strings.Join(below, ", "))
	default:
		return fmt.Sprintf("The emulator carried up to %.0f Mbit/s in this run (%s); %s came to %.0f %% of that or more, so the emulator may bound those: they are lower bounds of what the daemons could do, and the comparison that matters is cores per Gbit/s.",
			capacity, from, strings.Join(near, ", "), 100*emulatorBound)
	}
}
