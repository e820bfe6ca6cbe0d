package linkem

import (
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// Lab profile files decode strictly into Profile.
func TestProfileYAML(t *testing.T) {
	const doc = `
rate_bps: 40000000
queue_delay: 30ms
delay: 17.5ms
jitter: 2ms
loss: {model: gilbert-elliott, p: 0.01, r: 0.25, loss_bad: 0.8}
strip_mptcp: true
seed: 7
`
	var p Profile
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil {
		t.Fatal(err)
	}
	want := Profile{RateBps: 40e6, QueueDelay: 30 * time.Millisecond, Delay: 17500 * time.Microsecond,
		Jitter: 2 * time.Millisecond, Loss: Loss{Model: LossGilbertElliott, P: 0.01, R: 0.25, LossBad: 0.8},
		StripMPTCP: true, Seed: 7}
	if p != want {
		t.Errorf("decoded %+v, want %+v", p, want)
	}
	if err := p.Validate(); err != nil {
		t.Error(err)
	}
	if got := p.QueueLimit(); got != 150000 {
		t.Errorf("QueueLimit %d, want 150000 (30 ms at 40 Mbit/s)", got)
	}
}
