//go:build linux

package gateway_test

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"hybridgw/internal/convert"
	"hybridgw/internal/mptcp"
	"hybridgw/internal/netlab"
)

// spoofV6 is inside cpe-test's wan_prefixes but owned by nobody: hag's
// SYN-ACKs to it go nowhere, as for a blind spoofer on the Internet.
var spoofV6 = netip.MustParseAddr("2001:db8:d5::99")

// TestSecurity replays the blind-spoofer attack of issue 14: SYNs from an
// address nobody owns, each with a Fast Open option and a payload of an
// authorised Convert Connect plus a line, sent with a raw socket. Whatever
// the listener's Fast Open setting, the server must see nothing, and a
// real CPE (MPTCP and plain TCP) is still served in the same run.
func TestSecurity(t *testing.T) {
	netlab.RequireRoot(t)
	for _, tc := range []struct {
		name   string
		listen string
		// unproven: hag itself reads the SYN data and must count the
		// refusal; otherwise the kernel drops the data and hag never sees
		// the connection.
		unproven bool
	}{
		{"fast open off (default)", "", false},
		{"fast open with cookies", "  fast_open: true", false},
		{"fast open without cookies (unsafe)", "  fast_open: true\n  fast_open_no_cookie_unsafe: true", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp := newTopo(t)
			var spoofed atomic.Int64
			netlab.ServeTCP(t, tp.srv, "[::]:8083", func(c net.Conn) { spoofed.Add(1); io.Copy(io.Discard, c) })
			netlab.ServeTCP(t, tp.srv, "[::]:8084", func(c net.Conn) {
				line, _ := bufio.NewReader(c).ReadString('\n')
				io.WriteString(c, line)
			})
			startHagListen(t, tp, tc.listen)

			payload := append(request(t, netip.AddrPortFrom(srvV6, 8083), clientV6, testKey), "GET / HTTP/1.0\r\n"...)
			for i := range 3 {
				if err := tp.cpe.Do(func() error { return sendSpoofedSYN(spoofV6, 40000+uint16(i), hagV6, hagPort, payload) }); err != nil {
					t.Fatal(err)
				}
			}
			// hag gives an unproven client convert_read_timeout (2s) to
			// complete its handshake.
			time.Sleep(3 * time.Second)
			if n := spoofed.Load(); n != 0 {
				t.Errorf("the server accepted %d connections from spoofed SYNs", n)
			}
			if n := refusals(t, tp, "handshake_unproven"); tc.unproven && n != 3 {
				t.Errorf("hag_refusals_total{reason=handshake_unproven} = %d, want 3", n)
			} else if !tc.unproven && n != 0 {
				t.Errorf("hag_refusals_total{reason=handshake_unproven} = %d, want 0 (the kernel should have dropped the SYN data)", n)
			}

			// A real CPE, over MPTCP and over plain TCP.
			dst := netip.AddrPortFrom(srvV6, 8084)
			for _, plain := range []bool{false, true} {
				var c *net.TCPConn
				if plain {
					err := tp.cpe.Do(func() error {
						nc, err := net.DialTimeout("tcp6", netip.AddrPortFrom(hagV6, hagPort).String(), 5*time.Second)
						if err == nil {
							c = nc.(*net.TCPConn)
							_, err = c.Write(request(t, dst, clientV6, testKey))
						}
						return err
					})
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { c.Close() })
				} else {
					c = tp.dial(t, hagV6, request(t, dst, clientV6, testKey))
				}
				if code := readReply(t, c); code != -1 {
					t.Fatalf("real CPE (plain TCP %v): Convert error %d", plain, code)
				}
				if isM, _ := mptcp.Check(c); isM == plain {
					t.Errorf("plain %v: connection is MPTCP %v", plain, isM)
				}
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := io.WriteString(c, "hello\n"); err != nil {
					t.Fatal(err)
				}
				if got, err := bufio.NewReader(c).ReadString('\n'); err != nil || got != "hello\n" {
					t.Errorf("real CPE (plain TCP %v): echo %q, %v", plain, got, err)
				}
			}
		})
	}
}

// TestHandshakeCap fills limits.handshakes_in_flight with clients that send
// the first byte of a Convert message and stall (a connection that sends
// nothing at all is a warm-pool connection, held under pool_per_cpe
// instead): the next request is answered Resource Exceeded and counted, and
// once the stalled ones leave a request is served again.
func TestHandshakeCap(t *testing.T) {
	netlab.RequireRoot(t)
	tp := newTopo(t)
	netlab.ServeTCP(t, tp.srv, "[::]:8084", func(c net.Conn) { io.Copy(io.Discard, c) })
	startHagListen(t, tp, "", "handshakes_in_flight: 2000", "handshakes_in_flight: 20", "convert_read_timeout: 2s", "convert_read_timeout: 30s")
	var silent []*net.TCPConn
	for range 20 {
		silent = append(silent, tp.dial(t, hagV6, []byte{1})) // version 1, then nothing
	}
	// hag accepts asynchronously: give it the time to take all 20 slots.
	time.Sleep(500 * time.Millisecond)
	dst := netip.AddrPortFrom(srvV6, 8084)
	if code := readReply(t, tp.dial(t, hagV6, request(t, dst, clientV6, testKey))); code != int(convert.ResourceExceeded) {
		t.Fatalf("request with the handshake slots full: code %d, want %d (Resource Exceeded)", code, convert.ResourceExceeded)
	}
	if n := refusals(t, tp, "handshake_limit"); n != 1 {
		t.Errorf("hag_refusals_total{reason=handshake_limit} = %d, want 1", n)
	}
	for _, c := range silent {
		c.Close()
	}
	time.Sleep(500 * time.Millisecond)
	if code := readReply(t, tp.dial(t, hagV6, request(t, dst, clientV6, testKey))); code != -1 {
		t.Fatalf("request after the silent clients left: code %d", code)
	}
}

// refusals scrapes hag_refusals_total{reason} from hag's metrics endpoint;
// a missing series fails the test rather than reading as zero.
func refusals(t *testing.T, tp *topo, reason string) int {
	t.Helper()
	out, err := tp.hag.Output("bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9102; printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^hag_refusals_total\{reason="` + reason + `"\} (\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("hag exports no hag_refusals_total{reason=%q}", reason)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// sendSpoofedSYN sends one IPv6 TCP SYN from src with a Fast Open cookie
// request option and payload, built by hand on a raw socket so that the
// kernel neither owns src nor answers the SYN-ACK.
func sendSpoofedSYN(src netip.Addr, sport uint16, dst netip.Addr, dport uint16, payload []byte) error {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW, unix.IPPROTO_RAW)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	opts := []byte{2, 4, 0x05, 0xa0, 34, 2, 1, 1} // MSS 1440, TFO cookie request, NOP NOP
	tcp := make([]byte, 20+len(opts)+len(payload))
	binary.BigEndian.PutUint16(tcp[0:], sport)
	binary.BigEndian.PutUint16(tcp[2:], dport)
	binary.BigEndian.PutUint32(tcp[4:], 0x1234567+uint32(sport))
	tcp[12] = byte((20 + len(opts)) / 4 << 4)
	tcp[13] = 0x02 // SYN
	binary.BigEndian.PutUint16(tcp[14:], 65535)
	copy(tcp[20:], opts)
	copy(tcp[20+len(opts):], payload)
	s, d := src.As16(), dst.As16()
	pseudo := append(append(append([]byte{}, s[:]...), d[:]...), 0, 0, byte(len(tcp)>>8), byte(len(tcp)), 0, 0, 0, unix.IPPROTO_TCP)
	binary.BigEndian.PutUint16(tcp[16:], checksum(append(pseudo, tcp...)))

	ip := make([]byte, 40, 40+len(tcp))
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(len(tcp)))
	ip[6], ip[7] = unix.IPPROTO_TCP, 64
	copy(ip[8:], s[:])
	copy(ip[24:], d[:])
	return unix.Sendto(fd, append(ip, tcp...), 0, &unix.SockaddrInet6{Addr: d})
}

func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
