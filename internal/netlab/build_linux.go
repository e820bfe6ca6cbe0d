package netlab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"time"

	"hybridgw/internal/linkem"
)

// build creates, in order: the namespaces (sysctls first, so that every
// device created later inherits accept_dad=0), the two veth pairs, the two
// emulated links, the addresses, routes and rules, cpe's masquerade, and
// then waits until every device is operational and no address is
// tentative. The forwarders start as soon as the links exist.
func (l *Lab) build(ctx context.Context, dsl, lte LinkProfile) error {
	for _, n := range []struct {
		dst  **NS
		role string
	}{{&l.LAN, nsLAN}, {&l.CPE, nsCPE}, {&l.HAG, nsHAG}, {&l.SRV, nsSRV}} {
		// Only namespaces created here are assigned, so a failure because
		// one already exists (another lab with this prefix) never removes
		// what is not ours.
		ns, err := AddNS(l.Prefix + n.role)
		if err != nil {
			return err
		}
		*n.dst = ns
		if err := setSysctls(ns, n.role == nsCPE || n.role == nsHAG); err != nil {
			return err
		}
	}
	if err := l.CPE.Run("ip", "link", "add", devLAN, "type", "veth", "peer", "name", devLAN, "netns", l.LAN.Name); err != nil {
		return fmt.Errorf("creating the lan veth pair: %w", err)
	}
	if err := l.HAG.Run("ip", "link", "add", devWAN, "type", "veth", "peer", "name", devWAN, "netns", l.SRV.Name); err != nil {
		return fmt.Errorf("creating the wan veth pair: %w", err)
	}
	// Up at once: the kernel's linkwatch makes a device operational up to
	// a second after link-up, and that wait overlaps the rest of the build.
	for _, u := range []struct {
		ns  *NS
		dev string
	}{{l.LAN, devLAN}, {l.CPE, devLAN}, {l.HAG, devWAN}, {l.SRV, devWAN}} {
		if err := u.ns.Run("ip", "link", "set", u.dev, "up"); err != nil {
			return fmt.Errorf("bringing up %s in %s: %w", u.dev, u.ns.Name, err)
		}
	}

	runCtx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	var err error
	if l.DSL, err = l.openLink(runCtx, l.Plan.DSL, dsl); err != nil {
		return err
	}
	if l.LTE, err = l.openLink(runCtx, l.Plan.LTE, lte); err != nil {
		return err
	}

	p := l.Plan
	for _, c := range []struct {
		ns    *NS
		batch []string
	}{
		{l.LAN, []string{
			addr(p.Client4, p.LANPrefix4.Bits(), devLAN), addr(p.Client6, p.LANPrefix6.Bits(), devLAN),
			"link set " + devLAN + " up",
			"route add 0.0.0.0/0 via " + CPELAN4, "route add ::/0 via " + CPELAN6,
		}},
		{l.CPE, []string{
			addr(p.CPELAN4, p.LANPrefix4.Bits(), devLAN), addr(p.CPELAN6, p.LANPrefix6.Bits(), devLAN),
			addr(p.DSL.CPE4, p.DSL.Prefix4.Bits(), devDSL), addr(p.DSL.CPE6, p.DSL.Prefix6.Bits(), devDSL),
			addr(p.LTE.CPE4, p.LTE.Prefix4.Bits(), devLTE), addr(p.LTE.CPE6, p.LTE.Prefix6.Bits(), devLTE),
			"link set " + devLAN + " up", "link set " + devDSL + " up", "link set " + devLTE + " up",
			// Natively routed traffic leaves over dsl; hcpe adds its own
			// policy routing for what it converts.
			"route add 0.0.0.0/0 via " + HAGDSL4 + " dev " + devDSL,
			"route add ::/0 via " + HAGDSL6 + " dev " + devDSL,
			// Traffic sourced from an uplink's address leaves over that
			// uplink, as a multihomed host (and MPTCP's subflows) need.
			srcRule(p.DSL.CPE4, p.DSL.Table), srcRoute("0.0.0.0/0", p.DSL, true),
			srcRule(p.DSL.CPE6, p.DSL.Table), srcRoute("::/0", p.DSL, false),
			srcRule(p.LTE.CPE4, p.LTE.Table), srcRoute("0.0.0.0/0", p.LTE, true),
			srcRule(p.LTE.CPE6, p.LTE.Table), srcRoute("::/0", p.LTE, false),
		}},
		{l.HAG, []string{
			addr(p.DSL.HAG4, p.DSL.Prefix4.Bits(), devDSL), addr(p.DSL.HAG6, p.DSL.Prefix6.Bits(), devDSL),
			addr(p.LTE.HAG4, p.LTE.Prefix4.Bits(), devLTE), addr(p.LTE.HAG6, p.LTE.Prefix6.Bits(), devLTE),
			addr(p.HAGWAN4, p.WANPrefix4.Bits(), devWAN), addr(p.HAGWAN6, p.WANPrefix6.Bits(), devWAN),
			addr(p.Service4, 32, "lo"), addr(p.Service6, 128, "lo"),
			"link set " + devDSL + " up", "link set " + devLTE + " up", "link set " + devWAN + " up",
			// The delegated prefix goes back to the CPE over dsl, lte
			// being the fallback.
			"route add " + Delegated6 + " via " + CPEDSL6 + " dev " + devDSL + " metric 100",
			"route add " + Delegated6 + " via " + CPELTE6 + " dev " + devLTE + " metric 200",
		}},
		{l.SRV, []string{
			addr(p.Server4, p.WANPrefix4.Bits(), devWAN), addr(p.Server6, p.WANPrefix6.Bits(), devWAN),
			"link set " + devWAN + " up",
			// The default route makes the delegated prefix route back to hag.
			"route add 0.0.0.0/0 via " + HAGWAN4, "route add ::/0 via " + HAGWAN6,
		}},
	} {
		if err := ipBatch(c.ns, c.batch); err != nil {
			return err
		}
	}
	// IPv4 from the LAN leaves the CPE masqueraded; the CPE's own uplink
	// addresses are left alone.
	masq := fmt.Sprintf(`table ip netlab {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname { "%s", "%s" } fib saddr type != local masquerade
	}
}
`, devDSL, devLTE)
	if err := stdinRun(l.CPE, masq, "nft", "-f", "-"); err != nil {
		return fmt.Errorf("installing cpe's masquerade: %w", err)
	}
	return l.waitReady(ctx)
}

func addr(a netip.Addr, bits int, dev string) string {
	if a.Is6() {
		return fmt.Sprintf("addr add %s/%d dev %s nodad", a, bits, dev)
	}
	return fmt.Sprintf("addr add %s/%d dev %s", a, bits, dev)
}

// srcRule returns a rule; ip rule assumes IPv4 unless told, so IPv6 rules
// carry a "-6 " mark that ipBatch turns into a run of ip -6.
func srcRule(a netip.Addr, table int) string {
	r := fmt.Sprintf("rule add from %s lookup %d pref %d", a, table, rulePrioSrc)
	if a.Is6() {
		return "-6 " + r
	}
	return r
}

func srcRoute(dst string, u Uplink, v4 bool) string {
	via := u.HAG6
	if v4 {
		via = u.HAG4
	}
	return fmt.Sprintf("route add %s via %s dev %s table %d", dst, via, u.Name, u.Table)
}

func (l *Lab) openLink(ctx context.Context, u Uplink, lp LinkProfile) (*Link, error) {
	mtu := lp.MTU
	if mtu == 0 {
		mtu = DefaultMTU
	}
	em, err := linkem.Open(linkem.Config{
		Name: l.Prefix + u.Name,
		A:    linkem.End{NSPath: l.CPE.Path(), Dev: u.Name},
		B:    linkem.End{NSPath: l.HAG.Path(), Dev: u.Name},
		MTU:  mtu,
		AtoB: lp.Up.Linkem(),
		BtoA: lp.Down.Linkem(),
	})
	if err != nil {
		return nil, fmt.Errorf("opening emulated link %s: %w", u.Name, err)
	}
	k := &Link{Link: em, Uplink: u, MTU: mtu}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		if err := em.Run(ctx); err != nil && ctx.Err() == nil {
			l.log.Error("link forwarder stopped", "uplink", u.Name, "err", err)
			l.mu.Lock()
			if l.runErr == nil {
				l.runErr = fmt.Errorf("link %s forwarder: %w", u.Name, err)
			}
			l.mu.Unlock()
		}
	}()
	return k, nil
}

// setSysctls sets the namespace's sysctls from a thread inside it: a
// thread's /proc/sys/net is that of its own namespace.
func setSysctls(ns *NS, router bool) error {
	kv := [][2]string{
		{"net/ipv6/conf/all/accept_dad", "0"},
		{"net/ipv6/conf/default/accept_dad", "0"},
		{"net/ipv6/conf/lo/accept_dad", "0"},
		{"net/mptcp/enabled", "1"},
	}
	if router {
		kv = append(kv, [2]string{"net/ipv4/ip_forward", "1"}, [2]string{"net/ipv6/conf/all/forwarding", "1"})
	}
	return ns.Do(func() error {
		for _, s := range kv {
			if err := os.WriteFile("/proc/sys/"+s[0], []byte(s[1]), 0o644); err != nil {
				return fmt.Errorf("setting %s in %s: %w", s[0], ns.Name, err)
			}
		}
		return nil
	})
}

// ipBatch runs iproute2 commands in a namespace: those marked "-6 " with
// one ip -6 process, then the others with one ip process.
func ipBatch(ns *NS, lines []string) error {
	var any, v6 []string
	for _, l := range lines {
		if r, ok := strings.CutPrefix(l, "-6 "); ok {
			v6 = append(v6, r)
		} else {
			any = append(any, l)
		}
	}
	for _, b := range []struct {
		opts  []string
		lines []string
	}{{nil, any}, {[]string{"-6"}, v6}} {
		if len(b.lines) == 0 {
			continue
		}
		args := append(b.opts, "-n", ns.Name, "-batch", "-")
		if err := stdinRun(nil, strings.Join(b.lines, "\n")+"\n", "ip", args...); err != nil {
			return fmt.Errorf("configuring %s: %w", ns.Name, err)
		}
	}
	return nil
}

// stdinRun runs a command, in ns if not nil, with stdin as its input.
func stdinRun(ns *NS, stdin, name string, args ...string) error {
	var cmd *exec.Cmd
	if ns != nil {
		cmd = ns.Command(context.Background(), name, args...)
	} else {
		cmd = exec.Command(name, args...)
	}
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// waitReady waits until every device of the lab is operational and no
// address is tentative. Link-up reaches the qdisc through the kernel's
// linkwatch, which may take up to a second; until then a device still has
// the noop qdisc and drops what is sent (a lost neighbour solicitation
// then costs a one-second retransmission). With nodad and accept_dad=0
// addresses are usable a few milliseconds after link-up.
func (l *Lab) waitReady(ctx context.Context) error {
	for _, ns := range l.Namespaces() {
		for {
			why, err := notReady(ns)
			if err != nil {
				return fmt.Errorf("waiting for %s: %w", ns.Name, err)
			}
			if why == "" {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("waiting for %s: %s: %w", ns.Name, why, ctx.Err())
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	return nil
}

// notReady says what in ns is not ready yet, or "".
func notReady(ns *NS) (string, error) {
	links, err := ns.Output("ip", "-o", "link", "show")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(strings.TrimSpace(links), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || strings.HasPrefix(f[1], "lo:") {
			continue
		}
		if strings.Contains(line, " qdisc noop ") || !(strings.Contains(line, " state UP ") || strings.Contains(line, " state UNKNOWN ")) {
			return "device not operational: " + line, nil
		}
	}
	tent, err := ns.Output("ip", "-o", "addr", "show", "tentative")
	if err != nil {
		return "", err
	}
	if t := strings.TrimSpace(tent); t != "" {
		return "tentative address: " + t, nil
	}
	return "", nil
}
