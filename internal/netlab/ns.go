// Package netlab builds and tears down the network namespaces that hybridgw's
// root tests, benchmarks and `make lab` run in.
//
// Everything it creates carries a name prefix so that parallel test binaries
// never collide, and is registered for removal on test cleanup, so a failing
// test leaves nothing behind. It shells out to iproute2 because it is test
// and lab tooling: the daemons themselves talk netlink.
package netlab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// RequireRoot skips a test that needs root and network namespaces, except
// under CI=true, where not being able to run it is a failure: the root tier
// is part of the suite, not an optional extra.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	why := ""
	switch {
	case os.Geteuid() != 0:
		why = "needs root"
	case !haveCmd("ip"):
		why = "needs iproute2's ip command"
	default:
		if _, err := os.Stat("/proc/self/ns/net"); err != nil {
			why = "needs network namespace support"
		}
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("root test cannot run under CI=true: %s", why)
	}
	tb.Skipf("skipping root test: %s", why)
}

func haveCmd(name string) bool {
	_, err := exec.LookPath(name)
	return err == nil
}

// UniquePrefix returns a short random name prefix such as "h3f9a-", short
// enough that prefix+role still fits the 15-byte interface name limit.
func UniquePrefix() string {
	var b [2]byte
	_, _ = rand.Read(b[:])
	return "h" + hex.EncodeToString(b[:]) + "-"
}

// NS is a named network namespace (one under /run/netns).
type NS struct {
	Name string
}

// AddNS creates namespace name with its loopback up.
func AddNS(name string) (*NS, error) {
	if err := Run("ip", "netns", "add", name); err != nil {
		return nil, fmt.Errorf("creating namespace %s: %w", name, err)
	}
	ns := &NS{Name: name}
	if err := ns.Run("ip", "link", "set", "lo", "up"); err != nil {
		_ = ns.Close()
		return nil, fmt.Errorf("bringing up lo in %s: %w", name, err)
	}
	return ns, nil
}

// NewNS creates a namespace for a test and removes it at cleanup.
func NewNS(tb testing.TB, name string) *NS {
	tb.Helper()
	RequireRoot(tb)
	ns, err := AddNS(name)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := ns.Close(); err != nil {
			tb.Errorf("removing namespace: %v", err)
		}
	})
	return ns
}

// Close deletes the namespace; deleting one that is already gone is not an
// error, so Close is idempotent.
func (n *NS) Close() error {
	if _, err := os.Stat("/run/netns/" + n.Name); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return Run("ip", "netns", "del", n.Name)
}

// Path is the namespace's bind-mount, usable with setns(2).
func (n *NS) Path() string { return "/run/netns/" + n.Name }

// Command returns a command that runs inside the namespace.
func (n *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Run runs a command inside the namespace; the error carries its output.
func (n *NS) Run(name string, args ...string) error {
	return Run("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Output runs a command inside the namespace and returns its stdout.
func (n *NS) Output(name string, args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s in %s: %w: %s", name, strings.Join(args, " "), n.Name, err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// Do runs fn on an OS thread switched into the namespace. Sockets and TUN
// devices opened inside fn stay in the namespace after it returns; goroutines
// started inside fn do not inherit it.
func (n *NS) Do(fn func() error) error {
	return DoIn(n.Path(), fn)
}

// DoIn is Do for a namespace given by path.
func DoIn(path string, fn func() error) error {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("opening current namespace: %w", err)
	}
	defer orig.Close()
	target, err := os.Open(path)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("opening namespace %s: %w", path, err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering namespace %s: %w", path, err)
	}
	ferr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: the runtime discards a locked thread when
		// its goroutine exits, so no other goroutine inherits the namespace.
		return errors.Join(ferr, fmt.Errorf("returning from namespace %s: %w", path, err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// Run runs a command in the current namespace; the error carries its output.
func Run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Leftovers lists namespaces whose names start with prefix; tests use it to
// prove that nothing of theirs remains.
func Leftovers(prefix string) ([]string, error) {
	ents, err := os.ReadDir("/run/netns")
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing namespaces: %w", err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}
