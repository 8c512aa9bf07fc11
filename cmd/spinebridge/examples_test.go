package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// Every example routing table lints and passes its own test cases, as the
// engine and `spinebridge routes test` load them.
func TestExampleRoutes(t *testing.T) {
	t.Setenv("SPINEBRIDGE_FHIR_TOKEN", "example-token")
	t.Setenv("SPINEBRIDGE_AMQP_PASSWORD", "guest")
	dirs, err := filepath.Glob(filepath.Join("..", "..", "examples", "routes", "*"))
	if err != nil || len(dirs) < 4 {
		t.Fatalf("example route directories: %v, %v", dirs, err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			if code, out, errOut := runCLI(t, "", "routes", "lint", dir); code != 0 || !strings.HasPrefix(out, "ok: ") {
				t.Errorf("routes lint: exit %d\n%s%s", code, out, errOut)
			}
			if code, out, errOut := runCLI(t, "", "routes", "test", dir); code != 0 || !strings.Contains(out, "passed") {
				t.Errorf("routes test: exit %d\n%s%s", code, out, errOut)
			}
		})
	}
}

// The embedded default table is valid: serve starts on it.
func TestDefaultRoutesLint(t *testing.T) {
	if code, out, errOut := runCLI(t, "", "routes", "lint", filepath.Join("..", "..", "routes", "default_routes.yaml")); code != 0 {
		t.Errorf("exit %d\n%s%s", code, out, errOut)
	}
}
