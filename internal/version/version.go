// Package version holds the build's version and commit, stamped by the
// Makefile through -ldflags so a log line or a bug report names the build.
package version

// Set with -ldflags "-X hybridgw/internal/version.Version=... -X hybridgw/internal/version.Commit=...".
var (
	Version = "dev"
	Commit  = "unknown"
)

// String is "VERSION (COMMIT)".
func String() string { return Version + " (" + Commit + ")" }
