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

// A retention shorter than the duplicate window would let a resent message be
// taken for a new one: serve refuses it, naming both keys.
func TestServeRetentionShorterThanDuplicateWindow(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"journal:\n  retention: 1h\n", "config: journal.retention 1h0m0s is shorter than ack.duplicate_window 24h0m0s"},
		{"journal:\n  retention: 2h\nack:\n  duplicate_window: 3h\n", "config: journal.retention 2h0m0s is shorter than ack.duplicate_window 3h0m0s"},
		{"journal:\n  retention: -1h\n", "config: journal.retention -1h0m0s: want a duration, or 0 to keep every message"},
	} {
		conf := filepath.Join(t.TempDir(), "retention.yaml")
		os.WriteFile(conf, []byte(tc.yaml), 0o644)
		code, _, errOut := runCLI(t, "", "serve", "--config", conf, "--data-dir", t.TempDir())
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: exit %d, stderr:\n%s\nwant %q", tc.yaml, code, errOut, tc.want)
		}
	}
}
