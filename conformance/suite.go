package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Convert turns one input file's bytes into one FHIR Bundle (JSON).
type Convert func(input []byte) ([]byte, error)

// Validate returns nil when the JSON is valid FHIR R4, else an error naming each
// problem.
type Validate func(json []byte) error

// Case is one conversion case: an input message beside the bundle expected for it.
type Case struct {
	// Name is the input's path relative to its suite directory, with forward
	// slashes and without ".hl7", such as "ADT_A01/ADT-A01-01". It names the case
	// in reports and the file written under Options.WriteDir.
	Name     string
	Input    string // path of X.hl7
	Expected string // path of X-expected.json
}

const (
	inputSuffix    = ".hl7"
	expectedSuffix = "-expected.json"
)

// Discover walks each directory and returns a case for every X.hl7 with an
// X-expected.json beside it, sorted by name. An input without its expected bundle,
// or an expected bundle without its input, is an error listing all of them: a case
// silently left out would make the coverage look better than it is. So are two
// directories that hold a case of the same name, and finding no cases at all.
// Directories whose names start with "." are skipped.
func Discover(dirs ...string) ([]Case, error) {
	if len(dirs) == 0 {
		return nil, errors.New("conformance: discover: no suite directories given")
	}
	var cases []Case
	var orphans []string
	byName := make(map[string]string) // case name -> suite directory
	for _, dir := range dirs {
		found, lonely, err := discoverDir(dir)
		if err != nil {
			return nil, err
		}
		orphans = append(orphans, lonely...)
		for _, c := range found {
			if other, ok := byName[c.Name]; ok {
				return nil, fmt.Errorf("conformance: discover: case %s is in both %s and %s", c.Name, other, dir)
			}
			byName[c.Name] = dir
			cases = append(cases, c)
		}
	}
	if len(orphans) > 0 {
		slices.Sort(orphans)
		return nil, fmt.Errorf("conformance: discover: %d files without their pair (X.hl7 needs X-expected.json and the reverse): %s",
			len(orphans), strings.Join(orphans, ", "))
	}
	if len(cases) == 0 {
		return nil, fmt.Errorf("conformance: discover: no cases (X.hl7 beside X-expected.json) in %s", strings.Join(dirs, ", "))
	}
	slices.SortFunc(cases, func(a, b Case) int { return strings.Compare(a.Name, b.Name) })
	return cases, nil
}

// discoverDir returns the cases of one suite directory and the files in it that
// lack their pair.
func discoverDir(dir string) (cases []Case, orphans []string, err error) {
	info, err := os.Stat(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("conformance: discover: %w", err)
	}
	if !info.IsDir() {
		return nil, nil, fmt.Errorf("conformance: discover: %s is not a directory", dir)
	}
	inputs := make(map[string]bool)   // path without .hl7
	expected := make(map[string]bool) // path without -expected.json
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != dir && strings.HasPrefix(name, ".") {
				return filepath.SkipDir
			}
			return nil
		}
		switch {
		case strings.HasSuffix(name, expectedSuffix):
			expected[strings.TrimSuffix(path, expectedSuffix)] = true
		case strings.HasSuffix(name, inputSuffix):
			inputs[strings.TrimSuffix(path, inputSuffix)] = true
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("conformance: discover: %w", err)
	}
	for stem := range inputs {
		if !expected[stem] {
			orphans = append(orphans, stem+inputSuffix)
			continue
		}
		rel, err := filepath.Rel(dir, stem)
		if err != nil {
			return nil, nil, fmt.Errorf("conformance: discover: %w", err)
		}
		cases = append(cases, Case{Name: filepath.ToSlash(rel), Input: stem + inputSuffix, Expected: stem + expectedSuffix})
	}
	for stem := range expected {
		if !inputs[stem] {
			orphans = append(orphans, stem+expectedSuffix)
		}
	}
	return cases, orphans, nil
}

// Deviation is an expected fact Spinebridge deliberately does not produce, with
// the reason and the row of the HL7 v2-to-FHIR IG mapping the decision follows.
// It applies only to an expected fact our bundle lacks: such a fact is counted as
// deviated rather than missing, and the report lists each deviation with the
// number of facts it accounted for, so that the decision stays visible. It never
// hides a fact we produce, and it does not change the coverage, which is always
// the share of all expected facts found.
type Deviation struct {
	Resource string `json:"resource" yaml:"resource"` // resource type, such as "Patient"
	// Path is a fact's path ("identifier.type.coding.code"), or a prefix ending in
	// "*" ("identifier.*"); "*" alone matches every fact of the resource type.
	Path string `json:"path" yaml:"path"`
	// Values, when given, limits the deviation to facts with one of these values
	// (a code, or a reference's "->Type").
	Values []string `json:"values,omitempty" yaml:"values"`
	// Cases, when given, limits it to cases whose name starts with one of these
	// ("MDM_" for every MDM message type of the corpus).
	Cases  []string `json:"cases,omitempty" yaml:"cases"`
	Reason string   `json:"reason" yaml:"reason"`
	IGRow  string   `json:"ig_row" yaml:"ig"` // the IG mapping row, such as "PID[Patient] PID-3"
	// Source is where the deviation was read, as file:line, when it came from a file.
	Source string `json:"source,omitempty" yaml:"-"`
}

// matches reports whether the deviation covers fact f of the named case.
func (d Deviation) matches(caseName string, f Fact) bool {
	if f.Resource != d.Resource {
		return false
	}
	if prefix, ok := strings.CutSuffix(d.Path, "*"); ok {
		if !strings.HasPrefix(f.Path, prefix) {
			return false
		}
	} else if f.Path != d.Path {
		return false
	}
	if len(d.Values) > 0 && !slices.Contains(d.Values, f.Value) {
		return false
	}
	return len(d.Cases) == 0 || slices.ContainsFunc(d.Cases, func(prefix string) bool { return strings.HasPrefix(caseName, prefix) })
}

// check says what makes the deviation unusable, or nil: it lacks its resource,
// path, reason or IG row, or its path has a * other than at the end.
func (d Deviation) check() error {
	var lack []string
	for _, f := range []struct{ key, value string }{{"resource", d.Resource}, {"path", d.Path}, {"reason", d.Reason}, {"ig", d.IGRow}} {
		if strings.TrimSpace(f.value) == "" {
			lack = append(lack, f.key)
		}
	}
	if len(lack) > 0 {
		return fmt.Errorf("deviation lacks %s", strings.Join(lack, ", "))
	}
	if i := strings.IndexByte(d.Path, '*'); i >= 0 && i != len(d.Path)-1 {
		return fmt.Errorf("path %q: * may only end a path", d.Path)
	}
	return nil
}

// Options configure Run.
type Options struct {
	Convert  Convert  // required
	Validate Validate // required; applied to our bundles and to the expected ones
	// WriteDir, when set, receives our bundle for each case as WriteDir/<Name>.json
	// (directories created), so that a second, independent validator can be run
	// over them. Bundles are written whether valid or not.
	WriteDir   string
	Deviations []Deviation // facts we deliberately do not produce, each with its reason and IG row
}

// Run converts each case's input and compares our bundle with the expected one.
// Cases run one after another, so Convert need not be safe for concurrent use, and
// a Convert that panics fails its case rather than the run. The error is for what
// makes the report meaningless: missing options, an unreadable case file, an
// expected bundle that is not a JSON Bundle, a WriteDir that cannot be written, or
// ctx ending before every case has run. ctx is looked at between cases: Convert
// takes none, so a conversion that never returns holds the run.
func Run(ctx context.Context, cases []Case, opts Options) (*Report, error) {
	if opts.Convert == nil || opts.Validate == nil {
		return nil, errors.New("conformance: run: Options.Convert and Options.Validate are required")
	}
	if len(cases) == 0 {
		return nil, errors.New("conformance: run: no cases")
	}
	for i, d := range opts.Deviations {
		if err := d.check(); err != nil {
			return nil, fmt.Errorf("conformance: run: deviation %d (%s %s): %w", i+1, d.Resource, d.Path, err)
		}
	}
	seen := make(map[string]bool, len(cases))
	for _, c := range cases {
		if seen[c.Name] {
			return nil, fmt.Errorf("conformance: run: case %s appears twice", c.Name)
		}
		seen[c.Name] = true
		if opts.WriteDir != "" && !filepath.IsLocal(filepath.FromSlash(c.Name)) {
			return nil, fmt.Errorf("conformance: run: case name %s would be written outside WriteDir", c.Name)
		}
	}

	report := &Report{Cases: make([]CaseResult, 0, len(cases)), Deviations: make([]DeviationUse, 0, len(opts.Deviations))}
	used := make([]int, len(opts.Deviations))
	for i, c := range cases {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("conformance: run stopped after %d of %d cases: %w", i, len(cases), err)
		}
		result, err := runCase(c, opts, used)
		if err != nil {
			return nil, err
		}
		report.Cases = append(report.Cases, result)
	}
	for i, d := range opts.Deviations {
		report.Deviations = append(report.Deviations, DeviationUse{Deviation: d, Facts: used[i]})
	}
	report.total()
	return report, nil
}

// runCase runs one case, adding to used the expected facts each deviation covered.
func runCase(c Case, opts Options, used []int) (CaseResult, error) {
	r := CaseResult{Name: c.Name, Missing: []Fact{}}
	input, err := os.ReadFile(c.Input)
	if err != nil {
		return r, fmt.Errorf("conformance: case %s: %w", c.Name, err)
	}
	expected, err := os.ReadFile(c.Expected)
	if err != nil {
		return r, fmt.Errorf("conformance: case %s: %w", c.Name, err)
	}
	expected = bytes.TrimPrefix(expected, bom) // a file encoding detail, not part of the bundle
	want, unread, err := extract(expected)
	if err != nil {
		return r, fmt.Errorf("conformance: case %s: expected bundle %s: %w", c.Name, c.Expected, err)
	}
	r.NotDemanded = unread
	if err := opts.Validate(expected); err != nil {
		// Where the expected output breaks R4, R4 wins: its unreadable elements are
		// already out of want, and the rest is still demanded.
		r.ExpectedInvalid = "expected output is not valid R4: " + err.Error()
	}

	var have []Fact
	start := time.Now()
	bundle, err := convert(opts.Convert, input)
	r.Duration = time.Since(start)
	if err != nil {
		r.ConvertError = err.Error()
	} else {
		if opts.WriteDir != "" {
			if err := writeBundle(opts.WriteDir, c.Name, bundle); err != nil {
				return r, err
			}
		}
		var problems []string
		if err := opts.Validate(bundle); err != nil {
			problems = append(problems, err.Error())
		}
		have, _, err = extract(bundle)
		if err != nil {
			problems = append(problems, err.Error())
		}
		r.Valid = len(problems) == 0
		r.ValidationError = strings.Join(problems, "; ")
	}

	compare(&r, want, have, opts.Deviations, used)
	r.Passed = r.ConvertError == "" && r.Valid && len(r.Missing) == 0
	return r, nil
}

// convert calls fn, turning a panic into the case's error.
func convert(fn Convert, input []byte) (bundle []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("convert panicked: %v", p)
		}
	}()
	return fn(input)
}

func writeBundle(dir, name string, bundle []byte) error {
	path := filepath.Join(dir, filepath.FromSlash(name)+".json")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("conformance: case %s: write bundle: %w", name, err)
	}
	if err := os.WriteFile(path, bundle, 0o644); err != nil {
		return fmt.Errorf("conformance: case %s: write bundle: %w", name, err)
	}
	return nil
}

// compare looks for each expected fact among ours, as multisets: a fact expected
// twice must be present twice. An expected fact we lack is deviated when a
// deviation covers it, and missing otherwise.
func compare(r *CaseResult, want, have []Fact, deviations []Deviation, used []int) {
	pool := make(map[Fact]int, len(have))
	for _, f := range have {
		pool[f]++
	}
next:
	for _, f := range want {
		r.Expected++
		if pool[f] > 0 {
			pool[f]--
			r.Found++
			continue
		}
		for i, d := range deviations {
			if d.matches(r.Name, f) {
				r.Deviated++
				used[i]++
				continue next
			}
		}
		r.Missing = append(r.Missing, f)
	}
	for _, n := range pool {
		r.Extra += n
	}
}
