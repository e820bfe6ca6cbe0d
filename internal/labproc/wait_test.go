package labproc

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestWaitFor(t *testing.T) {
	ctx := context.Background()
	n := 0
	if err := WaitFor(ctx, "three polls", time.Second, func() bool { n++; return n == 3 }); err != nil || n != 3 {
		t.Errorf("WaitFor = %v after %d polls, want nil after 3", err, n)
	}
	t0 := time.Now()
	err := WaitFor(ctx, "never", 100*time.Millisecond, func() bool { return false })
	if err == nil || !strings.Contains(err.Error(), "waiting for never") {
		t.Errorf("WaitFor(never) = %v", err)
	}
	if d := time.Since(t0); d < 100*time.Millisecond {
		t.Errorf("gave up after %v, before its 100 ms", d)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := WaitFor(cctx, "cancelled", time.Hour, func() bool { return false }); !errors.Is(err, context.Canceled) {
		t.Errorf("WaitFor(cancelled) = %v, want context.Canceled", err)
	}
	if err := Sleep(cctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("Sleep(cancelled) = %v", err)
	}
}

func TestTail(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"a\nb\nc\n", 2, "b\nc"},
		{"a\nb", 5, "a\nb"},
		{"", 3, ""},
	} {
		if got := Tail(tc.in, tc.n); got != tc.want {
			t.Errorf("Tail(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}
