package e2e

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"hybridgw/internal/netlab"
)

// TestSystemCutStreams: a stream cut anywhere on the path reaches the other
// end as a reset, never as a FIN. A FIN would present a truncated download
// or upload as complete (issue 14 item 6). The download is far longer than
// the test runs, so any clean EOF is short.
func TestSystemCutStreams(t *testing.T) {
	s := startSystem(t)
	outer := t // a daemon restarted in a subtest must outlive it
	// :8082 sends a little, then resets (SO_LINGER 0 close): a server
	// that crashes mid-response.
	netlab.ServeTCP(t, s.lab.SRV, "[::]:8082", func(c net.Conn) {
		buf := make([]byte, 64<<10)
		for range 16 {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
		_ = c.(*net.TCPConn).SetLinger(0)
		c.Close()
	})
	// :8084 reads an upload to its end and reports how it ended.
	uploadEnd := make(chan error, 4)
	netlab.ServeTCP(t, s.lab.SRV, "[::]:8084", func(c net.Conn) {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Minute))
		_, err := io.Copy(io.Discard, c)
		uploadEnd <- err
	})
	const huge = 1 << 40 // never completes: every EOF is a truncation
	down := netip.AddrPortFrom(server4, 8081)

	t.Run("server resets", func(t *testing.T) {
		c, err := s.dial(s.ctx(t, time.Minute), netip.AddrPortFrom(server4, 8082))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(time.Minute))
		n, err := io.Copy(io.Discard, c)
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("LAN host read %d bytes, then %v; want ECONNRESET (nil is a clean EOF)", n, err)
		}
		t.Logf("LAN host read %d bytes, then %v", n, err)
	})

	t.Run("hag stops", func(t *testing.T) {
		cutDownload(t, s, down, huge, func() {
			s.hag.stop(t)
		})
		s.hag = startDaemon(outer, s.lab.HAG, "hag", configPath("hag.yaml"))
		waitServed(t, s)
	})

	t.Run("hag killed", func(t *testing.T) {
		cutDownload(t, s, down, huge, func() {
			_ = s.hag.cmd.Process.Kill()
		})
		s.hag = startDaemon(outer, s.lab.HAG, "hag", configPath("hag.yaml"))
		waitServed(t, s)
	})
	// Last: hcpe is not restarted.
	t.Run("hcpe stops", func(t *testing.T) {
		up, err := s.dial(s.ctx(t, time.Minute), netip.AddrPortFrom(server4, 8084))
		if err != nil {
			t.Fatal(err)
		}
		defer up.Close()
		go func() {
			buf := make([]byte, 64<<10)
			for {
				if _, err := up.Write(buf); err != nil {
					return
				}
			}
		}()
		cutDownload(t, s, down, huge, func() {
			s.cpe.stop(t)
		})
		select {
		case err := <-uploadEnd:
			if !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("server's read of the upload ended with %v; want ECONNRESET (nil is a FIN)", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("upload still open at the server 20 s after hcpe stopped")
		}
	})

}

// cutDownload starts a download of n bytes, runs cut once some bytes have
// arrived, and requires the LAN host to see a reset. It counts bytes and does
// not hash them: n is far more than the test could ever receive.
func cutDownload(t *testing.T, s *system, dst netip.AddrPort, n uint64, cut func()) {
	t.Helper()
	c, err := s.dial(s.ctx(t, 30*time.Second), dst)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	if _, err := c.Write(netlab.SourceRequest(n, 31)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(io.Discard, c, 1<<20); err != nil {
		t.Fatalf("download ended before the cut: %v", err)
	}
	cut()
	got, err := io.Copy(io.Discard, c)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("LAN host got %d more bytes of %d after the cut, then %v; want ECONNRESET (nil is a clean EOF)", got, n, err)
	}
	t.Logf("LAN host got %d more bytes after the cut, then %v", got, err)
}

// waitServed waits until hcpe and the restarted hag serve a small download
// again: hcpe's probes may still hold hag for down.
func waitServed(t *testing.T, s *system) {
	t.Helper()
	waitFor(t, "a download served through the restarted hag", 30*time.Second, func() bool {
		_, _, err := s.download(s.ctx(t, 5*time.Second), netip.AddrPortFrom(server4, 8081), 1024, 7)
		return err == nil
	})
}
