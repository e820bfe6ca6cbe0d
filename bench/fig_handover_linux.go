package main

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"hybridgw/internal/netlab"
)

// handoverFigure is figure 3 for s: o.HandoverRuns downloads, DSL set
// down in each.
func (b *bench) handoverFigure(ctx context.Context, s *system) {
	for run := 1; run <= b.opts.HandoverRuns; run++ {
		if ctx.Err() != nil || !b.fits(fmt.Sprintf("figure 3 %s run %d", s.name, run), b.opts.Handover+5*time.Second) {
			return
		}
		b.handover(ctx, s, run)
	}
}

// handover is one run of figure 3 on the default pair: DSL goes down
// o.DownAt into a download of o.Handover.
func (b *bench) handover(ctx context.Context, s *system, run int) {
	b.settle(ctx)
	b.policyIdle(ctx, s)
	o := b.opts
	def := b.pairs[1]
	lteRate := float64(def.lte.Down.Linkem().RateBps) / 1e6
	row := HandoverRow{System: s.name, Run: run, DownAtS: o.DownAt.Seconds(), Seconds: o.Handover.Seconds(), ThresholdMbps: recoveryShare * lteRate}
	var downAtNs, l0 atomic.Int64 // set by the timers
	start := time.Now()
	timer := time.AfterFunc(o.DownAt, func() {
		b.lab.DSL.SetDown(true)
		downAtNs.Store(int64(time.Since(start)))
	})
	// "After": the last 5 s, or what follows the event if that is shorter.
	afterAt := max(o.Handover-5*time.Second, o.DownAt)
	row.AfterS = (o.Handover - afterAt).Seconds()
	lteTimer := time.AfterFunc(afterAt, func() { l0.Store(int64(b.lab.LTE.Stats(netlab.Downstream).Bytes)) })
	t := download(ctx, b.lab.LAN, b.dst, start, o.Handover)
	l1 := int64(b.lab.LTE.Stats(netlab.Downstream).Bytes)
	timer.Stop()
	lteTimer.Stop()
	b.lab.DSL.SetDown(false)
	downAt := time.Duration(downAtNs.Load())
	if t.Err != nil {
		row.Err = t.Err.Error()
	}
	if downAt == 0 {
		downAt = o.DownAt
	}
	row.DownAtS = downAt.Seconds()
	row.BeforeMbps = mbps(bytesIn(t.Samples, 1*time.Second, downAt), downAt-time.Second)
	gap, stalled := longestGap(t.Samples, downAt, o.Handover)
	row.LongestGapMs, row.Stalled = ms(gap), stalled
	before, _ := longestGap(t.Samples, time.Second, downAt)
	row.GapBeforeMs = ms(before)
	rec := recovery(t.Samples, downAt, o.Handover, 250*time.Millisecond, row.ThresholdMbps)
	row.RecoveryMs = ms(rec)
	if rec < 0 {
		row.RecoveryMs = -1
	}
	row.AfterMbps = mbps(bytesIn(t.Samples, afterAt, o.Handover), o.Handover-afterAt)
	if l0.Load() > 0 {
		row.LTEUtilAfter = float64(l1-l0.Load()) * 8 / (o.Handover - afterAt).Seconds() / (lteRate * 1e6)
	}
	if ctx.Err() != nil {
		return // interrupted: not a measurement
	}
	b.rep.Handover = append(b.rep.Handover, row)
	b.logf("fig3 %s run %d: before %.1f Mbit/s, longest gap %.0f ms (stalled %v), back to %.0f Mbit/s after %.0f ms, last %.0f s %.1f Mbit/s %s",
		s.name, run, row.BeforeMbps, row.LongestGapMs, row.Stalled, row.ThresholdMbps, row.RecoveryMs, row.AfterS, row.AfterMbps, row.Err)
	// DSL is back: let the system notice before the next run or figure.
	_ = sleepCtx(ctx, 2*time.Second)
}
