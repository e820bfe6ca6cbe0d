package main

import (
	"context"
	"net/netip"
	"os"

	"hybridgw/internal/netlab"
)

// emulatorCeiling is figure 6: linkem unshaped, one TCP flow between the
// cpe and hag namespaces over the dsl link, each way; no daemon runs.
func (b *bench) emulatorCeiling(ctx context.Context) {
	b.lab.DSL.Apply(unshaped)
	b.lab.LTE.Apply(unshaped)
	defer b.applyPair(b.pairs[1])
	for _, c := range []struct {
		path string
		ns   *netlab.NS
		dst  netip.AddrPort
	}{
		{"hag → cpe (downstream)", b.lab.CPE, netip.AddrPortFrom(b.lab.Plan.DSL.HAG4, 9100)},
		{"cpe → hag (upstream)", b.lab.HAG, netip.AddrPortFrom(b.lab.Plan.DSL.CPE4, 9100)},
	} {
		if ctx.Err() != nil {
			return
		}
		b.settle(ctx)
		m := startCPU(map[string]int{"bench": os.Getpid()})
		ss, res := downloads(ctx, c.ns, c.dst, 1, b.opts.CPU)
		cores, machine := m.stop()
		row := EmuRow{Path: c.path, MTU: b.lab.DSL.MTU, Seconds: b.opts.CPU.Seconds(), GoodputMbps: mbps(bytesIn(ss, 0, b.opts.CPU), b.opts.CPU),
			BenchCores: cores["bench"], MachineCores: machine}
		row.GoalMet = row.GoodputMbps >= 1000
		if res[0].Err != nil {
			row.Err = res[0].Err.Error()
		}
		b.rep.Emulator = append(b.rep.Emulator, row)
		b.logf("fig6 %s: %.0f Mbit/s, bench %.2f cores, machine %.2f %s", c.path, row.GoodputMbps, row.BenchCores, row.MachineCores, row.Err)
	}
}
