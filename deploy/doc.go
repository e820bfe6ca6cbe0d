// Package deploy holds no Go code: it is the home of the operational files
// (systemd units, sysctl and nftables snippets, the OpenWrt package, the
// container build, the Grafana dashboard and the Prometheus alerts) and of
// the tests that keep them honest (deploy_test.go): systemd-analyze verify
// on the units, nft -c on the ruleset, promtool on the alerts, and a check
// that every PromQL expression names only metrics the daemons register.
package deploy
