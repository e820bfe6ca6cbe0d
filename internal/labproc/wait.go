package labproc

import (
	"context"
	"fmt"
	"time"
)

// pollEvery is how often WaitFor looks again.
const pollEvery = 25 * time.Millisecond

// WaitFor polls ok until it holds, d passes (an error naming what was
// awaited) or ctx ends (its error).
func WaitFor(ctx context.Context, what string, d time.Duration, ok func() bool) error {
	deadline := time.Now().Add(d)
	for !ok() {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v waiting for %s", d, what)
		}
		if err := Sleep(ctx, pollEvery); err != nil {
			return err
		}
	}
	return nil
}

// Sleep sleeps d or until ctx ends, and returns ctx's error if it did.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
