package mptcp

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Sysctl is one per-namespace kernel setting, named as sysctl(8) names it.
type Sysctl struct {
	Name  string // e.g. net.mptcp.blackhole_timeout
	Value string
}

// Changed is what SetSysctls did to one setting.
type Changed struct {
	Name     string
	Old, New string
}

func sysctlPath(name string) string {
	return "/proc/sys/" + strings.ReplaceAll(name, ".", "/")
}

// SetSysctls reads each setting and writes it where it differs, in the
// network namespace of the calling thread (/proc/sys/net follows it). It
// returns what it changed; the first failure stops it with an error that
// names the sysctl, so an operator knows which line of deploy/sysctl to
// apply by hand when hcpe may not write /proc/sys.
func SetSysctls(want []Sysctl) ([]Changed, error) {
	var changed []Changed
	for _, s := range want {
		p := sysctlPath(s.Name)
		b, err := os.ReadFile(p)
		if err != nil {
			return changed, fmt.Errorf("reading sysctl %s: %w", s.Name, err)
		}
		old := strings.TrimSpace(string(b))
		if old == s.Value {
			continue
		}
		if err := os.WriteFile(p, []byte(s.Value), 0); err != nil {
			return changed, fmt.Errorf("setting sysctl %s=%s (is %s): %w", s.Name, s.Value, old, err)
		}
		changed = append(changed, Changed{Name: s.Name, Old: old, New: s.Value})
	}
	return changed, nil
}

// ReadExt returns the kernel's MPTcpExt counters of the calling thread's
// network namespace (/proc/thread-self/net/netstat: /proc/net follows the
// thread-group leader, not a thread moved into another namespace), the
// MIB that nstat shows as MPTcpExt*, keyed without the prefix:
// "Blackhole", "MPCapableSYNTXDisabled", ...
func ReadExt() (map[string]uint64, error) {
	b, err := os.ReadFile("/proc/thread-self/net/netstat")
	if err != nil {
		return nil, fmt.Errorf("reading /proc/net/netstat: %w", err)
	}
	return parseExt(b)
}

// parseExt reads the MPTcpExt header line and the value line after it.
func parseExt(b []byte) (map[string]uint64, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 16<<10), 1<<20)
	var names []string
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "MPTcpExt:" {
			continue
		}
		if names == nil {
			names = f[1:]
			continue
		}
		vals := f[1:]
		if len(vals) != len(names) {
			return nil, fmt.Errorf("parsing MPTcpExt in /proc/net/netstat: %d names, %d values", len(names), len(vals))
		}
		m := make(map[string]uint64, len(names))
		for i, n := range names {
			v, err := strconv.ParseUint(vals[i], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("parsing MPTcpExt %s in /proc/net/netstat: %w", n, err)
			}
			m[n] = v
		}
		return m, nil
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading /proc/net/netstat: %w", err)
	}
	return nil, fmt.Errorf("no MPTcpExt counters in /proc/net/netstat (kernel without MPTCP?)")
}

// Somaxconn is net.core.somaxconn of the calling thread's network
// namespace: the most any listen backlog there can be.
func Somaxconn() (int, error) {
	return readSysctlInt("/proc/sys/net/core/somaxconn")
}

// MaxSynBacklog is net.ipv4.tcp_max_syn_backlog of the calling thread's
// network namespace: without SYN cookies, the SYN queue a listener keeps
// is held below three quarters of it as well as below its backlog.
func MaxSynBacklog() (int, error) {
	return readSysctlInt("/proc/sys/net/ipv4/tcp_max_syn_backlog")
}

func readSysctlInt(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("mptcp: reading %s: %w", path, err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("mptcp: parsing %s %q: %w", path, b, err)
	}
	return v, nil
}
