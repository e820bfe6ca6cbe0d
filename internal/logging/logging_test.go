package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestNew(t *testing.T) {
	var b bytes.Buffer
	l, err := New(&b, "warn", "auto")
	if err != nil {
		t.Fatal(err)
	}
	l.Info("hidden")
	l.Warn("shown", "uplink", "dsl")
	var m map[string]any
	if err := json.Unmarshal(b.Bytes(), &m); err != nil || m["msg"] != "shown" || m["uplink"] != "dsl" {
		t.Fatalf("auto on a non-terminal should be JSON at warn: %q (%v)", b.String(), err)
	}
	b.Reset()
	l, _ = New(&b, "debug", "text")
	l.Debug("hello")
	if !strings.Contains(b.String(), "msg=hello") {
		t.Fatalf("text output %q", b.String())
	}
	if _, err := New(&b, "loud", "text"); err == nil {
		t.Error("bad level accepted")
	}
	if _, err := New(&b, "info", "xml"); err == nil {
		t.Error("bad format accepted")
	}
}
