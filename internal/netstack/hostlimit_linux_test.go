package netstack_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"hybridgw/internal/netlab"
	"hybridgw/internal/netstack"
)

// TestFlowsPerHost: a LAN host with MaxFlowsPerHost flows open is refused
// with a RST, counted, while another host still connects; two addresses in
// one IPv6 /64 count as one host, so rotating addresses does not escape
// the bound; a closed flow gives its slot back. And while Overloaded says
// the process is near its memory ceiling, every new flow gets a RST. With
// Handle and with Start, whose flows outlive the handler goroutine.
func TestFlowsPerHost(t *testing.T) {
	t.Run("Handle", func(t *testing.T) { flowsPerHost(t, false) })
	t.Run("Start", func(t *testing.T) { flowsPerHost(t, true) })
}

func flowsPerHost(t *testing.T, async bool) {
	var overloaded atomic.Bool
	l := newLab(t, func(*netlab.NS) netstack.Config {
		cfg := netstack.Config{
			MaxFlowsPerHost: 2,
			Overloaded:      overloaded.Load,
			Dial: func(context.Context, netstack.FlowID) (netstack.Upstream, error) {
				a, _ := net.Pipe()
				return a, nil
			},
		}
		hold := func(lan *netstack.Conn) {
			_, _ = io.Copy(io.Discard, lan) // held until the LAN host closes
		}
		if async {
			cfg.Start = func(_ context.Context, lan *netstack.Conn, _ netstack.Upstream, done func()) {
				go func() { hold(lan); done() }()
			}
		} else {
			cfg.Handle = func(_ context.Context, lan *netstack.Conn, _ netstack.Upstream) { hold(lan) }
		}
		return cfg
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	open := func(src netip.Addr, dst netip.AddrPort) *net.TCPConn {
		t.Helper()
		c, err := l.dial(ctx, src, dst)
		if err != nil {
			t.Fatalf("connect from %v: %v", src, err)
		}
		return c
	}
	refused := func(src netip.Addr, dst netip.AddrPort) {
		t.Helper()
		start := time.Now()
		short, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		c, err := l.dial(short, src, dst)
		if err == nil {
			c.Close()
			t.Fatalf("connect from %v succeeded over the bound", src)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("connect from %v: %v, want connection refused (a RST)", src, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("refusal took %v: the SYN was dropped and retried, not answered", d)
		}
	}
	waitActive := func(n int) {
		t.Helper()
		for l.stack.Stats().Active != n {
			if ctx.Err() != nil {
				t.Fatalf("timed out waiting for %d active flows: %+v", n, l.stack.Stats())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	v4a, v4b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	v6a, v6b := netip.MustParseAddr("2001:db8:1::1"), netip.MustParseAddr("2001:db8:1::2")

	first := open(v4a, dst4)
	defer first.Close()
	second := open(v4a, dst4)
	defer second.Close()
	refused(v4a, dst4)
	other := open(v4b, dst4) // another IPv4 host is not affected
	defer other.Close()
	if st := l.stack.Stats(); st.RefusedPerHost != 1 {
		t.Errorf("RefusedPerHost = %d, want 1", st.RefusedPerHost)
	}

	// One /64: two flows from ::1, then ::2 is the same host.
	a1 := open(v6a, dst6)
	defer a1.Close()
	a2 := open(v6a, dst6)
	defer a2.Close()
	refused(v6b, dst6)
	if st := l.stack.Stats(); st.RefusedPerHost != 2 {
		t.Errorf("RefusedPerHost = %d, want 2", st.RefusedPerHost)
	}

	// A closed flow gives its slot back (just after Active drops: try
	// again for a moment).
	first.Close()
	waitActive(4)
	var again *net.TCPConn
	for again == nil {
		c, err := l.dial(ctx, v4a, dst4)
		switch {
		case err == nil:
			again = c
		case !errors.Is(err, syscall.ECONNREFUSED) || ctx.Err() != nil:
			t.Fatalf("connect after a flow of the host closed: %v", err)
		default:
			time.Sleep(20 * time.Millisecond)
		}
	}
	defer again.Close()

	// Near the memory ceiling every new flow is refused, from any host.
	overloaded.Store(true)
	refused(v4b, dst4)
	if st := l.stack.Stats(); st.RefusedMemory != 1 {
		t.Errorf("RefusedMemory = %d, want 1", st.RefusedMemory)
	}
	overloaded.Store(false)
	c := open(v4b, dst4)
	c.Close()
}
