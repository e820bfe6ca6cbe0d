package netlab

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"hybridgw/internal/linkem"
)

// LinkProfile is the contents of one profile file: what an emulated access
// link does in each direction. Up is cpe → hag (linkem's A→B), Down is
// hag → cpe (B→A).
//
// A profile file is YAML, decoded strictly (unknown fields are errors):
//
//	name: dsl            # informational; defaults to the file name
//	mtu: 1500            # of both TUN devices; default 1500
//	up:                  # cpe → hag
//	  rate: 5mbit        # token-bucket rate: bit/s with k/m/g multipliers
//	  delay: 7.5ms       # one-way propagation delay
//	  queue_delay: 50ms  # tail drop once the backlog exceeds this much time
//	down:                # hag → cpe
//	  rate: 20mbit
//	  delay: 7.5ms
//	  queue_delay: 50ms
//
// Every field of linkem.Profile may appear in up/down under its yaml name
// (rate_bps, queue_bytes, queue_delay, delay, jitter, reorder, loss: {model,
// p, ...}, down, strip_mptcp, seed); "rate" is the human spelling of
// rate_bps, and giving both is an error. A missing rate means unlimited.
type LinkProfile struct {
	Name string    `yaml:"name,omitempty"`
	MTU  int       `yaml:"mtu,omitempty"`
	Up   Direction `yaml:"up"`
	Down Direction `yaml:"down"`
}

// Direction is one direction of a LinkProfile: a linkem.Profile whose rate
// may be written as "20mbit".
type Direction struct {
	Rate           Rate `yaml:"rate,omitempty"`
	linkem.Profile `yaml:",inline"`
}

// Linkem returns the emulator profile of the direction.
func (d Direction) Linkem() linkem.Profile {
	p := d.Profile
	if d.Rate != 0 {
		p.RateBps = int64(d.Rate)
	}
	return p
}

// Rate is a link rate in bit/s. In YAML and on the command line it is written
// like tc writes rates: "20mbit", "512kbit", "1.5gbit", "9600bit" or a bare
// number of bit/s; multipliers are powers of 1000.
type Rate int64

// ParseRate parses a rate such as "20mbit".
func ParseRate(s string) (Rate, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := 1.0
	for _, u := range []struct {
		suffix string
		mult   float64
	}{{"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}, {"bit", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSuffix(t, u.suffix), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(t), 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("parsing rate %q: want a number of bit/s with an optional kbit, mbit or gbit unit", s)
	}
	r := v * mult
	if r > math.MaxInt64/2 {
		return 0, fmt.Errorf("parsing rate %q: too large", s)
	}
	return Rate(math.Round(r)), nil
}

// String formats the rate the way ParseRate reads it.
func (r Rate) String() string {
	switch {
	case r == 0:
		return "0"
	case r%1e9 == 0:
		return fmt.Sprintf("%dgbit", r/1e9)
	case r%1e6 == 0:
		return fmt.Sprintf("%dmbit", r/1e6)
	case r%1e3 == 0:
		return fmt.Sprintf("%dkbit", r/1e3)
	case r >= 1e6:
		return strconv.FormatFloat(float64(r)/1e6, 'f', -1, 64) + "mbit"
	}
	return fmt.Sprintf("%dbit", int64(r))
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (r *Rate) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseRate(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*r = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (r Rate) MarshalYAML() (any, error) { return r.String(), nil }

// DefaultDSL is the dsl profile of docs/lab.md: 20 Mbit/s down, 5 up,
// 7.5 ms one way (RTT 15 ms), no loss. test/lab/profiles/dsl.yaml says the
// same, and a test keeps them equal.
func DefaultDSL() LinkProfile {
	return LinkProfile{Name: "dsl", MTU: DefaultMTU,
		Up:   dir(5e6, 7500*time.Microsecond, 0),
		Down: dir(20e6, 7500*time.Microsecond, 0),
	}
}

// DefaultLTE is the lte profile of docs/lab.md: 40 Mbit/s down, 10 up,
// 17.5 ms one way (RTT 35 ms) with 2 ms of jitter, no loss.
func DefaultLTE() LinkProfile {
	return LinkProfile{Name: "lte", MTU: DefaultMTU,
		Up:   dir(10e6, 17500*time.Microsecond, 2*time.Millisecond),
		Down: dir(40e6, 17500*time.Microsecond, 2*time.Millisecond),
	}
}

// defaultQueueDelay bounds each direction's queue in time: enough for one
// TCP flow to fill the link at these RTTs, the 50 ms that the feasibility
// study found a tbf needs at least.
const defaultQueueDelay = 50 * time.Millisecond

func dir(rate Rate, delay, jitter time.Duration) Direction {
	return Direction{Rate: rate, Profile: linkem.Profile{Delay: delay, Jitter: jitter, QueueDelay: defaultQueueDelay}}
}

// Validate returns every problem of the profile, each naming its field.
func (lp LinkProfile) Validate() error {
	var errs []error
	if lp.MTU != 0 && (lp.MTU < 1280 || lp.MTU > 65535) {
		errs = append(errs, fmt.Errorf("mtu: %d is outside 1280..65535 (IPv6 needs 1280)", lp.MTU))
	}
	for _, d := range []struct {
		name string
		d    Direction
	}{{"up", lp.Up}, {"down", lp.Down}} {
		if d.d.Rate != 0 && d.d.RateBps != 0 {
			errs = append(errs, fmt.Errorf("%s: give rate or rate_bps, not both", d.name))
		}
		if err := d.d.Linkem().Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", d.name, err))
		}
	}
	return errors.Join(errs...)
}

// ParseProfile decodes a profile file strictly and validates it.
func ParseProfile(r io.Reader) (LinkProfile, error) {
	var lp LinkProfile
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	if err := dec.Decode(&lp); err != nil && !errors.Is(err, io.EOF) {
		return LinkProfile{}, fmt.Errorf("decoding link profile: %w", err)
	}
	if lp.MTU == 0 {
		lp.MTU = DefaultMTU
	}
	if err := lp.Validate(); err != nil {
		return LinkProfile{}, fmt.Errorf("invalid link profile: %w", err)
	}
	return lp, nil
}

// LoadProfile reads a profile file. A name without a slash or extension is
// looked up as dir/<name>.yaml.
func LoadProfile(dir, name string) (LinkProfile, error) {
	path := name
	if !strings.ContainsRune(name, '/') && filepath.Ext(name) == "" {
		path = filepath.Join(dir, name+".yaml")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return LinkProfile{}, fmt.Errorf("reading link profile: %w", err)
	}
	lp, err := ParseProfile(bytes.NewReader(b))
	if err != nil {
		return LinkProfile{}, fmt.Errorf("%s: %w", path, err)
	}
	if lp.Name == "" {
		lp.Name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	}
	return lp, nil
}
