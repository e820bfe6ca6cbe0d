package e2e

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"hybridgw/internal/netlab"
)

// TestCPE checks what hcpe does to the router itself: what it steers, what
// it leaves alone, and that it leaves nothing behind.
func TestCPE(t *testing.T) {
	netlab.RequireRoot(t)
	// Its own admin socket: `hcpe reload` talks to this hcpe only.
	sock := filepath.Join(t.TempDir(), "hcpe.sock")
	// Native traffic over LTE while the router's main table says DSL:
	// what the server sees shows which uplink bypass.uplink chose.
	s := startSystem(t, `ports: []`, `ports: ["8443"]`, "listen: /run/hcpe/admin.sock", "listen: "+sock, "uplink: dsl", "uplink: lte")

	t.Run("BypassAndUDPStayNative", func(t *testing.T) {
		tunPackets := func() string {
			out, _ := s.lab.CPE.Output("cat", "/sys/class/net/hcpe0/statistics/rx_packets")
			return strings.TrimSpace(out)
		}
		// A TCP server on the bypassed port, and a UDP echo.
		var ln net.Listener
		var uc net.PacketConn
		if err := s.lab.SRV.Do(func() (err error) {
			if ln, err = net.Listen("tcp", "[::]:8443"); err != nil {
				return err
			}
			uc, err = net.ListenPacket("udp", "[::]:5353")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		defer uc.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				fmt.Fprint(c, c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap())
				c.Close()
			}
		}()
		go func() {
			buf := make([]byte, 1500)
			for {
				_, a, err := uc.ReadFrom(buf)
				if err != nil {
					return
				}
				uc.WriteTo([]byte(a.(*net.UDPAddr).AddrPort().Addr().Unmap().String()), a)
			}
		}()
		before := tunPackets()
		c, err := s.dial(s.ctx(t, 10*time.Second), netip.AddrPortFrom(server4, 8443))
		if err != nil {
			t.Fatalf("bypassed TCP port: %v", err)
		}
		buf := make([]byte, 64)
		n, _ := c.Read(buf)
		c.Close()
		// Native IPv4 leaves masqueraded behind the address of the uplink
		// bypass.uplink names (LTE); through hag it would come from hag's
		// 203.0.113.1, by the main table from DSL's.
		if got := string(buf[:n]); got != netlab.CPELTE4 {
			t.Errorf("server saw bypassed TCP from %q, want the CPE's LTE address %s (bypass.uplink: lte)", got, netlab.CPELTE4)
		}
		var got string
		if err := s.lab.LAN.Do(func() error {
			u, err := net.Dial("udp", netip.AddrPortFrom(server6, 5353).String())
			if err != nil {
				return err
			}
			defer u.Close()
			u.SetDeadline(time.Now().Add(5 * time.Second))
			u.Write([]byte("ping"))
			n, err := u.Read(buf)
			got = string(buf[:n])
			return err
		}); err != nil {
			t.Fatalf("UDP: %v", err)
		}
		if got != netlab.Client6 {
			t.Errorf("server saw UDP from %q, want the client's own %s (routed natively)", got, netlab.Client6)
		}
		if after := tunPackets(); after != before {
			t.Errorf("bypassed TCP or UDP entered the TUN: rx_packets %s -> %s", before, after)
		}
	})

	t.Run("OverflowJoinsUnderLoad", func(t *testing.T) {
		backup := func() float64 { return s.metric(t, s.lab.CPE, 9101, "hcpe_uplink_backup", `uplink="lte"`) }
		waitFor(t, "LTE (overflow) to be a backup while DSL is idle", 15*time.Second, func() bool { return backup() == 1 })
		done := make(chan error, 1)
		go func() {
			_, _, err := s.download(s.ctx(t, time.Minute), netip.AddrPortFrom(server6, 8081), 20<<20, 11)
			done <- err
		}()
		start := time.Now()
		waitFor(t, "LTE to join while DSL is saturated", 10*time.Second, func() bool { return backup() == 0 })
		t.Logf("LTE made active %v into a bulk download", time.Since(start).Round(time.Millisecond))
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})

	t.Run("ReloadKeepsFlowsAndRefusesBadConfig", func(t *testing.T) {
		orig, err := os.ReadFile(s.cpeConfig)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.WriteFile(s.cpeConfig, orig, 0o600) })
		reload := func(args ...string) (string, error) {
			out, err := exec.Command(filepath.Join(binDir, "hcpe"), append([]string{"reload"}, args...)...).CombinedOutput()
			return string(out), err
		}
		// The server on 9443 answers with the address it saw: hag's for a
		// converted flow, the CPE's uplink address (masquerade) for a
		// bypassed one.
		netlab.ServeTCP(t, s.lab.SRV, "[::]:9443", func(c net.Conn) { fmt.Fprint(c, netlab.PeerOf(c).Addr().Unmap()) })
		seenFrom := func() string {
			t.Helper()
			c, err := s.dial(s.ctx(t, 10*time.Second), netip.AddrPortFrom(server4, 9443))
			if err != nil {
				t.Fatalf("connecting to port 9443: %v", err)
			}
			defer c.Close()
			b, _ := io.ReadAll(c)
			return string(b)
		}
		if got := seenFrom(); got != netlab.HAGWAN4 {
			t.Fatalf("before the reload, port 9443 seen from %q, want hag's %s (converted)", got, netlab.HAGWAN4)
		}

		type result struct {
			gap time.Duration
			err error
		}
		done := make(chan result, 1)
		go func() {
			_, gap, err := s.download(s.ctx(t, time.Minute), netip.AddrPortFrom(server4, 8081), 30<<20, 12)
			done <- result{gap, err}
		}()
		time.Sleep(time.Second)
		// New bypass port 9443 leaving on DSL, and LTE as a bond uplink,
		// while the download runs: with `hcpe reload`, which answers what
		// it did.
		next := strings.NewReplacer(`ports: ["8443"]`, `ports: ["8443", "9443"]`, "role: overflow", "role: bond", "uplink: lte", "uplink: dsl").Replace(string(orig))
		os.WriteFile(s.cpeConfig, []byte(next), 0o600)
		if out, err := reload("-c", s.cpeConfig); err != nil || !strings.Contains(out, "hcpe reloaded "+s.cpeConfig) {
			t.Fatalf("hcpe reload: %v\n%s", err, out)
		}
		if out, _ := s.lab.CPE.Output("ip", "rule", "show", "proto", "104"); !strings.Contains(out, "dport 9443") {
			t.Errorf("no steering rule for the new bypass port after `hcpe reload` returned:\n%s", out)
		}
		if got := seenFrom(); got != netlab.CPEDSL4 {
			t.Errorf("after the reload, a new flow to port 9443 seen from %q, want the CPE's DSL address %s (bypassed, bypass.uplink: dsl)", got, netlab.CPEDSL4)
		}
		waitFor(t, "LTE as bond (never backup)", 5*time.Second, func() bool {
			return s.metric(t, s.lab.CPE, 9101, "hcpe_uplink_backup", `uplink="lte"`) == 0
		})
		// An invalid file is refused with its problem: by `hcpe reload -c`
		// before sending, by hcpe itself when asked through the socket
		// alone, and on SIGHUP (logged); the running config stays.
		os.WriteFile(s.cpeConfig, []byte(strings.Replace(next, "role: bond", "role: standby", 1)), 0o600)
		const problem = `uplinks[1].role: "standby" is not one of`
		if out, err := reload("-c", s.cpeConfig); err == nil || !strings.Contains(out, problem) || !strings.Contains(out, "not reloaded") {
			t.Errorf("hcpe reload -c of an invalid file: err %v, want it refused with the problem:\n%s", err, out)
		}
		if out, err := reload("--admin", sock); err == nil || !strings.Contains(out, "422") || !strings.Contains(out, problem) {
			t.Errorf("hcpe reload --admin with an invalid file: err %v, want hcpe's 422 with the problem:\n%s", err, out)
		}
		s.cpe.cmd.Process.Signal(syscall.SIGHUP)
		r := <-done
		if r.err != nil {
			t.Fatalf("download across three reloads: %v", r.err)
		}
		t.Logf("30 MiB download across the reloads: intact, longest receive gap %v", r.gap.Round(time.Millisecond))
		waitFor(t, "the refused SIGHUP reload in the log", 5*time.Second, func() bool {
			b, _ := os.ReadFile(s.cpe.log)
			return strings.Count(string(b), `uplinks[1].role: \"standby\" is not one of`) >= 2
		})
		if out, _ := s.lab.CPE.Output("ip", "rule", "show", "proto", "104"); !strings.Contains(out, "dport 9443") {
			t.Errorf("a refused reload changed the steering:\n%s", out)
		}
		if _, err := s.upload(s.ctx(t, 10*time.Second), netip.AddrPortFrom(server6, 8080), 1000, 13); err != nil {
			t.Fatalf("new connection after the refused reload: %v", err)
		}

		// docs: `hcpe reload` applies a file "as SIGHUP does". A valid
		// changed file on SIGHUP: the new bypass port is steered and
		// leaves on DSL, as 9443 did after `hcpe reload`.
		netlab.ServeTCP(t, s.lab.SRV, "[::]:9444", func(c net.Conn) { fmt.Fprint(c, netlab.PeerOf(c).Addr().Unmap()) })
		os.WriteFile(s.cpeConfig, []byte(strings.Replace(next, `ports: ["8443", "9443"]`, `ports: ["8443", "9443", "9444"]`, 1)), 0o600)
		s.cpe.cmd.Process.Signal(syscall.SIGHUP)
		waitFor(t, "the SIGHUP reload to steer port 9444", 5*time.Second, func() bool {
			out, _ := s.lab.CPE.Output("ip", "rule", "show", "proto", "104")
			return strings.Contains(out, "dport 9444")
		})
		c, err := s.dial(s.ctx(t, 10*time.Second), netip.AddrPortFrom(server4, 9444))
		if err != nil {
			t.Fatalf("connecting to port 9444: %v", err)
		}
		b, _ := io.ReadAll(c)
		c.Close()
		if got := string(b); got != netlab.CPEDSL4 {
			t.Errorf("after SIGHUP, a new flow to port 9444 seen from %q, want the CPE's DSL address %s (bypassed)", got, netlab.CPEDSL4)
		}
		// And back to the example on SIGHUP, for the subtests that follow.
		os.WriteFile(s.cpeConfig, orig, 0o600)
		s.cpe.cmd.Process.Signal(syscall.SIGHUP)
		waitFor(t, "the SIGHUP reload to drop the added bypass ports", 5*time.Second, func() bool {
			out, _ := s.lab.CPE.Output("ip", "rule", "show", "proto", "104")
			return !strings.Contains(out, "dport 9443") && !strings.Contains(out, "dport 9444")
		})
	})

	t.Run("ClientPortReusedAfterServerClosed", func(t *testing.T) {
		// The server closes first, so hcpe's side of the LAN connection is
		// the active closer; the client then connects again from the same
		// port at once, as a busy host cycling through its ports does.
		const port = 40123
		for i := range 3 {
			start := time.Now()
			var c net.Conn
			err := s.lab.LAN.Do(func() (err error) {
				d := net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(netlab.Client4), Port: port}}
				c, err = d.Dial("tcp", netip.AddrPortFrom(server4, 8081).String())
				return err
			})
			if err != nil {
				t.Fatalf("connection %d from port %d: %v (after %v)", i, port, err, time.Since(start).Round(time.Millisecond))
			}
			setup := time.Since(start)
			c.Write(netlab.SourceRequest(1000, uint64(30+i)))
			if n, err := io.Copy(io.Discard, c); err != nil || n != 1000 {
				t.Fatalf("connection %d: %d bytes, %v", i, n, err)
			}
			c.Close()
			t.Logf("connection %d from port %d: set up in %v", i, port, setup.Round(time.Millisecond))
			// The client's FIN and hcpe's last ACK.
			time.Sleep(50 * time.Millisecond)
		}
	})

	t.Run("FollowsUplinkAddressChange", func(t *testing.T) {
		// LTE is renumbered: the endpoint and source rule follow the address.
		const oldAddr, newAddr = netlab.CPELTE6, "2001:db8:17e::5"
		mustRun := func(args ...string) {
			if err := s.lab.CPE.Run("ip", args...); err != nil {
				t.Fatal(err)
			}
		}
		mustRun("-6", "addr", "add", newAddr+"/64", "dev", "lte", "nodad")
		mustRun("-6", "addr", "del", oldAddr+"/64", "dev", "lte")
		t.Cleanup(func() {
			s.lab.CPE.Run("ip", "-6", "addr", "add", oldAddr+"/64", "dev", "lte", "nodad")
			s.lab.CPE.Run("ip", "-6", "addr", "del", newAddr+"/64", "dev", "lte")
		})
		start := time.Now()
		waitFor(t, "the MPTCP endpoint to follow the new LTE address", 5*time.Second, func() bool {
			eps, _ := s.lab.CPE.Output("ip", "mptcp", "endpoint", "show")
			rules, _ := s.lab.CPE.Output("ip", "-6", "rule", "show")
			return strings.Contains(eps, newAddr+" ") && !strings.Contains(eps, oldAddr+" ") &&
				strings.Contains(rules, "from "+newAddr+" lookup 102")
		})
		t.Logf("endpoint and source rule moved %v after the renumbering", time.Since(start).Round(time.Millisecond))
	})

	t.Run("NothingLeftAfterStopOrKill", func(t *testing.T) {
		ours := func() []string {
			var found []string
			for _, fam := range []string{"-4", "-6"} {
				// iproute2 6.1 ignores a proto filter on rules: pick them out.
				out, _ := s.lab.CPE.Output("ip", fam, "rule", "show")
				for _, line := range strings.Split(out, "\n") {
					if strings.Contains(line, "proto 104") {
						found = append(found, "rule "+fam+": "+line)
					}
				}
				for _, table := range []string{"100", "101", "102"} {
					out, _ := s.lab.CPE.Output("ip", fam, "route", "show", "table", table)
					if strings.TrimSpace(out) != "" {
						found = append(found, "table "+table+" "+fam+": "+out)
					}
				}
			}
			if out, _ := s.lab.CPE.Output("ip", "mptcp", "endpoint", "show"); strings.TrimSpace(out) != "" {
				found = append(found, "endpoints: "+out)
			}
			if out, _ := s.lab.CPE.Output("ip", "link", "show", "hcpe0"); strings.TrimSpace(out) != "" {
				found = append(found, "tun: "+out)
			}
			return found
		}
		if len(ours()) == 0 {
			t.Fatal("hcpe is running but nothing of it shows: the check cannot tell")
		}
		// The address the server sees for the LAN host's IPv4 through hag
		// (egress ipv4: share), to tell a native path from a converted one.
		viaHAG, err := s.upload(s.ctx(t, 10*time.Second), netip.AddrPortFrom(server4, 8080), 1000, 2)
		if err != nil {
			t.Fatal(err)
		}
		// Killed: the kernel removes the TUN, the rules stay until the next run.
		if err := s.cpe.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-s.cpe.exited
		s.cpe.exited <- nil // stopped: its cleanup has nothing left to do
		left := ours()
		t.Logf("after SIGKILL, left for the next run to clean: %d items", len(left))
		// docs/cpe-guide.md: the TUN goes with the process; the rules,
		// their tables and the endpoints stay for the next start.
		var kinds []string
		for _, item := range left {
			kind, _, _ := strings.Cut(item, " ")
			kinds = append(kinds, strings.TrimSuffix(kind, ":"))
		}
		if slices.Contains(kinds, "tun") {
			t.Errorf("the TUN outlived a SIGKILLed hcpe:\n%s", strings.Join(left, "\n"))
		}
		if !slices.Contains(kinds, "rule") {
			t.Errorf("no steering rule left after SIGKILL, against what docs/cpe-guide.md says and the next start cleans:\n%s", strings.Join(left, "\n"))
		}
		// docs/cpe-guide.md: "LAN TCP is routed natively" after SIGKILL.
		var native string
		waitFor(t, "LAN TCP routed natively after SIGKILL", 10*time.Second, func() bool {
			native, err = s.upload(s.ctx(t, 3*time.Second), netip.AddrPortFrom(server4, 8080), 1000, 3)
			return err == nil
		})
		if host(native) == host(viaHAG) {
			t.Errorf("after SIGKILL the server saw the LAN host as %s, as through hag; want the native path", native)
		}
		t.Logf("server saw the LAN host as %s through hag, %s natively after SIGKILL", viaHAG, native)
		s.startCPE(t)
		if _, err := s.upload(s.ctx(t, 10*time.Second), netip.AddrPortFrom(server6, 8080), 1000, 1); err != nil {
			t.Fatalf("after restart: %v", err)
		}
		s.cpe.stop(t)
		if left := ours(); len(left) > 0 {
			t.Errorf("after a clean stop, hcpe left:\n%s", strings.Join(left, "\n"))
		}
	})
}

// host is the address part of "addr:port" as the test servers report it.
func host(ap string) string {
	if p, err := netip.ParseAddrPort(ap); err == nil {
		return p.Addr().String()
	}
	return ap
}
