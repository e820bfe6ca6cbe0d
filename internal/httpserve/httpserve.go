// Package httpserve runs an HTTP server for as long as a context lives: the
// metrics endpoint and the admin API of both daemons share it, so both stop
// the same way on shutdown.
package httpserve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Run serves srv on ln until ctx is cancelled, then shuts it down, giving
// requests in flight a second. what names the server in its log line and
// errors ("metrics", "admin API").
func Run(ctx context.Context, srv *http.Server, ln net.Listener, what string, log *slog.Logger) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info(what+" listening", "addr", ln.Addr().String())
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-errc
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("%s server: %w", what, err)
	}
}
