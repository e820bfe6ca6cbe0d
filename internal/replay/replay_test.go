package replay

import (
	"runtime"
	"testing"
	"time"
)

var t0 = time.Unix(1_800_000_000, 0)

func TestFilter(t *testing.T) {
	const window = 2 * time.Minute
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	issued := t0.Unix()
	steps := []struct {
		name   string
		tag    uint64
		issued int64
		now    time.Time
		want   Result
	}{
		{"first use", 1, issued, at(0), Fresh},
		{"replay at once", 1, issued, at(0), Replayed},
		{"other cookie, same second", 2, issued, at(0), Fresh},
		{"replay near the end of the window", 1, issued, at(120), Replayed},
		{"same tag, other issue time, is another cookie", 1, issued + 1, at(120), Fresh},
		{"cookie from the future", 3, issued + 120, at(0), Fresh},
		{"forgotten once expired", 1, issued, at(122), Fresh},
		{"future cookie still remembered", 3, issued + 120, at(200), Replayed},
	}
	f := New(100, window)
	for _, s := range steps {
		if got := f.Add(s.tag, s.issued, s.now); got != s.want {
			t.Fatalf("%s: Add = %v, want %v", s.name, got, s.want)
		}
	}
}

// TestFilterBound: at the bound Add says Full and remembers nothing more;
// once entries expire there is room again.
func TestFilterBound(t *testing.T) {
	f := New(3, time.Minute)
	for tag := uint64(1); tag <= 3; tag++ {
		if got := f.Add(tag, t0.Unix(), t0); got != Fresh {
			t.Fatalf("tag %d: %v", tag, got)
		}
	}
	if got := f.Add(4, t0.Unix(), t0); got != Full {
		t.Fatalf("over the bound: %v, want Full", got)
	}
	if f.Seen(4, t0.Unix()) || f.Len() != 3 {
		t.Fatalf("a refused tag was remembered (len %d)", f.Len())
	}
	// A replay of a remembered cookie is still a replay when full.
	if got := f.Add(2, t0.Unix(), t0); got != Replayed {
		t.Fatalf("replay when full: %v, want Replayed", got)
	}
	later := t0.Add(62 * time.Second)
	if got := f.Add(4, later.Unix(), later); got != Fresh || f.Len() != 1 {
		t.Fatalf("after expiry: %v, len %d; want Fresh, 1", got, f.Len())
	}
}

// TestFilterSteadyState: a steady stream of fresh cookies keeps the
// filter at rate times its window, not growing with time.
func TestFilterSteadyState(t *testing.T) {
	const rate, window = 50, 30 * time.Second
	f := New(1<<20, window)
	tag := uint64(0)
	most := 0
	for s := 0; s < 600; s++ {
		now := t0.Add(time.Duration(s) * time.Second)
		for range rate {
			tag++
			if got := f.Add(tag, now.Unix(), now); got != Fresh {
				t.Fatalf("second %d: %v", s, got)
			}
		}
		most = max(most, f.Len())
	}
	// Issue times one window back are still valid, plus one bucket's width.
	if bound := rate * (int(window/time.Second) + 2); most > bound {
		t.Errorf("filter held %d tags, want at most %d", most, bound)
	}
	if len(f.buckets) > maxBuckets+2 {
		t.Errorf("%d buckets", len(f.buckets))
	}
}

// TestFilterLongWindow: a long window is cut into at most maxBuckets
// buckets, and tags still expire (late by at most one bucket's width).
func TestFilterLongWindow(t *testing.T) {
	const window = time.Hour
	f := New(1<<20, window)
	for s := 0; s < 3*3600; s += 7 {
		now := t0.Add(time.Duration(s) * time.Second)
		f.Add(uint64(s), now.Unix(), now)
	}
	if n := len(f.buckets); n > maxBuckets+2 {
		t.Errorf("%d buckets for a one-hour window", n)
	}
	if f.Seen(0, t0.Unix()) {
		t.Error("a tag three windows old is still remembered")
	}
	last := (3*3600 - 1) / 7 * 7
	if !f.Seen(uint64(last), t0.Unix()+int64(last)) {
		t.Error("a recent tag was forgotten")
	}
}

// TestFilterConfigure: a reload may shrink the bound at once, but the
// window only grows, so no tag is forgotten while it could still verify.
func TestFilterConfigure(t *testing.T) {
	f := New(10, time.Minute)
	f.Add(1, t0.Unix(), t0)
	f.Configure(10, 5*time.Minute)
	later := t0.Add(4 * time.Minute)
	if got := f.Add(1, t0.Unix(), later); got != Replayed {
		t.Fatalf("after the window grew: %v, want Replayed", got)
	}
	f.Configure(1, time.Minute)
	if got := f.Add(2, later.Unix(), later); got != Full {
		t.Fatalf("after the bound shrank: %v, want Full", got)
	}
	if got := f.Add(1, t0.Unix(), later.Add(time.Second)); got != Replayed {
		t.Fatalf("after the window was set shorter again: %v, want Replayed", got)
	}
}

// BenchmarkAdd measures Add at a steady state of about a million
// remembered cookies (the default bound), and the memory per entry.
func BenchmarkAdd(b *testing.B) {
	const n = 1 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f := New(n+b.N+1, 2*time.Minute)
	for i := range n {
		f.Add(uint64(i)*0x9e3779b97f4a7c15, t0.Unix()+int64(i%240)-120, t0)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ResetTimer()
	for i := range b.N {
		f.Add(uint64(n+i)*0x9e3779b97f4a7c15, t0.Unix()+int64(i%240)-120, t0)
	}
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/entry")
}
