package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"hybridgw/internal/labproc"
	"hybridgw/internal/netlab"
)

// clkTck is USER_HZ, which /proc/<pid>/stat counts in; 100 on every
// Linux architecture Go supports.
const clkTck = 100

// cpuTime is the user+system CPU time of a process (all threads).
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields after its ")".
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("parsing /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("parsing /proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	st, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parsing /proc/%d/stat times", pid)
	}
	return time.Duration(ut+st) * time.Second / clkTck, nil
}

// rssBytes is a process's resident set size.
func rssBytes(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

// cpuJiffies reads the machine's cpu line in /proc/stat: user nice system
// idle iowait irq softirq steal, in jiffies (nil if it cannot be read).
func cpuJiffies() []int64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return nil
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 {
		return nil
	}
	out := make([]int64, 8)
	for i := range out {
		out[i], _ = strconv.ParseInt(f[i+1], 10, 64)
	}
	return out
}

func sum(v []int64) (t int64) {
	for _, n := range v {
		t += n
	}
	return t
}

// softirqShare: total and softirq jiffies, to tell the kernel's network
// processing, which no process is charged for, apart.
func softirqShare() (total, softirq int64) {
	j := cpuJiffies()
	if j == nil {
		return 0, 0
	}
	return sum(j), j[6]
}

// machineBusy: total and idle (idle+iowait) jiffies.
func machineBusy() (total, idle int64) {
	j := cpuJiffies()
	if j == nil {
		return 0, 0
	}
	return sum(j), j[3] + j[4]
}

// cpuMeter measures the CPU of some processes over an interval.
type cpuMeter struct {
	pids  map[string]int
	start map[string]time.Duration
	t0    time.Time
	tot0  int64
	idle0 int64
}

func startCPU(pids map[string]int) *cpuMeter {
	m := &cpuMeter{pids: pids, start: map[string]time.Duration{}, t0: time.Now()}
	for name, pid := range pids {
		m.start[name], _ = cpuTime(pid)
	}
	m.tot0, m.idle0 = machineBusy()
	return m
}

// stop returns each process's CPU in cores (CPU seconds per second) and
// the whole machine's busy share in cores.
func (m *cpuMeter) stop() (cores map[string]float64, machine float64) {
	wall := time.Since(m.t0).Seconds()
	cores = map[string]float64{}
	for name, pid := range m.pids {
		t, err := cpuTime(pid)
		if err != nil {
			continue
		}
		cores[name] = (t - m.start[name]).Seconds() / wall
	}
	tot, idle := machineBusy()
	if d := tot - m.tot0; d > 0 {
		machine = float64(d-(idle-m.idle0)) / float64(d) * float64(runtime.NumCPU())
	}
	return cores, machine
}

// nsProc reads a file of /proc/thread-self/net (the namespace's own view:
// netstat, sockstat) from a thread inside ns.
func nsProc(ns *netlab.NS, name string) (string, error) {
	var b []byte
	err := ns.Do(func() (err error) { b, err = os.ReadFile("/proc/thread-self/net/" + name); return })
	return string(b), err
}

// netstatCounters picks counters out of /proc/net/netstat or snmp text,
// keyed "TcpExt:ListenOverflows"; no names picks them all.
func netstatCounters(text string, want ...string) map[string]float64 {
	out := map[string]float64{}
	lines := strings.Split(text, "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) != len(values) || len(names) == 0 {
			continue
		}
		for j := 1; j < len(names); j++ {
			k := names[0] + names[j]
			if len(want) == 0 || slices.Contains(want, k) {
				out[k], _ = strconv.ParseFloat(values[j], 64)
			}
		}
	}
	return out
}

// timeWait is the number of TCP sockets in TIME_WAIT in ns (sockstat's tw).
func timeWait(ns *netlab.NS) int {
	text, err := nsProc(ns, "sockstat")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(l, "TCP: "); ok {
			f := strings.Fields(rest)
			for i := 0; i+1 < len(f); i += 2 {
				if f[i] == "tw" {
					n, _ := strconv.Atoi(f[i+1])
					return n
				}
			}
		}
	}
	return -1
}

// ssView runs ss -tniM in ns and counts the sockets whose peer port is
// port, telling subflows from their local address.
func ssView(ns *netlab.NS, port int, dslAddr, lteAddr string) (mptcpView, error) {
	out, err := ns.Output("ss", "-Htni", "-M")
	if err != nil {
		return mptcpView{ExtraSubflow: map[string]int{}}, err
	}
	return countMPTCP(labproc.ParseSS(out), port, dslAddr, lteAddr), nil
}

// countMPTCP is ssView's count over parsed sockets.
func countMPTCP(socks []labproc.Socket, port int, dslAddr, lteAddr string) mptcpView {
	v := mptcpView{ExtraSubflow: map[string]int{}}
	suffix := ":" + strconv.Itoa(port)
	var raw []string
	for _, so := range socks {
		if so.State != "ESTAB" || !strings.HasSuffix(so.Peer, suffix) {
			continue
		}
		if len(raw) < 12 {
			raw = append(raw, strings.Join([]string{so.Netid, so.State, so.Local, so.Peer}, " ")+" | "+shortInfo(so.Info))
		}
		switch so.Netid {
		case "mptcp":
			v.MPTCPConns++
			if n, ok := so.Field("subflows"); ok {
				v.ExtraSubflow[n]++
			}
		case "tcp":
			mp := so.MPTCPSubflow()
			switch {
			case mp && strings.HasPrefix(so.Local, dslAddr+":"):
				v.SubflowsDSL++
			case mp && (strings.HasPrefix(so.Local, lteAddr+":") || strings.HasPrefix(so.Local, lteAddr+"%")):
				v.SubflowsLTE++
			case !mp:
				v.PlainTCP++
			}
		}
	}
	v.Raw = strings.Join(raw, "\n")
	return v
}

// shortInfo keeps the words of an ss info line that tell MPTCP apart.
func shortInfo(info string) string {
	var keep []string
	for _, w := range strings.Fields(info) {
		for _, p := range []string{"subflows:", "subflows_max:", "tcp-ulp-mptcp", "flags:", "rtt:", "token:"} {
			if strings.HasPrefix(w, p) {
				keep = append(keep, w)
			}
		}
	}
	return strings.Join(keep, " ")
}

// The lab helpers bench shares with internal/labdemo and test/e2e, under
// the names its figures use.

// scrape picks metrics from the exposition at addr inside ns (labproc.Pick).
func scrape(ctx context.Context, ns *netlab.NS, addr string, names ...string) (map[string]float64, error) {
	return labproc.Scrape(ctx, ns, addr, names...)
}

// scrapeSeries returns every series of the named metrics at addr inside ns.
func scrapeSeries(ctx context.Context, ns *netlab.NS, addr string, names ...string) (map[string]float64, error) {
	text, err := labproc.MetricsText(ctx, ns, addr)
	if err != nil {
		return nil, err
	}
	return labproc.Series(text, names...), nil
}

func labelValue(series string) string { return labproc.LabelValue(series) }

func waitFor(ctx context.Context, what string, d time.Duration, ok func() bool) error {
	return labproc.WaitFor(ctx, what, d, ok)
}

func sleepCtx(ctx context.Context, d time.Duration) error { return labproc.Sleep(ctx, d) }
