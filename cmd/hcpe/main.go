// Command hcpe is the hybrid CPE: it intercepts LAN TCP and carries each
// flow to hag over kernel MPTCP. The daemon lives in internal/cpe.
package main

import (
	"log/slog"

	"hybridgw/internal/admin"
	"hybridgw/internal/cli"
	"hybridgw/internal/config"
	"hybridgw/internal/cpe"
)

func main() {
	cli.Main(cli.Root(cli.Spec[*config.HCPE]{
		Name:    "hcpe",
		Short:   "hcpe bonds a home router's uplinks for LAN TCP over kernel MPTCP",
		Load:    config.LoadHCPE,
		Log:     func(c *config.HCPE) config.Log { return c.Log },
		Summary: cpe.Summary,
		New: func(c *config.HCPE, log *slog.Logger) (cli.Runner, error) {
			return cpe.New(c, log)
		},
		Extra: admin.Commands("hcpe", config.DefaultHCPE().Admin.Listen, func(path string) (string, error) {
			c, err := config.LoadHCPE(path)
			if err != nil {
				return "", err
			}
			return c.Admin.Listen, nil
		}),
	}))
}
