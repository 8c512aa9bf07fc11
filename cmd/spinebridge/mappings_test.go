package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeTree writes files (path under dir -> content) into a new directory.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestMappingsLint(t *testing.T) {
	if code, out, errOut := runCLI(t, "", "mappings", "lint"); code != 0 || !strings.HasPrefix(out, "ok: the embedded set, ") || errOut != "" {
		t.Errorf("lint of the embedded set: exit %d\nstdout %q\nstderr %q", code, out, errOut)
	}

	good := writeTree(t, map[string]string{
		"segments/PID-Patient.yaml": "segment: PID\nresource: Patient\nrules:\n  - {from: \"8\", to: gender, table: administrative-sex}\n",
		"segments/ZPI-Patient.yaml": "segment: ZPI\nresource: Patient\nrules:\n  - {from: \"2\", to: identifier.value}\n",
	})
	code, out, errOut := runCLI(t, "", "mappings", "lint", good)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	// No message structure lists the ZPI map yet.
	unused := "warning: " + filepath.Join(good, "segments/ZPI-Patient.yaml") + ":1: segment map ZPI-Patient is used by nothing\n"
	if code != 0 || errOut != unused || len(lines) != 3 ||
		!strings.HasPrefix(lines[0], "segments/PID-Patient.yaml ") || !strings.HasSuffix(lines[0], " replaces the embedded file") ||
		!strings.HasPrefix(lines[1], "segments/ZPI-Patient.yaml ") || !strings.HasSuffix(lines[1], " new") ||
		!strings.HasPrefix(lines[2], "ok: 2 files over the embedded set, ") {
		t.Errorf("lint of a good directory: exit %d\nstdout %q\nstderr %q", code, out, errOut)
	}
	// The directory may also come from the configuration.
	t.Setenv("SPINEBRIDGE_FHIR_MAPPINGS", good)
	if code, out2, _ := runCLI(t, "", "mappings", "lint"); code != 0 || out2 != out {
		t.Errorf("lint of fhir.mappings: exit %d, %q; want %q", code, out2, out)
	}

	bad := writeTree(t, map[string]string{
		"segments/PID-Patient.yaml": "segment: PID\nresource: Patient\nrules:\n  - {from: \"7\", to: birthdate}\n",
		"messages/zzz.yaml":         "structure: ZZZ\nmessages: [ZZZ]\nresources:\n  - {map: PID-Patinet, name: patient}\n",
		"notes/readme.yaml":         "x: 1\n",
	})
	code, out, errOut = runCLI(t, "", "mappings", "lint", bad)
	for _, want := range []string{
		filepath.Join(bad, "segments/PID-Patient.yaml") + `:4: to: `,
		`Patient has no element "birthdate"; did you mean "birthDate"?`,
		filepath.Join(bad, "messages/zzz.yaml") + ":4:",
		"PID-Patinet",
		filepath.Join(bad, "notes/readme.yaml") + ": a mapping file belongs in segments/, datatypes/, tables/ or messages/",
		"3 errors\n",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if code != 1 || out != "" {
		t.Errorf("lint of a bad directory: exit %d, stdout %q; want 1 and nothing", code, out)
	}

	if code, _, errOut := runCLI(t, "", "mappings", "lint", "a", "b"); code != 2 || !strings.Contains(errOut, "accepts at most 1 arg") {
		t.Errorf("lint with two directories: exit %d, %q", code, errOut)
	}
}
