package routes

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/spinebridge/spinebridge/fixtures"
	"github.com/spinebridge/spinebridge/transforms"
)

// Two versions of an override of the embedded PID map: the second also writes
// the birth date.
const (
	pidGenderOnly = "segment: PID\nresource: Patient\nrules:\n  - {from: \"8\", to: gender, table: administrative-sex}\n"
	pidWithBirth  = pidGenderOnly + "  - {from: \"7\", to: birthDate}\n"
	pidMisspelt   = pidGenderOnly + "  - {from: \"7\", to: birthdate}\n"
)

// writeMappings writes files (path under dir -> content) into dir, making
// directories as needed.
func writeMappings(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		// Written beside and renamed into place, as editors save, so that
		// a watcher never loads half a file.
		tmp := filepath.Join(filepath.Dir(p), "."+filepath.Base(p)+".tmp")
		if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, p); err != nil {
			t.Fatal(err)
		}
	}
}

// patientOf converts the ADT fixture with the transform name of m and returns
// its Patient resource's JSON.
func patientOf(t *testing.T, m *Mappings, name string) string {
	t.Helper()
	raw, err := fixtures.HL7v2.ReadFile("hl7v2/adt_a01.hl7")
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := m.Transformers()[name].Transform(nil, &Record{Raw: raw})
	if err != nil {
		t.Fatalf("transform %s: %v", name, err)
	}
	i := bytes.Index(out, []byte(`"resourceType":"Patient"`))
	if i < 0 {
		t.Fatalf("no Patient in %.300s", out)
	}
	end := bytes.Index(out[i:], []byte(`"request"`))
	if end < 0 {
		end = len(out) - i
	}
	return string(out[i : i+end])
}

func TestMappingsReload(t *testing.T) {
	dir := t.TempDir()
	writeMappings(t, dir, map[string]string{"segments/PID-Patient.yaml": pidGenderOnly})
	var logs bytes.Buffer
	m, err := NewMappings(dir, transforms.Options{}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"fhir", "adt"} {
		if p := patientOf(t, m, name); strings.Contains(p, "birthDate") || !strings.Contains(p, `"gender":"female"`) {
			t.Fatalf("%s before the edit: %s, want the override's gender and no birth date", name, p)
		}
	}

	// A misspelt element: refused, with its file:line, and the set in force stays.
	writeMappings(t, dir, map[string]string{"segments/PID-Patient.yaml": pidMisspelt})
	err = m.Reload()
	want := filepath.Join(dir, "segments/PID-Patient.yaml") + ":5:"
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(logs.String(), want) {
		t.Fatalf("reload of a misspelt file: %v; log:\n%s\nwant an error at %s, logged", err, logs.String(), want)
	}
	if p := patientOf(t, m, "fhir"); strings.Contains(p, "birth") {
		t.Errorf("a failed reload changed the set: %s", p)
	}
	if bad, last := metric(t, m.Collectors(), "spinebridge_mappings_reloads_total", "error"),
		metric(t, m.Collectors(), "spinebridge_mappings_last_reload_successful", ""); bad != 1 || last != 0 {
		t.Errorf("after a failed reload: errors %v, last successful %v; want 1, 0", bad, last)
	}

	// Fixed: every transform converts with the new set.
	writeMappings(t, dir, map[string]string{"segments/PID-Patient.yaml": pidWithBirth})
	if err := m.Reload(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"fhir", "adt"} {
		if p := patientOf(t, m, name); !strings.Contains(p, `"birthDate":"1958-03-14"`) {
			t.Errorf("%s after the reload: %s, want the birth date", name, p)
		}
	}
	if ok, last := metric(t, m.Collectors(), "spinebridge_mappings_reloads_total", "ok"),
		metric(t, m.Collectors(), "spinebridge_mappings_last_reload_successful", ""); ok != 1 || last != 1 {
		t.Errorf("after a reload: ok %v, last successful %v; want 1, 1", ok, last)
	}
}

// TestMappingsReloadKeepsStructures removes a structure the overrides added:
// routes may name its transform, so the reload is refused.
func TestMappingsReloadKeepsStructures(t *testing.T) {
	dir := t.TempDir()
	structure := "structure: ZXX_Z01\nmessages: [ZXX]\nresources:\n  - {map: PID-Patient, name: patient}\n"
	writeMappings(t, dir, map[string]string{"messages/zxx.yaml": structure})
	m, err := NewMappings(dir, transforms.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.Transformers()["zxx_z01"] == nil {
		t.Fatal("no transform for the added structure")
	}
	if err := os.Remove(filepath.Join(dir, "messages/zxx.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := m.Reload(); err == nil || !strings.Contains(err.Error(), "ZXX_Z01") {
		t.Errorf("reload without a structure a transform converts with: %v, want it refused", err)
	}
}

// TestMappingsRunReloadsOnChange starts watching an empty directory, saves an
// override into a subdirectory made after the watch began, as a deploy that
// copies a tree does, and then edits that file, until Run has reloaded each.
func TestMappingsRunReloadsOnChange(t *testing.T) {
	dir := t.TempDir()
	m, err := NewMappings(dir, transforms.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	watchUntilDone(t, m.Run)
	for _, step := range []struct {
		content string
		inForce func(patient string) bool
	}{
		// The override writes no identifier, where the embedded map does.
		{pidGenderOnly, func(p string) bool { return !strings.Contains(p, `"identifier"`) }},
		// Only a watch on segments/ itself sees this one.
		{pidWithBirth, func(p string) bool { return strings.Contains(p, `"birthDate"`) }},
	} {
		// Run may not be watching yet when the first save lands, so save
		// again until the reload is seen.
		deadline := time.Now().Add(30 * time.Second)
		for i := 0; !step.inForce(patientOf(t, m, "fhir")); i++ {
			if time.Now().After(deadline) {
				t.Fatalf("no reload after 30 s of saves of\n%s", step.content)
			}
			writeMappings(t, dir, map[string]string{"segments/PID-Patient.yaml": fmt.Sprintf("# save %d\n%s", i, step.content)})
			time.Sleep(500 * time.Millisecond)
		}
	}
}

// TestMappingsRunFollowsAConfigMapUpdate: a Kubernetes ConfigMap volume is
// updated by writing every file into a new hidden directory and swapping the
// ..data link to it; the files' own names never change. The swap reloads.
func TestMappingsRunFollowsAConfigMapUpdate(t *testing.T) {
	dir := t.TempDir()
	configMapUpdate(t, dir, 0, pidGenderOnly)
	if err := os.Symlink("..data/segments", filepath.Join(dir, "segments")); err != nil {
		t.Fatal(err)
	}
	m, err := NewMappings(dir, transforms.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p := patientOf(t, m, "fhir"); strings.Contains(p, `"identifier"`) {
		t.Fatalf("the volume's override is not in force at start: %s", p)
	}
	watchUntilDone(t, m.Run)
	// Run may not be watching yet when the first update lands, so update
	// again until the reload is seen.
	deadline := time.Now().Add(30 * time.Second)
	for gen := 1; !strings.Contains(patientOf(t, m, "fhir"), `"birthDate"`); gen++ {
		if time.Now().After(deadline) {
			t.Fatal("no reload after 30 s of ConfigMap updates")
		}
		configMapUpdate(t, dir, gen, fmt.Sprintf("# update %d\n%s", gen, pidWithBirth))
		time.Sleep(500 * time.Millisecond)
	}
}

// configMapUpdate does what the kubelet does to a ConfigMap volume in dir:
// the files of generation gen (here one PID map) go into a new hidden
// directory, and a new ..data link is renamed over the old one.
func configMapUpdate(t *testing.T, dir string, gen int, pid string) {
	t.Helper()
	name := fmt.Sprintf("..2026_11_22_10_00_%02d.%d", gen, 100+gen)
	writeMappings(t, filepath.Join(dir, name), map[string]string{"segments/PID-Patient.yaml": pid})
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(name, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
}

func TestConcernsMappings(t *testing.T) {
	for name, want := range map[string]bool{
		"/m/..data":                           true,
		"/m/..data_tmp":                       false,
		"/m/segments/PID-Patient.yaml":        true,
		"/m/tables/sex.yml":                   true,
		"/m/segments":                         true,
		"/m/segments/.PID-Patient.yaml.swp":   false,
		"/m/segments/.PID-Patient.yaml.1.tmp": false,
		"/m/README.md":                        false,
		"/m/segments/PID-Patient.yaml~":       false,
	} {
		if got := concernsMappings(name); got != want {
			t.Errorf("concernsMappings(%s) = %v, want %v", name, got, want)
		}
	}
}

// TestMappingsReloadWhileConverting reloads while transforms convert, for the
// race detector: a conversion under way keeps the set it started with.
func TestMappingsReloadWhileConverting(t *testing.T) {
	dir := t.TempDir()
	writeMappings(t, dir, map[string]string{"segments/PID-Patient.yaml": pidGenderOnly})
	m, err := NewMappings(dir, transforms.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := fixtures.HL7v2.ReadFile("hl7v2/adt_a01.hl7")
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			tr := m.Transformers()["fhir"]
			for {
				select {
				case <-stop:
					errs <- nil
					return
				default:
				}
				if _, _, err := tr.Transform(nil, &Record{Raw: raw}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := range 6 {
		content := pidGenderOnly
		if i%2 == 0 {
			content = pidWithBirth
		}
		writeMappings(t, dir, map[string]string{"segments/PID-Patient.yaml": content})
		if err := m.Reload(); err != nil {
			t.Error(err)
		}
	}
	close(stop)
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// watchUntilDone runs a watch (a Run method) until the test ends, then stops
// it and reports what it returned.
func watchUntilDone(t *testing.T, run func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// TestWatchDirPassesOverALinkLoop: a link loop under the mapping directory is
// the loader's to report; the watch still covers the directories, and a
// change in one of them is seen.
func TestWatchDirPassesOverALinkLoop(t *testing.T) {
	dir := t.TempDir()
	writeMappings(t, dir, map[string]string{"segments/PID-Patient.yaml": pidGenderOnly})
	if err := os.Symlink("..", filepath.Join(dir, "segments", "up")); err != nil {
		t.Fatal(err)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := watchDir(w, dir, true); err != nil {
		t.Fatalf("watchDir over a link loop: %v", err)
	}
	// Written as a temporary file renamed over the old one: its events come
	// first.
	writeMappings(t, dir, map[string]string{"segments/PID-Patient.yaml": pidWithBirth})
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev := <-w.Events:
			if filepath.Base(ev.Name) == "PID-Patient.yaml" {
				return
			}
		case err := <-w.Errors:
			t.Fatal(err)
		case <-timeout:
			t.Fatal("no event for PID-Patient.yaml under segments/")
		}
	}
}
