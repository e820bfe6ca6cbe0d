package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// Commands returns the `status`, `flows` and `reload` commands of daemon
// ("hcpe" or "hag"). They find the admin API by --admin, else by admin.listen in the
// config file (-c, default /etc/hybridgw/DAEMON.yaml; listenFrom reads
// it), else at defaultListen when that file does not exist.
func Commands(daemon, defaultListen string, listenFrom func(configPath string) (string, error)) []*cobra.Command {
	var o opts
	o.daemon, o.defaultListen, o.listenFrom = daemon, defaultListen, listenFrom
	status := &cobra.Command{
		Use:   "status",
		Short: statusShort[daemon],
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return o.status(cmd) },
	}
	flows := &cobra.Command{
		Use:   "flows",
		Short: flowsShort[daemon],
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return o.flows(cmd) },
	}
	for _, c := range []*cobra.Command{status, flows} {
		c.Flags().StringVar(&o.admin, "admin", "", "admin API: socket path or host:port (default: admin.listen from the config, else "+defaultListen+")")
		c.Flags().StringVarP(&o.config, "config", "c", "/etc/hybridgw/"+daemon+".yaml", "config file to read admin.listen from")
		c.Flags().StringVarP(&o.output, "output", "o", "table", "output format: table or json")
	}
	flows.Flags().StringVar(&o.sort, "sort", SortAge, "order: age (oldest first), bytes (most first) or dst")
	flows.Flags().StringVar(&o.host, "host", "", "only flows from or to this address or prefix")
	if daemon == "hag" {
		flows.Flags().StringVar(&o.cpe, "cpe", "", "only this CPE's flows")
	}
	reload := &cobra.Command{
		Use:   "reload",
		Short: "Re-read the running " + daemon + "'s config file (as SIGHUP) and report what it did",
		Long:  reloadLong[daemon],
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return o.reload(cmd) },
	}
	reload.Flags().StringVar(&o.admin, "admin", "", "admin API: socket path or host:port (default: admin.listen from the config, else "+defaultListen+")")
	reload.Flags().StringVarP(&o.config, "config", "c", "/etc/hybridgw/"+daemon+".yaml", "config file to read admin.listen from")
	return []*cobra.Command{status, flows, reload}
}

var reloadLong = map[string]string{
	"hcpe": "Re-read the running hcpe's config file: uplink roles, rates, policy thresholds and bypass\n" +
		"rules change without touching established flows. An invalid file is refused with every\n" +
		"problem, and the config in force stays; settings that need a restart are listed.",
	"hag": "Re-read the running hag's config file: CPEs (ids, keys, auth, prefixes), allow and deny\n" +
		"lists and limits apply to new requests; flows being relayed are untouched. An invalid file is\n" +
		"refused with every problem, and the config in force stays; settings that need a restart\n" +
		"(listen, egress, transparent, metrics, admin, log) are listed.",
}

// reload asks the daemon to re-read its own config file (the one it was
// started with, whatever -c says here).
//
// Without --admin the file is read here first for admin.listen, which
// also validates it: an invalid file is refused before anything is sent.
func (o *opts) reload(cmd *cobra.Command) error {
	if !cmd.Flags().Changed("admin") {
		if _, err := o.listenFrom(o.config); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("not reloaded: the running %s keeps its config:\n%w", o.daemon, err)
		}
	}
	l, err := o.listen(cmd)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
	defer cancel()
	var r Reloaded
	if err := Post(ctx, l, "/v1/reload", &r); err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s reloaded %s\n", o.daemon, r.Config)
	if len(r.NotApplied) > 0 {
		fmt.Fprintf(cmd.OutOrStdout(), "changed but not applied until a restart: %s\n", strings.Join(r.NotApplied, ", "))
	}
	return nil
}

var statusShort = map[string]string{
	"hcpe": "Show the uplinks (state, RTT, loss, rates, bytes), totals and hag",
	"hag":  "Show listeners, CPEs seen, flows and error counts",
}

var flowsShort = map[string]string{
	"hcpe": "List the flows carried to hag with their subflows per uplink",
	"hag":  "List the flows relayed, per CPE, with their subflows",
}

type opts struct {
	daemon, defaultListen string
	listenFrom            func(string) (string, error)

	admin, config, output string
	sort, host, cpe       string
}

// listen resolves where the admin API is.
func (o *opts) listen(cmd *cobra.Command) (string, error) {
	if cmd.Flags().Changed("admin") {
		return o.admin, nil
	}
	l, err := o.listenFrom(o.config)
	if err != nil {
		if !cmd.Flags().Changed("config") && errors.Is(err, fs.ErrNotExist) {
			return o.defaultListen, nil
		}
		return "", fmt.Errorf("reading admin.listen (or pass --admin): %w", err)
	}
	if l == "" {
		return "", fmt.Errorf("the admin API is disabled in %s (admin.listen is empty); pass --admin", o.config)
	}
	return l, nil
}

func (o *opts) get(cmd *cobra.Command, path string, out any) error {
	if o.output != "table" && o.output != "json" {
		return fmt.Errorf("-o %q: want table or json", o.output)
	}
	l, err := o.listen(cmd)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
	defer cancel()
	if err := Get(ctx, l, path, out); err != nil {
		return fmt.Errorf("%w (is %s running? --admin selects another address)", err, o.daemon)
	}
	return nil
}

func (o *opts) status(cmd *cobra.Command) error {
	w := cmd.OutOrStdout()
	if o.daemon == "hag" {
		var s HAGStatus
		if err := o.get(cmd, "/v1/status", &s); err != nil {
			return err
		}
		if o.output == "json" {
			return writeJSON(w, &s)
		}
		return RenderHAGStatus(w, &s, time.Now())
	}
	var s CPEStatus
	if err := o.get(cmd, "/v1/status", &s); err != nil {
		return err
	}
	if o.output == "json" {
		return writeJSON(w, &s)
	}
	return RenderCPEStatus(w, &s, time.Now())
}

func (o *opts) flows(cmd *cobra.Command) error {
	if err := ValidSort(o.sort); err != nil {
		return err
	}
	h, err := ParseHost(o.host)
	if err != nil {
		return err
	}
	w := cmd.OutOrStdout()
	if o.daemon == "hag" {
		var fl HAGFlows
		if err := o.get(cmd, "/v1/flows", &fl); err != nil {
			return err
		}
		fl.Flows = FilterHAGFlows(fl.Flows, h, o.cpe)
		SortHAGFlows(fl.Flows, o.sort)
		if o.output == "json" {
			return writeJSON(w, &fl)
		}
		return RenderHAGFlows(w, fl.Flows)
	}
	var fl CPEFlows
	if err := o.get(cmd, "/v1/flows", &fl); err != nil {
		return err
	}
	fl.Flows = FilterCPEFlows(fl.Flows, h)
	SortCPEFlows(fl.Flows, o.sort)
	if o.output == "json" {
		return writeJSON(w, &fl)
	}
	return RenderCPEFlows(w, fl.Flows)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
