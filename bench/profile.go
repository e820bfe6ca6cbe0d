package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ProfileRow is one profile of a daemon the bench took, and what
// `go tool pprof -top` says about it.
type ProfileRow struct {
	Process string `json:"process"`
	Kind    string `json:"kind"` // cpu or heap
	When    string `json:"when"`
	File    string `json:"file"`
	Seconds int    `json:"seconds,omitempty"` // a CPU profile's length
	// Header is pprof's summary: the type, and for a CPU profile the
	// duration and the CPU seconds sampled.
	Header     []string    `json:"header"`
	Flat       []PprofLine `json:"top_flat"`
	Cum        []PprofLine `json:"top_cum"`
	Categories []Category  `json:"categories"` // flat shares, summing to 100 %
	Command    string      `json:"command"`
	Err        string      `json:"error,omitempty"`
}

// PprofLine is one row of `go tool pprof -top`.
type PprofLine struct {
	Flat    string  `json:"flat"`
	FlatPct float64 `json:"flat_pct"`
	Cum     string  `json:"cum"`
	CumPct  float64 `json:"cum_pct"`
	Func    string  `json:"func"`
}

// Category is the share of a profile's flat samples spent in one kind of
// work (see categorize).
type Category struct {
	Name string  `json:"name"`
	Pct  float64 `json:"pct"`
}

// fetchedProfile is a profile being fetched, before pprof reads it.
type fetchedProfile struct {
	proc, kind, when, path string
	seconds                int
	err                    error
}

// topRows is how many functions of each profile the report shows.
const topRows = 10

// pprofTop runs `go tool pprof -top` on a saved profile with the binary
// that wrote it, every node kept (the categories need them all), sorted by
// flat or, with cum, by cumulative samples. extra goes before the files
// (e.g. -sample_index=inuse_space).
func pprofTop(ctx context.Context, goBin, bin, file string, cum bool, extra ...string) (header []string, lines []PprofLine, cmdline string, err error) {
	args := []string{"tool", "pprof", "-top", "-nodefraction=0", "-edgefraction=0", "-nodecount=1000000"}
	if cum {
		args = append(args, "-cum")
	}
	args = append(append(args, extra...), bin, file)
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, goBin, args...).Output()
	cmdline = "go " + strings.Join(args, " ")
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
		}
		return nil, nil, cmdline, fmt.Errorf("%s: %w", cmdline, err)
	}
	header, lines = parseTop(string(out))
	if len(lines) == 0 {
		return header, nil, cmdline, fmt.Errorf("%s: no samples in the profile", cmdline)
	}
	return header, lines, cmdline, nil
}

// topLine is a row of pprof's -top table: flat flat% sum% cum cum% name.
var topLine = regexp.MustCompile(`^\s*(\S+)\s+([\d.]+)%\s+[\d.]+%\s+(\S+)\s+([\d.]+)%\s+(.+?)\s*$`)

// parseTop splits `go tool pprof -top` output into the summary lines that
// matter (Type, Duration, Showing) and the table.
func parseTop(out string) (header []string, lines []PprofLine) {
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	table := false
	for sc.Scan() {
		l := sc.Text()
		if !table {
			t := strings.TrimSpace(l)
			switch {
			case strings.HasPrefix(t, "flat") && strings.Contains(t, "cum%"):
				table = true
			case strings.HasPrefix(t, "Type:"), strings.HasPrefix(t, "Duration:"), strings.HasPrefix(t, "Showing nodes"):
				header = append(header, t)
			}
			continue
		}
		m := topLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		fp, _ := strconv.ParseFloat(m[2], 64)
		cp, _ := strconv.ParseFloat(m[4], 64)
		lines = append(lines, PprofLine{Flat: m[1], FlatPct: fp, Cum: m[3], CumPct: cp, Func: m[5]})
	}
	return header, lines
}

// Categories of a CPU profile's flat samples, in the order categorize
// tries them. A sample in a system call is the kernel's work on the
// daemon's behalf (Go's profiler counts user and system time): reads and
// writes of the TUN device and sockets, splice, epoll.
const (
	catSyscall = "system calls (kernel work: socket and TUN I/O, splice)"
	catGVisor  = "gVisor netstack (userspace TCP/IP)"
	catTUN     = "wireguard-go tun (TUN device framing)"
	catOwn     = "hybridgw's own code"
	catCopy    = "memmove/memclr (copying, zeroing)"
	catGC      = "GC and allocation"
	catSched   = "Go scheduler, timers, netpoller, futexes"
	catRuntime = "other Go runtime"
	catSync    = "locks, atomics and sync.Pool"
	catStd     = "rest of the Go standard library (time, net, os, io…)"
	catLib     = "other Go modules (prometheus, x/…)"
	catOther   = "other"
)

// categorize files a function of a profile under a category.
func categorize(fn string) string {
	has := func(ps ...string) bool {
		for _, p := range ps {
			if strings.HasPrefix(fn, p) {
				return true
			}
		}
		return false
	}
	switch {
	case has("syscall.", "golang.org/x/sys/unix.", "internal/runtime/syscall", "runtime/internal/syscall"):
		return catSyscall
	case has("gvisor.dev/"):
		return catGVisor
	case has("golang.zx2c4.com/wireguard/"):
		return catTUN
	case has("hybridgw/"):
		return catOwn
	case has("runtime.memmove", "runtime.memclr"):
		return catCopy
	case has("runtime.mallocgc", "runtime.newobject", "runtime.makeslice", "runtime.growslice", "runtime.nextFreeFast",
		"runtime.(*mcache)", "runtime.(*mcentral)", "runtime.(*mheap)", "runtime.(*mspan)", "runtime.(*gcWork)",
		"runtime.(*gcBits)", "runtime.(*spanSet)", "runtime.(*sweepLocked)", "runtime.(*pageAlloc)", "runtime.(*gcControllerState)",
		"runtime.scanobject", "runtime.scanblock", "runtime.scanstack", "runtime.scanframe", "runtime.gcDrain", "runtime.greyobject",
		"runtime.findObject", "runtime.markBits", "runtime.heapBits", "runtime.typePointers", "runtime.(*typePointers)",
		"runtime.wbBuf", "runtime.bulkBarrier", "runtime.gcmarknewobject", "runtime.gcWriteBarrier", "runtime.sweepone",
		"runtime.markroot", "runtime.spanOf", "runtime.pageIndexOf", "runtime.heapSetType", "runtime.gcBgMarkWorker",
		"runtime.gcAssist", "runtime.tryDeferToSpanScan", "runtime.gcFlush", "runtime.publicationBarrier",
		"runtime.deductAssistCredit", "runtime.(*stackScanState)"):
		return catGC
	case has("runtime.futex", "runtime.usleep", "runtime.osyield", "runtime.procyield", "runtime.epollwait", "runtime.netpoll",
		"runtime.schedule", "runtime.findRunnable", "runtime.stealWork", "runtime.runqgrab", "runtime.runqsteal", "runtime.runqput",
		"runtime.lock2", "runtime.unlock2", "runtime.lock", "runtime.unlock", "runtime.nanotime", "runtime.walltime",
		"runtime.(*timers)", "runtime.(*timer)", "runtime.checkTimers", "runtime.park_m", "runtime.mcall", "runtime.gopark",
		"runtime.goready", "runtime.ready", "runtime.casgstatus", "runtime.execute", "runtime.notesleep", "runtime.notewakeup",
		"runtime.wakep", "runtime.startm", "runtime.stopm", "runtime.mPark", "runtime.resetspinning", "runtime.gogo",
		"runtime.save", "runtime.goexit", "runtime.selectgo", "runtime.chansend", "runtime.chanrecv", "runtime.send",
		"runtime.recv", "runtime.(*waitq)", "runtime.entersyscall", "runtime.exitsyscall", "runtime.reentersyscall",
		"runtime.handoffp", "runtime.acquirep", "runtime.releasep", "runtime.pidle", "runtime.semacquire", "runtime.semrelease",
		"runtime.(*semaRoot)", "runtime.runtimer", "runtime.netpollblock", "runtime.poll_runtime", "runtime.sysmon",
		"runtime.retake", "runtime.morestack", "runtime.newstack", "runtime.copystack", "runtime.asyncPreempt", "runtime.preempt",
		"runtime.mstart", "runtime.gfget", "runtime.gfput", "runtime.newproc", "runtime.goexit0", "runtime.dropg",
		"runtime.traceLocker", "runtime.cputicks", "runtime.nanotime1", "runtime.sigprof", "runtime.signalM", "runtime.tgkill"):
		return catSched
	case has("sync.", "sync/atomic.", "internal/sync.", "internal/runtime/atomic."):
		return catSync
	case has("runtime.", "internal/runtime/"):
		return catRuntime
	}
	// A standard-library package path has no dot in its first element
	// ("net", "compress/flate"); everything else ("github.com/…") is a
	// third-party module.
	first, _, _ := strings.Cut(fn, "/")
	if !strings.Contains(fn, "/") {
		first, _, _ = strings.Cut(fn, ".")
	}
	if first != "" && first[0] >= 'a' && first[0] <= 'z' && !strings.Contains(first, ".") {
		return catStd
	}
	if strings.Contains(fn, "/") {
		return catLib
	}
	return catOther
}

// categories sums flat shares by category, largest first.
func categories(lines []PprofLine) []Category {
	sum := map[string]float64{}
	for _, l := range lines {
		sum[categorize(l.Func)] += l.FlatPct
	}
	out := make([]Category, 0, len(sum))
	for n, v := range sum {
		if v >= 0.05 {
			out = append(out, Category{n, v})
		}
	}
	slices.SortFunc(out, func(a, b Category) int {
		if a.Pct != b.Pct {
			if a.Pct > b.Pct {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}

// goTool finds the go command that runs pprof.
func goTool() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	p := "/usr/local/go/bin/go"
	if _, err := os.Stat(p); err != nil {
		return "", errors.New("no go command in PATH or /usr/local/go/bin: the profiles are saved, but go tool pprof cannot read them here")
	}
	return p, nil
}

// readProfile runs pprof on a saved profile and fills in a report row;
// out is the report's directory (as given on the command line), which the
// row's file name is relative to; the command names the files as the
// bench was given them.
func readProfile(ctx context.Context, fp *fetchedProfile, bin, out string) ProfileRow {
	row := ProfileRow{Process: fp.proc, Kind: fp.kind, When: fp.when, File: fp.path, Seconds: fp.seconds}
	shown := fp.path
	if abs, err := filepath.Abs(out); err == nil {
		if rel, err := filepath.Rel(abs, fp.path); err == nil && !strings.HasPrefix(rel, "..") {
			row.File, shown = rel, filepath.Join(out, rel)
		}
	}
	if fp.err != nil {
		row.Err = fp.err.Error()
		return row
	}
	goBin, err := goTool()
	if err != nil {
		row.Err = err.Error()
		return row
	}
	var extra []string
	if fp.kind == "heap" {
		extra = []string{"-sample_index=inuse_space"}
	}
	header, flat, cmd, err := pprofTop(ctx, goBin, bin, fp.path, false, extra...)
	row.Command = strings.Replace(strings.Replace(cmd, "-nodefraction=0 -edgefraction=0 -nodecount=1000000 ", "", 1), fp.path, shown, 1)
	if err != nil {
		row.Err = err.Error()
		return row
	}
	row.Header = header
	row.Categories = categories(flat)
	row.Flat = flat[:min(topRows, len(flat))]
	if _, cum, _, err := pprofTop(ctx, goBin, bin, fp.path, true, extra...); err == nil {
		row.Cum = cum[:min(topRows, len(cum))]
	} else {
		row.Err = err.Error()
	}
	return row
}
