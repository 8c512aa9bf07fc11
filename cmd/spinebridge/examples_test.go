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

// The example mapping overlay lints without warnings, and its routes' test
// cases pass with it and fail without it: they test the mappings.
func TestExampleMappings(t *testing.T) {
	dir := filepath.Join("..", "..", "examples", "mappings", "z-segment")
	maps, tests := filepath.Join(dir, "mappings"), filepath.Join(dir, "routes")
	if code, out, errOut := runCLI(t, "", "mappings", "lint", maps); code != 0 || errOut != "" || !strings.Contains(out, "ok: 2 files over the embedded set") {
		t.Errorf("mappings lint: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := runCLI(t, "", "routes", "test", tests); code != 1 || !strings.Contains(out, `missing Patient.name.given = "NELL"`) {
		t.Errorf("routes test without the mappings: exit %d, want a failure\n%s%s", code, out, errOut)
	}
	t.Setenv("SPINEBRIDGE_FHIR_MAPPINGS", maps)
	if code, out, errOut := runCLI(t, "", "routes", "test", tests); code != 0 || !strings.Contains(out, "1 case passed") {
		t.Errorf("routes test with the mappings: exit %d\n%s%s", code, out, errOut)
	}
}
