// Command hag is the hybrid access gateway: it terminates MPTCP from CPEs,
// reads each RFC 8803 Convert message and dials the server. The daemon
// lives in internal/gateway.
package main

import (
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"hybridgw/internal/admin"
	"hybridgw/internal/cli"
	"hybridgw/internal/config"
	"hybridgw/internal/gateway"
)

func main() {
	genkey := &cobra.Command{
		Use:   "genkey",
		Short: "Print a fresh random CPE key (hex) for hag.yaml and hcpe.yaml",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), config.NewKey())
		},
	}
	cli.Main(cli.Root(cli.Spec[*config.HAG]{
		Name:    "hag",
		Short:   "hag terminates MPTCP from hybrid CPEs and converts each flow to plain TCP",
		Load:    config.LoadHAG,
		Log:     func(c *config.HAG) config.Log { return c.Log.Log },
		Summary: gateway.Summary,
		New: func(c *config.HAG, log *slog.Logger) (cli.Runner, error) {
			return gateway.New(c, log)
		},
		Extra: append([]*cobra.Command{genkey}, admin.Commands("hag", config.DefaultHAG().Admin.Listen, func(path string) (string, error) {
			c, err := config.LoadHAG(path)
			if err != nil {
				return "", err
			}
			return c.Admin.Listen, nil
		})...),
	}))
}
