package main

import (
	"context"
	"fmt"
	"io"
	"time"
)

// fctFigure is figure 8 on the default pair: o.FCTRuns downloads of each
// size, the sizes interleaved so that a slow phase of the shared machine
// does not land on one size only.
func (b *bench) fctFigure(ctx context.Context, s *system) {
	b.settle(ctx)
	times := make([][]time.Duration, len(fctSizes))
	rows := make([]FCTRow, len(fctSizes))
	for i, size := range fctSizes {
		rows[i] = FCTRow{System: s.name, Bytes: size}
	}
	for run := 0; run < b.opts.FCTRuns && ctx.Err() == nil; run++ {
		for i, size := range fctSizes {
			d, err := b.fct(ctx, size)
			if err != nil {
				rows[i].Failures++
				rows[i].Err = err.Error()
				continue
			}
			times[i] = append(times[i], d)
			// A short pause, as between a user's requests; it also lets a
			// warm pool refill, which is what it is for.
			_ = sleepCtx(ctx, 50*time.Millisecond)
		}
	}
	if ctx.Err() != nil {
		return // interrupted: not a measurement
	}
	for i := range rows {
		rows[i].Runs = len(times[i])
		if len(times[i]) > 0 {
			rows[i].MedianMs = ms(percentile(times[i], 50))
			rows[i].P90Ms = ms(percentile(times[i], 90))
		}
		b.rep.FCT = append(b.rep.FCT, rows[i])
		b.logf("fig8 %s %s: FCT median %.1f ms p90 %.1f ms, %d failures", s.name, sizeLabel(rows[i].Bytes), rows[i].MedianMs, rows[i].P90Ms, rows[i].Failures)
	}
}

// fct downloads size bytes and returns connect-to-last-byte.
func (b *bench) fct(ctx context.Context, size int) (time.Duration, error) {
	start := time.Now()
	c, err := dialIn(ctx, b.lab.LAN, b.dst)
	if err != nil {
		return 0, fmt.Errorf("connecting: %w", err)
	}
	defer c.Close()
	_ = c.SetDeadline(start.Add(60 * time.Second))
	if _, err := c.Write([]byte{cmdDownload}); err != nil {
		return 0, fmt.Errorf("asking for the download: %w", err)
	}
	if _, err := io.CopyN(io.Discard, c, int64(size)); err != nil {
		return 0, fmt.Errorf("reading %d bytes: %w", size, err)
	}
	d := time.Since(start)
	_ = c.SetLinger(0) // the server sends until the connection breaks
	return d, nil
}
