// Package labdemo is `make lab` (docs/lab.md): it builds the lab topology
// with the default link profiles, starts hag and hcpe from their config
// files, downloads from the server to the LAN client for a while printing
// each uplink's rate once a second, and ends with a summary — goodput
// against the sum of the link rates, each uplink's share, the addresses the
// server saw for IPv6 and IPv4, and the flow's subflows. Everything it
// started is stopped and the lab removed on every path, and any failed step
// is an error that says why.
package labdemo

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"time"
)

// Config says how to run the demo.
type Config struct {
	// Prefix names the lab's namespaces (netlab.Options.Prefix). A lab
	// with this prefix must not exist yet.
	Prefix string
	// BinDir holds the hcpe and hag binaries; ConfigDir holds hcpe.yaml
	// and hag.yaml.
	BinDir, ConfigDir string
	// Duration is how long the server streams (20 s in `make lab`).
	Duration time.Duration
	// LogDir receives the daemons' logs; empty means a new directory under
	// os.TempDir(). It is kept afterwards.
	LogDir string
	// Out receives the live lines and the summary; nil means os.Stdout.
	Out io.Writer
	// Logger receives the lab's own warnings; nil discards them.
	Logger *slog.Logger
}

// Ports of the demo servers in the srv namespace.
const (
	portWhoami = 8090 // writes the peer address it saw, then closes
	portStream = 8091 // streams bytes for Config.Duration, then half-closes
)

func (c *Config) setDefaults() {
	if c.Out == nil {
		c.Out = os.Stdout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

func (c *Config) validate() error {
	var errs []error
	if c.Prefix == "" {
		errs = append(errs, errors.New("prefix: empty"))
	}
	if c.BinDir == "" {
		errs = append(errs, errors.New("bin: empty"))
	}
	if c.ConfigDir == "" {
		errs = append(errs, errors.New("configs: empty"))
	}
	if c.Duration < 3*time.Second || c.Duration > 10*time.Minute {
		errs = append(errs, errors.New("seconds: want 3 to 600"))
	}
	return errors.Join(errs...)
}
