package policy

import (
	"testing"
	"time"
)

func TestHealth(t *testing.T) {
	// Outcomes: a number is an answer with that RTT in ms, -1 a miss.
	cases := []struct {
		name    string
		p       HealthParams
		seq     []int
		changes []int // indexes of seq at which Alive flipped
		alive   bool
		srtt    time.Duration
		loss    float64
	}{
		{"starts dead, up after M", HealthParams{DownAfter: 3, UpAfter: 2}, []int{10, 10}, []int{1}, true, 10 * ms, 0},
		{"one answer is not enough", HealthParams{DownAfter: 3, UpAfter: 2}, []int{10}, nil, false, 10 * ms, 0},
		{"misses reset the up run", HealthParams{DownAfter: 3, UpAfter: 2}, []int{10, -1, 10, 10}, []int{3}, true, 10 * ms, 0.25},
		{"down after K consecutive", HealthParams{DownAfter: 3, UpAfter: 2}, []int{10, 10, -1, -1, -1}, []int{1, 4}, false, 10 * ms, 0.6},
		{"scattered misses keep it up", HealthParams{DownAfter: 3, UpAfter: 2}, []int{10, 10, -1, -1, 10, -1, -1, 10}, []int{1}, true, 10 * ms, 0.5},
		{"ewma gain 1/8", HealthParams{DownAfter: 3, UpAfter: 1}, []int{10, 90}, []int{0}, true, 20 * ms, 0},
		{"reseeded after a dead spell", HealthParams{DownAfter: 1, UpAfter: 1}, []int{10, -1, 50}, []int{0, 1, 2}, true, 50 * ms, 1.0 / 3},
		{"loss window slides", HealthParams{DownAfter: 9, UpAfter: 1, Window: 4}, []int{-1, -1, 10, 10, 10, 10}, []int{2}, true, 10 * ms, 0},
		{"zero params mean one", HealthParams{}, []int{10, -1}, []int{0, 1}, false, 10 * ms, 0.5},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := NewHealth(c.p)
			var changes []int
			for i, o := range c.seq {
				var ch bool
				if o < 0 {
					ch = h.Miss()
				} else {
					ch = h.Success(time.Duration(o) * ms)
				}
				if ch {
					changes = append(changes, i)
				}
			}
			if len(changes) != len(c.changes) {
				t.Fatalf("changes at %v, want %v", changes, c.changes)
			}
			for i := range changes {
				if changes[i] != c.changes[i] {
					t.Fatalf("changes at %v, want %v", changes, c.changes)
				}
			}
			if h.Alive() != c.alive || h.SRTT() != c.srtt || h.Loss() != c.loss {
				t.Fatalf("alive %v srtt %v loss %v, want %v %v %v", h.Alive(), h.SRTT(), h.Loss(), c.alive, c.srtt, c.loss)
			}
		})
	}
}

func TestHealthLossWindowCapped(t *testing.T) {
	h := NewHealth(HealthParams{DownAfter: 1000, UpAfter: 1, Window: 1000})
	for range 100 {
		h.Miss()
	}
	for range 32 {
		h.Success(ms)
	}
	if got := h.Loss(); got != 0.5 {
		t.Fatalf("loss %v over a 64-outcome window, want 0.5", got)
	}
}
