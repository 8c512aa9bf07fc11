package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The test suite: three cases written for these tests, and our bundle for each in
// testdata/conversion/ours, named by the message control id (MSH-10).
//
//   - ADT_A01/adt-a01: ours says everything the expected bundle says, with other
//     ids, identifier systems, a UTC offset and urn:uuid references.
//   - ORU_R01/oru-r01: ours lacks the interpretation code and adds a category.
//   - MDM_T02/mdm-t02: the expected bundle breaks R4 (empty strings, Provenance
//     without agent); ours is valid and says what can be read of it.
const (
	suiteDir = "testdata/conversion/suite"
	oursDir  = "testdata/conversion/ours"
)

// fakeConvert stands in for the engine: it returns the hand-written bundle for the
// input's MSH-10.
func fakeConvert(input []byte) ([]byte, error) {
	msh, _, _ := strings.Cut(string(input), "\r")
	fields := strings.Split(msh, "|")
	if len(fields) < 10 || fields[0] != "MSH" {
		return nil, errors.New("fake convert: no MSH-10")
	}
	return os.ReadFile(filepath.Join(oursDir, fields[9]+".json"))
}

// testValidate stands in for the R4 validator with two of its rules, the two the
// public corpus's invalid bundles break: no empty strings, and a Provenance needs
// an agent.
func testValidate(doc []byte) error {
	var v any
	if err := json.Unmarshal(doc, &v); err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	var problems []string
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if v["resourceType"] == "Provenance" && v["agent"] == nil {
				problems = append(problems, path+": Provenance.agent: minimum required = 1")
			}
			for k, child := range v {
				walk(path+"."+k, child)
			}
		case []any:
			for i, child := range v {
				walk(fmt.Sprintf("%s[%d]", path, i), child)
			}
		case string:
			if strings.TrimSpace(v) == "" {
				problems = append(problems, path+": empty string")
			}
		}
	}
	walk("Bundle", v)
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

func testOptions() Options {
	return Options{Convert: fakeConvert, Validate: testValidate}
}

func testCases(t *testing.T) []Case {
	t.Helper()
	cases, err := Discover(suiteDir)
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	return cases
}

func TestDiscover(t *testing.T) {
	got, err := Discover(suiteDir)
	if err != nil {
		t.Fatal(err)
	}
	at := func(name string) Case {
		return Case{
			Name:     name,
			Input:    filepath.Join(suiteDir, filepath.FromSlash(name)+".hl7"),
			Expected: filepath.Join(suiteDir, filepath.FromSlash(name)+"-expected.json"),
		}
	}
	want := []Case{at("ADT_A01/adt-a01"), at("MDM_T02/mdm-t02"), at("ORU_R01/oru-r01")}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Discover:\n got %v\nwant %v", got, want)
	}
}

// writeTree creates files (path relative to dir -> content) under dir.
func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		path := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDiscoverTrees(t *testing.T) {
	tests := []struct {
		name      string
		trees     []map[string]string // one suite directory each
		wantNames []string
		wantErr   []string // substrings of the error
	}{
		{
			name:      "cases at any depth, hidden directories skipped, other files ignored",
			trees:     []map[string]string{{"a.hl7": "", "a-expected.json": "", "x/y/b.hl7": "", "x/y/b-expected.json": "", ".git/c.hl7": "", "README.md": ""}},
			wantNames: []string{"a", "x/y/b"},
		},
		{
			name:      "several directories",
			trees:     []map[string]string{{"b.hl7": "", "b-expected.json": ""}, {"a.hl7": "", "a-expected.json": ""}},
			wantNames: []string{"a", "b"},
		},
		{
			name:    "inputs without expected bundles are listed",
			trees:   []map[string]string{{"a.hl7": "", "a-expected.json": "", "b.hl7": "", "sub/c.hl7": ""}},
			wantErr: []string{"2 files without their pair", "b.hl7", filepath.Join("sub", "c.hl7")},
		},
		{
			name:    "an expected bundle without its input",
			trees:   []map[string]string{{"a.hl7": "", "a-expected.json": "", "b-expected.json": ""}},
			wantErr: []string{"1 files without their pair", "b-expected.json"},
		},
		{
			name:    "no cases",
			trees:   []map[string]string{{"README.md": ""}},
			wantErr: []string{"no cases"},
		},
		{
			name:    "one name in two directories",
			trees:   []map[string]string{{"a.hl7": "", "a-expected.json": ""}, {"a.hl7": "", "a-expected.json": ""}},
			wantErr: []string{"case a is in both"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var dirs []string
			for _, tree := range tt.trees {
				dir := t.TempDir()
				writeTree(t, dir, tree)
				dirs = append(dirs, dir)
			}
			cases, err := Discover(dirs...)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("Discover = %v, want an error", cases)
				}
				for _, want := range tt.wantErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("Discover error %q does not contain %q", err, want)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, c := range cases {
				names = append(names, c.Name)
			}
			if !reflect.DeepEqual(names, tt.wantNames) {
				t.Errorf("Discover names = %v, want %v", names, tt.wantNames)
			}
		})
	}
}

func TestDiscoverBadDirectories(t *testing.T) {
	file := filepath.Join(t.TempDir(), "x.hl7")
	writeTree(t, filepath.Dir(file), map[string]string{"x.hl7": ""})
	tests := []struct {
		name string
		dirs []string
		want string
	}{
		{"none given", nil, "no suite directories"},
		{"missing", []string{filepath.Join(t.TempDir(), "nope")}, "no such file"},
		{"a file", []string{file}, "is not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Discover(tt.dirs...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Discover error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// resultsByName indexes a report's cases.
func resultsByName(r *Report) map[string]CaseResult {
	m := make(map[string]CaseResult)
	for _, c := range r.Cases {
		m[c.Name] = c
	}
	return m
}

func TestRunSuite(t *testing.T) {
	report, err := Run(context.Background(), testCases(t), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	got := resultsByName(report)
	if len(report.Cases) != 3 || report.Cases[0].Name != "ADT_A01/adt-a01" {
		t.Fatalf("cases = %v, want the three in Discover's order", report.Cases)
	}
	tests := []struct {
		name                      string
		passed                    bool
		expected, found, extra    int
		missing                   []Fact
		notDemanded               int
		expectedInvalid           bool
		expectedInvalidMentioning string
	}{
		// Offsets, ids, identifier systems and reference styles differ; the facts do not.
		{name: "ADT_A01/adt-a01", passed: true, expected: 27, found: 27, missing: []Fact{}},
		{name: "ORU_R01/oru-r01", passed: false, expected: 32, found: 31, extra: 1,
			missing: []Fact{{"Observation", "interpretation.coding.code", "H"}}},
		// Two elements are empty strings: the identifier value and the author
		// reference; the rest of the invalid bundle is still demanded.
		{name: "MDM_T02/mdm-t02", passed: true, expected: 10, found: 10, missing: []Fact{}, notDemanded: 2,
			expectedInvalid: true, expectedInvalidMentioning: "Provenance.agent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := got[tt.name]
			if c.Passed != tt.passed || !c.Valid || c.ValidationError != "" || c.ConvertError != "" {
				t.Errorf("passed %v valid %v (%q) convert error %q; want passed %v, valid", c.Passed, c.Valid, c.ValidationError, c.ConvertError, tt.passed)
			}
			if c.Expected != tt.expected || c.Found != tt.found || c.Extra != tt.extra || c.Deviated != 0 {
				t.Errorf("expected/found/extra/deviated = %d/%d/%d/%d, want %d/%d/%d/0", c.Expected, c.Found, c.Extra, c.Deviated, tt.expected, tt.found, tt.extra)
			}
			if !reflect.DeepEqual(c.Missing, tt.missing) {
				t.Errorf("missing = %v, want %v", c.Missing, tt.missing)
			}
			if c.NotDemanded != tt.notDemanded {
				t.Errorf("not demanded = %d, want %d", c.NotDemanded, tt.notDemanded)
			}
			if tt.expectedInvalid != (c.ExpectedInvalid != "") ||
				tt.expectedInvalid && (!strings.HasPrefix(c.ExpectedInvalid, "expected output is not valid R4: ") || !strings.Contains(c.ExpectedInvalid, tt.expectedInvalidMentioning)) {
				t.Errorf("expected invalid = %q, want a note: %v", c.ExpectedInvalid, tt.expectedInvalid)
			}
		})
	}
	want := Totals{Cases: 3, Passed: 2, Valid: 3, ExpectedInvalid: 1, Expected: 69, Found: 68, Missing: 1, Coverage: 68 * 100.0 / 69, Accounted: 68 * 100.0 / 69}
	if report.Totals != want {
		t.Errorf("totals = %+v, want %+v", report.Totals, want)
	}
	if err := report.Check(98.5); err != nil {
		t.Errorf("Check(98.5) = %v, want nil at %.2f%%", err, report.Totals.Coverage)
	}
}

func TestRunDeviations(t *testing.T) {
	opts := testOptions()
	opts.Convert = func(input []byte) ([]byte, error) {
		if bytes.Contains(input, []byte("|MDM0001|")) {
			return nil, errors.New("TXA-12: no unique document number")
		}
		return fakeConvert(input)
	}
	opts.Deviations = []Deviation{
		{Resource: "Observation", Path: "interpretation*", Values: []string{"H"}, Reason: "abnormal flags are carried as an extension", IGRow: "OBX[Observation] OBX-8"},
		{Resource: "Patient", Path: "name.given", Cases: []string{"MDM_"}, Reason: "given names come from PDS", IGRow: "PID[Patient] PID-5"},
		{Resource: "Patient", Path: "name.given", Values: []string{"Nobody"}, Reason: "a value no case has", IGRow: "PID[Patient] PID-5"},
		{Resource: "Immunization", Path: "*", Reason: "no vaccination feed", IGRow: "none"},
	}
	report, err := Run(context.Background(), testCases(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	// ORU lacks only its interpretation code, which the first deviation accounts
	// for: the case passes, and the fact counts as expected, not found.
	oru := resultsByName(report)["ORU_R01/oru-r01"]
	if !oru.Passed || oru.Deviated != 1 || oru.Expected != 32 || oru.Found != 31 || len(oru.Missing) != 0 {
		t.Errorf("ORU: passed %v, deviated %d, expected %d, found %d, missing %v; want passed, 1, 32, 31, none",
			oru.Passed, oru.Deviated, oru.Expected, oru.Found, oru.Missing)
	}
	// ADT's given names are ours: a deviation never takes a fact we produce.
	if adt := resultsByName(report)["ADT_A01/adt-a01"]; adt.Deviated != 0 || adt.Expected != 27 || adt.Found != 27 || adt.Extra != 0 {
		t.Errorf("ADT: deviated %d, expected %d, found %d, extra %d; want 0, 27, 27, 0", adt.Deviated, adt.Expected, adt.Found, adt.Extra)
	}
	// MDM did not convert: its one given name is deviated (the case filter), the
	// rest missing.
	if mdm := resultsByName(report)["MDM_T02/mdm-t02"]; mdm.Passed || mdm.Deviated != 1 || mdm.Expected != 10 || len(mdm.Missing) != 9 {
		t.Errorf("MDM: passed %v, deviated %d, expected %d, missing %d; want failed, 1, 10, 9", mdm.Passed, mdm.Deviated, mdm.Expected, len(mdm.Missing))
	}
	var uses []int
	for _, d := range report.Deviations {
		uses = append(uses, d.Facts)
	}
	if want := []int{1, 1, 0, 0}; !reflect.DeepEqual(uses, want) {
		t.Errorf("deviation uses = %v, want %v (the unmatched ones listed with 0)", uses, want)
	}
	tot := report.Totals
	if tot.Expected != 69 || tot.Found != 58 || tot.Deviated != 2 || tot.Missing != 9 || tot.Passed != 2 {
		t.Errorf("totals = %+v, want 69 expected, 58 found, 2 deviated, 9 missing, 2 passed", tot)
	}
	if got, want := fmt.Sprintf("%.2f %.2f", tot.Coverage, tot.Accounted), "84.06 86.96"; got != want {
		t.Errorf("coverage, accounted = %s, want %s (deviations do not change the coverage)", got, want)
	}
}

func TestSuiteDeviationMatches(t *testing.T) {
	f := Fact{"Patient", "identifier.type.coding.code", "NH"}
	tests := []struct {
		d    Deviation
		want bool
	}{
		{Deviation{Resource: "Patient", Path: "identifier.type.coding.code"}, true},
		{Deviation{Resource: "Patient", Path: "identifier.*"}, true},
		{Deviation{Resource: "Patient", Path: "*"}, true},
		{Deviation{Resource: "Patient", Path: "identifier"}, false},
		{Deviation{Resource: "Patient", Path: "identifier.value"}, false},
		{Deviation{Resource: "Practitioner", Path: "*"}, false},
		{Deviation{Resource: "Patient", Path: "*", Values: []string{"MR", "NH"}}, true},
		{Deviation{Resource: "Patient", Path: "*", Values: []string{"MR"}}, false},
		{Deviation{Resource: "Patient", Path: "*", Cases: []string{"ORU_", "ADT_"}}, true},
		{Deviation{Resource: "Patient", Path: "*", Cases: []string{"ADT_A04/"}}, false},
	}
	for _, tt := range tests {
		if got := tt.d.matches("ADT_A01/adt-a01", f); got != tt.want {
			t.Errorf("%+v matches %v in ADT_A01/adt-a01 = %v, want %v", tt.d, f, got, tt.want)
		}
	}
}

func TestRunOurBundleInvalid(t *testing.T) {
	opts := testOptions()
	opts.Convert = func(input []byte) ([]byte, error) {
		b, err := fakeConvert(input)
		return bytes.Replace(b, []byte(`"gender": "female"`), []byte(`"gender": ""`), 1), err
	}
	report, err := Run(context.Background(), testCases(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	adt := resultsByName(report)["ADT_A01/adt-a01"]
	if adt.Valid || adt.Passed || !strings.Contains(adt.ValidationError, "gender: empty string") {
		t.Errorf("ADT: valid %v, passed %v, validation error %q; want invalid for the empty gender", adt.Valid, adt.Passed, adt.ValidationError)
	}
	if want := []Fact{{"Patient", "gender", "female"}}; !reflect.DeepEqual(adt.Missing, want) {
		t.Errorf("ADT missing = %v, want %v", adt.Missing, want)
	}
	if report.Totals.Valid != 2 {
		t.Errorf("totals valid = %d, want 2", report.Totals.Valid)
	}
	err = report.Check(0)
	if !errors.Is(err, ErrInvalidBundles) || !strings.Contains(err.Error(), "1 of 3 bundles not valid R4: ADT_A01/adt-a01") {
		t.Errorf("Check(0) = %v, want ErrInvalidBundles naming the case", err)
	}
}

func TestRunNotABundle(t *testing.T) {
	opts := testOptions()
	opts.Validate = func([]byte) error { return nil } // a validator that misses it
	opts.Convert = func([]byte) ([]byte, error) { return []byte(`{"resourceType": "Patient"}`), nil }
	report, err := Run(context.Background(), testCases(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range report.Cases {
		if c.Valid || !strings.Contains(c.ValidationError, "want Bundle") || c.Found != 0 {
			t.Errorf("%s: valid %v, validation error %q, found %d; want invalid, not a Bundle", c.Name, c.Valid, c.ValidationError, c.Found)
		}
	}
}

func TestRunConvertErrors(t *testing.T) {
	opts := testOptions()
	opts.Convert = func(input []byte) ([]byte, error) {
		switch {
		case bytes.Contains(input, []byte("|ORU0001|")):
			return nil, errors.New("OBX-5: value not a number")
		case bytes.Contains(input, []byte("|MDM0001|")):
			panic("index out of range")
		}
		return fakeConvert(input)
	}
	report, err := Run(context.Background(), testCases(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	got := resultsByName(report)
	tests := []struct {
		name, convertError string
		expected           int
	}{
		{"ORU_R01/oru-r01", "OBX-5: value not a number", 32},
		{"MDM_T02/mdm-t02", "convert panicked: index out of range", 10},
	}
	for _, tt := range tests {
		c := got[tt.name]
		if c.ConvertError != tt.convertError || c.Valid || c.Passed || c.Found != 0 || c.Expected != tt.expected || len(c.Missing) != tt.expected {
			t.Errorf("%s: convert error %q, valid %v, passed %v, found %d of %d, %d missing; want %q and every fact missing",
				tt.name, c.ConvertError, c.Valid, c.Passed, c.Found, c.Expected, len(c.Missing), tt.convertError)
		}
	}
	if report.Totals.ConvertErrors != 2 || report.Totals.Valid != 1 || report.Totals.Found != 27 || report.Totals.Expected != 69 {
		t.Errorf("totals = %+v, want 2 convert errors, 1 valid, 27 of 69 found", report.Totals)
	}
	err = report.Check(0)
	if !errors.Is(err, ErrConvertFailed) || errors.Is(err, ErrInvalidBundles) {
		t.Errorf("Check(0) = %v, want ErrConvertFailed alone (no bundle of ours is invalid)", err)
	}
}

func TestRunWriteDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	opts := testOptions()
	opts.WriteDir = dir
	if _, err := Run(context.Background(), testCases(t), opts); err != nil {
		t.Fatal(err)
	}
	for name, id := range map[string]string{"ADT_A01/adt-a01": "ADT0001", "ORU_R01/oru-r01": "ORU0001", "MDM_T02/mdm-t02": "MDM0001"} {
		got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)+".json"))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		want, err := os.ReadFile(filepath.Join(oursDir, id+".json"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: written bundle differs from what Convert returned", name)
		}
	}
}

func TestRunErrors(t *testing.T) {
	cases := testCases(t)
	broken := t.TempDir()
	writeTree(t, broken, map[string]string{"a.hl7": "MSH|^~\\&|", "a-expected.json": `{"resourceType": "Bundle", `})
	brokenCases, err := Discover(broken)
	if err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name  string
		ctx   context.Context
		cases []Case
		opts  func(*Options)
		want  string
	}{
		{"no convert", context.Background(), cases, func(o *Options) { o.Convert = nil }, "are required"},
		{"no validate", context.Background(), cases, func(o *Options) { o.Validate = nil }, "are required"},
		{"no cases", context.Background(), nil, func(*Options) {}, "no cases"},
		{"deviation without a reason", context.Background(), cases, func(o *Options) {
			o.Deviations = []Deviation{{Resource: "Patient", Path: "gender"}}
		}, "deviation 1 (Patient gender): deviation lacks reason, ig"},
		{"deviation without an IG row", context.Background(), cases, func(o *Options) {
			o.Deviations = []Deviation{{Resource: "Patient", Path: "name.given", Reason: "from PDS"}}
		}, "deviation 1 (Patient name.given): deviation lacks ig"},
		{"deviation with a star inside its path", context.Background(), cases, func(o *Options) {
			o.Deviations = []Deviation{{Resource: "Patient", Path: "name.*.given", Reason: "from PDS", IGRow: "PID-5"}}
		}, `path "name.*.given": * may only end a path`},
		{"a case twice", context.Background(), append(cases, cases[0]), func(*Options) {}, "appears twice"},
		{"a name leaving WriteDir", context.Background(), []Case{{Name: "../up", Input: cases[0].Input, Expected: cases[0].Expected}},
			func(o *Options) { o.WriteDir = t.TempDir() }, "outside WriteDir"},
		{"input missing", context.Background(), []Case{{Name: "gone", Input: "testdata/nope.hl7", Expected: cases[0].Expected}},
			func(*Options) {}, "case gone"},
		{"expected bundle not JSON", context.Background(), brokenCases, func(*Options) {}, "case a: expected bundle"},
		{"context cancelled", cancelled, cases, func(*Options) {}, "run stopped after 0 of 3 cases: context canceled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := testOptions()
			tt.opts(&opts)
			report, err := Run(tt.ctx, tt.cases, opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Run = %v, %v; want an error containing %q", report, err, tt.want)
			}
		})
	}
}
