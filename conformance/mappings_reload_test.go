package conformance_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spinebridge/spinebridge/adapters/mllp"
)

// An integration team edits a mapping file under fhir.mappings while the engine
// runs: a misspelt edit is refused with its file:line and the set in force
// keeps converting; the corrected file is in force for the next message,
// without a restart.
func TestServeReloadsMappingsOnChange(t *testing.T) {
	dir := t.TempDir()
	maps := filepath.Join(dir, "mappings")
	pid := filepath.Join(maps, "segments", "PID-Patient.yaml")
	gender := "segment: PID\nresource: Patient\nrules:\n  - {from: \"8\", to: gender, table: administrative-sex}\n"
	if err := os.MkdirAll(filepath.Dir(pid), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, pid, gender)
	e := startEngineIn(t, dir, fmt.Sprintf("fhir:\n  mappings: %s\n", maps))

	ctx := context.Background()
	s, err := mllp.Dial(ctx, mllp.SenderConfig{Addr: e.mllp, AckTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var seen []string
	// bundleOf sends an ADT and returns the bundle the default routes write.
	bundleOf := func(controlID string) string {
		t.Helper()
		if _, err := s.Send(ctx, []byte(adt(controlID, nil))); err != nil {
			t.Fatalf("send %s: %v", controlID, err)
		}
		var fresh string
		waitUntil(t, 30*time.Second, controlID+"'s bundle in out/fhir", func() bool {
			files, _ := filepath.Glob(filepath.Join(dir, "out", "fhir", "*", "*.json"))
			for _, f := range files {
				if !slices.Contains(seen, f) {
					fresh = f
					return true
				}
			}
			return false
		})
		seen = append(seen, fresh)
		data, err := os.ReadFile(fresh)
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}

	if b := bundleOf("MAP-1"); strings.Contains(b, "birthDate") || strings.Contains(b, "nhs-number") || !strings.Contains(b, `"gender":"female"`) {
		t.Fatalf("the override is not in force at start:\n%s", b)
	}

	writeFile(t, pid, gender+"  - {from: \"7\", to: birthdate}\n")
	where := pid + ":5:"
	waitUntil(t, 30*time.Second, "the misspelt edit refused in the log", func() bool {
		return strings.Contains(e.log.String(), "mappings: reload failed") && strings.Contains(e.log.String(), where)
	})
	if b := bundleOf("MAP-2"); strings.Contains(b, "birth") || !strings.Contains(b, `"gender":"female"`) {
		t.Errorf("after a refused edit the set in force changed:\n%s", b)
	}

	writeFile(t, pid, gender+"  - {from: \"7\", to: birthDate}\n")
	waitUntil(t, 30*time.Second, "the corrected edit reloaded", func() bool {
		return strings.Contains(e.log.String(), "mappings: reloaded")
	})
	if b := bundleOf("MAP-3"); !strings.Contains(b, `"birthDate":"1958-03-14"`) {
		t.Errorf("the corrected edit is not in force:\n%s", b)
	}

	// The admin API reloads on demand, and /metrics counts both outcomes.
	resp, err := http.Post("http://"+e.admin+"/mappings/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "mappings reloaded\n" {
		t.Errorf("POST /mappings/reload: %d %q", resp.StatusCode, body)
	}
	resp, err = http.Get("http://" + e.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`spinebridge_mappings_reloads_total{result="error"} 1`, `spinebridge_mappings_last_reload_successful 1`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
