package admin

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeProvider answers with fixed values and counts calls.
type fakeProvider struct {
	status any
	flows  any
	err    error
}

func (p *fakeProvider) Status(context.Context) (any, error) { return p.status, p.err }
func (p *fakeProvider) Flows(context.Context) (any, error)  { return p.flows, p.err }

func testLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// serve runs Serve on listen until the test ends and waits for the socket.
func serve(tb testing.TB, listen string, h http.Handler) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, listen, h, testLog()) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("Serve: %v", err)
		}
	})
	path, _ := SocketPath(listen)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("admin socket %s never answered", path)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func sampleCPEFlows() CPEFlows {
	yes := true
	return CPEFlows{Flows: []CPEFlow{{
		ID: 7, Source: netip.MustParseAddrPort("192.0.2.10:40212"), Destination: netip.MustParseAddrPort("203.0.113.10:8081"),
		ToServer: 16, ToClient: 12 << 20, Uplink: "dsl", MPTCP: true, AgeMs: 4100,
		Subflows: []Subflow{{Uplink: "lte", Local: netip.MustParseAddrPort("198.51.100.6:39211"),
			Remote: netip.MustParseAddrPort("198.51.100.100:5124"), RTTMs: 41.25, BytesAcked: 8, BytesReceived: 6 << 20, Backup: &yes}},
	}}}
}

func TestServeUnixSocket(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "run", "admin.sock") // the directory is created
	ready := make(chan struct{})
	want := sampleCPEFlows()
	p := &fakeProvider{status: &CPEStatus{Version: "test", FirstUplink: "dsl"}, flows: &want}
	serve(t, "unix:"+sock, Handler(p, ready))

	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, want a socket with 0660", fi.Mode())
	}

	ctx := context.Background()
	var st CPEStatus
	if err := Get(ctx, sock, "/v1/status", &st); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("before ready: err %v, want a 503", err)
	}
	close(ready)
	if err := Get(ctx, sock, "/v1/status", &st); err != nil {
		t.Fatal(err)
	}
	if st.Version != "test" || st.FirstUplink != "dsl" {
		t.Errorf("status %+v", st)
	}
	var fl CPEFlows
	if err := Get(ctx, "unix:"+sock, "/v1/flows", &fl); err != nil {
		t.Fatal(err)
	}
	if len(fl.Flows) != 1 || fl.Flows[0].Destination != want.Flows[0].Destination || *fl.Flows[0].Subflows[0].Backup != true ||
		fl.Flows[0].Subflows[0].BytesReceived != 6<<20 {
		t.Errorf("flows round trip: %+v", fl)
	}
	if err := Get(ctx, sock, "/v1/nothing", &fl); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("unknown path: err %v, want a 404", err)
	}

	p.err = errors.New("boom")
	if err := Get(ctx, sock, "/v1/flows", &fl); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("provider error: %v", err)
	}
}

// reloadingProvider is a Provider that can also reload.
type reloadingProvider struct {
	fakeProvider
	reloaded int
}

func (p *reloadingProvider) Reload(context.Context) (any, error) {
	if p.err != nil {
		return nil, p.err
	}
	p.reloaded++
	return Reloaded{Config: "/etc/hybridgw/hcpe.yaml", NotApplied: []string{"tun"}}, nil
}

// Reload is POST only, exists only for a Reloader, and a refused config is
// a 422 carrying the problems.
func TestServeReload(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain.sock")
	serve(t, plain, Handler(&fakeProvider{}, nil))
	var r Reloaded
	if err := Post(context.Background(), plain, "/v1/reload", &r); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("reload on a daemon without it: err %v, want a 404", err)
	}

	sock := filepath.Join(dir, "admin.sock")
	p := &reloadingProvider{}
	serve(t, sock, Handler(p, nil))
	if err := Get(context.Background(), sock, "/v1/reload", &r); err == nil || !strings.Contains(err.Error(), "405") {
		t.Errorf("GET /v1/reload: err %v, want a 405", err)
	}
	if err := Post(context.Background(), sock, "/v1/reload", &r); err != nil {
		t.Fatal(err)
	}
	if p.reloaded != 1 || r.Config != "/etc/hybridgw/hcpe.yaml" || len(r.NotApplied) != 1 {
		t.Errorf("reload: %d calls, answer %+v", p.reloaded, r)
	}
	p.err = errors.New(`hcpe.yaml:14: uplinks[1].role: "standby" is not one of primary, overflow, backup, bond`)
	err := Post(context.Background(), sock, "/v1/reload", &r)
	if err == nil || !strings.Contains(err.Error(), "422") || !strings.Contains(err.Error(), "uplinks[1].role") || strings.HasPrefix(err.Error(), "Post ") {
		t.Errorf("refused reload: err %v, want a 422 with the problem", err)
	}
}

func TestServeRemovesSocketOnExit(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "admin.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, sock, Handler(&fakeProvider{}, nil), testLog()) }()
	waitSocket(t, sock)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket still there after Serve returned: %v", err)
	}
}

func waitSocket(tb testing.TB, path string) {
	tb.Helper()
	for i := 0; i < 500; i++ {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	tb.Fatalf("%s never answered", path)
}

func TestListenStaleAndBusy(t *testing.T) {
	dir := t.TempDir()

	// A socket nobody listens on any more (a crashed run) is replaced.
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	ln, err = Listen(stale)
	if err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	ln.Close()

	// A socket another process serves on is left alone.
	busy := filepath.Join(dir, "busy.sock")
	serve(t, busy, Handler(&fakeProvider{}, nil))
	if _, err := Listen(busy); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Errorf("busy socket: err %v", err)
	}
	if _, err := os.Lstat(busy); err != nil {
		t.Errorf("busy socket removed: %v", err)
	}

	// Nor is a file that is not a socket.
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(file); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("regular file: err %v", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "x" {
		t.Error("regular file was touched")
	}
}

func TestServeTCP(t *testing.T) {
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: Handler(&fakeProvider{status: &HAGStatus{Version: "tcp"}}, nil)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	var st HAGStatus
	// ":PORT" as written in a config means this host.
	if err := Get(context.Background(), ":"+port, "/v1/status", &st); err != nil {
		t.Fatal(err)
	}
	if st.Version != "tcp" {
		t.Errorf("status %+v", st)
	}
}

func TestServeDisabled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Serve(ctx, "", Handler(&fakeProvider{}, nil), testLog()); err != nil {
		t.Errorf("disabled: %v", err)
	}
}

func TestDialable(t *testing.T) {
	for in, want := range map[string]string{
		":9103":           "127.0.0.1:9103",
		"0.0.0.0:9103":    "127.0.0.1:9103",
		"[::]:9103":       "[::1]:9103",
		"10.0.0.1:9103":   "10.0.0.1:9103",
		"[2001:db8::1]:1": "[2001:db8::1]:1",
	} {
		if got := dialable(in); got != want {
			t.Errorf("dialable(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]bool{"/run/hcpe/admin.sock": true, "unix:/x": true, "127.0.0.1:1": false, ":1": false} {
		if _, got := SocketPath(in); got != want {
			t.Errorf("SocketPath(%q) unix = %v, want %v", in, got, want)
		}
	}
}

// The profiler answers on the admin socket, before the daemon is ready
// too, and a CPU profile comes back as a gzipped protobuf.
func TestServePprof(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "admin.sock")
	serve(t, sock, Handler(&fakeProvider{}, make(chan struct{}))) // never ready
	ctx := context.Background()

	var cmdline strings.Builder
	if err := Fetch(ctx, sock, "/debug/pprof/cmdline", &cmdline); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(cmdline.String(), filepath.Base(os.Args[0])) {
		t.Errorf("cmdline %q does not name the test binary %s", cmdline.String(), os.Args[0])
	}
	var index strings.Builder
	if err := Fetch(ctx, sock, "/debug/pprof/", &index); err != nil || !strings.Contains(index.String(), "goroutine") {
		t.Errorf("index: err %v, %d bytes without the goroutine profile", err, index.Len())
	}
	var prof strings.Builder
	if err := Fetch(ctx, "unix:"+sock, "/debug/pprof/profile?seconds=1", &prof); err != nil {
		t.Fatal(err)
	}
	if b := prof.String(); len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
		t.Errorf("CPU profile: %d bytes, not gzip", len(b))
	}
	if err := Fetch(ctx, sock, "/debug/pprof/nothing", &prof); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("unknown profile: err %v, want a 404", err)
	}
	// The /v1 endpoints still wait for ready.
	var st CPEStatus
	if err := Get(ctx, sock, "/v1/status", &st); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("status before ready: err %v, want a 503", err)
	}
}
