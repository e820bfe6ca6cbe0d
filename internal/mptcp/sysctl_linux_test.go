package mptcp

import (
	"os"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"hybridgw/internal/netlab"
)

func TestParseExt(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    map[string]uint64
		wantErr bool
	}{
		{"ok", "TcpExt: A B\nTcpExt: 1 2\nMPTcpExt: Blackhole MPCapableSYNTXDisabled\nMPTcpExt: 3 1\n",
			map[string]uint64{"Blackhole": 3, "MPCapableSYNTXDisabled": 1}, false},
		{"missing", "TcpExt: A\nTcpExt: 1\n", nil, true},
		{"short", "MPTcpExt: A B\nMPTcpExt: 1\n", nil, true},
		{"bad number", "MPTcpExt: A\nMPTcpExt: x\n", nil, true},
		{"header only", "MPTcpExt: A\n", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseExt([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %d, want %d", k, got[k], v)
				}
			}
		})
	}
}

// TestSetSysctls runs in a fresh network namespace (the MPTCP sysctls are
// per namespace) so the host's values are never touched.
func TestSetSysctls(t *testing.T) {
	netlab.RequireRoot(t)
	runtime.LockOSThread()
	// The thread ends with the test instead of going back to the pool in the
	// new namespace.
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		t.Fatalf("unshare: %v", err)
	}
	want := []Sysctl{{"net.mptcp.blackhole_timeout", "0"}, {"net.mptcp.syn_retrans_before_tcp_fallback", "128"}}
	ch, err := SetSysctls(want)
	if err != nil {
		t.Fatal(err)
	}
	if len(ch) != 2 || ch[0].Old != "3600" || ch[1].Old != "2" {
		t.Errorf("changed = %+v, want both from the kernel defaults 3600 and 2", ch)
	}
	for _, s := range want {
		b, _ := os.ReadFile(sysctlPath(s.Name))
		if string(b) != s.Value+"\n" {
			t.Errorf("%s = %q, want %s", s.Name, b, s.Value)
		}
	}
	if ch, err := SetSysctls(want); err != nil || len(ch) != 0 {
		t.Errorf("second run changed %+v, %v; want nothing", ch, err)
	}
	_, err = SetSysctls([]Sysctl{{"net.mptcp.syn_retrans_before_tcp_fallback", "256"}})
	if err == nil || !strings.Contains(err.Error(), "net.mptcp.syn_retrans_before_tcp_fallback") {
		t.Errorf("out-of-range value: err = %v, want one naming the sysctl", err)
	}
	ext, err := ReadExt()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ext["Blackhole"]; !ok {
		t.Errorf("MPTcpExt has no Blackhole counter: %v", ext)
	}
}
