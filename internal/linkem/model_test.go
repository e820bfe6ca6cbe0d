package linkem

import (
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// delivery is one packet's fate in a simulated run.
type delivery struct {
	seq     int
	size    int
	sent    time.Time // when offered to the model
	arrived time.Time // when it came out of the far end (Forward only)
	verdict Verdict
}

// sim drives a Model the way the forwarder does, but on synctest's fake
// clock: a sender offers packets (waiting gap before each), and every
// forwarded packet sleeps until its release time and records when it woke,
// so arrival-minus-sent is exactly what the model imposes. change, if not
// nil, is called before each packet and may reconfigure the model.
func sim(t *testing.T, m *Model, n, size int, gap time.Duration, change func(i int, m *Model)) []delivery {
	t.Helper()
	out := make([]delivery, n)
	var wg sync.WaitGroup
	for i := range n {
		time.Sleep(gap)
		if change != nil {
			change(i, m)
		}
		now := time.Now()
		rel, v := m.Enqueue(now, size)
		out[i] = delivery{seq: i, size: size, sent: now, verdict: v}
		if v == Forward {
			wg.Go(func() {
				time.Sleep(rel.Sub(time.Now()))
				out[i].arrived = time.Now()
			})
		}
	}
	wg.Wait()
	return out
}

func forwarded(ds []delivery) []delivery {
	return slices.DeleteFunc(slices.Clone(ds), func(d delivery) bool { return d.verdict != Forward })
}

func count(ds []delivery, v Verdict) int {
	n := 0
	for _, d := range ds {
		if d.verdict == v {
			n++
		}
	}
	return n
}

// bytesArrived counts bytes that arrived in [from, to).
func bytesArrived(ds []delivery, from, to time.Time) int {
	n := 0
	for _, d := range ds {
		if d.verdict == Forward && !d.arrived.Before(from) && d.arrived.Before(to) {
			n += d.size
		}
	}
	return n
}

func TestModelRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const rate = 10e6
		// Offer 1500-byte packets at twice the rate (one per 600 µs) with a
		// queue big enough never to drop: the far end sees exactly the rate.
		m := NewModel(Profile{RateBps: rate, QueueBytes: 10 << 20})
		start := time.Now()
		ds := sim(t, m, 3000, 1500, 600*time.Microsecond, nil)
		if d := count(ds, DropQueue); d != 0 {
			t.Fatalf("%d queue drops with a huge queue", d)
		}
		// One second well after the start, while the queue is backlogged.
		from := start.Add(500 * time.Millisecond)
		got := bytesArrived(ds, from, from.Add(time.Second))
		want := int(rate / 8)
		if math.Abs(float64(got-want)) > 1500 {
			t.Errorf("%d bytes in 1 s, want %d ± one packet", got, want)
		}
		// Back-to-back packets leave exactly one serialisation time apart.
		f := forwarded(ds)
		if gap := f[101].arrived.Sub(f[100].arrived); gap != 1200*time.Microsecond {
			t.Errorf("gap between packets %v, want 1.2ms at 10 Mbit/s", gap)
		}
	})
}

func TestModelTokenBucketBurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// After idling, Burst bytes leave at once; the rest at the rate.
		m := NewModel(Profile{RateBps: 8e6, Burst: 15000, QueueBytes: 1 << 20})
		time.Sleep(time.Second)
		now := time.Now()
		for i := range 12 {
			rel, v := m.Enqueue(now, 1500)
			want := now
			if i >= 10 {
				want = now.Add(time.Duration(i-9) * 1500 * time.Microsecond)
			}
			if v != Forward || !rel.Equal(want) {
				t.Errorf("packet %d: %v at +%v, want forward at +%v", i, v, rel.Sub(now), want.Sub(now))
			}
		}
	})
}

func TestModelQueueTailDrop(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    Profile
		want int // packets admitted out of a burst of 100
	}{
		// 8 Mbit/s is one byte per µs: 15000 bytes is 10 packets.
		{"bytes", Profile{RateBps: 8e6, QueueBytes: 15000}, 10},
		{"delay", Profile{RateBps: 8e6, QueueDelay: 15 * time.Millisecond}, 10},
		{"default 50ms", Profile{RateBps: 8e6}, 33},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				m := NewModel(tc.p)
				now := time.Now()
				admitted := 0
				for i := range 100 {
					_, v := m.Enqueue(now, 1500)
					if v == Forward {
						if i != admitted {
							t.Fatalf("packet %d admitted after a drop: not tail drop", i)
						}
						admitted++
					} else if v != DropQueue {
						t.Fatalf("verdict %v", v)
					}
				}
				if admitted != tc.want {
					t.Errorf("admitted %d, want %d", admitted, tc.want)
				}
				// Once the queue has drained by one packet, one more fits.
				time.Sleep(1500 * time.Microsecond)
				if _, v := m.Enqueue(time.Now(), 1500); v != Forward {
					t.Errorf("after draining one packet: %v", v)
				}
				if _, v := m.Enqueue(time.Now(), 1500); v != DropQueue {
					t.Errorf("queue full again: %v", v)
				}
			})
		})
	}
}

func TestModelDelayExact(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const delay = 30 * time.Millisecond
		ds := sim(t, NewModel(Profile{Delay: delay}), 100, 1000, time.Millisecond, nil)
		for _, d := range ds {
			if got := d.arrived.Sub(d.sent); got != delay {
				t.Fatalf("packet %d took %v, want exactly %v", d.seq, got, delay)
			}
		}
		// With a rate, a lone packet also pays its serialisation time.
		ds = sim(t, NewModel(Profile{Delay: delay, RateBps: 8e6}), 10, 1000, 10*time.Millisecond, nil)
		for _, d := range ds {
			if got := d.arrived.Sub(d.sent); got != delay+time.Millisecond {
				t.Fatalf("packet %d took %v, want %v", d.seq, got, delay+time.Millisecond)
			}
		}
	})
}

func TestModelJitterBoundedInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const delay, jitter = 20 * time.Millisecond, 5 * time.Millisecond
		ds := sim(t, NewModel(Profile{Delay: delay, Jitter: jitter, Seed: 7}), 2000, 1000, time.Millisecond, nil)
		seen := map[time.Duration]bool{}
		for i, d := range ds {
			lat := d.arrived.Sub(d.sent)
			if lat < delay-jitter || lat > delay+jitter {
				t.Fatalf("packet %d latency %v outside %v ± %v", i, lat, delay, jitter)
			}
			if i > 0 && d.arrived.Before(ds[i-1].arrived) {
				t.Fatalf("packet %d overtook packet %d", i, i-1)
			}
			seen[lat] = true
		}
		if len(seen) < 100 {
			t.Errorf("only %d distinct latencies: jitter is not jittering", len(seen))
		}
	})
}

func TestModelReorder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const delay, jitter = 20 * time.Millisecond, 5 * time.Millisecond
		ds := sim(t, NewModel(Profile{Delay: delay, Jitter: jitter, Reorder: true, Seed: 7}), 2000, 1000, time.Millisecond, nil)
		reordered := 0
		for i, d := range ds {
			if lat := d.arrived.Sub(d.sent); lat < delay-jitter || lat > delay+jitter {
				t.Fatalf("packet %d latency %v outside %v ± %v", i, lat, delay, jitter)
			}
			if i > 0 && d.arrived.Before(ds[i-1].arrived) {
				reordered++
			}
		}
		// Jitter of ±5 ms on packets 1 ms apart reorders a good share.
		if reordered < 200 {
			t.Errorf("%d of 2000 packets overtook their predecessor, want many", reordered)
		}
		t.Logf("%d of 2000 packets reordered", reordered)
	})
}

// lossPattern offers n packets and returns which were lost.
func lossPattern(p Profile, n int) []bool {
	m := NewModel(p)
	now := time.Unix(0, 0)
	lost := make([]bool, n)
	for i := range lost {
		now = now.Add(time.Millisecond)
		_, v := m.Enqueue(now, 100)
		lost[i] = v == DropLoss
	}
	return lost
}

// lossStats returns the loss rate and the mean length of loss bursts.
func lossStats(lost []bool) (rate, meanBurst float64) {
	var nLost, bursts int
	for i, l := range lost {
		if l {
			nLost++
			if i == 0 || !lost[i-1] {
				bursts++
			}
		}
	}
	return float64(nLost) / float64(len(lost)), float64(nLost) / float64(max(bursts, 1))
}

func TestModelBernoulliLoss(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n, p = 200000, 0.05
		prof := Profile{Loss: Loss{Model: LossBernoulli, P: p}, Seed: 42}
		m := NewModel(prof)
		ds := sim(t, m, n, 100, 10*time.Microsecond, nil)
		rate := float64(count(ds, DropLoss)) / n
		// The standard deviation is sqrt(p(1-p)/n) ≈ 0.0005; allow 5σ.
		if math.Abs(rate-p) > 0.0025 {
			t.Errorf("loss rate %.4f, want %.4f", rate, p)
		}
		// Seeded: the same seed gives the same pattern, another seed does not.
		a, b := lossPattern(prof, 10000), lossPattern(prof, 10000)
		prof.Seed = 43
		c := lossPattern(prof, 10000)
		if !slices.Equal(a, b) {
			t.Error("same seed, different loss patterns")
		}
		if slices.Equal(a, c) {
			t.Error("different seeds, same loss pattern")
		}
		_, burst := lossStats(a)
		t.Logf("seed 42: rate %.4f, mean burst %.2f", rate, burst)
	})
}

func TestModelGilbertElliottBursty(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// p = 1%, r = 25%: the bad state holds 1/(1+25) ≈ 3.85% of the
		// time, bursts last 1/r = 4 packets on average.
		const n = 200000
		ge := Profile{Loss: Loss{Model: LossGilbertElliott, P: 0.01, R: 0.25}, Seed: 1}
		m := NewModel(ge)
		lost := make([]bool, n)
		for i, d := range sim(t, m, n, 100, 10*time.Microsecond, nil) {
			lost[i] = d.verdict == DropLoss
		}
		rate, burst := lossStats(lost)
		wantRate := 0.01 / (0.01 + 0.25)
		if math.Abs(rate-wantRate)/wantRate > 0.1 {
			t.Errorf("GE loss rate %.4f, want %.4f ± 10%%", rate, wantRate)
		}
		if burst < 3.5 || burst > 4.5 {
			t.Errorf("GE mean burst %.2f, want about 4", burst)
		}
		// Bernoulli at the same average loss has bursts barely above 1.
		bRate, bBurst := lossStats(lossPattern(Profile{Loss: Loss{Model: LossBernoulli, P: wantRate}, Seed: 1}, n))
		if bBurst > 1.2 {
			t.Errorf("Bernoulli mean burst %.2f, want about 1", bBurst)
		}
		t.Logf("GE: rate %.4f mean burst %.2f; Bernoulli: rate %.4f mean burst %.2f", rate, burst, bRate, bBurst)

		// LossBad/LossGood: a bad state that loses half, a good one that
		// loses 1%.
		ge.Loss.LossBad, ge.Loss.LossGood = 0.5, 0.01
		rate, _ = lossStats(lossPattern(ge, n))
		want := 0.0385*0.5 + 0.9615*0.01
		if math.Abs(rate-want)/want > 0.1 {
			t.Errorf("GE with loss_bad 0.5, loss_good 0.01: rate %.4f, want %.4f", rate, want)
		}
	})
}

func TestModelDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := NewModel(Profile{RateBps: 1e6, Delay: 10 * time.Millisecond, Down: true})
		ds := sim(t, m, 100, 1500, time.Millisecond, nil)
		if n := count(ds, DropDown); n != 100 {
			t.Errorf("%d of 100 dropped while down", n)
		}
		// Down dropped packets must not have used the link: back up, the
		// first packet goes straight through.
		p := m.Profile()
		p.Down = false
		m.SetProfile(p)
		now := time.Now()
		if rel, v := m.Enqueue(now, 1500); v != Forward || rel.Sub(now) != 22*time.Millisecond {
			t.Errorf("after up: %v after %v, want forward after 22ms", v, rel.Sub(now))
		}
	})
}

func TestModelProfileChangeMidStream(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// 10 Mbit/s for the first 2000 packets, then 20 Mbit/s, offered at
		// 30 Mbit/s (one 1500-byte packet per 400 µs) into a deep queue.
		start := time.Now()
		m := NewModel(Profile{RateBps: 10e6, QueueBytes: 1 << 30})
		ds := sim(t, m, 5000, 1500, 400*time.Microsecond, func(i int, m *Model) {
			if i == 2000 {
				p := m.Profile()
				p.RateBps = 20e6
				m.SetProfile(p)
			}
		})
		// Packet 2000 waits behind the 10 Mbit/s backlog; after that the
		// link runs at 20 Mbit/s.
		before := bytesArrived(ds, start.Add(200*time.Millisecond), start.Add(700*time.Millisecond))
		switchAt := ds[1999].arrived
		after := bytesArrived(ds, switchAt.Add(100*time.Millisecond), switchAt.Add(600*time.Millisecond))
		if math.Abs(float64(before)-10e6/8/2) > 1500 || math.Abs(float64(after)-20e6/8/2) > 1500 {
			t.Errorf("bytes per 500 ms: before %d (want %d), after %d (want %d)", before, int(10e6/8/2), after, int(20e6/8/2))
		}

		// Cutting the delay does not let new packets overtake old ones.
		m = NewModel(Profile{Delay: 50 * time.Millisecond})
		ds = sim(t, m, 100, 100, time.Millisecond, func(i int, m *Model) {
			if i == 50 {
				m.SetProfile(Profile{Delay: 10 * time.Millisecond})
			}
		})
		for i := 1; i < len(ds); i++ {
			if ds[i].arrived.Before(ds[i-1].arrived) {
				t.Fatalf("packet %d overtook %d after the delay cut", i, i-1)
			}
		}
		if lat := ds[99].arrived.Sub(ds[99].sent); lat != 10*time.Millisecond {
			t.Errorf("late packet latency %v, want the new 10ms", lat)
		}
	})
}

func TestModelEnqueueDoesNotAllocate(t *testing.T) {
	m := NewModel(Profile{RateBps: 1e9, Delay: time.Millisecond, Jitter: time.Millisecond,
		Loss: Loss{Model: LossGilbertElliott, P: 0.01, R: 0.3}})
	now := time.Now()
	if a := testing.AllocsPerRun(1000, func() {
		now = now.Add(time.Microsecond)
		m.Enqueue(now, 1500)
	}); a != 0 {
		t.Errorf("Enqueue allocates %v times per packet", a)
	}
}

func TestProfileValidate(t *testing.T) {
	bad := Profile{RateBps: -1, QueueDelay: -1, Delay: -1, Jitter: -1,
		Loss: Loss{Model: LossGilbertElliott, P: 2, R: math.NaN()}}
	err := bad.Validate()
	if err == nil {
		t.Fatal("invalid profile accepted")
	}
	for _, field := range []string{"rate_bps", "queue_delay", "delay", "jitter", "loss.p", "loss.r"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("error does not name %s: %v", field, err)
		}
	}
	if err := (Profile{Loss: Loss{Model: "random"}}).Validate(); err == nil {
		t.Error("unknown loss model accepted")
	}
	if err := (Profile{RateBps: 20e6, Delay: 7500 * time.Microsecond, Loss: Loss{Model: LossBernoulli, P: 0.01}}).Validate(); err != nil {
		t.Errorf("valid profile rejected: %v", err)
	}
}

func TestModelFlap(t *testing.T) {
	tests := []struct {
		name        string
		down, every time.Duration
		gap         time.Duration
		n           int
		wantDown    int
	}{
		// 10 ms packets over 3 s: 0.5 s down at 0, 1 and 2 s (150 of 300).
		{"half second every second", 500 * time.Millisecond, time.Second, 10 * time.Millisecond, 300, 150},
		{"2.5 s every 30 s", 2500 * time.Millisecond, 30 * time.Second, 100 * time.Millisecond, 600, 50},
		{"off", 0, 0, 10 * time.Millisecond, 100, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				m := NewModel(Profile{Flap: Flap{Down: tt.down, Every: tt.every}})
				start := time.Now().Add(tt.gap) // the first packet anchors the schedule
				ds := sim(t, m, tt.n, 100, tt.gap, nil)
				if got := count(ds, DropDown); got != tt.wantDown {
					t.Errorf("dropped %d of %d packets as down, want %d", got, tt.n, tt.wantDown)
				}
				for _, d := range ds {
					inOutage := tt.every > 0 && d.sent.Sub(start)%tt.every < tt.down
					if (d.verdict == DropDown) != inOutage {
						t.Fatalf("packet %d at +%v: %v, want down=%v", d.seq, d.sent.Sub(start), d.verdict, inOutage)
					}
				}
			})
		})
	}
}

func TestFlapValidate(t *testing.T) {
	for _, tt := range []struct {
		f  Flap
		ok bool
	}{
		{Flap{}, true},
		{Flap{Down: time.Second, Every: 10 * time.Second}, true},
		{Flap{Down: time.Second}, false},
		{Flap{Down: 10 * time.Second, Every: 10 * time.Second}, false},
		{Flap{Every: 10 * time.Second}, false},
		{Flap{Down: -time.Second, Every: 10 * time.Second}, false},
	} {
		if err := (Profile{Flap: tt.f}).Validate(); (err == nil) != tt.ok {
			t.Errorf("%+v: err = %v, want ok=%v", tt.f, err, tt.ok)
		}
	}
}
