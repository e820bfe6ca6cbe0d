package netstack_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"

	"hybridgw/internal/netlab"
	"hybridgw/internal/netstack"
)

// TestLargeSegments sends checksummed data through a TUN with offloads in
// each direction and checks that it arrives intact and that segments larger
// than the MTU crossed the TUN: the kernel hands its TSO super-packets to
// the reader (upload), and gVisor's host-GSO segments are written for the
// kernel to split (download). The TUN's counters count one packet per
// read or write, before any splitting, so bytes per packet above the MTU
// prove it.
func TestLargeSegments(t *testing.T) {
	const size = 16 << 20
	for _, tc := range []struct {
		name string
		dst  netip.AddrPort
		up   bool
	}{
		{"upload/IPv4", dst4, true},
		{"upload/IPv6", dst6, true},
		{"download/IPv4", dst4, false},
		{"download/IPv6", dst6, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := make([]byte, size)
			_, _ = rand.Read(data)
			want := sha256.Sum256(data)
			got := make(chan [32]byte, 1)
			l := newLab(t, func(*netlab.NS) netstack.Config {
				return netstack.Config{
					Dial: func(context.Context, netstack.FlowID) (netstack.Upstream, error) {
						return nopUpstream{}, nil
					},
					Handle: func(_ context.Context, lan *netstack.Conn, _ netstack.Upstream) {
						if tc.up {
							h := sha256.New()
							_, _ = io.Copy(h, lan)
							got <- [32]byte(h.Sum(nil))
							return
						}
						_, _ = lan.Write(data)
						_ = lan.CloseWrite()
						_, _ = io.Copy(io.Discard, lan)
					},
				}
			})
			before := tunStats(t, l)
			c, err := l.dial(context.Background(), netip.Addr{}, tc.dst)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var sum [32]byte
			if tc.up {
				if _, err := c.Write(data); err != nil {
					t.Fatal(err)
				}
				_ = c.CloseWrite()
				sum = <-got
			} else {
				h := sha256.New()
				n, err := io.Copy(h, c)
				if err != nil || n != size {
					t.Fatalf("read %d of %d bytes: %v", n, size, err)
				}
				sum = [32]byte(h.Sum(nil))
				_ = c.CloseWrite()
			}
			if !bytes.Equal(sum[:], want[:]) {
				t.Fatalf("data changed crossing the TUN: sha256 %x, want %x", sum, want)
			}
			after := tunStats(t, l)
			// The kernel's tx is what the stack read, its rx what the
			// stack wrote.
			pkts, byts := after.TxPackets-before.TxPackets, after.TxBytes-before.TxBytes
			if !tc.up {
				pkts, byts = after.RxPackets-before.RxPackets, after.RxBytes-before.RxBytes
			}
			if pkts == 0 || byts/pkts <= 1500 {
				t.Errorf("%d bytes in %d packets crossed the TUN: no segment larger than the MTU of 1500", byts, pkts)
			}
			t.Logf("%d bytes in %d packets, %d per packet", byts, pkts, byts/max(pkts, 1))
		})
	}
}

func tunStats(t *testing.T, l *lab) netlink.LinkStatistics {
	t.Helper()
	var st netlink.LinkStatistics
	if err := l.ns.Do(func() error {
		link, err := netlink.LinkByName("hc0")
		if err != nil {
			return err
		}
		st = *link.Attrs().Statistics
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return st
}

// nopUpstream is an upstream the Handle functions above never use.
type nopUpstream struct{}

func (nopUpstream) Read([]byte) (int, error)    { return 0, io.EOF }
func (nopUpstream) Write(b []byte) (int, error) { return len(b), nil }
func (nopUpstream) Close() error                { return nil }
