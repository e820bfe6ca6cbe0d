package netlab

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"hybridgw/internal/linkem"
)

const profileDir = "../../test/lab/profiles"

func TestParseRate(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Rate
		bad  bool
	}{
		{"20mbit", 20e6, false}, {"5Mbit", 5e6, false}, {"512kbit", 512e3, false},
		{"1.5gbit", 1.5e9, false}, {"9600bit", 9600, false}, {"100000", 100000, false},
		{"0", 0, false}, {" 2.5mbit ", 2.5e6, false},
		{"", 0, true}, {"mbit", 0, true}, {"-1mbit", 0, true}, {"20mbps", 0, true}, {"fast", 0, true},
	} {
		got, err := ParseRate(c.in)
		if (err != nil) != c.bad || got != c.want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v, bad=%v", c.in, got, err, c.want, c.bad)
		}
		if err == nil {
			if back, err := ParseRate(got.String()); err != nil || back != got {
				t.Errorf("ParseRate(%q.String()=%q) = %v, %v", c.in, got.String(), back, err)
			}
		}
	}
}

// TestProfileFiles loads every shipped profile, so that none rots, and
// checks that dsl.yaml and lte.yaml say what DefaultDSL/DefaultLTE say.
func TestProfileFiles(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(profileDir, "*.yaml"))
	if err != nil || len(files) < 4 {
		t.Fatalf("profiles in %s: %v, %v", profileDir, files, err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		lp, err := LoadProfile(profileDir, name)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if lp.Name != name {
			t.Errorf("%s: name %q, want the file's name", f, lp.Name)
		}
		if lp.Up.Linkem().RateBps == 0 || lp.Down.Linkem().RateBps == 0 {
			t.Errorf("%s: a direction has no rate", f)
		}
	}
	for name, want := range map[string]LinkProfile{"dsl": DefaultDSL(), "lte": DefaultLTE()} {
		got, err := LoadProfile(profileDir, name)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s.yaml = %+v\nwant DefaultX() = %+v", name, got, want)
		}
	}
	lte, _ := LoadProfile(profileDir, "lte-80ms")
	if rtt := lte.Up.Delay + lte.Down.Delay; rtt != 80*time.Millisecond {
		t.Errorf("lte-80ms: RTT %v", rtt)
	}
	eq, _ := LoadProfile(profileDir, "equal-rtt")
	if d := DefaultDSL(); eq.Up.Delay+eq.Down.Delay != d.Up.Delay+d.Down.Delay {
		t.Errorf("equal-rtt: RTT %v, dsl's is %v", eq.Up.Delay+eq.Down.Delay, d.Up.Delay+d.Down.Delay)
	}
}

func TestParseProfileStrict(t *testing.T) {
	for _, c := range []struct {
		name, yaml, wantErr string
	}{
		{"unknown field", "up: {rate: 1mbit, speed: 2}\n", "speed"},
		{"bad rate", "up: {rate: fast}\n", "rate"},
		{"rate twice", "up: {rate: 1mbit, rate_bps: 1000}\n", "rate or rate_bps"},
		{"negative delay", "down: {delay: -1ms}\n", "down: delay"},
		{"loss without model", "up: {loss: {p: 0.1}}\n", "loss.model"},
		{"loss > 1", "up: {loss: {model: bernoulli, p: 2}}\n", "loss.p"},
		{"mtu", "mtu: 100\n", "mtu"},
	} {
		_, err := ParseProfile(strings.NewReader(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("%s: err %v, want one mentioning %q", c.name, err, c.wantErr)
		}
	}
	lp, err := ParseProfile(strings.NewReader("up: {rate: 2mbit, loss: {model: gilbert-elliott, p: 0.01, r: 0.5}, seed: 7}\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := linkem.Profile{RateBps: 2e6, Seed: 7, Loss: linkem.Loss{Model: linkem.LossGilbertElliott, P: 0.01, R: 0.5}}
	if got := lp.Up.Linkem(); !reflect.DeepEqual(got, want) || lp.MTU != DefaultMTU {
		t.Errorf("got %+v (mtu %d), want %+v", got, lp.MTU, want)
	}
}

func TestLoadProfileMissing(t *testing.T) {
	_, err := LoadProfile(t.TempDir(), "nope")
	if !os.IsNotExist(unwrapAll(err)) {
		t.Errorf("err %v, want not-exist", err)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

func TestApplySettings(t *testing.T) {
	base := DefaultLTE()
	for _, c := range []struct {
		words   string
		check   func(Change) bool
		wantErr string
	}{
		{"down", func(c Change) bool { return c.SetDown != nil && *c.SetDown }, ""},
		{"up", func(c Change) bool { return c.SetDown != nil && !*c.SetDown }, ""},
		{"down-rate 10mbit delay 30ms loss 0.02", func(c Change) bool {
			u, d := c.Profile.Up.Linkem(), c.Profile.Down.Linkem()
			return c.SetDown == nil && d.RateBps == 10e6 && u.RateBps == 10e6 && u.Delay == 30*time.Millisecond &&
				d.Delay == 30*time.Millisecond && u.Loss.P == 0.02 && d.Loss.Model == linkem.LossBernoulli
		}, ""},
		{"up-loss 5% rtt 80ms", func(c Change) bool {
			return c.Profile.Up.Loss.P == 0.05 && c.Profile.Down.Loss.P == 0 && c.Profile.Down.Delay == 40*time.Millisecond
		}, ""},
		{"loss 0", func(c Change) bool { return c.Profile.Up.Loss == (linkem.Loss{}) }, ""},
		{"reorder on strip-mptcp on queue-bytes 3000", func(c Change) bool {
			return c.Profile.Up.Reorder && c.Profile.Down.StripMPTCP && c.Profile.Up.QueueBytes == 3000
		}, ""},
		{"flap 2.5s 30s", func(c Change) bool {
			f := linkem.Flap{Down: 2500 * time.Millisecond, Every: 30 * time.Second}
			return c.SetDown == nil && c.Profile.Up.Flap == f && c.Profile.Down.Flap == f
		}, ""},
		{"flap 2s 10s flap off", func(c Change) bool {
			return c.Profile.Up.Flap == (linkem.Flap{}) && c.Profile.Down.Flap == (linkem.Flap{})
		}, ""},
		{"flap 30s 2s", nil, "flap"},
		{"flap 2s", nil, "DOWN EVERY"},
		{"flap soon 2s", nil, "not durations"},
		{"rate", nil, "missing value"},
		{"speed 3", nil, "unknown setting"},
		{"delay soon up-rate x", nil, "up-rate"},
		{"loss 120%", nil, "probability"},
	} {
		got, err := ApplySettings(base, strings.Fields(c.words))
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%q: err %v, want one mentioning %q", c.words, err, c.wantErr)
			}
			continue
		}
		if err != nil || !c.check(got) {
			t.Errorf("%q: got %+v, %v", c.words, got, err)
		}
	}
}

func TestCheckPrefix(t *testing.T) {
	for p, ok := range map[string]bool{"hg-": true, "h3f9a-": true, "t1-": true, "toolongprefix-": false, "a/b": false, "a b": false} {
		if err := checkPrefix(p); (err == nil) != ok {
			t.Errorf("checkPrefix(%q) = %v", p, err)
		}
	}
}
