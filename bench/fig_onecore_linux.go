package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Figure 9 models a router: each system's daemons are confined to one core
// by a CPU cgroup with a quota of one core (cfs quota = period on cgroup v1,
// cpu.max on v2), the same for every system, and figure 4's unshaped
// downloads run again. The bench's own processes (emulator, client, server)
// stay outside, so the daemons are the limit. Softirq work the kernel does
// for the daemons' packets is not charged to the cgroup, which is why the
// machine's busy cores are reported too.

// oneCoreFigure is the figure's number in -figures.
const oneCoreFigure = "9"

// cpuQuotaGroup is a CPU cgroup holding some processes; release moves them
// back to the root group and removes it.
type cpuQuotaGroup struct {
	dir, root string
	pids      []int
}

// newOneCoreGroup makes a cgroup limited to one core's worth of CPU time and
// moves every pid into it (cgroup.procs moves all of a process's threads,
// and threads created later stay in the group).
func newOneCoreGroup(name string, pids []int) (*cpuQuotaGroup, error) {
	const period = 100000 // µs
	g := &cpuQuotaGroup{}
	var limits [][2]string
	switch {
	case fileExists("/sys/fs/cgroup/cgroup.controllers"): // v2, unified
		g.root = "/sys/fs/cgroup"
		limits = [][2]string{{"cpu.max", fmt.Sprintf("%d %d", period, period)}}
	case fileExists("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"): // v1
		g.root = "/sys/fs/cgroup/cpu"
		limits = [][2]string{{"cpu.cfs_period_us", strconv.Itoa(period)}, {"cpu.cfs_quota_us", strconv.Itoa(period)}}
	default:
		return nil, errors.New("no CPU cgroup controller at /sys/fs/cgroup or /sys/fs/cgroup/cpu")
	}
	g.dir = filepath.Join(g.root, name)
	if err := os.Mkdir(g.dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating cgroup %s: %w", g.dir, err)
	}
	for _, l := range limits {
		if err := os.WriteFile(filepath.Join(g.dir, l[0]), []byte(l[1]), 0); err != nil {
			return nil, errors.Join(fmt.Errorf("setting %s of cgroup %s: %w", l[0], g.dir, err), g.release())
		}
	}
	for _, pid := range pids {
		if err := os.WriteFile(filepath.Join(g.dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			return nil, errors.Join(fmt.Errorf("moving pid %d into cgroup %s: %w", pid, g.dir, err), g.release())
		}
		g.pids = append(g.pids, pid)
	}
	return g, nil
}

// release moves the processes back to the root group (those that exited
// are gone already) and removes the group.
func (g *cpuQuotaGroup) release() error {
	var errs []error
	for _, pid := range g.pids {
		if err := os.WriteFile(filepath.Join(g.root, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil && fileExists(fmt.Sprintf("/proc/%d", pid)) {
			errs = append(errs, fmt.Errorf("moving pid %d out of cgroup %s: %w", pid, g.dir, err))
		}
	}
	// The kernel empties the group asynchronously after the last move.
	var err error
	for range 50 {
		if err = os.Remove(g.dir); err == nil || errors.Is(err, os.ErrNotExist) {
			err = nil
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("removing cgroup %s: %w", g.dir, err))
	}
	return errors.Join(errs...)
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// oneCore measures figure 9 for s: one flow and b.opts.Flows flows, the
// daemons confined to one core.
func (b *bench) oneCore(ctx context.Context, s *system) {
	if s.name == sysDirect {
		return // no daemon to confine
	}
	b.lab.DSL.Apply(unshaped)
	b.lab.LTE.Apply(unshaped)
	defer b.applyPair(b.pairs[1])
	pids := s.pids()
	var list []int
	for _, pid := range pids {
		list = append(list, pid)
	}
	slices.Sort(list)
	g, err := newOneCoreGroup(b.opts.Prefix+"onecore-"+s.name, list)
	if err != nil {
		b.errorf("figure 9 %s: %v", s.name, err)
		return
	}
	defer func() {
		if err := g.release(); err != nil {
			b.errorf("figure 9 %s: %v", s.name, err)
		}
	}()
	for _, n := range []int{1, b.opts.Flows} {
		if ctx.Err() != nil {
			return
		}
		b.settle(ctx)
		pids["bench"] = os.Getpid()
		m := startCPU(pids)
		ss, res := downloads(ctx, b.lab.LAN, b.dst, n, b.opts.CPU)
		cores, machine := m.stop()
		if ctx.Err() != nil {
			return // interrupted: not a measurement
		}
		row := b.cpuRow(s.name, n, ss, res, cores, machine)
		b.rep.OneCore = append(b.rep.OneCore, row)
		b.logf("fig9 %s %d flow(s) on one core: %.0f Mbit/s, daemons %.2f cores (%s), bench %.2f, machine %.2f %s", s.name, n, row.GoodputMbps, row.DaemonCores, coresCell(row.Cores), row.BenchCores, row.MachineCores, row.Err)
	}
}

// oneCoreMD renders figure 9.
func (r *Report) oneCoreMD(b *strings.Builder) {
	if len(r.OneCore) == 0 {
		return
	}
	fmt.Fprintf(b, "\n## 9. Throughput with the daemons confined to one core (links unshaped)\n\n")
	t := newTable(b, "system", "flows", "goodput Mbit/s", "per-process cores", "daemon cores", "daemon cores per Gbit/s", "bench process cores (emulator+client+server)", "machine busy cores")
	for _, e := range r.OneCore {
		t.row(e.System, fmt.Sprint(e.Flows), f1(e.GoodputMbps), coresCell(e.Cores), f2(e.DaemonCores), f2(e.PerGbps), f2(e.BenchCores), f2(e.MachineCores)+errCell(e.Err))
	}
	fmt.Fprintf(b, "\nEach system's daemons (hcpe and hag; ss-redir and ss-server) share one CPU cgroup whose quota is one core (100 ms per 100 ms period), as a router's single core would be; the bench's emulator, client and server run outside it. Kernel work done in softirq context (forwarding, TCP, MPTCP, the TUN) is not charged to the cgroup, so the machine's busy cores say how much of the box the transfer took in all.\n\n")
}
