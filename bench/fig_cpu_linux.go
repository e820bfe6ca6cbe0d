package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// cpuCeiling is figure 4: links unshaped, one flow and o.Flows flows,
// o.CPURuns times each (the flow counts alternate).
func (b *bench) cpuCeiling(ctx context.Context, s *system) {
	b.lab.DSL.Apply(unshaped)
	b.lab.LTE.Apply(unshaped)
	defer b.applyPair(b.pairs[1])
	for run := 1; run <= b.opts.CPURuns; run++ {
		for _, n := range []int{1, b.opts.Flows} {
			if ctx.Err() != nil || !b.fits(fmt.Sprintf("figure 4 %s %d flow(s) run %d", s.name, n, run), b.opts.CPU+3*time.Second) {
				return
			}
			b.cpuRun(ctx, s, n, run)
		}
	}
}

// cpuRow is the row of an unshaped transfer of o.CPU with n flows (figures
// 4 and 9): the CPU each process took ("bench" is the bench process, the
// rest are the system's daemons) and the machine's.
func (b *bench) cpuRow(sys string, n int, ss []sample, res []transfer, cores map[string]float64, machine float64) CPURow {
	row := CPURow{System: sys, Flows: n, Seconds: b.opts.CPU.Seconds(), GoodputMbps: mbps(bytesIn(ss, 0, b.opts.CPU), b.opts.CPU),
		Cores: map[string]float64{}, BenchCores: cores["bench"], MachineCores: machine}
	for k, v := range cores {
		if k != "bench" {
			row.Cores[k] = v
			row.DaemonCores += v
		}
	}
	row.PerGbps = ratio(row.DaemonCores, row.GoodputMbps/1000)
	for _, r := range res {
		if r.Err != nil {
			row.Err = r.Err.Error()
		}
	}
	return row
}

// cpuRun is one transfer of figure 4 with n flows.
func (b *bench) cpuRun(ctx context.Context, s *system, n, run int) {
	b.settle(ctx)
	pids := s.pids()
	pids["bench"] = os.Getpid()
	// hybridgw's first one-flow transfer is profiled: hcpe and hag each
	// write a CPU profile to their admin socket while it runs. It is read
	// with go tool pprof only after the transfer, which would otherwise
	// compete with it for the CPU.
	var profiling sync.WaitGroup
	var profiles []*fetchedProfile
	if s.name == sysHybrid && n == 1 && run == 1 {
		secs := b.opts.ProfileSeconds
		if secs <= 0 {
			secs = max(1, int((b.opts.CPU-2*time.Second)/time.Second))
		}
		for _, proc := range []string{"hcpe", "hag"} {
			fp := &fetchedProfile{proc: proc, kind: "cpu", seconds: secs, when: "figure 4, one unshaped hybridgw download",
				path: filepath.Join(b.profDir, proc+"-cpu-fig4.pprof")}
			profiles = append(profiles, fp)
			profiling.Go(func() {
				if sleepCtx(ctx, time.Second) == nil {
					fp.err = b.fetchProfile(ctx, s.admin[proc], fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs), fp.path)
				}
			})
		}
	}
	m := startCPU(pids)
	ss, res := downloads(ctx, b.lab.LAN, b.dst, n, b.opts.CPU)
	cores, machine := m.stop()
	profiling.Wait()
	for _, fp := range profiles {
		b.analyzeProfile(ctx, s, fp)
	}
	row := b.cpuRow(s.name, n, ss, res, cores, machine)
	row.Run = run
	if s.name == sysDirect {
		row.PerGbps = math.NaN()
	}
	if ctx.Err() != nil {
		return // interrupted: not a measurement
	}
	b.rep.CPU = append(b.rep.CPU, row)
	b.logf("fig4 %s %d flow(s) run %d: %.0f Mbit/s, daemons %.2f cores (%s), bench %.2f, machine %.2f %s", s.name, n, run, row.GoodputMbps, row.DaemonCores, coresCell(row.Cores), row.BenchCores, row.MachineCores, row.Err)
}
