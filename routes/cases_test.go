package routes

import (
	"slices"
	"strings"
	"testing"

	"github.com/spinebridge/spinebridge/conformance"
)

func loadDir(t *testing.T, dir string) *Table {
	t.Helper()
	tab, err := LoadTable([]string{dir}, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tab.Close() })
	return tab
}

func TestRunCasesPass(t *testing.T) {
	const dir = "testdata/table/good"
	results, err := RunCases(dir, loadDir(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	want := []CaseResult{
		{Name: "an admission goes to PDS and the legacy PAS", Pos: dir + "/routes_test.yaml:2", Routes: []string{"adt-to-pds", "legacy-passthrough"}},
		{Name: "a result goes to the event exchange and the legacy PAS", Pos: dir + "/routes_test.yaml:8", Routes: []string{"results", "legacy-passthrough"}},
		{Name: "a discharge only passes through", Pos: dir + "/routes_test.yaml:11", Routes: []string{"legacy-passthrough"}},
	}
	if len(results) != len(want) {
		t.Fatalf("%d results, want %d: %+v", len(results), len(want), results)
	}
	for i, r := range results {
		w := want[i]
		if r.Name != w.Name || r.Pos != w.Pos || !slices.Equal(r.Routes, w.Routes) || !r.Passed() {
			t.Errorf("case %d: %+v\nwant %+v", i, r, w)
		}
	}
}

func TestRunCasesFail(t *testing.T) {
	const dir = "testdata/table/failing"
	results, err := RunCases(dir, loadDir(t, dir))
	const f = dir + "/failing_test.yaml"
	want := []struct {
		pos      string
		failures []string
	}{
		{f + ":2", nil},
		{f + ":6", []string{"routes: took [legacy-passthrough], want [adt-to-pds, legacy-passthrough]; not taken: adt-to-pds"}},
		{f + ":9", []string{
			`route adt-to-pds: missing Patient.name.family = "THOMSON"; the output has Patient.name.family = "THOMPSON"`,
			`route adt-to-pds: missing Patient.gender = "female"; the output has no Patient.gender`,
		}},
		{f + ":15", []string{"route documents: transform broken: no mapping for this structure"}},
		{f + ":20", nil},
		{f + ":24", []string{`expected an error containing "no mapping"; there was none`}},
		{f + ":29", []string{"message: open testdata/table/failing/nowhere.hl7: no such file or directory"}},
		{f + ":32", []string{"fixtures/hl7v2/batch_file.hl7 holds 3 messages; a case takes one"}},
	}
	if len(results) != len(want) {
		t.Fatalf("%d results, want %d (the structure file's cases are not run):\n%+v", len(results), len(want), results)
	}
	for i, r := range results {
		if r.Pos != want[i].pos {
			t.Errorf("case %d at %s, want %s", i, r.Pos, want[i].pos)
		}
		if len(r.Failures) != len(want[i].failures) {
			t.Errorf("%s: failures\n%s\nwant\n%s", r.Pos, strings.Join(r.Failures, "\n"), strings.Join(want[i].failures, "\n"))
			continue
		}
		for j, w := range want[i].failures {
			if got := r.Failures[j]; !strings.HasSuffix(got, w) {
				t.Errorf("%s: failure %d:\n got %s\nwant %s", r.Pos, j, got, w)
			}
		}
	}
	errs := tableErrors(t, err)
	const s = dir + "/structure_test.yaml"
	wantErrs := []string{
		s + `:2:5: cases[0]: give the message as message: (a file) or text:, one of them`,
		s + `:8:14: cases[1].routes[0]: the table has no route "legacy-passthru"; did you mean "legacy-passthrough"?`,
		s + `:12:13: cases[2].facts[0]: want Resource.path = "value", as conformance reports print facts`,
		s + `:13:5: cases[3]: name: is required`,
		s + `:14:5: cases[3]: unknown key "route"; did you mean "routes"?`,
		s + `:13:5: cases[3]: routes: is required`,
	}
	slices.Sort(wantErrs[3:])
	for i := range max(len(errs), len(wantErrs)) {
		if i >= len(errs) || i >= len(wantErrs) || !strings.HasPrefix(errs[i], wantErrs[i]) {
			t.Errorf("errors:\n%s\nwant\n%s", strings.Join(errs, "\n"), strings.Join(wantErrs, "\n"))
			break
		}
	}
}

func TestRunCasesNoFiles(t *testing.T) {
	dir := writeTable(t, map[string]string{"r.yaml": "routes:\n"})
	if _, err := RunCases(dir, loadDir(t, dir)); err == nil || !strings.Contains(err.Error(), "no test files") {
		t.Errorf("RunCases in a directory without test files: %v", err)
	}
}

// TestParseFact checks that a fact as conformance prints it reads back as
// itself, so that users can copy facts from reports.
func TestParseFact(t *testing.T) {
	for _, f := range []conformance.Fact{
		{Resource: "Patient", Path: "name.family", Value: "O'BRIEN"},
		{Resource: "Observation", Path: "valueQuantity.value", Value: "135"},
		{Resource: "Encounter", Path: "period.start", Value: "2026-11-21T09:30:00Z@second"},
		{Resource: "Observation", Path: "subject", Value: "->Patient"},
		{Resource: "Patient", Path: "address.line", Value: `FLAT "3"`},
	} {
		got, ok := parseFact(f.String())
		if !ok || got != f {
			t.Errorf("parseFact(%s) = %+v, %v", f, got, ok)
		}
	}
	for _, bad := range []string{`Patient.name.family: "X"`, `name.family = "X"`, `Patient.name.family = X`, `Patient = "X"`} {
		if _, ok := parseFact(bad); ok {
			t.Errorf("parseFact(%s) read it", bad)
		}
	}
}
