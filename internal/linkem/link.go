package linkem

import (
	"errors"
	"fmt"
)

// DefaultMaxInFlight bounds the packets one direction holds (queued plus
// propagating) when Config.MaxInFlight is 0. 8192 full-size packets cover
// 1 Gbit/s × 100 ms of delay and queue.
const DefaultMaxInFlight = 8192

// End is one side of a Link: a TUN device in a network namespace.
type End struct {
	NSPath string // e.g. /run/netns/NAME; "" = the caller's namespace
	Dev    string // TUN device name, at most 15 bytes
}

// Config describes a Link.
type Config struct {
	Name       string  // for errors and logs
	A, B       End     //
	MTU        int     // of both devices; 0 = 1500
	AtoB, BtoA Profile // initial profiles
	// MaxInFlight bounds the packets held per direction; packets beyond it
	// are dropped and counted in Stats.DroppedOverflow. 0 = DefaultMaxInFlight.
	MaxInFlight int
}

func (c *Config) setDefaults() {
	if c.MTU == 0 {
		c.MTU = 1500
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
}

// validate returns every problem with a defaulted config.
func (c *Config) validate() error {
	var errs []error
	for _, e := range []struct {
		field string
		end   End
	}{{"a", c.A}, {"b", c.B}} {
		if e.end.Dev == "" || len(e.end.Dev) > 15 {
			errs = append(errs, fmt.Errorf("%s.dev: %q must be 1 to 15 bytes", e.field, e.end.Dev))
		}
	}
	if c.A == c.B {
		errs = append(errs, fmt.Errorf("a and b: both are %q in %q", c.A.Dev, c.A.NSPath))
	}
	if c.MTU < 576 || c.MTU > 65535 {
		errs = append(errs, fmt.Errorf("mtu: %d outside [576, 65535]", c.MTU))
	}
	if c.MaxInFlight < 1 {
		errs = append(errs, fmt.Errorf("max_in_flight: %d must be positive", c.MaxInFlight))
	}
	if err := c.AtoB.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("a_to_b: %w", err))
	}
	if err := c.BtoA.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("b_to_a: %w", err))
	}
	return errors.Join(errs...)
}

// Link is an emulated link between two TUN devices. Open creates it, Run
// forwards, Close removes the devices. Profiles and counters may be used
// from any goroutine at any time.
type Link struct {
	cfg  Config
	dirs [2]*direction // indexed by Dir
	sys  sysLink       // the OS-specific part
}

func newLink(cfg Config) *Link {
	return &Link{
		cfg: cfg,
		dirs: [2]*direction{
			AtoB: newDirection(cfg.AtoB, cfg.MaxInFlight, cfg.MTU),
			BtoA: newDirection(cfg.BtoA, cfg.MaxInFlight, cfg.MTU),
		},
	}
}

// SetProfile replaces direction d's profile; it takes effect from the next
// packet and is safe while Run is forwarding. Packets already in flight keep
// their timing. Invalid values are clamped (see Profile.Validate).
func (l *Link) SetProfile(d Dir, p Profile) { l.dirs[d].setProfile(p) }

// Profile returns direction d's current profile.
func (l *Link) Profile(d Dir) Profile { return l.dirs[d].profile() }

// SetDown sets both directions down (every new packet is dropped) or up,
// leaving the rest of their profiles alone.
func (l *Link) SetDown(down bool) {
	l.dirs[AtoB].setDown(down)
	l.dirs[BtoA].setDown(down)
}

// Stats returns direction d's counters.
func (l *Link) Stats(d Dir) Stats { return l.dirs[d].stats() }
