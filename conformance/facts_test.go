package conformance

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
)

// bundleOf wraps entries (each `"fullUrl": ..., "resource": {...}` without braces)
// in a batch Bundle.
func bundleOf(entries ...string) []byte {
	var b strings.Builder
	b.WriteString(`{"resourceType": "Bundle", "type": "batch", "entry": [`)
	for i, e := range entries {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString("{" + e + "}")
	}
	b.WriteString("]}")
	return []byte(b.String())
}

func TestFacts(t *testing.T) {
	patient := `"fullUrl": "urn:uuid:p1", "resource": {"resourceType": "Patient", "id": "p1"}`
	tests := []struct {
		name   string
		bundle []byte
		want   []Fact
	}{
		{
			name: "patient demographics",
			bundle: bundleOf(`"resource": {"resourceType": "Patient", "id": "x",
				"meta": {"lastUpdated": "2024-01-01T00:00:00Z"},
				"text": {"status": "generated", "div": "<div>Eleanor</div>"},
				"extension": [{"url": "http://example.org/x", "valueString": "ignored"}],
				"identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": " 9990000018 ",
					"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "NH"}]},
					"assigner": {"reference": "Organization/o1"}, "period": {"start": "2020-01-01"}}],
				"name": [{"family": "THOMPSON", "given": ["ELEANOR", "MAY"], "prefix": ["MRS"], "use": "official"}],
				"gender": "female", "birthDate": "1948-07-15", "deceasedBoolean": false,
				"maritalStatus": {"coding": [{"code": "M", "display": "Married"}], "text": "Married"},
				"address": [{"line": ["1 HIGH ST"], "city": "LEEDS", "postalCode": "LS1 1AA", "state": "W YORKS"}],
				"telecom": [{"system": "phone", "value": "0113 496 0000", "use": "home"}],
				"active": true}`),
			want: []Fact{
				{"Patient", "address.city", "LEEDS"},
				{"Patient", "address.line", "1 HIGH ST"},
				{"Patient", "address.postalCode", "LS1 1AA"},
				{"Patient", "birthDate", "1948-07-15"},
				{"Patient", "deceasedBoolean", "false"},
				{"Patient", "gender", "female"},
				{"Patient", "identifier.type.coding.code", "NH"},
				{"Patient", "identifier.value", "9990000018"},
				{"Patient", "maritalStatus.coding.code", "M"},
				{"Patient", "name.family", "THOMPSON"},
				{"Patient", "name.given", "ELEANOR"},
				{"Patient", "name.given", "MAY"},
				{"Patient", "telecom.value", "0113 496 0000"},
			},
		},
		{
			name: "instants at different offsets are one fact",
			bundle: bundleOf(
				`"resource": {"resourceType": "Encounter", "period": {"start": "2006-09-01T10:30:00+05:30", "end": "2006-09-01T06:00:00+01:00"}}`,
				`"resource": {"resourceType": "Encounter", "period": {"start": "2006-09-01T05:00:00Z", "end": "2006-09-01T05:00:00.000+00:00"}}`),
			want: []Fact{
				{"Encounter", "period.end", "2006-09-01T05:00:00.000Z@millisecond"},
				{"Encounter", "period.end", "2006-09-01T05:00:00Z@second"},
				{"Encounter", "period.start", "2006-09-01T05:00:00Z@second"},
				{"Encounter", "period.start", "2006-09-01T05:00:00Z@second"},
			},
		},
		{
			name: "observation values, codes and times",
			bundle: bundleOf(patient, `"resource": {"resourceType": "Observation", "status": "final",
				"code": {"coding": [{"system": "http://loinc.org", "code": "2345-7", "display": "Glucose"},
					{"system": "http://example.org/local", "code": "GLU"}]},
				"subject": {"reference": "urn:uuid:p1"},
				"effectiveDateTime": "2024-03-01T09:15+00:00",
				"issued": "2024-03-01T10:00:00.1234Z",
				"valueQuantity": {"value": 5.20, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"},
				"interpretation": [{"coding": [{"code": "H"}]}],
				"referenceRange": [{"low": {"value": 3.50, "unit": "mmol/L"}, "high": {"value": 6e0}, "text": "3.5-6"}],
				"component": [{"code": {"coding": [{"system": "http://snomed.info/sct", "code": "271649006"}]}, "valueString": " high "}],
				"note": [{"text": "fasting"}]}`),
			want: []Fact{
				{"Observation", "code.coding.code", "2345-7"},
				{"Observation", "code.coding.code", "GLU"},
				{"Observation", "code.coding.system", "http://loinc.org"},
				{"Observation", "component.code.coding.code", "271649006"},
				{"Observation", "component.code.coding.system", "http://snomed.info/sct"},
				{"Observation", "component.valueString", "high"},
				{"Observation", "effectiveDateTime", "2024-03-01T09:15:00Z@minute"},
				{"Observation", "interpretation.coding.code", "H"},
				{"Observation", "issued", "2024-03-01T10:00:00.123Z@millisecond"},
				{"Observation", "referenceRange.high.value", "6"},
				{"Observation", "referenceRange.low.unit", "mmol/L"},
				{"Observation", "referenceRange.low.value", "3.5"},
				{"Observation", "referenceRange.text", "3.5-6"},
				{"Observation", "status", "final"},
				{"Observation", "subject", "->Patient"},
				{"Observation", "valueQuantity.unit", "mmol/L"},
				{"Observation", "valueQuantity.value", "5.2"},
			},
		},
		{
			name: "references resolve by urn:uuid and by Type/id",
			bundle: bundleOf(
				`"fullUrl": "urn:uuid:7d1c", "resource": {"resourceType": "Observation", "id": "obs-1"}`,
				`"fullUrl": "https://example.org/fhir/ServiceRequest/sr-1", "resource": {"resourceType": "ServiceRequest", "id": "sr-1"}`,
				`"resource": {"resourceType": "DiagnosticReport",
					"result": [{"reference": "urn:uuid:7d1c"}, {"reference": "Observation/obs-1"}],
					"basedOn": [{"reference": "https://example.org/fhir/ServiceRequest/sr-1"}, {"reference": "ServiceRequest/sr-1/_history/2"}],
					"subject": {"reference": "Patient/not-in-bundle"},
					"performer": [{"reference": "urn:uuid:nowhere"}],
					"encounter": {"reference": "#contained"}}`),
			want: []Fact{
				{"DiagnosticReport", "basedOn", "->ServiceRequest"},
				{"DiagnosticReport", "basedOn", "->ServiceRequest"},
				{"DiagnosticReport", "result", "->Observation"},
				{"DiagnosticReport", "result", "->Observation"},
				{"DiagnosticReport", "subject", "->Patient"},
			},
		},
		{
			name: "encounter class, status, location references left out",
			bundle: bundleOf(
				`"fullUrl": "urn:uuid:l1", "resource": {"resourceType": "Location", "id": "l1", "name": "WARD 12",
					"physicalType": {"coding": [{"code": "wa"}]}}`,
				`"fullUrl": "urn:uuid:pr1", "resource": {"resourceType": "Practitioner", "id": "pr1",
					"name": [{"family": "KHAN", "given": ["ASIF"]}]}`,
				`"resource": {"resourceType": "Encounter", "status": "in-progress",
					"class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP", "display": "inpatient"},
					"location": [{"location": {"reference": "urn:uuid:l1"}, "status": "active"}],
					"participant": [{"individual": {"reference": "urn:uuid:pr1"}, "period": {"start": "2024-03-01"}}]}`),
			want: []Fact{
				{"Encounter", "class.code", "IMP"},
				{"Encounter", "participant.individual", "->Practitioner"},
				{"Encounter", "participant.period.start", "2024-03-01"},
				{"Encounter", "status", "in-progress"},
				{"Location", "physicalType.coding.code", "wa"},
				{"Practitioner", "name.family", "KHAN"},
				{"Practitioner", "name.given", "ASIF"},
			},
		},
		{
			name: "provenance and empty or malformed values yield nothing",
			bundle: bundleOf(
				`"resource": {"resourceType": "Provenance", "recorded": "2024-03-01T10:00:00Z", "target": [{"reference": "Patient/p"}]}`,
				`"resource": {"resourceType": "Patient", "gender": " ", "birthDate": "1948-13-01",
					"name": [{"family": ""}], "identifier": [{"value": " "}],
					"deceasedDateTime": "2024-03-01T10:00:00"}`,
				`"resource": {"resourceType": "Observation", "valueQuantity": {"value": "5.2"}, "effectiveDateTime": "yesterday"}`),
			want: nil,
		},
		{
			name: "logical references, timing and nested identifiers",
			bundle: bundleOf(`"resource": {"resourceType": "ServiceRequest", "intent": "order",
				"basedOn": [{"identifier": {"value": "PLAC-1", "type": {"coding": [{"code": "PLAC"}]}}}],
				"occurrenceTiming": {"repeat": {"boundsPeriod": {"start": "2019-11-04T13:45:00+05:30"}}, "code": {"coding": [{"code": "TID"}]}},
				"authoredOn": "2019-11-04"}`,
				`"resource": {"resourceType": "DocumentReference", "masterIdentifier": {"value": "DOC-9"}, "date": "2024-03-01T10:00:00+01:00"}`),
			want: []Fact{
				{"DocumentReference", "date", "2024-03-01T09:00:00Z@second"},
				{"DocumentReference", "masterIdentifier.value", "DOC-9"},
				{"ServiceRequest", "authoredOn", "2019-11-04"},
				{"ServiceRequest", "basedOn.identifier.type.coding.code", "PLAC"},
				{"ServiceRequest", "basedOn.identifier.value", "PLAC-1"},
				{"ServiceRequest", "intent", "order"},
				{"ServiceRequest", "occurrenceTiming.code.coding.code", "TID"},
				{"ServiceRequest", "occurrenceTiming.repeat.boundsPeriod.start", "2019-11-04T08:15:00Z@second"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Facts(tt.bundle)
			if err != nil {
				t.Fatalf("Facts: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Facts:\n got %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestFactsUnreadCounted(t *testing.T) {
	b := bundleOf(`"resource": {"resourceType": "Patient", "gender": "", "name": [{"family": " "}],
		"birthDate": "not a date", "generalPractitioner": [{"reference": "urn:uuid:missing"}]}`)
	facts, unread, err := extract(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(facts) != 0 || unread != 4 {
		t.Errorf("extract = %v facts, %d unread; want none and 4", facts, unread)
	}
}

func TestFactsErrors(t *testing.T) {
	tests := []struct {
		name, input, want string
	}{
		{"not JSON", `{"resourceType": "Bundle"`, "not JSON"},
		{"trailing data", `{"resourceType": "Bundle"} {}`, "data after"},
		{"array", `[]`, "not a JSON object"},
		{"a resource, not a bundle", `{"resourceType": "Patient"}`, `resourceType is "Patient", want Bundle`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Facts([]byte(tt.input))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Facts error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestFactsByteOrderMark(t *testing.T) {
	b := append([]byte("\uFEFF"), bundleOf(`"resource": {"resourceType": "Patient", "gender": "male"}`)...)
	got, err := Facts(b)
	if err != nil {
		t.Fatal(err)
	}
	if want := []Fact{{"Patient", "gender", "male"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("Facts = %v, want %v", got, want)
	}
}

func TestFactsNormaliseTime(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"2006", "2006", true},
		{"2006-09", "2006-09", true},
		{"2006-09-01", "2006-09-01", true},
		{"2006-09-01T10:30:00+05:30", "2006-09-01T05:00:00Z@second", true},
		{"2006-09-01T05:00:00Z", "2006-09-01T05:00:00Z@second", true},
		{"2006-09-01T05:00:00-00:00", "2006-09-01T05:00:00Z@second", true},
		{"2006-09-01T10:30+05:30", "2006-09-01T05:00:00Z@minute", true}, // same instant, another precision: another fact
		{"2006-09-01T02:00+05:30", "2006-08-31T20:30:00Z@minute", true},
		{"2006-09-01T05:00:00.5Z", "2006-09-01T05:00:00.500Z@millisecond", true},
		{"2006-09-01T05:00:00.123456+01:00", "2006-09-01T04:00:00.123Z@millisecond", true},
		{"2006-09-01T05:00:00", "", false}, // a time without an offset is not an instant
		{"2006-02-30", "", false},
		{"2006-13", "", false},
		{"2006-09-01T25:00:00Z", "", false},
		{"2006-09-01 05:00:00Z", "", false},
		{"0000", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		got, ok := normaliseTime(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("normaliseTime(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestFactsNormaliseDecimal(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"5.20", "5.2", true},
		{"5.2", "5.2", true},
		{"5", "5", true},
		{"5.000", "5", true},
		{"050", "50", true},
		{"100", "100", true},
		{"0.0010", "0.001", true},
		{"-0.0", "0", true},
		{"-7.50", "-7.5", true},
		{"0.52e1", "5.2", true},
		{"52E-1", "5.2", true},
		{"1.5e3", "1500", true},
		{"1e-3", "0.001", true},
		{"1e9999", "", false},
		{"5.", "", false},
		{"abc", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		got, ok := normaliseDecimal(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("normaliseDecimal(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

// corpusDir is the public Microsoft FHIR-Converter corpus, read-only, in the
// shared folder beside the repository (tests run in the package directory).
const corpusDir = "../../shared/corpora/ms-fhir-converter"

// TestFactsRealCorpus runs the extractor over every expected bundle of the public
// corpus, so that we know it copes with all of them.
func TestFactsRealCorpus(t *testing.T) {
	if _, err := os.Stat(corpusDir); errors.Is(err, fs.ErrNotExist) {
		t.Skipf("corpus %s not present", corpusDir)
	}
	var files []string
	err := filepath.WalkDir(corpusDir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, "-expected.json") {
			files = append(files, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no -expected.json files under %s", corpusDir)
	}
	total, unread := 0, 0
	kinds := make(map[string]int)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		facts, n, err := extract(b)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if len(facts) == 0 {
			t.Errorf("%s: no facts", f)
		}
		if !slices.IsSortedFunc(facts, compareFacts) {
			t.Errorf("%s: facts not sorted", f)
		}
		total += len(facts)
		unread += n
		for _, fact := range facts {
			kinds[kindOf(fact)]++
		}
	}
	t.Logf("%d expected bundles: %d facts, %d elements unreadable", len(files), total, unread)
	names := make([]string, 0, len(kinds))
	for k := range kinds {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool { return kinds[names[i]] > kinds[names[j]] })
	for _, k := range names {
		t.Logf("  %-10s %6d", k, kinds[k])
	}
}

// kindOf sorts a fact into the kinds the package documentation lists, for the
// corpus summary.
func kindOf(f Fact) string {
	last := f.Path[strings.LastIndex(f.Path, ".")+1:]
	switch {
	case strings.HasPrefix(f.Value, "->"):
		return "reference"
	case strings.Contains(f.Path, "identifier.") || strings.Contains(f.Path, "Identifier."):
		return "identifier"
	case strings.Contains(f.Path, "name."):
		return "name"
	case strings.Contains(f.Path, "address."), strings.Contains(f.Path, "telecom."):
		return "contact"
	case strings.Contains(f.Path, "value") || strings.Contains(f.Path, "referenceRange"):
		return "value"
	case last == "code" || last == "system":
		return "code"
	case last == "status" || last == "intent":
		return "status"
	case last == "gender" || last == "deceasedBoolean":
		return "demographic"
	default:
		return "time"
	}
}
