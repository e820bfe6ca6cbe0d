package netlab

import (
	"net"
	"testing"
)

func TestNSLifecycle(t *testing.T) {
	RequireRoot(t)
	p := UniquePrefix()
	ns, err := AddNS(p + "a")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ns.Close() })
	// A listener opened inside Do lives in the namespace: the same port is
	// still free in ours.
	var ln net.Listener
	if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp", "127.0.0.1:0"); return }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	mine, err := net.Listen("tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("port of a namespaced listener is taken in the root namespace: %v", err)
	}
	mine.Close()
	if err := ns.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ns.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	left, err := Leftovers(p)
	if err != nil || len(left) != 0 {
		t.Fatalf("leftovers %v, %v", left, err)
	}
}
