package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// Get fetches path (e.g. "/v1/status") from the admin API on listen (a
// socket path, "unix:PATH" or host:port; an unspecified host means this
// host) and decodes the JSON answer into out.
func Get(ctx context.Context, listen, path string, out any) error {
	return call(ctx, http.MethodGet, listen, path, out)
}

// Post asks the admin API on listen to act (e.g. "/v1/reload") and decodes
// its JSON answer into out.
func Post(ctx context.Context, listen, path string, out any) error {
	return call(ctx, http.MethodPost, listen, path, out)
}

// Fetch copies the answer to GET path from the admin API on listen into w
// as it is, for what is not JSON: a profile from /debug/pprof/ (e.g.
// "/debug/pprof/profile?seconds=10"). Only ctx bounds it, since a CPU
// profile takes as long as it asks for.
func Fetch(ctx context.Context, listen, path string, w io.Writer) error {
	tr := transport(listen)
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://admin"+path, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return fmt.Errorf("admin API at %s: %w", listen, unwrapURL(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return fmt.Errorf("admin API at %s: %s: %s", listen, resp.Status, strings.TrimSpace(string(body)))
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("admin API at %s: reading %s: %w", listen, path, err)
	}
	return nil
}

// transport dials the admin API on listen, whatever the URL says.
func transport(listen string) *http.Transport {
	network, addr := "unix", ""
	if p, unix := SocketPath(listen); unix {
		addr = p
	} else {
		network, addr = "tcp", dialable(listen)
	}
	return &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
		DisableKeepAlives: true,
	}
}

func call(ctx context.Context, method, listen, path string, out any) error {
	tr := transport(listen)
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	req, err := http.NewRequestWithContext(ctx, method, "http://admin"+path, nil)
	if err != nil {
		return err
	}
	resp, err := cl.Do(req)
	if err != nil {
		return fmt.Errorf("admin API at %s: %w", listen, unwrapURL(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("admin API at %s: reading %s: %w", listen, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("admin API at %s: %s: %s", listen, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("admin API at %s: decoding %s: %w", listen, path, err)
	}
	return nil
}

// dialable turns a listen address into one to dial: ":9103" and
// "0.0.0.0:9103" mean this host.
func dialable(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port)
}

// unwrapURL drops net/http's "Get "http://admin/v1/status":" prefix,
// which names a URL the operator never typed.
func unwrapURL(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok || !strings.HasPrefix(err.Error(), "Get ") && !strings.HasPrefix(err.Error(), "Post ") {
			return err
		}
		err = u.Unwrap()
	}
}
