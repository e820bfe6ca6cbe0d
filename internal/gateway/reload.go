package gateway

import (
	"context"
	"fmt"
	"slices"

	"hybridgw/internal/admin"
	"hybridgw/internal/config"
)

// Reload applies a changed config file to the running hag (SIGHUP): CPEs
// (ids, keys, auth, prefixes), allow and deny lists and limits apply from
// the next request on. Flows being relayed are untouched, those of a CPE
// removed from the file included, and so are the cookies already
// remembered against replay. An invalid file is refused with every
// problem and the running config stays in force. Settings that need a
// restart (listen, egress, transparent, metrics, admin, log) keep their
// running values and are reported.
func (g *Gateway) Reload(path string) error {
	_, err := g.reload(path)
	return err
}

// reload is Reload that also returns the settings left for a restart.
func (g *Gateway) reload(path string) (notApplied []string, err error) {
	nc, err := config.LoadHAG(path)
	if err != nil {
		g.m.Reloads.WithLabelValues("refused").Inc()
		return nil, fmt.Errorf("new config refused, the running one stays in force:\n%w", err)
	}
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	old := g.cfg()
	notApplied = restartOnly(old, nc)
	if len(notApplied) > 0 {
		g.log.Warn("reload: these settings need a restart and were not applied", "fields", notApplied)
	}
	// What is bound at start stays as it runs, so the config in force
	// describes the running hag.
	nc.Log, nc.Listen, nc.Egress, nc.Transparent, nc.Metrics, nc.Admin = old.Log, old.Listen, old.Egress, old.Transparent, old.Metrics, old.Admin
	g.lim.configure(nc.Limits)
	g.src.setMax(nc.Limits.HandshakesPerSource)
	g.replay.Configure(nc.Limits.CookieReplayEntries, nc.Limits.CookieMaxSkew)
	g.conf.Store(nc)
	g.m.Reloads.WithLabelValues("ok").Inc()
	keys := 0
	for _, c := range nc.CPEs {
		keys += len(c.CookieKeys)
	}
	g.log.Info("config reloaded", "config", path, "cpes", len(nc.CPEs), "keys", keys,
		"allow", len(nc.Allow.Prefixes), "deny", len(nc.Deny.Prefixes))
	return notApplied, nil
}

// restartOnly names the settings that differ and that a reload cannot
// apply: listeners and sockets opened at start, the transparent-socket
// routing egress preserve depends on, and the logger.
func restartOnly(old, nw *config.HAG) []string {
	var out []string
	ol, nl := old.Listen, nw.Listen
	if !slices.Equal(ol.Addresses, nl.Addresses) || ol.Port != nl.Port || ol.FastOpen != nl.FastOpen || ol.FastOpenNoCookieUnsafe != nl.FastOpenNoCookieUnsafe {
		out = append(out, "listen")
	}
	if old.Egress != nw.Egress {
		out = append(out, "egress")
	}
	if old.Transparent != nw.Transparent {
		out = append(out, "transparent")
	}
	if old.Metrics != nw.Metrics {
		out = append(out, "metrics")
	}
	if old.Admin != nw.Admin {
		out = append(out, "admin")
	}
	if old.Log != nw.Log {
		out = append(out, "log")
	}
	return out
}

// Reload implements admin.Reloader: `hag reload`, the same as SIGHUP with
// the outcome answered to the operator instead of only logged.
func (a *hagAdmin) Reload(context.Context) (any, error) {
	path := a.g.cfg().File()
	na, err := a.g.reload(path)
	if err != nil {
		a.g.log.Error("reload failed", "config", path, "err", err, "via", "admin API")
		return nil, err
	}
	return admin.Reloaded{Config: path, NotApplied: na}, nil
}
