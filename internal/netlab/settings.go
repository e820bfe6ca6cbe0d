package netlab

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"hybridgw/internal/linkem"
)

// SettingsHelp documents the words ApplySettings takes; hglab prints it.
const SettingsHelp = `Settings are KEY VALUE pairs; a key applies to both directions, or to
one when prefixed with up- (cpe → hag) or down- (hag → cpe):
  rate R          token-bucket rate: 20mbit, 512kbit, 0 = unlimited
  delay D         one-way delay: 7.5ms
  rtt D           sets delay to D/2 in both directions (no up-/down- form)
  jitter D        uniform ±D added to each packet's delay
  loss P          Bernoulli loss probability: 0.02 or 2%; 0 = none
  queue-delay D   queue size as time at the rate (tail drop beyond)
  queue-bytes N   queue size in bytes (overrides queue-delay)
  burst-bytes N   token-bucket depth
  reorder on|off  let jitter reorder packets
  strip-mptcp on|off  NOP out MPTCP options (a middlebox)
  flap D E        whole link down for D out of every E, first outage now
                  (a line that resyncs: flap 2.5s 30s); flap off stops it
The words "down" and "up" alone take the whole link down or bring it back.`

// Change is what ApplySettings made of hglab set's words: the new
// profile, and a new up/down state of the whole link if one was asked for.
type Change struct {
	Profile LinkProfile
	SetDown *bool
}

// ApplySettings applies hglab set's words (see SettingsHelp) to a link
// profile. It returns every problem at once, each naming its word.
func ApplySettings(lp LinkProfile, words []string) (Change, error) {
	c := Change{Profile: lp}
	var errs []string
	for i := 0; i < len(words); i++ {
		w := strings.ToLower(words[i])
		if w == "down" || w == "up" {
			d := w == "down"
			c.SetDown = &d
			continue
		}
		if i+1 >= len(words) {
			errs = append(errs, fmt.Sprintf("%s: missing value", w))
			break
		}
		v := words[i+1]
		i++
		if w == "flap" {
			if strings.ToLower(v) == "off" {
				c.Profile.Up.Flap, c.Profile.Down.Flap = linkem.Flap{}, linkem.Flap{}
				continue
			}
			if i+1 >= len(words) {
				errs = append(errs, "flap: want DOWN EVERY (flap 2.5s 30s) or off")
				break
			}
			e := words[i+1]
			i++
			down, err1 := time.ParseDuration(v)
			every, err2 := time.ParseDuration(e)
			if err1 != nil || err2 != nil {
				errs = append(errs, fmt.Sprintf("flap: %q %q are not durations", v, e))
				continue
			}
			f := linkem.Flap{Down: down, Every: every}
			c.Profile.Up.Flap, c.Profile.Down.Flap = f, f
			continue
		}
		if w == "rtt" {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				errs = append(errs, fmt.Sprintf("rtt: %q is not a duration", v))
				continue
			}
			c.Profile.Up.Delay, c.Profile.Down.Delay = d/2, d/2
			continue
		}
		dirs := []*Direction{&c.Profile.Up, &c.Profile.Down}
		key := w
		if k, ok := strings.CutPrefix(w, "up-"); ok {
			dirs, key = dirs[:1], k
		} else if k, ok := strings.CutPrefix(w, "down-"); ok {
			dirs, key = dirs[1:], k
		}
		set, err := setter(key, v)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", w, err))
			continue
		}
		for _, d := range dirs {
			set(d)
		}
	}
	if len(errs) == 0 {
		if err := c.Profile.Validate(); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return Change{}, fmt.Errorf("applying settings: %s", strings.Join(errs, "; "))
	}
	return c, nil
}

// setter parses one value and returns what it does to a direction.
func setter(key, v string) (func(*Direction), error) {
	dur := func(f func(*Direction, time.Duration)) (func(*Direction), error) {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return nil, fmt.Errorf("%q is not a duration such as 7.5ms", v)
		}
		return func(x *Direction) { f(x, d) }, nil
	}
	num := func(f func(*Direction, int)) (func(*Direction), error) {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%q is not a byte count", v)
		}
		return func(x *Direction) { f(x, n) }, nil
	}
	onoff := func(f func(*Direction, bool)) (func(*Direction), error) {
		switch strings.ToLower(v) {
		case "on", "true", "yes", "1":
			return func(x *Direction) { f(x, true) }, nil
		case "off", "false", "no", "0":
			return func(x *Direction) { f(x, false) }, nil
		}
		return nil, fmt.Errorf("%q is not on or off", v)
	}
	switch key {
	case "rate":
		r, err := ParseRate(v)
		if err != nil {
			return nil, err
		}
		return func(x *Direction) { x.Rate, x.RateBps = r, 0 }, nil
	case "delay":
		return dur(func(x *Direction, d time.Duration) { x.Delay = d })
	case "jitter":
		return dur(func(x *Direction, d time.Duration) { x.Jitter = d })
	case "queue-delay":
		return dur(func(x *Direction, d time.Duration) { x.QueueDelay, x.QueueBytes = d, 0 })
	case "queue-bytes":
		return num(func(x *Direction, n int) { x.QueueBytes = n })
	case "burst-bytes":
		return num(func(x *Direction, n int) { x.Burst = n })
	case "reorder":
		return onoff(func(x *Direction, b bool) { x.Reorder = b })
	case "strip-mptcp":
		return onoff(func(x *Direction, b bool) { x.StripMPTCP = b })
	case "loss":
		s, pct := strings.CutSuffix(v, "%")
		p, err := strconv.ParseFloat(s, 64)
		if pct {
			p /= 100
		}
		if err != nil || !(p >= 0 && p <= 1) {
			return nil, fmt.Errorf("%q is not a probability such as 0.02 or 2%%", v)
		}
		l := linkem.Loss{Model: linkem.LossBernoulli, P: p}
		if p == 0 {
			l = linkem.Loss{}
		}
		return func(x *Direction) { x.Loss = l }, nil
	}
	return nil, fmt.Errorf("unknown setting")
}
