package main

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"
)

// effFigure is figure 1 for s: every pair asked for (direct on the
// default pair only: it uses DSL alone, the same in every pair), one
// download and o.Flows in parallel, o.EffRuns times. The runs go round
// the pairs, so a slow phase of the shared machine spreads over them.
func (b *bench) effFigure(ctx context.Context, s *system) {
	o := b.opts
	defer b.applyPair(b.pairs[1])
	for run := 1; run <= o.EffRuns; run++ {
		for i, p := range b.pairs {
			if s.name == sysDirect && i != 1 {
				continue
			}
			if !want(o.Pairs, p.name) {
				continue
			}
			if ctx.Err() != nil || !b.fits(fmt.Sprintf("figure 1 %s %s run %d", s.name, p.name, run), o.Bulk+o.Parallel+5*time.Second) {
				return
			}
			b.applyPair(p)
			check := run == 1 && (i == 1 || (s.name != sysDirect && i == 0))
			b.efficiency(ctx, s, p, 1, o.Bulk, run, check)
			b.efficiency(ctx, s, p, o.Flows, o.Parallel, run, false)
		}
	}
}

// efficiency is one run of figure 1: n downloads side by side for dur.
func (b *bench) efficiency(ctx context.Context, s *system, p pairDef, n int, dur time.Duration, run int, check bool) {
	b.settle(ctx)
	b.policyIdle(ctx, s)
	l0 := b.downBytes()
	var checked sync.WaitGroup
	if check {
		checked.Go(func() {
			if sleepCtx(ctx, 3*time.Second) == nil {
				b.checkMPTCP(s)
			}
		})
	}
	ss, res := downloads(ctx, b.lab.LAN, b.dst, n, dur)
	l1 := b.downBytes()
	checked.Wait()
	row := EffRow{Pair: p.name, System: s.name, Flows: n, Run: run, Seconds: dur.Seconds()}
	for _, r := range res {
		if r.Err != nil {
			row.Err = r.Err.Error()
		}
	}
	dslRate, lteRate := float64(p.dsl.Down.Linkem().RateBps), float64(p.lte.Down.Linkem().RateBps)
	row.GoodputMbps = mbps(bytesIn(ss, 0, dur), dur)
	row.SteadyMbps = math.NaN()
	if dur > 3*time.Second {
		row.SteadyMbps = mbps(bytesIn(ss, 3*time.Second, dur), dur-3*time.Second)
	}
	row.SumMbps = (dslRate + lteRate) / 1e6
	row.Efficiency = ratio(row.GoodputMbps, row.SumMbps)
	dd, ld := float64(l1.dsl-l0.dsl), float64(l1.lte-l0.lte)
	row.DSLShare = ratio(dd, dd+ld)
	row.DSLUtil = ratio(dd*8/dur.Seconds(), dslRate)
	row.LTEUtil = ratio(ld*8/dur.Seconds(), lteRate)
	if ctx.Err() != nil {
		return // interrupted: not a measurement
	}
	b.rep.Efficiency = append(b.rep.Efficiency, row)
	b.logf("fig1 %s %s %d flow(s) run %d: %.1f Mbit/s (%.1f%% of %.0f), dsl share %.0f%% %s", s.name, p.name, n, run, row.GoodputMbps, 100*row.Efficiency, row.SumMbps, 100*row.DSLShare, row.Err)
}
