// Package e2e runs the real hcpe and hag binaries, configured by the example
// configs, in the lab topology (internal/netlab) and judges the system as an
// operator would: bytes intact, addresses preserved, links failing.
package e2e

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"hybridgw/internal/labproc"
	"hybridgw/internal/netlab"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hybridgw-e2e-")
	if err != nil {
		panic(err)
	}
	binDir = dir
	for _, name := range []string{"hcpe", "hag"} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, name), "hybridgw/cmd/"+name).CombinedOutput()
		if err != nil {
			os.RemoveAll(dir)
			fmt.Fprintf(os.Stderr, "building %s: %v\n%s", name, err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// daemon is a running hcpe or hag.
type daemon struct {
	name   string
	cmd    *exec.Cmd
	log    string
	exited chan error
}

func startDaemon(t *testing.T, ns *netlab.NS, name, cfg string) *daemon {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	// labproc.Start: the daemon gets SIGTERM if the test binary dies.
	p, err := labproc.Start(ns, name, logPath, filepath.Join(binDir, name), "run", "-c", cfg)
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{name: name, log: logPath, exited: make(chan error, 1), cmd: p.Cmd()}
	go func() { d.exited <- p.Err() }()
	t.Cleanup(func() {
		d.stop(t)
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("%s log:\n%s", name, tail(string(b), 60))
		}
	})
	return d
}

// stop sends SIGTERM and waits; a daemon that does not stop in 10 s is
// killed and the test fails.
func (d *daemon) stop(t *testing.T) {
	select {
	case err := <-d.exited:
		d.exited <- err // already gone (or killed by the test)
		return
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.exited:
		d.exited <- err
		if err != nil {
			t.Errorf("%s exited with %v", d.name, err)
		}
	case <-time.After(10 * time.Second):
		_ = d.cmd.Process.Kill()
		t.Errorf("%s did not stop within 10 s of SIGTERM", d.name)
	}
}

func tail(s string, n int) string { return labproc.Tail(s, n) }

// system is the lab with hag and hcpe running and the test servers up.
type system struct {
	lab       *netlab.Lab
	hag, cpe  *daemon
	srv       *servers
	cpeConfig string
}

func configPath(name string) string {
	p, _ := filepath.Abs(filepath.Join("..", "..", "configs", name))
	return p
}

// startSystem brings up the lab, the test servers, hag and hcpe. edits
// rewrite the example hcpe.yaml (old, new pairs) for tests that need
// another setting; the example itself is what runs by default.
func startSystem(t *testing.T, edits ...string) *system {
	t.Helper()
	prefix := netlab.UniquePrefix()
	// Registered before the lab's own cleanup, so it runs after it: once
	// the daemons stopped and the lab was torn down, nothing may remain.
	t.Cleanup(func() {
		if left, err := netlab.Leftovers(prefix); err != nil || len(left) > 0 {
			t.Errorf("namespaces left behind: %v %v", left, err)
		}
	})
	lab := netlab.New(t, netlab.Options{Prefix: prefix})
	s := &system{lab: lab, cpeConfig: configPath("hcpe.yaml")}
	if len(edits) > 0 {
		b, err := os.ReadFile(s.cpeConfig)
		if err != nil {
			t.Fatal(err)
		}
		body := string(b)
		for i := 0; i+1 < len(edits); i += 2 {
			if !strings.Contains(body, edits[i]) {
				t.Fatalf("hcpe.yaml has no %q to replace", edits[i])
			}
			body = strings.Replace(body, edits[i], edits[i+1], 1)
		}
		s.cpeConfig = filepath.Join(t.TempDir(), "hcpe.yaml")
		if err := os.WriteFile(s.cpeConfig, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s.srv = startServers(t, lab.SRV)
	s.hag = startDaemon(t, lab.HAG, "hag", configPath("hag.yaml"))
	waitFor(t, "hag listening", 10*time.Second, func() bool {
		out, _ := lab.HAG.Output("ss", "-Hltn", "sport", "= :5124")
		return strings.Count(out, "LISTEN") >= 2
	})
	s.startCPE(t)
	return s
}

func (s *system) startCPE(t *testing.T) {
	t.Helper()
	s.cpe = startDaemon(t, s.lab.CPE, "hcpe", s.cpeConfig)
	// Its metrics answer once it steers LAN TCP (rules left by a killed run
	// would fool a look at `ip rule`), and new flows start on the uplinks
	// the probes found alive.
	waitFor(t, "hcpe up with both uplinks alive", 10*time.Second, func() bool {
		v, err := s.tryMetric(s.lab.CPE, 9101, "hcpe_uplink_up")
		return err == nil && v >= 2
	})
}

func waitFor(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	if err := labproc.WaitFor(context.Background(), what, d, ok); err != nil {
		t.Fatal(err)
	}
}

// dialFromClient connects from the LAN client namespace.
func (s *system) dial(ctx context.Context, dst netip.AddrPort) (*net.TCPConn, error) {
	c, err := labproc.Dial(ctx, s.lab.LAN, "tcp", dst.String())
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// metric scrapes one sample of hcpe's metrics (summing label sets that
// contain every given fragment).
func (s *system) metric(t *testing.T, ns *netlab.NS, port int, name string, fragments ...string) float64 {
	t.Helper()
	v, err := s.tryMetric(ns, port, name, fragments...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// scrapeLatency measures, in this run, how long one scrape of hcpe's
// metrics takes (the slowest of three), for bounds on waits that poll them.
func (s *system) scrapeLatency(t *testing.T) time.Duration {
	t.Helper()
	var worst time.Duration
	for range 3 {
		t0 := time.Now()
		if _, err := s.tryMetric(s.lab.CPE, 9101, "hcpe_uplink_up"); err != nil {
			t.Fatal(err)
		}
		worst = max(worst, time.Since(t0))
	}
	return worst
}

// tryMetric sums the samples of name whose line contains every fragment. A
// family missing from the exposition is an error, not 0: a renamed metric
// must fail a test that waits for it to reach 0. A family present with no
// matching sample is 0 (a label set not observed yet).
func (s *system) tryMetric(ns *netlab.NS, port int, name string, fragments ...string) (float64, error) {
	out, err := labproc.MetricsText(context.Background(), ns, fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return 0, fmt.Errorf("scraping metrics: %w", err)
	}
	v, err := sumMetric(out, name, fragments...)
	if err != nil {
		return 0, fmt.Errorf("scraping port %d: %w", port, err)
	}
	return v, nil
}

// sumMetric is tryMetric's parser: the sum of name's samples in a text
// exposition whose line contains every fragment; an error when the family
// is neither in the exposition nor in the metrics catalogue.
func sumMetric(out, name string, fragments ...string) (float64, error) {
	sum, _ := labproc.Sum(out, name, fragments...)
	if !labproc.HasFamily(out, name) && !catalogue()[name] {
		return 0, fmt.Errorf("metric %s is not in the exposition, nor in docs/metrics.md", name)
	}
	// A catalogued family may be absent: a labelled counter exports no
	// series until its first label set is observed. A renamed metric is
	// caught all the same, since docs/metrics.md is checked against the
	// registries (internal/metrics) and loses the old name.
	return sum, nil
}

// catalogue is the set of metric names docs/metrics.md lists.
var catalogue = sync.OnceValue(func() map[string]bool {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "metrics.md"))
	if err != nil {
		panic(fmt.Sprintf("reading the metrics catalogue: %v", err))
	}
	names := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "| `"); ok {
			if i := strings.IndexByte(rest, '`'); i > 0 {
				names[rest[:i]] = true
			}
		}
	}
	return names
})

// servers runs in the server namespace: :8080 is netlab.EchoHash (the
// client half-closes first), :8081 netlab.SendSeeded (the server
// half-closes first, then reads to EOF).
type servers struct{}

func startServers(t *testing.T, ns *netlab.NS) *servers {
	netlab.ServeTCP(t, ns, "[::]:8080", netlab.EchoHash)
	netlab.ServeTCP(t, ns, "[::]:8081", func(c net.Conn) {
		if _, err := netlab.SendSeeded(c); err == nil {
			_, _ = io.Copy(io.Discard, c)
		}
	})
	return &servers{}
}

// download asks :8081 for n seeded bytes and checks them; it returns the
// bytes received and the longest gap between two reads.
func (s *system) download(ctx context.Context, dst netip.AddrPort, n uint64, seed uint64) (got int64, gap time.Duration, err error) {
	return s.downloadWatch(ctx, dst, n, seed, nil)
}

// downloadWatch is download that calls watch with the running total after
// every read.
func (s *system) downloadWatch(ctx context.Context, dst netip.AddrPort, n uint64, seed uint64, watch func(total int64)) (got int64, gap time.Duration, err error) {
	c, err := s.dial(ctx, dst)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := c.Write(netlab.SourceRequest(n, seed)); err != nil {
		return 0, 0, err
	}
	want := sha256.New()
	if _, err := io.CopyN(want, netlab.Seeded(seed), int64(n)); err != nil {
		return 0, 0, err
	}
	h := sha256.New()
	buf := make([]byte, 64<<10)
	last := time.Now()
	for {
		k, rerr := c.Read(buf)
		if k > 0 {
			if d := time.Since(last); d > gap {
				gap = d
			}
			last = time.Now()
			h.Write(buf[:k])
			got += int64(k)
			if watch != nil {
				watch(got)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return got, gap, rerr
		}
	}
	if uint64(got) != n {
		return got, gap, fmt.Errorf("received %d bytes, want %d", got, n)
	}
	if string(h.Sum(nil)) != string(want.Sum(nil)) {
		return got, gap, errors.New("downloaded bytes differ from what the server sent")
	}
	c.CloseWrite()
	return got, gap, nil
}

// upload sends n seeded bytes to :8080, half-closes, and checks the
// server's hash; it returns the address the server saw.
func (s *system) upload(ctx context.Context, dst netip.AddrPort, n uint64, seed uint64) (string, error) {
	c, err := s.dial(ctx, dst)
	if err != nil {
		return "", err
	}
	return uploadOn(ctx, c, n, seed)
}

// uploadOn is upload over a connection already made; it closes c.
func uploadOn(ctx context.Context, c *net.TCPConn, n uint64, seed uint64) (string, error) {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	h := sha256.New()
	errc := make(chan error, 1)
	go func() {
		_, err := io.CopyN(io.MultiWriter(c, h), netlab.Seeded(seed), int64(n))
		if err == nil {
			err = c.CloseWrite()
		}
		errc <- err
	}()
	reply, rerr := io.ReadAll(c)
	if err := <-errc; err != nil {
		return "", fmt.Errorf("sending: %w", err)
	}
	if rerr != nil {
		return "", fmt.Errorf("reading the server's hash: %w", rerr)
	}
	peer, sum, _ := strings.Cut(string(reply), " ")
	if sum != fmt.Sprintf("%x", h.Sum(nil)) {
		return peer, fmt.Errorf("server hashed %q, want %x", sum, h.Sum(nil))
	}
	return peer, nil
}
