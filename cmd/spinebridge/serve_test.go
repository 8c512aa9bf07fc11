package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The running engine is tested as a whole process by the conformance suite
// (conformance/); these tests need only the command line.

// Configuration problems are all reported at once and stop serve from starting.
func TestServeConfigErrors(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(conf, []byte("ack:\n  point: received\n  parse_error_code: XX\nmllp:\n  idle_action: sulk\n"), 0o644)
	code, _, errOut := runCLI(t, "", "serve", "--config", conf, "--data-dir", t.TempDir())
	if code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	for _, want := range []string{`"received" would acknowledge messages before they are durable`, `parse error code "XX"`, `mllp.idle_action "sulk"`} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
}
