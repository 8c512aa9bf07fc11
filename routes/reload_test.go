package routes

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const (
	reloadDests = "destinations:\n  pds: {kind: fhir, url: x}\n"
	oneRoute    = "routes:\n  - {name: a, when: 'true', to: [pds]}\n"
	twoRoutes   = "routes:\n  - {name: a, when: 'msg.Type == \"ADT\"', to: [pds]}\n  - {name: b, when: 'true', to: [pds]}\n"
)

// metric returns the value of a reload metric by name and result label ("" for
// the gauge), read through a registry as /metrics would.
func metric(t *testing.T, collectors []prometheus.Collector, name, result string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(collectors...)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if result == "" {
				return m.GetGauge().GetValue()
			}
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no metric %s{result=%q}", name, result)
	return 0
}

// swaps records OnSwap calls.
type swaps struct {
	mu    sync.Mutex
	calls [][2]*Table
	ch    chan struct{}
}

func newSwaps(r *Reloader) *swaps {
	s := &swaps{ch: make(chan struct{}, 16)}
	r.OnSwap = func(old, next *Table) {
		s.mu.Lock()
		s.calls = append(s.calls, [2]*Table{old, next})
		s.mu.Unlock()
		s.ch <- struct{}{}
	}
	return s
}

func (s *swaps) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.calls)
}

func TestReloadSwaps(t *testing.T) {
	dir := writeTable(t, map[string]string{"d.yaml": reloadDests, "r.yaml": oneRoute})
	r, err := NewReloader([]string{dir}, testOptions(), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := newSwaps(r)
	old := r.Current()
	if err := os.WriteFile(filepath.Join(dir, "r.yaml"), []byte(twoRoutes), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	next := r.Current()
	if next == old || len(next.Routes) != 2 {
		t.Fatalf("the table in force has %d routes, want the new one with 2", len(next.Routes))
	}
	if s.count() != 1 || s.calls[0] != [2]*Table{old, next} {
		t.Errorf("OnSwap calls %v, want one with (old, new)", s.calls)
	}
	if old.Destinations["pds"].(*fakeDest).closed.Load() {
		t.Error("Reload closed the old table's destinations; that is OnSwap's caller's job, once deliveries drain")
	}
	if ok, bad, last := metric(t, r.Collectors(), "spinebridge_routes_reloads_total", "ok"), metric(t, r.Collectors(), "spinebridge_routes_reloads_total", "error"),
		metric(t, r.Collectors(), "spinebridge_routes_config_last_reload_successful", ""); ok != 1 || bad != 0 || last != 1 {
		t.Errorf("reloads ok %v, error %v, last successful %v; want 1, 0, 1", ok, bad, last)
	}
	next.Close()
	old.Close()
}

func TestReloadKeepsTableOnError(t *testing.T) {
	dir := writeTable(t, map[string]string{"d.yaml": reloadDests, "r.yaml": oneRoute})
	var logs bytes.Buffer
	r, err := NewReloader([]string{dir}, testOptions(), slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Current().Close()
	s := newSwaps(r)
	old := r.Current()
	bad := "routes:\n  - {name: a, when: 'msg.Typo == \"ADT\"', to: [pds]}\n  - {name: b, when: 'true', to: [nowhere]}\n"
	if err := os.WriteFile(filepath.Join(dir, "r.yaml"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	err = r.Reload()
	if err == nil {
		t.Fatal("a bad file reloaded")
	}
	if r.Current() != old || s.count() != 0 {
		t.Error("a failed reload replaced the table")
	}
	if old.Destinations["pds"].(*fakeDest).closed.Load() {
		t.Error("a failed reload closed the table in force")
	}
	if n := metric(t, r.Collectors(), "spinebridge_routes_reloads_total", "error"); n != 1 {
		t.Errorf("error reloads %v, want 1", n)
	}
	if last := metric(t, r.Collectors(), "spinebridge_routes_config_last_reload_successful", ""); last != 0 {
		t.Errorf("last reload successful = %v, want 0", last)
	}
	for _, want := range []string{filepath.Join(dir, "r.yaml") + ":2:26", filepath.Join(dir, "r.yaml") + ":3:34"} {
		if !strings.Contains(logs.String(), want) || !strings.Contains(logs.String(), "level=ERROR") {
			t.Errorf("log does not report the error at %s:\n%s", want, logs.String())
		}
	}
}

func TestNewReloaderFails(t *testing.T) {
	dir := writeTable(t, map[string]string{"r.yaml": "routes:\n  - {name: a, when: 'true', to: [pds]}\n"})
	if _, err := NewReloader([]string{dir}, testOptions(), nil); err == nil || !strings.Contains(err.Error(), `unknown destination "pds"`) {
		t.Errorf("NewReloader: %v, want the table's error", err)
	}
}

// TestRunReloadsOnChange saves the routes file the way editors do, writing a
// new file and renaming it over the old, until Run has reloaded it.
func TestRunReloadsOnChange(t *testing.T) {
	for _, given := range []string{"directory", "file"} {
		t.Run(given, func(t *testing.T) {
			dir := writeTable(t, map[string]string{"d.yaml": reloadDests, "r.yaml": oneRoute})
			paths := []string{dir}
			if given == "file" {
				paths = []string{filepath.Join(dir, "d.yaml"), filepath.Join(dir, "r.yaml")}
			}
			r, err := NewReloader(paths, testOptions(), nil)
			if err != nil {
				t.Fatal(err)
			}
			s := newSwaps(r)
			t.Cleanup(func() { r.Current().Close() }) // after the watch stops
			watchUntilDone(t, r.Run)

			// Run may not be watching yet when the first save lands, so save
			// again until the reload is seen.
			deadline := time.After(30 * time.Second)
			save := time.NewTicker(500 * time.Millisecond)
			defer save.Stop()
			for i := 0; ; i++ {
				tmp := filepath.Join(dir, fmt.Sprintf(".r.yaml.%d.tmp", i))
				if err := os.WriteFile(tmp, []byte(twoRoutes), 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(tmp, filepath.Join(dir, "r.yaml")); err != nil {
					t.Fatal(err)
				}
				select {
				case <-s.ch:
					if n := len(r.Current().Routes); n != 2 {
						t.Errorf("reloaded table has %d routes, want 2", n)
					}
					return
				case <-save.C:
				case <-deadline:
					t.Fatal("no reload after 30 s of saves")
				}
			}
		})
	}
}

func TestConcerns(t *testing.T) {
	whole := map[string]bool{"/etc/routes": true}
	files := map[string]bool{"/srv/a/routes.yaml": true}
	for name, want := range map[string]bool{
		"/etc/routes/adt.yaml":         true,
		"/etc/routes/adt.yml":          true,
		"/etc/routes/adt_test.yaml":    false,
		"/etc/routes/.adt.yaml.swp":    false,
		"/etc/routes/notes.txt":        false,
		"/etc/routes/..data":           true,
		"/srv/a/routes.yaml":           true,
		"/srv/a/other.yaml":            false,
		"/srv/a/..data":                true,
		"/etc/routes/sub/nested.yaml":  false,
		"/etc/routes/../routes/x.yaml": true,
	} {
		if got := concerns(name, whole, files); got != want {
			t.Errorf("concerns(%s) = %v, want %v", name, got, want)
		}
	}
}
