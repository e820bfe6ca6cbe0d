package main

import (
	"context"
	"fmt"
	"maps"
	"math"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"hybridgw/internal/labproc"
	"hybridgw/internal/netlab"
)

// memoryTime is about how long figure 5 takes for n idle flows: fixed
// waits, then opening (32 at a time, about 1 ms a flow on the default
// profiles) and closing them.
func memoryTime(n int) time.Duration { return 20*time.Second + time.Duration(n)*4*time.Millisecond }

// memory is figure 5: RSS (and heap for Go daemons) with idle flows open,
// at each count of -idle-flows in turn, and at every count an earlier
// system was measured at, so that systems compare at equal counts: the
// flows of one count stay open while the next count's are added, and all
// are closed at the end. Counts beyond what the open-file limit allows are
// measured at the most that fits (found from the descriptors each process
// took per flow at the previous count), and the report says so. A count
// that does not fit in the time budget is skipped, with the larger ones.
func (b *bench) memory(ctx context.Context, s *system) {
	asked := slices.Clone(b.idle)
	for _, n := range b.memCounts {
		if !slices.Contains(asked, n) {
			asked = append(asked, n)
		}
	}
	slices.Sort(asked)
	b.settle(ctx)
	base := b.memSnapshot(ctx, s)
	names := slices.Sorted(maps.Keys(base.rss))
	b.noteOpenFileLimits(s, names)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	perFlow := map[string]float64{} // descriptors per flow, as measured at the last count
	var last []int                  // this system's rows of the last count measured
	for _, want := range asked {
		if ctx.Err() != nil {
			return
		}
		target := want
		if fit, who := b.fdFit(perFlow, base.fds); target > fit {
			b.rep.Notes = append(b.rep.Notes, fmt.Sprintf("Figure 5, %s: asked for %d idle flows, measured %d. Every process here may open at most %d files (%s). At %d flows %s; %d flows would need %.0f in %s. %d is the most that fits with %d descriptors to spare in every process, rounded down to hundreds.",
				s.name, want, fit, b.nofile, b.rep.Machine.Nofile, len(conns), describeFDs(perFlow, last, b.rep.Memory), want, float64(base.fds[who])+perFlow[who]*float64(want), who, fit, nofileReserve))
			target = fit
		}
		if target <= len(conns) {
			continue
		}
		if !b.fits(fmt.Sprintf("figure 5 %s with %d idle flows", s.name, target), memoryTime(target)) {
			break
		}
		had := len(conns)
		more, openFor, err := b.openIdleFlows(ctx, s, had, target)
		conns = append(conns, more...)
		_ = sleepCtx(ctx, 2*time.Second)
		loaded := b.memSnapshot(ctx, s)
		if len(conns) > 0 {
			for n, f := range loaded.fds {
				perFlow[n] = float64(f-base.fds[n]) / float64(len(conns))
			}
		}
		if !slices.Contains(b.memCounts, target) {
			b.memCounts = append(b.memCounts, target) // the peer is measured there too
		}
		if want == asked[len(asked)-1] || (s.name == sysHybrid && target < want) {
			b.heapProfiles(ctx, s, len(conns))
		}
		last = last[:0]
		for _, name := range names {
			last = append(last, len(b.rep.Memory))
			b.rep.Memory = append(b.rep.Memory, memRow(s.name, name, want, target, len(conns), openFor, base, loaded, perFlow[name], err))
			row := &b.rep.Memory[len(b.rep.Memory)-1]
			b.logf("fig5 %s %s %d flows: RSS %.1f → %.1f MB (%.1f KB/flow), heap %.1f → %.1f MB, descriptors %d → %d (%.1f per flow, %d pipes)", s.name, name, len(conns),
				row.RSSBaseMB, row.RSSLoadedMB, row.PerFlowKB, row.HeapBaseMB, row.HeapLoadedMB, row.FDsBase, row.FDsLoaded, row.FDsPerFlow, row.PipesLoaded)
		}
		if err != nil {
			// A few failures do not stop the figure; many do.
			if len(more) < (target-had)*9/10 {
				b.errorf("figure 5 %s: %v; measured %d idle flows, not %d (and no larger count)", s.name, err, len(conns), target)
				break
			}
			b.errorf("figure 5 %s: %v; measured %d idle flows, not %d", s.name, err, len(conns), target)
		}
	}
	if len(last) == 0 {
		return
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	b.memAfterClose(ctx, s, last)
}

// memSnap is what figure 5 reads of each process at one moment.
type memSnap struct {
	rss            map[string]int64
	heap, routines map[string]float64
	fds, pipes     map[string]int // "bench" included
}

// memSnapshot reads RSS and descriptors of s's daemons and of the bench
// itself, and the Go heap in use and goroutines of hcpe and hag from
// their metrics.
func (b *bench) memSnapshot(ctx context.Context, s *system) memSnap {
	metricsAt := map[string]struct {
		ns   *netlab.NS
		addr string
	}{"hcpe": {b.lab.CPE, "127.0.0.1:9101"}, "hag": {b.lab.HAG, "127.0.0.1:9102"}}
	sn := memSnap{rss: map[string]int64{}, heap: map[string]float64{}, routines: map[string]float64{}, fds: map[string]int{}, pipes: map[string]int{}}
	pids := s.pids()
	for name, pid := range pids {
		sn.rss[name], _ = rssBytes(pid)
		if m, ok := metricsAt[name]; ok {
			if v, err := scrape(ctx, m.ns, m.addr, "go_memstats_heap_inuse_bytes", "go_goroutines"); err == nil {
				sn.heap[name], sn.routines[name] = v["go_memstats_heap_inuse_bytes"], v["go_goroutines"]
			}
		}
	}
	pids["bench"] = os.Getpid()
	for name, pid := range pids {
		sn.fds[name], sn.pipes[name] = fdCount(pid)
	}
	return sn
}

// noteOpenFileLimits puts each process's open-file limit in the report's
// notes: it bounds how many idle flows figure 5 can hold.
func (b *bench) noteOpenFileLimits(s *system, names []string) {
	var lims []string
	for _, n := range append(slices.Clone(names), "bench") {
		pid := os.Getpid()
		if n != "bench" {
			pid = s.pids()[n]
		}
		lims = append(lims, n+" "+nofileOf(pid))
	}
	b.rep.Notes = append(b.rep.Notes, fmt.Sprintf("Figure 5, %s: open-file limits (soft, /proc/<pid>/limits): %s.", s.name, strings.Join(lims, ", ")))
}

// openIdleFlows opens idle flows had+1 to target from the LAN host. For
// hybridgw it also reports what hcpe counted meanwhile (new flows, SYNs
// dropped by a bound); flows that got no answer are looked into
// (reusedPorts).
func (b *bench) openIdleFlows(ctx context.Context, s *system, had, target int) (more []net.Conn, openFor time.Duration, err error) {
	dropNames := []string{"hcpe_netstack_drops_total", "hcpe_flows_total", `hcpe_flows_total{result="ok"}`}
	var drops0 map[string]float64
	if s.name == sysHybrid {
		drops0, _ = scrape(ctx, b.lab.CPE, "127.0.0.1:9101", dropNames...)
	}
	t0 := time.Now()
	more, err = openIdle(ctx, b.lab.LAN, b.dst, target-had, idleOpenAtOnce)
	openFor = time.Since(t0)
	if drops0 != nil {
		if d1, derr := scrape(ctx, b.lab.CPE, "127.0.0.1:9101", dropNames...); derr == nil {
			msg := fmt.Sprintf("while opening flows %d to %d (%d established end to end in %.1f s): hcpe counted %.0f new flows (%.0f ok) and %.0f netstack drops (LAN SYNs dropped by a bound)",
				had+1, target, len(more), openFor.Seconds(), d1["hcpe_flows_total"]-drops0["hcpe_flows_total"], d1[dropNames[2]]-drops0[dropNames[2]],
				d1["hcpe_netstack_drops_total"]-drops0["hcpe_netstack_drops_total"])
			b.logf("fig5 %s: %s", s.name, msg)
			b.rep.Notes = append(b.rep.Notes, "Figure 5, hybridgw: "+msg+".")
		}
	}
	b.logf("fig5 %s: %d idle flows open (%d more in %v) %v", s.name, had+len(more), len(more), openFor.Round(time.Millisecond), errStr(err))
	if failed := target - had - len(more); failed > 0 {
		b.reusedPorts(s, failed, target-had, t0, more)
	}
	return more, openFor, err
}

// memRow is one process's row of figure 5 at one count of flows.
func memRow(system, name string, want, target, flows int, openFor time.Duration, base, loaded memSnap, fdsPerFlow float64, err error) MemRow {
	mb := func(v float64) float64 { return v / (1 << 20) }
	row := MemRow{System: system, Process: name, Target: target, Asked: want, Flows: flows, OpenSeconds: openFor.Seconds(),
		RSSBaseMB: mb(float64(base.rss[name])), RSSLoadedMB: mb(float64(loaded.rss[name])),
		FDsBase: base.fds[name], FDsLoaded: loaded.fds[name], PipesLoaded: loaded.pipes[name]}
	if flows > 0 {
		row.PerFlowKB = float64(loaded.rss[name]-base.rss[name]) / 1024 / float64(flows)
		row.FDsPerFlow = fdsPerFlow
	}
	if loaded.heap[name] > 0 {
		row.HeapBaseMB, row.HeapLoadedMB = mb(base.heap[name]), mb(loaded.heap[name])
		row.Goroutines = [3]float64{base.routines[name], loaded.routines[name], math.NaN()}
		if flows > 0 {
			row.HeapPerFlowKB = (loaded.heap[name] - base.heap[name]) / 1024 / float64(flows)
		}
	}
	if err != nil {
		row.Err = err.Error()
	}
	return row
}

// memAfterClose records, in the rows of the last count measured, what
// the daemons hold afterCloseWait after every flow was closed: the heap,
// goroutines and descriptors left.
func (b *bench) memAfterClose(ctx context.Context, s *system, last []int) {
	_ = sleepCtx(ctx, afterCloseWait)
	after := b.memSnapshot(ctx, s)
	mb := func(v float64) float64 { return v / (1 << 20) }
	for _, i := range last {
		row := &b.rep.Memory[i]
		row.Closed = true
		row.RSSAfterMB = mb(float64(after.rss[row.Process]))
		row.FDsAfter = after.fds[row.Process]
		if row.HeapLoadedMB > 0 {
			row.HeapAfterMB = mb(after.heap[row.Process])
			row.Goroutines[2] = after.routines[row.Process]
		}
		b.logf("fig5 %s %s after closing: RSS %.1f MB, heap %.1f MB, %.0f goroutines, %d descriptors", s.name, row.Process, row.RSSAfterMB, row.HeapAfterMB, row.Goroutines[2], row.FDsAfter)
	}
}

// reusedPorts looks for why some of figure 5's LAN connections got no
// answer: whether they were more likely than chance to reuse a port of
// figure 2's connections, which the far side closed first and so may still
// hold in TIME_WAIT while the client, closing second, reuses the port. It
// adds what it finds to the report's notes.
func (b *bench) reusedPorts(s *system, failed, tried int, start time.Time, opened []net.Conn) {
	// Only ports whose far side may still hold TIME_WAIT until the end of
	// the opening count: used less than a minute before now.
	end := time.Now()
	recent := 0
	for _, t := range b.lanPorts {
		if end.Sub(t) < time.Minute {
			recent++
		}
	}
	if recent == 0 {
		b.rep.Hung = append(b.rep.Hung, HungRow{System: s.name, Failed: failed, Tried: tried})
		b.rep.Notes = append(b.rep.Notes, fmt.Sprintf("Figure 5, %s: %d of %d new LAN connections got no answer within the %v dial timeout.", s.name, failed, tried, labproc.DialTimeout))
		return
	}
	reused := 0
	for _, c := range opened {
		if t, ok := b.lanPorts[localPort(c)]; ok && end.Sub(t) < time.Minute {
			reused++
		}
	}
	lo, hi := 32768, 60999
	if text, err := b.lab.LAN.Output("cat", "/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		fmt.Sscan(text, &lo, &hi)
	}
	expected := float64(recent) * float64(tried) / float64(hi-lo+1)
	b.rep.Hung = append(b.rep.Hung, HungRow{System: s.name, Failed: failed, Tried: tried, Reused: reused, Expected: expected})
	msg := fmt.Sprintf("Figure 5, %s: %d of %d new LAN connections got no answer to their SYNs within the %v dial timeout (opened in %.1f s). %d of figure 2's connections had used their local port less than a minute before the last of these (ports %d–%d); of the %d new connections that did open, %d reused one of those ports, where chance alone gives about %.1f.",
		s.name, failed, tried, labproc.DialTimeout, end.Sub(start).Seconds(), recent, lo, hi, len(opened), reused, expected)
	if s.name == sysHybrid && float64(reused)+float64(failed) >= expected/2 && float64(reused) < expected/2 {
		msg += " So the failures are most likely the connections that reused such a port: the far side closed those connections first, so hcpe's userspace TCP (gVisor) still holds them in TIME_WAIT, while the LAN client, which closed second and kept no TIME_WAIT, may reuse the port at once; and gVisor hands a new SYN that arrives for a connection in TIME_WAIT only to a listening endpoint (tcp.(*Endpoint).handleTimeWaitSegments), which hcpe's TCP forwarder is not, so it drops the SYN until the TIME_WAIT ends (60 s, gVisor's DefaultTCPTimeWaitTimeout; hcpe does not set it). Linux in its place accepts such a SYN. A LAN host that reuses ports quickly sees those connects hang."
	}
	b.rep.Notes = append(b.rep.Notes, msg)
	b.logf("%s", msg)
}

// fdFit is the most idle flows (rounded down to hundreds) that keep every
// process nofileReserve descriptors below the open-file limit, given the
// descriptors each took per flow so far, and the process that bounds it.
// Before any flow was measured it assumes two per flow.
func (b *bench) fdFit(perFlow map[string]float64, base map[string]int) (int, string) {
	if b.nofile == 0 {
		return math.MaxInt, ""
	}
	fit, who := math.MaxInt, ""
	for n, f := range base {
		pf := perFlow[n]
		if len(perFlow) == 0 {
			pf = 2
		}
		if pf <= 0 {
			continue
		}
		room := float64(b.nofile) - float64(nofileReserve) - float64(f)
		if k := int(room/pf) / 100 * 100; k < fit {
			fit, who = max(k, 0), n
		}
	}
	return fit, who
}

// describeFDs says how many descriptors each process held per flow at the
// last count, and how many of them were pipes.
func describeFDs(perFlow map[string]float64, last []int, rows []MemRow) string {
	names := slices.Sorted(maps.Keys(perFlow))
	slices.SortStableFunc(names, func(a, b string) int { return cmpFloat(perFlow[b], perFlow[a]) })
	var parts []string
	for _, n := range names {
		part := fmt.Sprintf("%s held %.1f descriptors per flow", n, perFlow[n])
		for _, i := range last {
			if r := rows[i]; r.Process == n && r.Flows > 0 && float64(r.PipesLoaded)/float64(r.Flows) >= 0.5 {
				part += fmt.Sprintf(" (%.1f of them pipes)", float64(r.PipesLoaded)/float64(r.Flows))
			}
		}
		parts = append(parts, part)
	}
	return strings.Join(parts, ", ")
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
