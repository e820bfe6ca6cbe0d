package netlab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"hybridgw/internal/linkem"
)

// DefaultRunDir holds a running lab's pid file and control socket.
const DefaultRunDir = "/run/hybridgw-lab"

// SocketPath is the control socket of the lab with the given prefix.
func SocketPath(runDir, prefix string) string { return filepath.Join(runDir, prefix+".sock") }

// PIDPath is the pid file of the process running the lab with the prefix.
func PIDPath(runDir, prefix string) string { return filepath.Join(runDir, prefix+".pid") }

// Request is one control request: a JSON object on its own connection.
type Request struct {
	Cmd  string   `json:"cmd"`            // "status", "set" or "stop"
	Link string   `json:"link,omitempty"` // for set: "dsl" or "lte"
	Args []string `json:"args,omitempty"` // for set: see SettingsHelp
}

// Response answers a Request.
type Response struct {
	Error  string  `json:"error,omitempty"`
	Status *Status `json:"status,omitempty"`
}

// Status describes a running lab.
type Status struct {
	Prefix     string       `json:"prefix"`
	PID        int          `json:"pid"`
	Namespaces []string     `json:"namespaces"`
	Links      []LinkStatus `json:"links"`
}

// LinkStatus is one link's profiles and counters.
type LinkStatus struct {
	Name      string         `json:"name"`
	UpText    string         `json:"up"`
	DownText  string         `json:"down"`
	Up        linkem.Profile `json:"up_profile"`
	Down      linkem.Profile `json:"down_profile"`
	UpStats   linkem.Stats   `json:"up_stats"`
	DownStats linkem.Stats   `json:"down_stats"`
}

// Status reports the lab's profiles and counters.
func (l *Lab) Status() Status {
	s := Status{Prefix: l.Prefix, PID: os.Getpid()}
	for _, ns := range l.Namespaces() {
		s.Namespaces = append(s.Namespaces, ns.Name)
	}
	for _, k := range []*Link{l.DSL, l.LTE} {
		up, down := k.Profile(Upstream), k.Profile(Downstream)
		s.Links = append(s.Links, LinkStatus{Name: k.Name, Up: up, Down: down,
			UpText: DescribeProfile(up), DownText: DescribeProfile(down),
			UpStats: k.Stats(Upstream), DownStats: k.Stats(Downstream)})
	}
	return s
}

// DescribeProfile is a one-line summary of a direction's profile.
func DescribeProfile(p linkem.Profile) string {
	var b strings.Builder
	if p.Down {
		b.WriteString("DOWN ")
	}
	if p.RateBps > 0 {
		fmt.Fprintf(&b, "rate %s", Rate(p.RateBps))
	} else {
		b.WriteString("rate unlimited")
	}
	fmt.Fprintf(&b, " delay %v", p.Delay)
	if p.Jitter > 0 {
		fmt.Fprintf(&b, " jitter %v", p.Jitter)
	}
	if p.RateBps > 0 {
		fmt.Fprintf(&b, " queue %dB", p.QueueLimit())
	}
	if p.Loss.Model != "" {
		fmt.Fprintf(&b, " loss %s p=%g", p.Loss.Model, p.Loss.P)
		if p.Loss.Model == linkem.LossGilbertElliott {
			fmt.Fprintf(&b, " r=%g", p.Loss.R)
		}
	}
	if p.Reorder {
		b.WriteString(" reorder")
	}
	if p.StripMPTCP {
		b.WriteString(" strip-mptcp")
	}
	if p.Flap.Every > 0 {
		fmt.Fprintf(&b, " flap %v/%v", p.Flap.Down, p.Flap.Every)
	}
	return b.String()
}

func (l *Lab) link(name string) (*Link, error) {
	switch name {
	case devDSL:
		return l.DSL, nil
	case devLTE:
		return l.LTE, nil
	}
	return nil, fmt.Errorf("unknown link %q (want dsl or lte)", name)
}

// Set applies hglab set's words (SettingsHelp) to a link while it runs.
func (l *Lab) Set(linkName string, words []string) error {
	k, err := l.link(linkName)
	if err != nil {
		return err
	}
	cur := LinkProfile{Name: k.Name, MTU: k.MTU,
		Up:   Direction{Profile: k.Profile(Upstream)},
		Down: Direction{Profile: k.Profile(Downstream)},
	}
	c, err := ApplySettings(cur, words)
	if err != nil {
		return fmt.Errorf("setting %s: %w", linkName, err)
	}
	// A new schedule starts now in both directions, so they go down
	// together; an unchanged one keeps its phase.
	if c.Profile.Up.Flap != cur.Up.Flap || c.Profile.Down.Flap != cur.Down.Flap {
		now := time.Now()
		c.Profile.Up.Flap.From, c.Profile.Down.Flap.From = now, now
	}
	k.Apply(c.Profile)
	if c.SetDown != nil {
		k.SetDown(*c.SetDown)
	}
	return nil
}

// ServeControl answers control requests on ln until ctx is done; a stop
// request calls stop. It closes ln before returning.
func (l *Lab) ServeControl(ctx context.Context, ln net.Listener, stop func(), log *slog.Logger) error {
	go func() { <-ctx.Done(); _ = ln.Close() }()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accepting control connections: %w", err)
		}
		go l.serveOne(c, stop, log)
	}
}

func (l *Lab) serveOne(c net.Conn, stop func(), log *slog.Logger) {
	defer c.Close()
	// Fails only on a closed conn, and the Decode below then fails.
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	var req Request
	var resp Response
	if err := json.NewDecoder(c).Decode(&req); err != nil {
		resp.Error = fmt.Sprintf("decoding request: %v", err)
	} else {
		switch req.Cmd {
		case "status":
			s := l.Status()
			resp.Status = &s
		case "set":
			if err := l.Set(req.Link, req.Args); err != nil {
				resp.Error = err.Error()
			} else {
				log.Info("link changed", "uplink", req.Link, "settings", strings.Join(req.Args, " "))
				s := l.Status()
				resp.Status = &s
			}
		case "stop":
			log.Info("stop requested over the control socket")
			defer stop()
		default:
			resp.Error = fmt.Sprintf("unknown command %q", req.Cmd)
		}
	}
	_ = json.NewEncoder(c).Encode(resp)
}

// Control sends one request to the lab listening on socket.
func Control(ctx context.Context, socket string, req Request) (Response, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return Response{}, fmt.Errorf("connecting to the lab's control socket: %w", err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		// Fails only on a closed conn, and the Encode below then fails.
		_ = c.SetDeadline(dl)
	}
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return Response{}, fmt.Errorf("sending %s request: %w", req.Cmd, err)
	}
	var resp Response
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		return Response{}, fmt.Errorf("reading the answer to %s: %w", req.Cmd, err)
	}
	if resp.Error != "" {
		return resp, errors.New(resp.Error)
	}
	return resp, nil
}

// ReadPID returns the pid in a lab's pid file, or 0 if there is none or
// the process is gone.
func ReadPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return 0
	}
	return pid
}

// Sweep removes the namespaces of the lab with prefix (lan, cpe, hag and
// srv) that remain after the process that ran it died; their devices go
// with them. It returns what it removed.
func Sweep(prefix string) ([]string, error) {
	var removed []string
	var errs []error
	for _, role := range []string{nsLAN, nsCPE, nsHAG, nsSRV} {
		ns := &NS{Name: prefix + role}
		if _, err := os.Stat(ns.Path()); err != nil {
			continue
		}
		if err := ns.Close(); err != nil {
			errs = append(errs, fmt.Errorf("removing namespace %s: %w", ns.Name, err))
			continue
		}
		removed = append(removed, ns.Name)
	}
	return removed, errors.Join(errs...)
}

// Serve builds a lab and runs it in the foreground until ctx is done or a
// stop request arrives: the link forwarders live in this process. It
// writes a pid file and answers control requests on a unix socket, both
// in runDir, and removes them, then the lab, before returning.
//
// Shutdown order: stop accepting control requests, close the lab
// (forwarders, links, namespaces), remove the socket and the pid file.
func Serve(ctx context.Context, opts Options, runDir string) (err error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
		opts.Logger = log
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return fmt.Errorf("creating run directory: %w", err)
	}
	pidPath, sock := PIDPath(runDir, opts.Prefix), SocketPath(runDir, opts.Prefix)
	if pid := ReadPID(pidPath); pid != 0 && pid != os.Getpid() {
		return fmt.Errorf("a lab with prefix %q is already running as pid %d (hglab down --prefix %s)", opts.Prefix, pid, opts.Prefix)
	}
	_ = os.Remove(sock) // a stale socket of a process that died
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("listening on the control socket: %w", err)
	}
	defer os.Remove(sock)
	defer ln.Close()
	if err := os.WriteFile(pidPath, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return fmt.Errorf("writing pid file: %w", err)
	}
	defer os.Remove(pidPath)

	buildCtx, cancelBuild := context.WithTimeout(ctx, 30*time.Second)
	lab, err := Build(buildCtx, opts)
	cancelBuild()
	if err != nil {
		return err
	}
	defer func() {
		if cerr := lab.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("tearing down the lab: %w", cerr))
		}
	}()
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	serveErr := make(chan error, 1)
	go func() { serveErr <- lab.ServeControl(ctx, ln, stop, log) }()
	log.Info("lab ready", "prefix", lab.Prefix, "socket", sock, "namespaces", strings.Join(lab.Status().Namespaces, " "))

	watch := time.NewTicker(time.Second)
	defer watch.Stop()
	for {
		select {
		case <-ctx.Done():
			log.Info("stopping the lab", "prefix", lab.Prefix)
			stop()
			return <-serveErr
		case err := <-serveErr:
			return err
		case <-watch.C:
			if err := lab.Err(); err != nil {
				stop()
				<-serveErr
				return err
			}
		}
	}
}
