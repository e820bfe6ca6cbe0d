// Package deps holds the check that mk/deps.list, the one list of programs
// and Debian packages that make deps installs, names every external
// program the Go code executes, so that a new call site cannot leave a
// fresh machine without its tool.
package deps
