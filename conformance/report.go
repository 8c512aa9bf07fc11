package conformance

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"path"
	"strings"
	"text/tabwriter"
	"time"
)

// CaseResult is the outcome of one case.
type CaseResult struct {
	Name   string `json:"name"`
	Passed bool   `json:"passed"` // converted, valid, and no expected fact missing
	// Valid is true when our bundle passed Validate and could be read as a Bundle;
	// ValidationError says why not.
	Valid           bool   `json:"valid"`
	ValidationError string `json:"validation_error"`
	ConvertError    string `json:"convert_error"`
	// ExpectedInvalid says why the expected bundle is not valid R4, when it is not.
	ExpectedInvalid string `json:"expected_invalid"`
	// NotDemanded counts elements of the expected bundle that could not be read as
	// facts (empty strings, malformed values, references to nothing) and so are not
	// asked of us.
	NotDemanded int `json:"not_demanded"`
	// Expected counts the expected facts asked of us, Found those we produced,
	// Deviated those we lack that a Deviation accounts for; Missing lists the rest.
	Expected int    `json:"expected"`
	Found    int    `json:"found"`
	Deviated int    `json:"deviated"`
	Missing  []Fact `json:"missing"` // expected, not found, not deviated
	Extra    int    `json:"extra"`   // our facts the expected bundle does not have
	// Duration is the time Convert took; validation and comparison are the
	// harness's cost, not the engine's.
	Duration time.Duration `json:"duration_ns"`
}

// Coverage is the percentage of the case's expected facts we produced; 100 when
// none were expected.
func (c CaseResult) Coverage() float64 { return percent(c.Found, c.Expected) }

// Totals sum the cases of a report.
type Totals struct {
	Cases           int     `json:"cases"`
	Passed          int     `json:"passed"`
	Valid           int     `json:"valid"` // our bundles that are valid R4
	ConvertErrors   int     `json:"convert_errors"`
	ExpectedInvalid int     `json:"expected_invalid"` // expected bundles that are not valid R4
	Expected        int     `json:"expected"`
	Found           int     `json:"found"`
	Deviated        int     `json:"deviated"`
	Missing         int     `json:"missing"`   // expected, not found, not deviated
	Coverage        float64 `json:"coverage"`  // percent of Expected that were Found
	Accounted       float64 `json:"accounted"` // percent of Expected that were Found or Deviated
}

// DeviationUse is a deviation and the number of expected facts it accounted for
// over the run; a deviation that accounted for none is listed too, as one that
// may be stale.
type DeviationUse struct {
	Deviation
	Facts int `json:"facts"`
}

// Report is the outcome of a run: one result per case in the order run, the
// totals and the deviations applied.
type Report struct {
	Cases      []CaseResult   `json:"cases"`
	Totals     Totals         `json:"totals"`
	Deviations []DeviationUse `json:"deviations"`
}

// Errors Check wraps, for callers that branch on which condition failed.
var (
	ErrInvalidBundles = errors.New("not valid R4")
	ErrConvertFailed  = errors.New("failed to convert")
	ErrBelowFloor     = errors.New("below the floor")
)

// total computes the totals from the cases.
func (r *Report) total() {
	t := Totals{Cases: len(r.Cases)}
	for _, c := range r.Cases {
		if c.Passed {
			t.Passed++
		}
		if c.Valid {
			t.Valid++
		}
		if c.ConvertError != "" {
			t.ConvertErrors++
		}
		if c.ExpectedInvalid != "" {
			t.ExpectedInvalid++
		}
		t.Expected += c.Expected
		t.Found += c.Found
		t.Deviated += c.Deviated
		t.Missing += len(c.Missing)
	}
	t.Coverage = percent(t.Found, t.Expected)
	t.Accounted = percent(t.Found+t.Deviated, t.Expected)
	r.Totals = t
}

func percent(found, expected int) float64 {
	if expected == 0 {
		return 100
	}
	return float64(found) * 100 / float64(expected)
}

// Check returns nil when every bundle we produced is valid R4, no conversion
// failed, and the fact coverage is at least floor percent. Otherwise it returns an
// error naming each condition that failed, with its numbers, wrapping
// ErrInvalidBundles, ErrConvertFailed or ErrBelowFloor. Cases that fail only for
// missing facts do not fail Check on their own: the floor does.
func (r *Report) Check(floor float64) error {
	if math.IsNaN(floor) || floor < 0 || floor > 100 {
		return fmt.Errorf("conformance: check: floor %v is not a percentage from 0 to 100", floor)
	}
	var invalid, failed []string
	for _, c := range r.Cases {
		switch {
		case c.ConvertError != "":
			failed = append(failed, c.Name)
		case !c.Valid:
			invalid = append(invalid, c.Name)
		}
	}
	var errs []error
	produced := len(r.Cases) - len(failed)
	if len(invalid) > 0 {
		errs = append(errs, fmt.Errorf("conformance: %d of %d bundles %w: %s", len(invalid), produced, ErrInvalidBundles, firstNames(invalid)))
	}
	if len(failed) > 0 {
		errs = append(errs, fmt.Errorf("conformance: %d of %d cases %w: %s", len(failed), len(r.Cases), ErrConvertFailed, firstNames(failed)))
	}
	t := r.Totals
	if float64(t.Found)*100 < floor*float64(t.Expected) {
		errs = append(errs, fmt.Errorf("conformance: fact coverage %.2f%% (%d of %d) is %w %.2f%%", t.Coverage, t.Found, t.Expected, ErrBelowFloor, floor))
	}
	return errors.Join(errs...)
}

// firstNames lists up to five names, then how many more there are.
func firstNames(names []string) string {
	const most = 5
	if len(names) <= most {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s (and %d more)", strings.Join(names[:most], ", "), len(names)-most)
}

// How many missing facts the table shows for each failing case.
const tableMissing = 5

// WriteTable writes the report for a terminal: one aligned line per case, the
// totals, then why each failing case failed (with its first missing facts), which
// expected bundles are not valid R4, and the deviations applied.
func (r *Report) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CASE\tVALID\tFACTS\tCOVERAGE\tRESULT")
	for _, c := range r.Cases {
		valid := "yes"
		switch {
		case c.ConvertError != "":
			valid = "-"
		case !c.Valid:
			valid = "NO"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%.1f%%\t%s\n", c.Name, valid, c.Found, c.Expected, c.Coverage(), passFail(c.Passed))
	}
	t := r.Totals
	fmt.Fprintf(tw, "TOTAL (%d cases)\t%d/%d\t%d/%d\t%.1f%%\t%d passed\n",
		t.Cases, t.Valid, t.Cases-t.ConvertErrors, t.Found, t.Expected, t.Coverage, t.Passed)
	tw.Flush()
	if t.Deviated > 0 {
		fmt.Fprintf(w, "Not found: %d deliberate (deviations below), %d missing; found or deliberate: %.1f%%\n",
			t.Deviated, t.Missing, t.Accounted)
	}

	var failing []CaseResult
	var notes []string
	for _, c := range r.Cases {
		if !c.Passed {
			failing = append(failing, c)
		}
		if c.ExpectedInvalid != "" {
			notes = append(notes, fmt.Sprintf("  %s: %s (%d elements not demanded)", c.Name, oneLine(c.ExpectedInvalid), c.NotDemanded))
		}
	}
	if len(failing) > 0 {
		fmt.Fprintf(w, "\nFailing cases (%d):\n", len(failing))
		for _, c := range failing {
			for _, line := range failureLines(c, tableMissing) {
				fmt.Fprintf(w, "  %s: %s\n", c.Name, oneLine(line))
			}
		}
	}
	if len(notes) > 0 {
		fmt.Fprintf(w, "\nExpected outputs that are not valid R4 (%d):\n", len(notes))
		for _, n := range notes {
			fmt.Fprintln(w, n)
		}
	}
	if len(r.Deviations) > 0 {
		fmt.Fprintf(w, "\nDeviations (%d of the facts not found are deliberate):\n", t.Deviated)
		unused := 0
		for _, d := range r.Deviations {
			if d.Facts == 0 {
				unused++
				continue
			}
			fmt.Fprintf(w, "  %s.%s", d.Resource, d.Path)
			if len(d.Values) > 0 {
				fmt.Fprintf(w, " = %s", strings.Join(d.Values, "|"))
			}
			if len(d.Cases) > 0 {
				fmt.Fprintf(w, " in %s*", strings.Join(d.Cases, "*, "))
			}
			fmt.Fprintf(w, ": %d facts: %s (IG: %s)\n", d.Facts, d.Reason, d.IGRow)
		}
		// The JSON report lists them with 0 facts: on the suite a list was
		// written for, one that accounts for nothing may be stale.
		switch {
		case unused == len(r.Deviations):
			fmt.Fprintf(w, "  (none of the %d accounted for a fact in these cases)\n", unused)
		case unused > 0:
			fmt.Fprintf(w, "  (%d more accounted for nothing in these cases)\n", unused)
		}
	}
}

// oneLine keeps a validator's or converter's multi-line error on its case's line
// of the table.
func oneLine(s string) string {
	return strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "; ")
}

func passFail(passed bool) string {
	if passed {
		return "PASS"
	}
	return "FAIL"
}

// failureLines says why a case failed, listing at most most missing facts (all
// when most < 0). A case whose conversion failed lists no missing facts: all of
// them are.
func failureLines(c CaseResult, most int) []string {
	if c.ConvertError != "" {
		return []string{"conversion failed: " + c.ConvertError}
	}
	var lines []string
	if !c.Valid {
		lines = append(lines, "not valid R4: "+c.ValidationError)
	}
	if n := len(c.Missing); n > 0 {
		lines = append(lines, fmt.Sprintf("%d of %d expected facts missing:", n, c.Expected))
		shown := c.Missing
		if most >= 0 && n > most {
			shown = shown[:most]
		}
		for _, f := range shown {
			lines = append(lines, "  missing "+f.String())
		}
		if len(shown) < n {
			lines = append(lines, fmt.Sprintf("  (and %d more)", n-len(shown)))
		}
	}
	return lines
}

// WriteJSON writes the report as one JSON object with the cases, totals and
// deviations; field names are snake_case and stable, and durations are in
// nanoseconds.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // "->Patient" stays readable
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("conformance: write JSON report: %w", err)
	}
	return nil
}

// The JUnit XML schema as CI tools (Jenkins, GitLab, GitHub test reporters) read it.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Time       string          `xml:"time,attr"`
	Properties []junitProperty `xml:"properties>property"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitProblem `xml:"failure"`
	Error     *junitProblem `xml:"error"`
	SystemOut *junitText    `xml:"system-out"`
}

type junitText struct {
	Text string `xml:",cdata"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",cdata"` // CDATA, so that its lines stay lines in the file
}

// xmlText replaces the characters XML 1.0 cannot carry (control characters from a
// message or an error, say) with U+FFFD: encoding/xml writes CDATA as given apart
// from splitting "]]>", and one such character would make the file unreadable.
func xmlText(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t' || r == '\n' || r == '\r',
			r >= 0x20 && r <= 0xD7FF,
			r >= 0xE000 && r <= 0xFFFD,
			r >= 0x10000 && r <= 0x10FFFF:
			return r
		}
		return '\uFFFD'
	}, s)
}

// WriteJUnit writes the report as JUnit XML: one testsuite "conversion" with a
// testcase per case, classname from the case's folder (the message type in the
// public corpus). An invalid bundle or missing facts are a <failure> listing every
// validation problem and missing fact; a failed conversion is an <error>. A note
// that the expected bundle is not valid R4 goes to <system-out>. The totals are
// testsuite properties.
func (r *Report) WriteJUnit(w io.Writer) error {
	t := r.Totals
	var total time.Duration
	suite := junitSuite{Name: "conversion", Tests: len(r.Cases)}
	for _, c := range r.Cases {
		total += c.Duration
		jc := junitCase{Name: c.Name, Classname: classname(c.Name), Time: seconds(c.Duration)}
		if c.ExpectedInvalid != "" {
			jc.SystemOut = &junitText{Text: xmlText(c.ExpectedInvalid)}
		}
		switch {
		case c.ConvertError != "":
			suite.Errors++
			jc.Error = &junitProblem{Message: "conversion failed: " + c.ConvertError, Type: "convert", Text: xmlText(c.ConvertError)}
		case !c.Passed:
			suite.Failures++
			var msg []string
			typ := "missing-facts"
			if !c.Valid {
				msg = append(msg, "bundle is not valid R4")
				typ = "invalid"
			}
			if len(c.Missing) > 0 {
				msg = append(msg, fmt.Sprintf("%d of %d expected facts missing", len(c.Missing), c.Expected))
			}
			jc.Failure = &junitProblem{Message: strings.Join(msg, "; "), Type: typ, Text: xmlText(strings.Join(failureLines(c, -1), "\n"))}
		}
		suite.Cases = append(suite.Cases, jc)
	}
	suite.Time = seconds(total)
	suite.Properties = []junitProperty{
		{"coverage", fmt.Sprintf("%.2f", t.Coverage)},
		{"facts_expected", fmt.Sprint(t.Expected)},
		{"facts_found", fmt.Sprint(t.Found)},
		{"facts_deviated", fmt.Sprint(t.Deviated)},
		{"facts_missing", fmt.Sprint(t.Missing)},
		{"accounted", fmt.Sprintf("%.2f", t.Accounted)},
		{"valid", fmt.Sprint(t.Valid)},
		{"expected_invalid", fmt.Sprint(t.ExpectedInvalid)},
	}
	doc := junitSuites{Name: "spinebridge conformance", Tests: suite.Tests, Failures: suite.Failures, Errors: suite.Errors, Time: suite.Time, Suites: []junitSuite{suite}}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return fmt.Errorf("conformance: write JUnit report: %w", err)
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("conformance: write JUnit report: %w", err)
	}
	if _, err := io.WriteString(w, "\n"); err != nil {
		return fmt.Errorf("conformance: write JUnit report: %w", err)
	}
	return nil
}

// classname groups a case under its folder, "conversion" for a case at the top.
func classname(name string) string {
	dir := path.Dir(name)
	if dir == "." {
		return "conversion"
	}
	return "conversion." + strings.ReplaceAll(dir, "/", ".")
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }
