package main

import (
	"math"
	"testing"
)

const topOut = `File: hcpe
Build ID: ae2605b37051dae583788ecb26d8c1e1a2c191bf
Type: cpu
Time: 2026-11-29 23:50:25 UTC
Duration: 3s, Total samples = 3630ms (120.99%)
Showing nodes accounting for 3630ms, 100% of 3630ms total
      flat  flat%   sum%        cum   cum%
     520ms 14.33% 14.33%      520ms 14.33%  internal/runtime/syscall/linux.Syscall6
     240ms  6.61% 20.94%      240ms  6.61%  gvisor.dev/gvisor/pkg/atomicbitops.(*Int64).Add (inline)
     150ms  4.13% 25.07%      150ms  4.13%  runtime.memmove
     100ms  2.75% 27.82%      900ms 24.79%  hybridgw/internal/relay.(*flow).userCopy
      80ms  2.20% 30.03%       80ms  2.20%  sync.(*poolDequeue).pushHead
      60ms  1.65% 31.68%       60ms  1.65%  runtime.scanobject
      50ms  1.38% 33.06%       50ms  1.38%  runtime.futex
      40ms  1.10% 34.16%       40ms  1.10%  github.com/prometheus/common/expfmt.writeSample
      30ms  0.83% 34.99%       30ms  0.83%  golang.zx2c4.com/wireguard/tun.checksum
         0     0% 34.99%     1560ms 42.98%  gvisor.dev/gvisor/pkg/tcpip/transport/tcp.(*processor).start
`

func TestParseTop(t *testing.T) {
	header, lines := parseTop(topOut)
	if len(header) != 3 || header[0] != "Type: cpu" || header[1] != "Duration: 3s, Total samples = 3630ms (120.99%)" {
		t.Errorf("header %q", header)
	}
	if len(lines) != 10 {
		t.Fatalf("%d lines, want 10", len(lines))
	}
	l := lines[1]
	if l.Flat != "240ms" || l.FlatPct != 6.61 || l.Cum != "240ms" || l.Func != "gvisor.dev/gvisor/pkg/atomicbitops.(*Int64).Add (inline)" {
		t.Errorf("line 2: %+v", l)
	}
	if z := lines[9]; z.Flat != "0" || z.FlatPct != 0 || z.CumPct != 42.98 {
		t.Errorf("line with zero flat: %+v", z)
	}
}

func TestCategorize(t *testing.T) {
	for fn, want := range map[string]string{
		"internal/runtime/syscall/linux.Syscall6":                 catSyscall,
		"syscall.Syscall6":                                        catSyscall,
		"golang.org/x/sys/unix.Syscall":                           catSyscall,
		"gvisor.dev/gvisor/pkg/tcpip/stack.(*PacketBuffer).Clone": catGVisor,
		"golang.zx2c4.com/wireguard/tun.checksum":                 catTUN,
		"hybridgw/internal/relay.(*flow).userCopy":                catOwn,
		"runtime.memmove":                                         catCopy,
		"runtime.memclrNoHeapPointers":                            catCopy,
		"runtime.mallocgc":                                        catGC,
		"runtime.scanobject":                                      catGC,
		"runtime.futex":                                           catSched,
		"runtime.findRunnable":                                    catSched,
		"runtime.sigtramp":                                        catRuntime,
		"sync.(*poolDequeue).pushHead":                            catSync,
		"internal/runtime/maps.ctrlGroup.matchH2 (inline)":        catRuntime,
		"time.Now":                                        catStd,
		"compress/flate.NewWriter (inline)":               catStd,
		"net/http.(*conn).serve":                          catStd,
		"github.com/prometheus/common/expfmt.writeSample": catLib,
		"[vdso]": catOther,
	} {
		if got := categorize(fn); got != want {
			t.Errorf("categorize(%q) = %q, want %q", fn, got, want)
		}
	}
}

func TestCategories(t *testing.T) {
	_, lines := parseTop(topOut)
	cats := categories(lines)
	if cats[0].Name != catSyscall || math.Abs(cats[0].Pct-14.33) > 1e-9 {
		t.Errorf("largest category %+v, want system calls 14.33", cats[0])
	}
	sum := 0.0
	for i, c := range cats {
		sum += c.Pct
		if i > 0 && c.Pct > cats[i-1].Pct {
			t.Errorf("categories not sorted: %+v", cats)
		}
	}
	if math.Abs(sum-34.99) > 0.02 {
		t.Errorf("categories sum to %.2f, want the flat total 34.99", sum)
	}
}
