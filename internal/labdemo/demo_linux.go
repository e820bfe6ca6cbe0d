package labdemo

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"hybridgw/internal/config"
	"hybridgw/internal/labproc"
	"hybridgw/internal/netlab"
)

// Run runs the demo; see the package comment. It returns an error saying
// which step failed; the lab and the daemons are gone when it returns.
//
// Teardown order (deferred, so it runs on every path): stop hcpe (it
// removes its rules and routes), stop hag, stop the servers, close the lab
// (link forwarders, then namespaces).
func Run(ctx context.Context, cfg Config) (err error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return err
	}
	out := cfg.Out
	began := time.Now()
	say := func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }

	// Preflight: everything that can be checked before creating anything.
	if os.Geteuid() != 0 {
		return errors.New("the lab needs root (network namespaces, TUN devices): run as root")
	}
	bins, cfgs := map[string]string{}, map[string]string{}
	for _, name := range []string{"hag", "hcpe"} {
		b, err := filepath.Abs(filepath.Join(cfg.BinDir, name))
		if err != nil {
			return err
		}
		if fi, err := os.Stat(b); err != nil || fi.Mode()&0o111 == 0 {
			return fmt.Errorf("no executable %s (run 'make build'): %v", b, err)
		}
		c, err := filepath.Abs(filepath.Join(cfg.ConfigDir, name+".yaml"))
		if err != nil {
			return err
		}
		if _, err := os.Stat(c); err != nil {
			return fmt.Errorf("config: %w", err)
		}
		bins[name], cfgs[name] = b, c
	}
	// The settings the demo relies on come from the configs themselves,
	// which are also checked before anything is built.
	hc, err := config.LoadHCPE(cfgs["hcpe"])
	if err != nil {
		return err
	}
	hg, err := config.LoadHAG(cfgs["hag"])
	if err != nil {
		return err
	}
	if hc.Metrics.Listen == "" {
		return fmt.Errorf("%s: metrics.listen is empty: the demo reads hcpe's per-uplink counters there", cfgs["hcpe"])
	}
	hagPort, hagListeners := hg.Listen.Port, len(hg.Listen.Addresses)

	var existing []string
	for _, role := range []string{"lan", "cpe", "hag", "srv"} {
		if _, err := os.Stat("/run/netns/" + cfg.Prefix + role); err == nil {
			existing = append(existing, cfg.Prefix+role)
		}
	}
	if len(existing) > 0 {
		return fmt.Errorf("a lab with prefix %q already exists (%s): stop it with 'make lab-down' (hglab down --prefix %s), or give another --prefix",
			cfg.Prefix, strings.Join(existing, " "), cfg.Prefix)
	}
	logDir := cfg.LogDir
	if logDir == "" {
		if logDir, err = os.MkdirTemp("", "hglab-demo-"); err != nil {
			return err
		}
	} else if err := os.MkdirAll(logDir, 0o755); err != nil {
		return err
	}
	logs := map[string]string{"hag": filepath.Join(logDir, "hag.log"), "hcpe": filepath.Join(logDir, "hcpe.log")}
	started := map[string]bool{}
	defer func() {
		if err == nil || errors.Is(context.Cause(ctx), context.Canceled) {
			return // no tails after success or Ctrl-C
		}
		for _, name := range []string{"hcpe", "hag"} {
			if started[name] {
				fmt.Fprintf(out, "\n--- last lines of %s ---\n%s\n", logs[name], labproc.TailFile(logs[name], 25))
			}
		}
	}()

	// A daemon dying cancels the run with the reason.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	failed := func() error {
		c := context.Cause(ctx)
		if errors.Is(c, context.Canceled) {
			return fmt.Errorf("interrupted (%v)", c)
		}
		return c // a daemon died, or nil
	}

	dsl, lte := netlab.DefaultDSL(), netlab.DefaultLTE()
	say("== lab %s: building the topology (dsl %s/%s, lte %s/%s down/up)", cfg.Prefix, dsl.Down.Rate, dsl.Up.Rate, lte.Down.Rate, lte.Up.Rate)
	buildCtx, buildCancel := context.WithTimeout(ctx, 60*time.Second)
	lab, err := netlab.Build(buildCtx, netlab.Options{Prefix: cfg.Prefix, DSL: &dsl, LTE: &lte, Logger: cfg.Logger})
	buildCancel()
	if err != nil {
		if f := failed(); f != nil {
			return fmt.Errorf("building the lab: %w", f)
		}
		return err
	}
	defer func() {
		if cerr := lab.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("tearing down lab %s: %w", cfg.Prefix, cerr))
		} else {
			say("== lab %s removed; daemon logs kept in %s (%.1f s in all)", cfg.Prefix, logDir, time.Since(began).Seconds())
		}
	}()

	srv, err := startServers(lab.SRV, cfg.Duration)
	if err != nil {
		return err
	}
	defer srv.close()

	var daemons []*daemon // in start order; stopped in reverse
	defer func() {
		for i := len(daemons) - 1; i >= 0; i-- {
			if serr := daemons[i].stop(); serr != nil {
				err = errors.Join(err, serr)
			}
		}
		if len(daemons) > 0 {
			say("== stopped %s", names(daemons))
		}
	}()
	start := func(name string, ns *netlab.NS) error {
		d, err := startDaemon(ns, name, bins[name], cfgs[name], logs[name], func(e error) { cancel(e) })
		if err != nil {
			return err
		}
		started[name] = true
		daemons = append(daemons, d)
		return nil
	}

	say("== starting hag in %s (%s), logs in %s", lab.HAG.Name, cfgs["hag"], logDir)
	if err := start("hag", lab.HAG); err != nil {
		return err
	}
	if err := waitFor(ctx, failed, fmt.Sprintf("hag listening on :%d (%d addresses)", hagPort, hagListeners), 15*time.Second, func() bool {
		o, _ := lab.HAG.Output("ss", "-Hltn", "sport", fmt.Sprintf("= :%d", hagPort))
		return strings.Count(o, "LISTEN") >= hagListeners
	}); err != nil {
		return err
	}
	say("== starting hcpe in %s (%s)", lab.CPE.Name, cfgs["hcpe"])
	if err := start("hcpe", lab.CPE); err != nil {
		return err
	}
	if err := waitFor(ctx, failed, "hcpe steering LAN TCP (ip rule iif lan)", 15*time.Second, func() bool {
		o, _ := lab.CPE.Output("ip", "rule")
		return strings.Contains(o, "iif lan")
	}); err != nil {
		return err
	}
	metrics := newScraper(lab.CPE, hc.Metrics.Listen)
	if err := waitFor(ctx, failed, fmt.Sprintf("hcpe's health probes to find its %d uplinks up (hcpe_uplink_up)", len(hc.Uplinks)), 15*time.Second, func() bool {
		m, err := metrics.get(ctx)
		up, _ := labproc.Sum(m, "hcpe_uplink_up")
		return err == nil && up >= float64(len(hc.Uplinks))
	}); err != nil {
		return err
	}

	p := lab.Plan
	var problems []error
	v4, err := whoami(ctx, lab.LAN, p.Server4)
	if err != nil {
		if f := failed(); f != nil {
			return f
		}
		return fmt.Errorf("IPv4 connection from the client to %s:%d: %w", p.Server4, portWhoami, err)
	}
	seen4, _ := srv.peer(portWhoami)
	if seen4 != v4 {
		problems = append(problems, fmt.Errorf("the server recorded %s but answered %s over IPv4", seen4, v4))
	}
	say("== IPv4: a short connection; the server at %s saw the client as %s", p.Server4, v4)

	res, err := runDownload(ctx, failed, cfg, lab, srv, metrics, uint16(hagPort))
	if err != nil {
		return err
	}
	res.v4 = v4
	problems = append(problems, res.check(p)...)
	printSummary(out, cfg, res)
	if len(problems) > 0 {
		return fmt.Errorf("the demo ran, but: %w", errors.Join(problems...))
	}
	return nil
}

func names(ds []*daemon) string {
	var n []string
	for i := len(ds) - 1; i >= 0; i-- {
		n = append(n, ds[i].name)
	}
	return strings.Join(n, ", ")
}

// waitFor polls ok until it holds, the timeout passes or the run fails.
func waitFor(ctx context.Context, failed func() error, what string, timeout time.Duration, ok func() bool) error {
	var ferr error
	err := labproc.WaitFor(ctx, what, timeout, func() bool {
		if ferr = failed(); ferr != nil {
			return true
		}
		return ok()
	})
	if ferr != nil {
		return fmt.Errorf("waiting for %s: %w", what, ferr)
	}
	return err
}

func sample(ctx context.Context, lab *netlab.Lab, d *download, m *scraper) counters {
	c := counters{at: time.Now(), client: d.bytes.Load()}
	c.link[0] = lab.DSL.Stats(netlab.Downstream).Bytes
	c.link[1] = lab.LTE.Stats(netlab.Downstream).Bytes
	if exp, err := m.get(ctx); err == nil {
		// A counter that never moved has no sample yet: it is 0.
		for i, n := range uplinkNames {
			v, _ := labproc.Sum(exp, "hcpe_uplink_bytes_total", `uplink="`+n+`"`, `direction="down"`)
			c.kernel[i] = uint64(v)
			c.subflows[i], _ = labproc.Sum(exp, "hcpe_uplink_subflows", `uplink="`+n+`"`)
		}
		c.kernelOK = true
	}
	return c
}

func runDownload(ctx context.Context, failed func() error, cfg Config, lab *netlab.Lab, srv *servers, m *scraper, hagPort uint16) (*result, error) {
	p := lab.Plan
	res := &result{rates: [2]int64{lab.DSL.Profile(netlab.Downstream).RateBps, lab.LTE.Profile(netlab.Downstream).RateBps}}
	uplinkOf := map[netip.Addr]string{p.DSL.CPE4: "dsl", p.DSL.CPE6: "dsl", p.LTE.CPE4: "lte", p.LTE.CPE6: "lte"}

	d := &download{}
	res.before = sample(ctx, lab, d, m)
	secs := int(cfg.Duration.Round(time.Second) / time.Second)
	dst := netip.AddrPortFrom(p.Server6, portStream)
	fmt.Fprintf(cfg.Out, "== downloading from [%s]:%d to the client %s for %d s over IPv6\n", p.Server6, portStream, p.Client6, secs)
	fmt.Fprintf(cfg.Out, "   per-uplink rates: kernel subflow counters (hcpe_uplink_bytes_total, payload); bar = share of the link's rate\n")
	conn, err := dialIn(ctx, lab.LAN, "tcp", dst.String())
	if err != nil {
		if f := failed(); f != nil {
			return nil, f
		}
		return nil, fmt.Errorf("IPv6 connection from the client to %s: %w", dst, err)
	}
	dlCtx, dlCancel := context.WithTimeout(ctx, cfg.Duration+20*time.Second)
	defer dlCancel()
	done := make(chan error, 1)
	go func() { done <- d.run(dlCtx, conn) }()

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	prev := res.before
	var dlErr error
loop:
	for t := 1; ; t++ {
		select {
		case dlErr = <-done:
			break loop
		case <-tick.C:
		}
		cur := sample(ctx, lab, d, m)
		dt := cur.at.Sub(prev.at).Seconds()
		ups := make([]uplinkRate, 2)
		for i, n := range uplinkNames {
			ups[i] = uplinkRate{Name: n, RateBps: res.rates[i]}
			if cur.kernelOK && prev.kernelOK {
				ups[i].Mbit = mbit(cur.kernel[i]-min(prev.kernel[i], cur.kernel[i]), dt)
			}
			res.peakSubflows[i] = max(res.peakSubflows[i], cur.subflows[i])
		}
		if !cur.kernelOK || !prev.kernelOK {
			res.scrapeFails++
		}
		fmt.Fprintln(cfg.Out, liveLine(t, ups, mbit(cur.client-prev.client, dt)))
		prev = cur
		// The subflows, seen from the cpe near the end of the transfer,
		// while they are all still there.
		if t == secs-2 || (res.subflows == nil && t > secs-2) {
			if o, err := lab.CPE.Output("ss", "-tniH", "state", "established"); err == nil {
				res.subflows = parseSubflows(o, hagPort, uplinkOf)
				res.subflowsAt = t
				res.gauge = cur.subflows
			}
		}
	}
	if dlErr != nil {
		if f := failed(); f != nil {
			return nil, f
		}
		return nil, fmt.Errorf("downloading over IPv6: %w", dlErr)
	}
	res.bytes = d.bytes.Load()
	if !d.first.IsZero() {
		res.elapsed = d.last.Sub(d.first)
	}
	var ok bool
	if res.v6, ok = srv.peer(portStream); !ok {
		return nil, errors.New("the stream server saw no connection")
	}
	// hcpe accounts a flow's last bytes as it closes the flow, and polls
	// every second: wait until its counters settle.
	res.after = sample(ctx, lab, d, m)
	for range 6 {
		time.Sleep(300 * time.Millisecond)
		next := sample(ctx, lab, d, m)
		if next.kernelOK && next.kernel == res.after.kernel {
			break
		}
		res.after = next
	}
	return res, nil
}
