package labproc

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"hybridgw/internal/netlab"
)

func testNS(t *testing.T) *netlab.NS {
	t.Helper()
	return netlab.NewNS(t, netlab.UniquePrefix()+"proc")
}

// gone says whether pid has exited (and was reaped, or is a zombie).
func gone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] == "Z"
}

func TestStartStop(t *testing.T) {
	ns := testNS(t)
	log := filepath.Join(t.TempDir(), "logs", "p.log")
	p, err := Start(ns, "p", log, "sh", "-c", "echo started; exec sleep 30")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	if err := WaitFor(context.Background(), "the log line", 5*time.Second, func() bool { return strings.Contains(p.LogTail(5), "started") }); err != nil {
		t.Fatal(err)
	}
	if !p.Running() || p.Pid() <= 0 {
		t.Fatalf("running %v, pid %d", p.Running(), p.Pid())
	}
	// ip netns exec replaced itself: the pid is the program's, in ns.
	link, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", p.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(ns.Path(), &st); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("net:[%d]", st.Ino); link != want {
		t.Errorf("process is in %s, want %s", link, want)
	}
	if pg, _ := syscall.Getpgid(p.Pid()); pg != p.Pid() {
		t.Errorf("process group %d, want its own (%d)", pg, p.Pid())
	}
	if err := p.Stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if p.Running() || p.Err() == nil {
		t.Errorf("after Stop: running %v, exit %v (want terminated by SIGTERM)", p.Running(), p.Err())
	}
	if err := p.Stop(time.Second); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestStopKillsAfterGrace(t *testing.T) {
	ns := testNS(t)
	// Ignores SIGTERM; the loop's sleep outlives sh by at most 0.1 s.
	p, err := Start(ns, "stubborn", filepath.Join(t.TempDir(), "s.log"), "sh", "-c", `trap "" TERM; echo ready; while :; do sleep 0.1; done`)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	if err := WaitFor(context.Background(), "the trap", 5*time.Second, func() bool { return strings.Contains(p.LogTail(1), "ready") }); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	err = p.Stop(300 * time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("Stop = %v, want an error saying it killed", err)
	}
	if d := time.Since(t0); d < 300*time.Millisecond {
		t.Errorf("killed after %v, before the grace", d)
	}
	if p.Running() {
		t.Error("still running after Stop")
	}
}

// TestChildDiesWithParent runs a helper process (this test binary) that
// starts a child with Start from a goroutine on some thread, and kills
// the helper: the child gets SIGTERM (its parent death signal) and exits,
// whichever thread forked it.
func TestChildDiesWithParent(t *testing.T) {
	if ns := os.Getenv("LABPROC_HELPER_NS"); ns != "" {
		helper(ns)
		return
	}
	ns := testNS(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestChildDiesWithParent$")
	cmd.Env = append(os.Environ(), "LABPROC_HELPER_NS="+ns.Name, "LABPROC_HELPER_LOG="+filepath.Join(t.TempDir(), "child.log"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	pid := 0
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "child "); ok {
			pid, _ = strconv.Atoi(v)
			break
		}
	}
	if pid <= 0 {
		t.Fatal("the helper printed no child pid")
	}
	t.Cleanup(func() {
		if !gone(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL) // our own grandchild, by pid
		}
	})
	go func() { _, _ = io.Copy(io.Discard, out) }()
	// The thread the helper called Start on is gone by now; the child
	// must not have gone with it.
	time.Sleep(500 * time.Millisecond)
	if gone(pid) {
		t.Fatal("the child exited before its parent: with the thread that asked for it")
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if err := WaitFor(context.Background(), "the child to exit after its parent was killed", 5*time.Second, func() bool { return gone(pid) }); err != nil {
		t.Fatal(err)
	}
}

// helper starts a child from a goroutine locked to a thread of its own,
// which the runtime ends when the goroutine returns still locked. The
// child must outlive that thread. (With Go 1.26 here, a child forked
// straight from that thread outlives it too, so this does not show the
// spawner's own thread is needed; it keeps the case covered.)
func helper(ns string) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		p, err := Start(&netlab.NS{Name: ns}, "child", os.Getenv("LABPROC_HELPER_LOG"), "sleep", "60")
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Printf("child %d\n", p.Pid())
	}()
	<-done
	time.Sleep(time.Minute) // killed by the test
	os.Exit(0)
}

func TestServersAndDial(t *testing.T) {
	ns := testNS(t)
	var srv Servers
	t.Cleanup(srv.Close)
	held := make(chan struct{})
	if err := srv.Listen(ns, "127.0.0.1:7000", func(c net.Conn) {
		if _, err := io.Copy(c, c); err == nil {
			return
		}
		close(held)
	}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(ns, "127.0.0.1:7000", func(net.Conn) {}); err == nil {
		t.Error("a second listener on the same port: no error")
	}
	c, err := Dial(context.Background(), ns, "tcp", "127.0.0.1:7000")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo: %q, %v", buf, err)
	}
	// Close ends the handler of a connection still open.
	closed := make(chan struct{})
	go func() { srv.Close(); close(closed) }()
	select {
	case <-held:
	case <-time.After(5 * time.Second):
		c.Close() // lets the handler, and Close, return
		t.Fatal("Close did not close the open connection")
	}
	<-closed
	if _, err := Dial(context.Background(), ns, "tcp", "127.0.0.1:7000"); err == nil {
		t.Error("still accepting after Close")
	}
}
