package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

// mixedReport runs the test suite with ORU converted without its interpretation
// code (as written) and MDM failing to convert, its patient's name deviated.
func mixedReport(t *testing.T) *Report {
	t.Helper()
	opts := testOptions()
	opts.Convert = func(input []byte) ([]byte, error) {
		if bytes.Contains(input, []byte("|MDM0001|")) {
			return nil, errors.New("TXA-12: no unique document number")
		}
		return fakeConvert(input)
	}
	opts.Deviations = []Deviation{{Resource: "Patient", Path: "name.*", Cases: []string{"MDM_"}, Reason: "names come from PDS", IGRow: "PID[Patient] PID-5"}}
	report, err := Run(context.Background(), testCases(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	return report
}

func TestReportCheck(t *testing.T) {
	good := CaseResult{Name: "a", Passed: true, Valid: true, Expected: 48, Found: 48}
	short := CaseResult{Name: "b", Valid: true, Expected: 52, Found: 48, Missing: make([]Fact, 4)}
	invalid := CaseResult{Name: "c", ValidationError: "Patient.gender: empty string", Expected: 10, Found: 10}
	failed := CaseResult{Name: "d", ConvertError: "MSH-9: unknown message type", Expected: 10, Missing: make([]Fact, 10)}
	report := func(cases ...CaseResult) *Report {
		r := &Report{Cases: cases}
		r.total()
		return r
	}
	tests := []struct {
		name   string
		report *Report
		floor  float64
		is     []error
		want   []string // substrings of the error; none means nil
	}{
		{name: "at the floor", report: report(good, short), floor: 96},
		{name: "above the floor", report: report(good, short), floor: 95.5},
		{name: "below the floor", report: report(good, short), floor: 96.5,
			is: []error{ErrBelowFloor}, want: []string{"fact coverage 96.00% (96 of 100) is below the floor 96.50%"}},
		{name: "individual failures alone do not fail Check", report: report(short), floor: 90},
		{name: "an invalid bundle fails at any floor", report: report(good, invalid), floor: 0,
			is: []error{ErrInvalidBundles}, want: []string{"1 of 2 bundles not valid R4: c"}},
		{name: "a conversion error fails at any floor", report: report(good, failed), floor: 0,
			is: []error{ErrConvertFailed}, want: []string{"1 of 2 cases failed to convert: d"}},
		{name: "every failed condition is named", report: report(good, short, invalid, failed), floor: 95,
			is:   []error{ErrInvalidBundles, ErrConvertFailed, ErrBelowFloor},
			want: []string{"1 of 3 bundles not valid R4", "1 of 4 cases failed to convert", "(106 of 120)"}},
		{name: "nothing expected is full coverage", report: report(CaseResult{Name: "e", Passed: true, Valid: true}), floor: 100},
		{name: "floor below 0", report: report(good), floor: -1, want: []string{"floor -1 is not a percentage"}},
		{name: "floor above 100", report: report(good), floor: 100.5, want: []string{"floor 100.5 is not a percentage"}},
		{name: "floor not a number", report: report(good), floor: math.NaN(), want: []string{"floor NaN is not a percentage"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.report.Check(tt.floor)
			if len(tt.want) == 0 {
				if err != nil {
					t.Errorf("Check(%v) = %v, want nil", tt.floor, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Check(%v) = nil, want an error", tt.floor)
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Check(%v) = %q, want it to contain %q", tt.floor, err, want)
				}
			}
			for _, target := range tt.is {
				if !errors.Is(err, target) {
					t.Errorf("Check(%v) = %q, want errors.Is %v", tt.floor, err, target)
				}
			}
		})
	}
}

func TestReportCheckManyNames(t *testing.T) {
	r := &Report{}
	for _, name := range []string{"a", "b", "c", "d", "e", "f", "g"} {
		r.Cases = append(r.Cases, CaseResult{Name: name, ConvertError: "boom"})
	}
	r.total()
	err := r.Check(0)
	if err == nil || !strings.Contains(err.Error(), "7 of 7 cases failed to convert: a, b, c, d, e (and 2 more)") {
		t.Errorf("Check = %v, want the first five names and a count", err)
	}
}

// The JUnit shape as a CI tool reads it, declared apart from the writer's types so
// that the test checks the XML, not the structs.
type readSuites struct {
	XMLName  xml.Name `xml:"testsuites"`
	Tests    int      `xml:"tests,attr"`
	Failures int      `xml:"failures,attr"`
	Errors   int      `xml:"errors,attr"`
	Suites   []struct {
		Name       string `xml:"name,attr"`
		Tests      int    `xml:"tests,attr"`
		Failures   int    `xml:"failures,attr"`
		Errors     int    `xml:"errors,attr"`
		Properties []struct {
			Name  string `xml:"name,attr"`
			Value string `xml:"value,attr"`
		} `xml:"properties>property"`
		Cases []struct {
			Name      string `xml:"name,attr"`
			Classname string `xml:"classname,attr"`
			Time      string `xml:"time,attr"`
			Failure   *struct {
				Message string `xml:"message,attr"`
				Type    string `xml:"type,attr"`
				Text    string `xml:",chardata"`
			} `xml:"failure"`
			Error *struct {
				Message string `xml:"message,attr"`
				Text    string `xml:",chardata"`
			} `xml:"error"`
			SystemOut string `xml:"system-out"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

func TestReportJUnit(t *testing.T) {
	report := mixedReport(t)
	var buf bytes.Buffer
	if err := report.WriteJUnit(&buf); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(buf.String(), "<?xml") {
		t.Errorf("JUnit report does not start with an XML declaration: %.40q", buf.String())
	}
	var doc readSuites
	if err := xml.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatalf("JUnit report does not parse: %v\n%s", err, buf.String())
	}
	if doc.Tests != 3 || doc.Failures != 1 || doc.Errors != 1 || len(doc.Suites) != 1 {
		t.Fatalf("testsuites tests/failures/errors/suites = %d/%d/%d/%d, want 3/1/1/1", doc.Tests, doc.Failures, doc.Errors, len(doc.Suites))
	}
	suite := doc.Suites[0]
	if suite.Name != "conversion" || suite.Tests != 3 || suite.Failures != 1 || suite.Errors != 1 || len(suite.Cases) != 3 {
		t.Fatalf("testsuite %q tests/failures/errors/cases = %d/%d/%d/%d, want conversion 3/1/1/3", suite.Name, suite.Tests, suite.Failures, suite.Errors, len(suite.Cases))
	}
	props := make(map[string]string)
	for _, p := range suite.Properties {
		props[p.Name] = p.Value
	}
	// 27 + 32 + 10 expected; found 27 + 31 + 0; MDM's two name facts deviated, its
	// eight others and ORU's interpretation missing.
	if props["coverage"] != "84.06" || props["facts_expected"] != "69" || props["facts_found"] != "58" ||
		props["facts_deviated"] != "2" || props["facts_missing"] != "9" || props["accounted"] != "86.96" {
		t.Errorf("properties = %v, want coverage 84.06, 58 of 69 found, 2 deviated, 9 missing, 86.96 accounted", props)
	}

	adt, oru, mdm := suite.Cases[0], suite.Cases[2], suite.Cases[1]
	if adt.Name != "ADT_A01/adt-a01" || adt.Classname != "conversion.ADT_A01" || adt.Failure != nil || adt.Error != nil {
		t.Errorf("ADT testcase = %+v, want a pass in class conversion.ADT_A01", adt)
	}
	if oru.Failure == nil || oru.Failure.Message != "1 of 32 expected facts missing" || oru.Failure.Type != "missing-facts" ||
		!strings.Contains(oru.Failure.Text, `missing Observation.interpretation.coding.code = "H"`) {
		t.Errorf("ORU failure = %+v, want the missing interpretation listed", oru.Failure)
	}
	if mdm.Error == nil || mdm.Error.Message != "conversion failed: TXA-12: no unique document number" ||
		!strings.HasPrefix(mdm.SystemOut, "expected output is not valid R4: ") {
		t.Errorf("MDM testcase = %+v, want an <error> and the expected-invalid note", mdm)
	}
	if _, err := time.ParseDuration(adt.Time + "s"); err != nil {
		t.Errorf("testcase time %q is not seconds: %v", adt.Time, err)
	}
}

func TestReportJUnitInvalidBundle(t *testing.T) {
	r := &Report{Cases: []CaseResult{{Name: "x", ValidationError: "Patient.gender: empty string", Expected: 2, Found: 1,
		Missing: []Fact{{"Patient", "gender", "female"}}}}}
	r.total()
	var buf bytes.Buffer
	if err := r.WriteJUnit(&buf); err != nil {
		t.Fatal(err)
	}
	var doc readSuites
	if err := xml.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	f := doc.Suites[0].Cases[0].Failure
	if f == nil || f.Type != "invalid" || f.Message != "bundle is not valid R4; 1 of 2 expected facts missing" ||
		!strings.Contains(f.Text, "not valid R4: Patient.gender: empty string") || !strings.Contains(f.Text, `Patient.gender = "female"`) {
		t.Errorf("failure = %+v, want the validation error and the missing fact", f)
	}
	if doc.Suites[0].Cases[0].Classname != "conversion" {
		t.Errorf("classname = %q, want conversion for a case at the top", doc.Suites[0].Cases[0].Classname)
	}
}

func TestReportJSON(t *testing.T) {
	report := mixedReport(t)
	var buf bytes.Buffer
	if err := report.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, report) {
		t.Errorf("JSON round trip differs:\n got %+v\nwant %+v", back, *report)
	}

	// The field names are the contract with whatever reads the file.
	var raw struct {
		Cases      []map[string]any `json:"cases"`
		Totals     map[string]any   `json:"totals"`
		Deviations []map[string]any `json:"deviations"`
	}
	if err := json.Unmarshal(buf.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	keys := func(m map[string]any) []string {
		var ks []string
		for k := range m {
			ks = append(ks, k)
		}
		return ks
	}
	for _, tt := range []struct {
		what string
		m    map[string]any
		want []string
	}{
		{"case", raw.Cases[0], []string{"name", "passed", "valid", "validation_error", "convert_error", "expected_invalid",
			"not_demanded", "expected", "found", "deviated", "missing", "extra", "duration_ns"}},
		{"totals", raw.Totals, []string{"cases", "passed", "valid", "convert_errors", "expected_invalid", "expected", "found", "deviated", "missing", "coverage", "accounted"}},
		{"deviation", raw.Deviations[0], []string{"resource", "path", "cases", "reason", "ig_row", "facts"}},
	} {
		got := keys(tt.m)
		if len(got) != len(tt.want) {
			t.Errorf("%s fields = %v, want %v", tt.what, got, tt.want)
		}
		for _, k := range tt.want {
			if _, ok := tt.m[k]; !ok {
				t.Errorf("%s has no field %q", tt.what, k)
			}
		}
	}
	missing, _ := raw.Cases[2]["missing"].([]any)
	if len(missing) != 1 || !reflect.DeepEqual(missing[0], map[string]any{"resource": "Observation", "path": "interpretation.coding.code", "value": "H"}) {
		t.Errorf("ORU missing = %v, want the interpretation fact with resource, path, value", raw.Cases[2]["missing"])
	}
	if m, ok := raw.Cases[0]["missing"].([]any); !ok || len(m) != 0 {
		t.Errorf("ADT missing = %#v, want an empty list rather than null", raw.Cases[0]["missing"])
	}
}

func TestReportTable(t *testing.T) {
	report := mixedReport(t)
	var buf bytes.Buffer
	report.WriteTable(&buf)
	out := buf.String()
	lines := strings.Split(out, "\n")
	if len(lines) < 5 {
		t.Fatalf("table too short:\n%s", out)
	}
	header := lines[0]
	column := strings.Index(header, "RESULT")
	if !strings.HasPrefix(header, "CASE") || column < 0 {
		t.Fatalf("header = %q", header)
	}
	rows := []struct{ prefix, result string }{
		{"ADT_A01/adt-a01 ", "PASS"},
		{"MDM_T02/mdm-t02 ", "FAIL"},
		{"ORU_R01/oru-r01 ", "FAIL"},
		{"TOTAL (3 cases) ", "1 passed"},
	}
	for i, row := range rows {
		line := lines[i+1]
		if !strings.HasPrefix(line, row.prefix) || strings.Index(line, row.result) != column {
			t.Errorf("line %d = %q, want %q with %q under RESULT (column %d)", i+1, line, row.prefix, row.result, column)
		}
	}
	for _, want := range []string{
		"ADT_A01/adt-a01  yes    27/27",
		"MDM_T02/mdm-t02  -      0/10   0.0%",
		"ORU_R01/oru-r01  yes    31/32  96.9%",
		"TOTAL (3 cases)  2/2    58/69  84.1%",
		"Not found: 2 deliberate (deviations below), 9 missing; found or deliberate: 87.0%",
		"Failing cases (2):",
		"MDM_T02/mdm-t02: conversion failed: TXA-12: no unique document number",
		"ORU_R01/oru-r01: 1 of 32 expected facts missing:",
		`ORU_R01/oru-r01:   missing Observation.interpretation.coding.code = "H"`,
		"Expected outputs that are not valid R4 (1):",
		"MDM_T02/mdm-t02: expected output is not valid R4: ",
		"(2 elements not demanded)",
		"Deviations (2 of the facts not found are deliberate):",
		"Patient.name.* in MDM_*: 2 facts: names come from PDS (IG: PID[Patient] PID-5)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestReportTableFailingCase(t *testing.T) {
	c := CaseResult{Name: "x", ValidationError: "fhirmodel: Patient.gender: empty value\nfhirmodel: Patient.name[0].use: code type mismatch\n", Expected: 8}
	for i := range 8 {
		c.Missing = append(c.Missing, Fact{"Patient", "name.given", string(rune('A' + i))})
	}
	r := &Report{Cases: []CaseResult{c}}
	r.total()
	var buf bytes.Buffer
	r.WriteTable(&buf)
	out := buf.String()
	if !strings.Contains(out, `name.given = "E"`) || strings.Contains(out, `name.given = "F"`) || !strings.Contains(out, "(and 3 more)") {
		t.Errorf("table should list the first %d missing facts and count the rest:\n%s", tableMissing, out)
	}
	if want := "  x: not valid R4: fhirmodel: Patient.gender: empty value; fhirmodel: Patient.name[0].use: code type mismatch\n"; !strings.Contains(out, want) {
		t.Errorf("table should keep a multi-line validation error on one line, %q:\n%s", want, out)
	}
}

func TestReportJUnitAwkwardText(t *testing.T) {
	const convertError = "OBX-5: \x0b<b>]]>&\xff"
	r := &Report{Cases: []CaseResult{{Name: "x", ConvertError: convertError}}}
	r.total()
	var buf bytes.Buffer
	if err := r.WriteJUnit(&buf); err != nil {
		t.Fatal(err)
	}
	var doc readSuites
	if err := xml.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatalf("JUnit report does not parse: %v\n%s", err, buf.String())
	}
	e := doc.Suites[0].Cases[0].Error
	if want := "OBX-5: \uFFFD<b>]]>&\uFFFD"; e == nil || e.Text != want {
		t.Errorf("error = %+v, want text %q", e, want)
	}
}
