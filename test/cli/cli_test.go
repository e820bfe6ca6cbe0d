// Package cli_test runs the real hcpe and hag binaries' commands: config
// checking, version stamping, and a clean stop on SIGTERM.
package cli_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hybridgw-cli-")
	if err != nil {
		panic(err)
	}
	binDir = dir
	for _, name := range []string{"hcpe", "hag"} {
		cmd := exec.Command("go", "build", "-ldflags", "-X hybridgw/internal/version.Version=v9.9.9-test -X hybridgw/internal/version.Commit=abc1234",
			"-o", filepath.Join(dir, name), "hybridgw/cmd/"+name)
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			os.RemoveAll(dir)
			panic("building " + name + ": " + err.Error())
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func run(t *testing.T, name string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, name), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func TestCheckConfigExamples(t *testing.T) {
	for _, name := range []string{"hcpe", "hag"} {
		out, errs, code := run(t, name, "check-config", "-c", "../../configs/"+name+".yaml")
		if code != 0 || !strings.Contains(out, "ok") {
			t.Errorf("%s check-config on the example: exit %d\n%s%s", name, code, out, errs)
		}
	}
}

func TestCheckConfigReportsEveryProblem(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "hag.yaml")
	body := "listen:\n  port: 99999\n  colour: red\ncpes:\n  - id: a\n    auth: password\nlimits:\n  dial_timeout: soon\n"
	if err := os.WriteFile(bad, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errs, code := run(t, "hag", "check-config", "-c", bad)
	if code == 0 {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{
		`hag.yaml:2: listen.port: 99999 is not a TCP port`,
		`hag.yaml:3: listen.colour: unknown field "colour"`,
		`hag.yaml:6: cpes[0].auth: "password" is not one of cookie, source, cookie+source`,
		`hag.yaml:8: limits.dial_timeout:`,
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
}

func TestVersionIsStamped(t *testing.T) {
	for _, name := range []string{"hcpe", "hag"} {
		out, _, code := run(t, name, "version")
		if code != 0 || strings.TrimSpace(out) != name+" v9.9.9-test (abc1234)" {
			t.Errorf("%s version: exit %d, %q", name, code, out)
		}
	}
}

func TestMissingConfigFile(t *testing.T) {
	_, errs, code := run(t, "hcpe", "check-config", "-c", "/nonexistent/hcpe.yaml")
	if code == 0 || !strings.Contains(errs, "/nonexistent/hcpe.yaml") {
		t.Errorf("exit %d, stderr %q", code, errs)
	}
}
