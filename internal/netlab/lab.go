package netlab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"hybridgw/internal/linkem"
)

// Options says which lab to build. The zero value builds the lab of
// docs/lab.md with the default profiles under the default prefix (New uses
// a unique prefix instead).
type Options struct {
	// Prefix is prepended to the namespace names lan, cpe, hag and srv.
	// Build defaults to "hg-"; New defaults to UniquePrefix(). At most 11
	// bytes, so that prefix+role still names a usable namespace.
	Prefix string
	// DSL and LTE are the link profiles; nil means DefaultDSL/DefaultLTE.
	DSL, LTE *LinkProfile
	// Logger receives progress; nil discards it.
	Logger *slog.Logger
}

// Lab is a running topology: four namespaces, two veth pairs and two
// emulated links whose forwarders run in this process until Close.
type Lab struct {
	Prefix             string
	Plan               Plan
	LAN, CPE, HAG, SRV *NS
	DSL, LTE           *Link

	log    *slog.Logger
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
	err    error // of Close

	mu     sync.Mutex
	runErr error // of a forwarder that stopped before Close
}

// Upstream and Downstream name a link's directions: cpe → hag and
// hag → cpe (linkem's A→B and B→A).
const (
	Upstream   = linkem.AtoB
	Downstream = linkem.BtoA
)

// Link is one emulated access link of the lab. The embedded linkem.Link
// changes it while traffic flows (SetProfile, SetDown, Stats...).
type Link struct {
	*linkem.Link
	Uplink     // its addresses
	MTU    int // of both TUN devices
}

// Apply sets both directions of the link from a profile. The MTU of a
// running link does not change.
func (l *Link) Apply(lp LinkProfile) {
	l.SetProfile(Upstream, lp.Up.Linkem())
	l.SetProfile(Downstream, lp.Down.Linkem())
}

// SetFlap takes the whole link down for down out of every every, the first
// outage starting now, in both directions at once; every = 0 stops it.
func (l *Link) SetFlap(down, every time.Duration) {
	f := linkem.Flap{Down: down, Every: every, From: time.Now()}
	for _, d := range []linkem.Dir{Upstream, Downstream} {
		p := l.Profile(d)
		p.Flap = f
		l.SetProfile(d, p)
	}
}

// New builds a lab for a test and tears it down at cleanup. It skips (or
// fails under CI=true) without root, and a SIGINT or SIGTERM while the test
// runs tears the lab down before the test binary exits.
func New(tb testing.TB, opts Options) *Lab {
	tb.Helper()
	RequireRoot(tb)
	if opts.Prefix == "" {
		opts.Prefix = UniquePrefix()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lab, err := Build(ctx, opts)
	if err != nil {
		tb.Fatalf("building lab: %v", err)
	}
	stop := closeOnSignal(lab)
	tb.Cleanup(func() {
		stop()
		if err := lab.Close(); err != nil {
			tb.Errorf("tearing down lab %s: %v", lab.Prefix, err)
		}
	})
	return lab
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(b []byte) (int, error) {
	w.tb.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

// closeOnSignal tears lab down and exits if the process is interrupted;
// the test framework would otherwise die without running cleanups. The
// returned func stops watching.
func closeOnSignal(lab *Lab) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-ch:
			_ = lab.Close()
			fmt.Fprintf(os.Stderr, "netlab: %v: removed lab %s\n", s, lab.Prefix)
			// Other labs of this process get the signal too; give their
			// handlers a moment before exiting with the signal's status.
			time.Sleep(2 * time.Second)
			os.Exit(128 + int(s.(syscall.Signal)))
		case <-done:
		}
	}()
	return func() { signal.Stop(ch); close(done) }
}

// Build creates the topology of docs/lab.md and starts the link
// forwarders. On error everything created so far is removed. ctx bounds
// the build only; the lab runs until Close.
func Build(ctx context.Context, opts Options) (lab *Lab, err error) {
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if err := checkPrefix(opts.Prefix); err != nil {
		return nil, err
	}
	dsl, lte := DefaultDSL(), DefaultLTE()
	if opts.DSL != nil {
		dsl = *opts.DSL
	}
	if opts.LTE != nil {
		lte = *opts.LTE
	}
	if err := errors.Join(dsl.Validate(), lte.Validate()); err != nil {
		return nil, fmt.Errorf("building lab %s: %w", opts.Prefix, err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &Lab{Prefix: opts.Prefix, Plan: DefaultPlan(), log: log}
	defer func() {
		if err != nil {
			err = errors.Join(err, l.Close())
		}
	}()
	start := time.Now()
	if err := l.build(ctx, dsl, lte); err != nil {
		return nil, fmt.Errorf("building lab %s: %w", opts.Prefix, err)
	}
	log.Info("lab up", "prefix", l.Prefix, "took", time.Since(start).Round(time.Millisecond).String())
	return l, nil
}

func checkPrefix(p string) error {
	if len(p) > 11 {
		return fmt.Errorf("lab prefix %q: longer than 11 bytes", p)
	}
	for _, r := range p {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("lab prefix %q: only letters, digits, '-', '_' and '.' may name a namespace", p)
		}
	}
	return nil
}

// Close stops the forwarders and removes the namespaces, which removes
// every veth and TUN device in them. Shutdown order: cancel the link
// forwarders and wait for them to return (so nothing writes to a closing
// TUN), close the links (their TUN devices go), then delete the
// namespaces. Close is idempotent and safe on a partly built lab.
func (l *Lab) Close() error {
	l.once.Do(func() {
		var errs []error
		if l.cancel != nil {
			l.cancel()
		}
		l.wg.Wait()
		if err := l.Err(); err != nil {
			errs = append(errs, err)
		}
		for _, k := range []*Link{l.DSL, l.LTE} {
			if k != nil && k.Link != nil {
				if err := k.Close(); err != nil {
					errs = append(errs, fmt.Errorf("closing link %s: %w", k.Name, err))
				}
			}
		}
		for _, ns := range []*NS{l.LAN, l.CPE, l.HAG, l.SRV} {
			if ns != nil {
				if err := ns.Close(); err != nil {
					errs = append(errs, fmt.Errorf("removing namespace: %w", err))
				}
			}
		}
		l.err = errors.Join(errs...)
		l.log.Info("lab down", "prefix", l.Prefix, "err", l.err)
	})
	return l.err
}

// Namespaces lists the lab's namespaces in the order lan, cpe, hag, srv.
func (l *Lab) Namespaces() []*NS { return []*NS{l.LAN, l.CPE, l.HAG, l.SRV} }

// Err reports a link forwarder that stopped on its own before Close; nil
// while both run.
func (l *Lab) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.runErr
}
