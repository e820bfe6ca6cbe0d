package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strings"
	"time"

	"hybridgw/internal/httpserve"
)

// Provider answers the API's two questions. Each call builds a fresh
// snapshot; the value is encoded as JSON.
type Provider interface {
	Status(ctx context.Context) (any, error)
	Flows(ctx context.Context) (any, error)
}

// Reloader is a Provider whose daemon can re-read its config file. A
// refused config is an error that lists every problem; the daemon keeps
// the config in force.
type Reloader interface {
	Reload(ctx context.Context) (any, error)
}

// Handler serves GET /v1/status and GET /v1/flows from p, and POST
// /v1/reload when p is a Reloader (a refused reload answers 422 with the
// problems). ready, if not nil, must be closed before the daemon can
// answer: until then every /v1 endpoint says 503. It also serves Go's
// profiler under /debug/pprof/ (see the package comment).
func Handler(p Provider, ready <-chan struct{}) http.Handler {
	mux := http.NewServeMux()
	// The profiler lives here, on the local admin listener (a socket only
	// root and the daemon's group may open, by default), and never on the
	// metrics port, which Prometheus and often a whole management network
	// reach: a profile reveals the code and the command line, and a CPU
	// profile or trace costs the daemon CPU while it runs. It is not gated
	// on ready, so a daemon that is slow to start can be profiled too.
	// (Importing net/http/pprof also registers it on http.DefaultServeMux;
	// neither daemon serves that mux.)
	mux.HandleFunc("GET /debug/pprof/", pprof.Index) // named profiles: heap, goroutine, allocs, mutex, block, threadcreate
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	serve := func(get func(context.Context) (any, error), failed int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if ready != nil {
				select {
				case <-ready:
				default:
					http.Error(w, "starting", http.StatusServiceUnavailable)
					return
				}
			}
			v, err := get(r.Context())
			if err != nil {
				http.Error(w, err.Error(), failed)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			_ = enc.Encode(v)
		}
	}
	mux.Handle("GET /v1/status", serve(p.Status, http.StatusInternalServerError))
	mux.Handle("GET /v1/flows", serve(p.Flows, http.StatusInternalServerError))
	if r, ok := p.(Reloader); ok {
		mux.Handle("POST /v1/reload", serve(r.Reload, http.StatusUnprocessableEntity))
	}
	return mux
}

// SocketPath returns the path of a unix-socket listen value ("/x" or
// "unix:/x") and whether it is one.
func SocketPath(listen string) (string, bool) {
	if p, ok := strings.CutPrefix(listen, "unix:"); ok {
		return p, true
	}
	return listen, strings.HasPrefix(listen, "/")
}

// Listen opens the admin listener. A unix socket gets its directory
// created (0750) if missing and mode 0660; a socket file left by a
// crashed run is removed, one that a live process answers on is not
// (another daemon owns it), nor is anything that is not a socket.
func Listen(listen string) (net.Listener, error) {
	path, unix := SocketPath(listen)
	if !unix {
		ln, err := net.Listen("tcp", listen)
		if err != nil {
			return nil, fmt.Errorf("admin listen on %s: %w", listen, err)
		}
		return ln, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("admin socket directory: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("admin socket %s: exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
			c.Close()
			return nil, fmt.Errorf("admin socket %s: another process is serving on it", path)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("removing stale admin socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin listen on %s: %w", path, err)
	}
	// Close would unlink the path even if another process replaced the
	// file since; Serve removes it only if it is still ours.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		os.Remove(path)
		return nil, fmt.Errorf("admin socket mode: %w", err)
	}
	return ln, nil
}

// Serve answers the admin API on listen until ctx is cancelled, then
// removes its socket file. An empty listen disables it: Serve waits for
// ctx and returns nil.
func Serve(ctx context.Context, listen string, h http.Handler, log *slog.Logger) error {
	if listen == "" {
		<-ctx.Done()
		return nil
	}
	ln, err := Listen(listen)
	if err != nil {
		return err
	}
	var owned os.FileInfo
	path, unix := SocketPath(listen)
	if unix {
		owned, _ = os.Lstat(path)
	}
	defer func() {
		if owned == nil {
			return
		}
		if fi, err := os.Lstat(path); err == nil && os.SameFile(fi, owned) {
			os.Remove(path)
		}
	}()
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second}
	return httpserve.Run(ctx, srv, ln, "admin API", log)
}
