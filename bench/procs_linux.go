package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"hybridgw/internal/netlab"
)

// spawner starts child processes from one OS thread that never exits and
// never changes namespace: a child's Pdeathsig fires when the thread that
// forked it dies, so children started from an arbitrary Go thread could be
// killed whenever the runtime retires that thread.
type spawner struct{ reqs chan spawnReq }

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

func newSpawner() *spawner {
	s := &spawner{reqs: make(chan spawnReq)}
	go func() {
		runtime.LockOSThread() // for the life of the process
		for r := range s.reqs {
			r.done <- r.cmd.Start()
		}
	}()
	return s
}

func (s *spawner) start(cmd *exec.Cmd) error {
	// Own process group: a Ctrl-C on the terminal reaches only the bench,
	// which stops its children in order. Pdeathsig: if the bench is killed,
	// its children do not outlive it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	done := make(chan error, 1)
	s.reqs <- spawnReq{cmd, done}
	return <-done
}

// proc is a child process the bench started, running in a namespace.
type proc struct {
	name   string
	cmd    *exec.Cmd
	log    string
	exited chan struct{}
	err    error
}

// startProc runs argv inside ns (ip netns exec replaces itself with the
// program, so the pid is the program's) with its output in logDir.
func startProc(sp *spawner, ns *netlab.NS, name, logDir string, argv ...string) (*proc, error) {
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	p := &proc{name: name, log: logPath, exited: make(chan struct{})}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", ns.Name}, argv...)...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := sp.start(p.cmd); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() { p.err = p.cmd.Wait(); f.Close(); close(p.exited) }()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM and waits up to grace, then kills. Only this
// process's own pid is signalled.
func (p *proc) stop(grace time.Duration) error {
	if p == nil || !p.running() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return nil
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("%s did not stop within %v of SIGTERM; killed", p.name, grace)
	}
}

// logTail is the last n lines of the process's log.
func (p *proc) logTail(n int) string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

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

// metricsText fetches a Prometheus exposition from inside ns.
func metricsText(ctx context.Context, ns *netlab.NS, addr string) (string, error) {
	tr := &http.Transport{DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
		var c net.Conn
		err := ns.Do(func() (err error) { c, err = (&net.Dialer{}).DialContext(ctx, network, a); return })
		return c, err
	}, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return "", fmt.Errorf("scraping %s in %s: %w", addr, ns.Name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("scraping %s in %s: %w", addr, ns.Name, err)
	}
	return string(b), nil
}

// scrape fetches a Prometheus exposition from inside ns and returns, for
// each wanted metric name, the sum of its samples over all label sets, or
// for a name written with its labels, that one series.
func scrape(ctx context.Context, ns *netlab.NS, addr string, names ...string) (map[string]float64, error) {
	bare := make([]string, len(names))
	for i, n := range names {
		bare[i], _, _ = strings.Cut(n, "{")
	}
	series, err := scrapeSeries(ctx, ns, addr, bare...)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, n := range names {
		if strings.Contains(n, "{") {
			// A name with labels ("m{l=\"v\"}") matches that series only.
			if v, ok := series[n]; ok {
				out[n] = v
			}
			continue
		}
		for k, v := range series {
			if k == n || strings.HasPrefix(k, n+"{") {
				out[n] += v
			}
		}
	}
	return out, nil
}

// scrapeSeries returns every series of the named metrics, keyed by the
// series as exposed (name and labels, e.g. `hag_limit_hits_total{limit="handshakes"}`).
func scrapeSeries(ctx context.Context, ns *netlab.NS, addr string, names ...string) (map[string]float64, error) {
	text, err := metricsText(ctx, ns, addr)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, line := range strings.Split(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		series := line[:i]
		name, _, _ := strings.Cut(series, "{")
		if !slices.Contains(names, name) {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[series] = v
		}
	}
	return out, nil
}

// labelValue is the value of the first label of a series key
// (`m{l="v"}` → v), or the key itself without labels.
func labelValue(series string) string {
	_, rest, ok := strings.Cut(series, "=\"")
	if !ok {
		return series
	}
	v, _, _ := strings.Cut(rest, "\"")
	return v
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
	v := mptcpView{ExtraSubflow: map[string]int{}}
	out, err := ns.Output("ss", "-Htni", "-M")
	if err != nil {
		return v, err
	}
	lines := strings.Split(out, "\n")
	suffix := ":" + strconv.Itoa(port)
	var raw []string
	for i := 0; i < len(lines); i++ {
		f := strings.Fields(lines[i])
		if len(f) < 6 || (f[0] != "tcp" && f[0] != "mptcp") {
			continue
		}
		info := ""
		if i+1 < len(lines) && (strings.HasPrefix(lines[i+1], "\t") || strings.HasPrefix(lines[i+1], " ")) {
			info = lines[i+1]
			i++
		}
		if f[1] != "ESTAB" || !strings.HasSuffix(f[5], suffix) {
			continue
		}
		if len(raw) < 12 {
			raw = append(raw, strings.Join(f, " ")+" | "+shortInfo(info))
		}
		switch f[0] {
		case "mptcp":
			v.MPTCPConns++
			for _, w := range strings.Fields(info) {
				if n, ok := strings.CutPrefix(w, "subflows:"); ok {
					v.ExtraSubflow[n]++
				}
			}
		case "tcp":
			local := f[4]
			mp := strings.Contains(info, "tcp-ulp-mptcp")
			switch {
			case mp && strings.HasPrefix(local, dslAddr+":"):
				v.SubflowsDSL++
			case mp && (strings.HasPrefix(local, lteAddr+":") || strings.HasPrefix(local, lteAddr+"%")):
				v.SubflowsLTE++
			case !mp:
				v.PlainTCP++
			}
		}
	}
	v.Raw = strings.Join(raw, "\n")
	return v, nil
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

// waitFor polls ok every 25 ms until it holds or d passes.
func waitFor(ctx context.Context, what string, d time.Duration, ok func() bool) error {
	deadline := time.Now().Add(d)
	for !ok() {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
	return nil
}

// sleepCtx sleeps d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
