package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"hybridgw/internal/netlab"
)

// devDrops reads a namespace's /proc/net/dev and returns, per device, the
// packets dropped on receive and on transmit. A TUN device's transmit
// drops are packets the kernel could not queue for the link emulator
// reading it: the emulator fell behind.
func devDrops(ns *netlab.NS) map[string]float64 {
	text, err := nsProc(ns, "dev")
	if err != nil {
		return nil
	}
	return parseDevDrops(text)
}

// parseDevDrops parses /proc/net/dev: "dev: rx bytes packets errs drop …
// tx bytes packets errs drop …" (rx drop is field 4, tx drop field 12).
func parseDevDrops(text string) map[string]float64 {
	out := map[string]float64{}
	for _, l := range strings.Split(text, "\n") {
		name, rest, ok := strings.Cut(l, ":")
		if !ok || strings.Contains(name, "|") {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 12 {
			continue
		}
		name = strings.TrimSpace(name)
		rx, _ := strconv.ParseFloat(f[3], 64)
		tx, _ := strconv.ParseFloat(f[11], 64)
		out[name+" rx_drop"], out[name+" tx_drop"] = rx, tx
	}
	return out
}

// ctxSwitches is the voluntary and involuntary context switches of all of
// a process's threads (/proc/<pid>/task/*/status): each is a thread parked
// and woken again, which on this paravirtualised machine costs several
// microseconds of kernel time.
func ctxSwitches(pid int) float64 {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0
	}
	var n float64
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
		if err != nil {
			continue // the thread exited
		}
		n += parseCtxSwitches(string(b))
	}
	return n
}

func parseCtxSwitches(status string) float64 {
	var n float64
	for _, l := range strings.Split(status, "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.HasSuffix(k, "ctxt_switches") {
			x, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			n += x
		}
	}
	return n
}

// ranOut names the resource that ran out at a failed step, from its
// evidence, most specific first: a limit of hag's, hag's CPU, the
// emulator's TUN queues, hag's accept queue, the generator, then the
// machine (and whose share of it: hag, the bench process, or other
// processes on this shared machine). A step can show several; the first
// that applies is named, the others stay in the rest of the reasons.
func ranOut(st RateStep) string {
	others := st.MachineCores - st.HagCores - st.BenchCores - st.SoftirqCores
	machineFull := st.MachineCores >= 0.9*float64(runtime.NumCPU())
	var tunDrops float64
	for k, v := range st.Kernel {
		if strings.HasSuffix(k, "tx_drop") && (strings.Contains(k, " dsl ") || strings.Contains(k, " lte ")) {
			tunDrops += v
		}
	}
	var limits float64
	for _, v := range st.LimitHits {
		limits += v
	}
	// On a machine shared with other work, say so first: whatever ran
	// out below ran out because they took the cores.
	prefix := ""
	if machineFull && others >= 0.5 {
		prefix = fmt.Sprintf("the machine, taken by other processes (%.2f of its %d cores busy, %.2f of them neither hag (%.2f) nor the bench process (%.2f) nor softirq), and so ", st.MachineCores, runtime.NumCPU(), others, st.HagCores, st.BenchCores)
	}
	switch {
	case limits > 0 && limits >= float64(st.ErrorCount)/2 && st.LimitHits["pool_per_cpe"] < limits:
		return "hag's configured limits (hag_limit_hits_total): the refusals are its bounds at work, not exhaustion"
	case st.HagCores >= 0.9:
		return prefix + fmt.Sprintf("hag's CPU: %.2f cores", st.HagCores)
	case tunDrops > 0:
		return prefix + fmt.Sprintf("the link emulator: its TUN queues dropped %.0f packets it did not read in time (bench process %.2f cores)", tunDrops, st.BenchCores)
	case st.Kernel["hag ListenOverflows"] > 0:
		return prefix + fmt.Sprintf("hag's accept queue: %.0f overflows (limits.listen_backlog, net.core.somaxconn)", st.Kernel["hag ListenOverflows"])
	case st.GeneratorBehind:
		return prefix + fmt.Sprintf("the load generator: %.0f ms behind its schedule", st.LateMs)
	case prefix != "":
		return strings.TrimSuffix(prefix, ", and so ")
	case machineFull:
		return fmt.Sprintf("the machine's CPU: %.2f of %d cores busy (hag %.2f, bench process — generator, emulator, server — %.2f, other processes %.2f)", st.MachineCores, runtime.NumCPU(), st.HagCores, st.BenchCores, others)
	}
	return fmt.Sprintf("none clearly: hag %.2f cores (below 0.5 means hag was not the limit), machine %.2f busy", st.HagCores, st.MachineCores)
}
