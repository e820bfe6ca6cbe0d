package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"hybridgw/internal/admin"
)

// prepareConfigs writes the bench's config copies (see writeConfigs) and
// makes the directories for the admin sockets and the profiles.
func (b *bench) prepareConfigs() error {
	out, err := filepath.Abs(b.opts.Out)
	if err != nil {
		return err
	}
	cfgDir := filepath.Join(out, "logs", "configs")
	adminDir := filepath.Join(out, "admin")
	// A unix socket's path holds at most 107 bytes: a deep checkout gets
	// a short private directory instead.
	if len(filepath.Join(adminDir, "hcpe.sock")) > 100 {
		if b.adminTmp, err = os.MkdirTemp("", "bench-admin-"); err != nil {
			return err
		}
		adminDir = b.adminTmp
	}
	b.profDir = filepath.Join(out, "profiles")
	for _, d := range []string{cfgDir, b.profDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if b.cfgs, err = writeConfigs(b.opts.Configs, cfgDir, adminDir); err != nil {
		return err
	}
	b.rep.ConfigChanges = b.cfgs.Changes
	return nil
}

// benchNofile is the open-file limit the bench gives itself and, by
// inheritance, the daemons: figure 5's 10,000 idle flows take two
// descriptors each in the bench (client and server side), in hag and in
// each of the peer's processes.
const benchNofile = 1 << 18

// raiseNofile raises RLIMIT_NOFILE to benchNofile, or if that is not
// allowed (no CAP_SYS_RESOURCE to lift the hard limit) at least the soft
// limit to the hard one, and records in b.nofile what the bench and its
// children got. It uses syscall.Setrlimit, which os/exec honours: children
// inherit the new limit, not the one Go saved at start.
func (b *bench) raiseNofile() {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		b.errorf("reading RLIMIT_NOFILE: %v", err)
		return
	}
	b.nofile = l.Cur
	b.rep.Machine.Nofile = fmt.Sprintf("%d (hard %d) at start", l.Cur, l.Max)
	if l.Cur >= benchNofile {
		return
	}
	n := syscall.Rlimit{Cur: benchNofile, Max: max(benchNofile, l.Max)}
	err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &n)
	if err != nil {
		b.rep.Machine.Nofile += fmt.Sprintf("; raising it to %d failed (%v: the hard limit cannot be lifted without CAP_SYS_RESOURCE)", benchNofile, err)
		n = syscall.Rlimit{Cur: l.Max, Max: l.Max}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &n); err != nil {
			b.errorf("setting RLIMIT_NOFILE to its hard limit %d: %v", l.Max, err)
			return
		}
	}
	b.nofile = n.Cur
	b.rep.Machine.Nofile += fmt.Sprintf("; %d for the bench and the daemons it starts", n.Cur)
}

// nofileReserve is what figure 5 leaves, below the open-file limit, for
// each process's descriptors other than its flows'.
const nofileReserve = 200

// fdCount counts a process's open descriptors and how many are pipes.
func fdCount(pid int) (fds, pipes int) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return -1, -1
	}
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && strings.HasPrefix(l, "pipe:") {
			pipes++
		}
	}
	return len(ents), pipes
}

// nofileOf is a process's soft open-file limit, from /proc.
func nofileOf(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Max open files"); ok {
			if f := strings.Fields(v); len(f) > 0 {
				return f[0]
			}
		}
	}
	return "?"
}

// fetchProfile saves what the admin API at sock answers on path (a
// /debug/pprof/ URL) to file.
func (b *bench) fetchProfile(ctx context.Context, sock, path, file string) error {
	if sock == "" {
		return fmt.Errorf("no admin socket to fetch %s from", path)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if err := admin.Fetch(ctx, sock, path, f); err != nil {
		f.Close()
		os.Remove(file)
		return fmt.Errorf("fetching %s: %w", path, err)
	}
	return f.Close()
}

// analyzeProfile reads a fetched profile with go tool pprof and adds it to
// the report.
func (b *bench) analyzeProfile(ctx context.Context, s *system, fp *fetchedProfile) ProfileRow {
	row := readProfile(ctx, fp, s.bin[fp.proc], b.opts.Out)
	b.rep.Profiles = append(b.rep.Profiles, row)
	if row.Err != "" {
		b.errorf("%s %s profile (%s): %s", fp.proc, fp.kind, fp.when, row.Err)
		return row
	}
	var top []string
	for _, c := range row.Categories[:min(4, len(row.Categories))] {
		top = append(top, fmt.Sprintf("%s %.0f%%", c.Name, c.Pct))
	}
	b.logf("profile %s %s (%s): %s; %s", fp.proc, fp.kind, fp.when, strings.Join(row.Header, "; "), strings.Join(top, ", "))
	return row
}

// heapProfiles saves and reads the heap profiles of a Go system's daemons
// while figure 5's idle flows are open (in use as of the last GC; no GC is
// forced, which would change the RSS being measured).
func (b *bench) heapProfiles(ctx context.Context, s *system, flows int) {
	for _, proc := range []string{"hcpe", "hag"} {
		if s.admin[proc] == "" {
			continue
		}
		fp := &fetchedProfile{proc: proc, kind: "heap", when: fmt.Sprintf("figure 5, %d idle flows open", flows),
			path: filepath.Join(b.profDir, fmt.Sprintf("%s-heap-%dflows.pprof", proc, flows))}
		fp.err = b.fetchProfile(ctx, s.admin[proc], "/debug/pprof/heap", fp.path)
		b.analyzeProfile(ctx, s, fp)
	}
}
