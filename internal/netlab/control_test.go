package netlab

import (
	"context"
	"os"
	"testing"
	"time"
)

// TestServe runs a lab the way hglab up does, drives it over its control
// socket, stops it with a stop request and checks that nothing remains;
// then runs one again and stops it by cancelling its context, as SIGINT
// does.
func TestServe(t *testing.T) {
	RequireRoot(t)
	for _, how := range []string{"stop request", "signal"} {
		t.Run(how, func(t *testing.T) {
			dir, prefix := t.TempDir(), UniquePrefix()
			t.Cleanup(func() { _, _ = Sweep(prefix) })
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- Serve(ctx, Options{Prefix: prefix}, dir) }()
			sock := SocketPath(dir, prefix)
			var st *Status
			for deadline := time.Now().Add(20 * time.Second); st == nil; {
				resp, err := Control(t.Context(), sock, Request{Cmd: "status"})
				if err == nil {
					st = resp.Status
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("lab did not answer: %v", err)
				}
				select {
				case err := <-done:
					t.Fatalf("Serve returned early: %v", err)
				case <-time.After(50 * time.Millisecond):
				}
			}
			if st.Prefix != prefix || len(st.Links) != 2 || ReadPID(PIDPath(dir, prefix)) != os.Getpid() {
				t.Fatalf("status %+v, pid file %d", st, ReadPID(PIDPath(dir, prefix)))
			}
			resp, err := Control(t.Context(), sock, Request{Cmd: "set", Link: "lte", Args: []string{"down-rate", "7mbit", "up-delay", "30ms"}})
			if err != nil {
				t.Fatal(err)
			}
			if l := resp.Status.Links[1]; l.Down.RateBps != 7e6 || l.Up.Delay != 30*time.Millisecond || l.Up.RateBps != 10e6 {
				t.Errorf("after set: %s / %s", l.UpText, l.DownText)
			}
			if _, err := Control(t.Context(), sock, Request{Cmd: "set", Link: "wifi", Args: []string{"down"}}); err == nil {
				t.Error("set on an unknown link succeeded")
			}
			if how == "signal" {
				cancel()
			} else if _, err := Control(t.Context(), sock, Request{Cmd: "stop"}); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Serve: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("Serve did not return")
			}
			if left, _ := Leftovers(prefix); len(left) != 0 {
				t.Errorf("namespaces left: %v", left)
			}
			for _, f := range []string{sock, PIDPath(dir, prefix)} {
				if _, err := os.Stat(f); err == nil {
					t.Errorf("%s left", f)
				}
			}
		})
	}
}
