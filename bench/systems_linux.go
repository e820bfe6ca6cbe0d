package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"hybridgw/internal/labproc"
	"hybridgw/internal/netlab"
)

// system is one running system: its processes and how to stop it.
type system struct {
	name  string
	procs []*labproc.Proc
	// port is the MPTCP port towards the far end (0: none), for ss checks.
	port int
	stop func() error
	// admin and bin are, for hybridgw's daemons, the admin socket (where
	// the profiles come from) and the binary (which reads them).
	admin, bin map[string]string
}

func (s *system) pids() map[string]int {
	m := map[string]int{}
	for _, p := range s.procs {
		if p.Running() {
			m[p.Name()] = p.Pid()
		}
	}
	return m
}

// alive reports a process of the system that has exited.
func (s *system) alive() error {
	for _, p := range s.procs {
		if !p.Running() {
			return fmt.Errorf("%s exited (%v); log tail:\n%s", p.Name(), p.Err(), p.LogTail(15))
		}
	}
	return nil
}

func startDirect() *system {
	return &system{name: sysDirect, stop: func() error { return nil }}
}

// startHybrid starts hag and then hcpe with the bench's config copies, as
// the e2e harness does: hag first, and hcpe counts as up once it steers
// LAN TCP (after its uplink endpoints exist).
func (b *bench) startHybrid(ctx context.Context, name, hcpeConfig, hagConfig string) (*system, error) {
	s, err := b.startHAG(ctx, name, hagConfig)
	if err != nil {
		return s, err
	}
	hcpe, err := labproc.Start(b.lab.CPE, "hcpe", filepath.Join(b.logDir, name, "hcpe.log"),
		filepath.Join(b.opts.Bin, "hcpe"), "run", "-c", hcpeConfig)
	if err != nil {
		return s, errors.Join(err, s.stop())
	}
	s.procs = append(s.procs, hcpe)
	s.admin["hcpe"], s.bin["hcpe"] = b.cfgs.AdminHCPE, filepath.Join(b.opts.Bin, "hcpe")
	if err := waitFor(ctx, "hcpe steering LAN TCP (ip rule iif lan)", 10*time.Second, func() bool {
		out, _ := b.lab.CPE.Output("ip", "rule")
		return strings.Contains(out, "iif lan") || !hcpe.Running()
	}); err != nil || !hcpe.Running() {
		return s, errors.Join(err, s.alive(), s.stop())
	}
	return s, nil
}

// startHAG starts hag alone with config and waits for its listeners. Its
// stop stops every process appended to it later too, last first.
func (b *bench) startHAG(ctx context.Context, name, config string) (*system, error) {
	s := &system{name: name, port: 5124, admin: map[string]string{}, bin: map[string]string{}}
	s.stop = func() error {
		var errs []error
		for i := len(s.procs) - 1; i >= 0; i-- { // hcpe before hag
			errs = append(errs, s.procs[i].Stop(10*time.Second))
		}
		return errors.Join(errs...)
	}
	hag, err := labproc.Start(b.lab.HAG, "hag", filepath.Join(b.logDir, name, "hag.log"),
		filepath.Join(b.opts.Bin, "hag"), "run", "-c", config)
	if err != nil {
		return nil, err
	}
	s.procs = append(s.procs, hag)
	s.admin["hag"], s.bin["hag"] = b.cfgs.AdminHAG, filepath.Join(b.opts.Bin, "hag")
	if err := waitFor(ctx, "hag listening on :5124", 10*time.Second, func() bool {
		out, _ := b.lab.HAG.Output("ss", "-Hltn", "sport", "= :5124")
		return strings.Count(out, "LISTEN") >= 2 || !hag.Running()
	}); err != nil || !hag.Running() {
		return s, errors.Join(err, s.alive(), s.stop())
	}
	return s, nil
}

// peerEndpoints are the path-manager endpoints hcpe installs for the lab's
// uplinks (every uplink address, flag subflow), and the limits it sets.
var peerEndpoints = [][2]string{
	{netlab.CPEDSL4, "dsl"}, {netlab.CPEDSL6, "dsl"},
	{netlab.CPELTE4, "lte"}, {netlab.CPELTE6, "lte"},
}

// startPeer sets up the OpenMPTCProuter approach in the same lab: the same
// path-manager endpoints and limits as hcpe, ss-server in hag's namespace
// on hag's service address, ss-redir in cpe's namespace, and an nftables
// REDIRECT of TCP arriving on lan to ss-redir. Both with --mptcp (upstream
// MPTCP, Debian's 3.3.5).
func (b *bench) startPeer(ctx context.Context) (*system, error) {
	if _, err := exec.LookPath("ss-redir"); err != nil {
		return nil, errors.New("ss-redir is not installed (apt-get install shadowsocks-libev failed earlier)")
	}
	s := &system{name: sysPeer, port: peerServerPort}
	var key [12]byte
	_, _ = rand.Read(key[:])
	pw := hex.EncodeToString(key[:])
	cpe, hag := b.lab.CPE, b.lab.HAG
	s.stop = func() error {
		var errs []error
		_ = cpe.Run("nft", "delete", "table", "inet", peerNFTable)
		for i := len(s.procs) - 1; i >= 0; i-- {
			errs = append(errs, s.procs[i].Stop(5*time.Second))
		}
		// Back to a new namespace's defaults, which hybridgw's run found.
		errs = append(errs, cpe.Run("ip", "mptcp", "endpoint", "flush"),
			cpe.Run("ip", "mptcp", "limits", "set", "subflow", "2", "add_addr_accepted", "0"),
			hag.Run("ip", "mptcp", "limits", "set", "subflow", "2", "add_addr_accepted", "0"))
		return errors.Join(errs...)
	}
	setup := [][]string{
		{"ip", "mptcp", "endpoint", "flush"},
		{"ip", "mptcp", "limits", "set", "subflow", "4", "add_addr_accepted", "0"},
	}
	for _, e := range peerEndpoints {
		setup = append(setup, []string{"ip", "mptcp", "endpoint", "add", e[0], "dev", e[1], "subflow"})
	}
	for _, c := range setup {
		if err := cpe.Run(c[0], c[1:]...); err != nil {
			return s, errors.Join(err, s.stop())
		}
	}
	if err := hag.Run("ip", "mptcp", "limits", "set", "subflow", "4", "add_addr_accepted", "0"); err != nil {
		return s, errors.Join(err, s.stop())
	}
	// -n is the open-file limit ss sets for itself: figure 5's 10,000 idle
	// flows take two descriptors each in both ss-redir and ss-server.
	b.rep.PeerNofile = b.peerNofile()
	common := []string{"-k", pw, "-m", peerCipher, "--mptcp", "--no-delay", "-n", fmt.Sprint(b.peerNofile()), "-t", "600"}
	srv, err := labproc.Start(hag, "ss-server", filepath.Join(b.logDir, sysPeer, "ss-server.log"), append([]string{"ss-server",
		"-s", netlab.Service4, "-p", fmt.Sprint(peerServerPort)}, common...)...)
	if err != nil {
		return s, errors.Join(err, s.stop())
	}
	s.procs = append(s.procs, srv)
	redir, err := labproc.Start(cpe, "ss-redir", filepath.Join(b.logDir, sysPeer, "ss-redir.log"), append([]string{"ss-redir",
		"-s", netlab.Service4, "-p", fmt.Sprint(peerServerPort), "-b", "0.0.0.0", "-l", fmt.Sprint(peerRedirPort)}, common...)...)
	if err != nil {
		return s, errors.Join(err, s.stop())
	}
	s.procs = append(s.procs, redir)
	for _, w := range []struct {
		ns   *netlab.NS
		port int
	}{{hag, peerServerPort}, {cpe, peerRedirPort}} {
		if err := waitFor(ctx, fmt.Sprintf("listener on :%d in %s", w.port, w.ns.Name), 10*time.Second, func() bool {
			out, _ := w.ns.Output("ss", "-Hltn", "sport", fmt.Sprintf("= :%d", w.port))
			return strings.Contains(out, "LISTEN") || s.alive() != nil
		}); err != nil || s.alive() != nil {
			return s, errors.Join(err, s.alive(), s.stop())
		}
	}
	rules := fmt.Sprintf(`table inet %s {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "lan" meta l4proto tcp redirect to :%d
	}
}
`, peerNFTable, peerRedirPort)
	cmd := exec.Command("ip", "netns", "exec", cpe.Name, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return s, errors.Join(fmt.Errorf("installing the redirect: %w: %s", err, out), s.stop())
	}
	return s, nil
}

// peerNofile is the -n given to ss: peerNofile, or the open-file limit if
// that is lower (ss cannot raise it either, and logs an error if asked to).
func (b *bench) peerNofile() int {
	if b.nofile > 0 && b.nofile < peerNofile {
		return int(b.nofile)
	}
	return peerNofile
}

// ensurePeerInstalled installs Debian's shadowsocks-libev if ss-redir is
// missing.
func ensurePeerInstalled(log func(string, ...any)) error {
	if _, err := exec.LookPath("ss-redir"); err == nil {
		return nil
	}
	log("ss-redir missing: apt-get install -y shadowsocks-libev")
	cmd := exec.Command("apt-get", "install", "-y", "--no-install-recommends", "shadowsocks-libev")
	cmd.Env = append(cmd.Environ(), "DEBIAN_FRONTEND=noninteractive")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("apt-get install shadowsocks-libev: %w: %s", err, labproc.Tail(string(out), 5))
	}
	_, err = exec.LookPath("ss-redir")
	return err
}
