package conformance

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestDefaultDeviations(t *testing.T) {
	devs, err := DefaultDeviations()
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) < 30 {
		t.Fatalf("%d default deviations, want the list in deviations.yaml", len(devs))
	}
	seen := make(map[string]string)
	for _, d := range devs {
		if !strings.HasPrefix(d.Source, "conformance/deviations.yaml:") {
			t.Errorf("%s.%s: source %q, want conformance/deviations.yaml:LINE", d.Resource, d.Path, d.Source)
		}
		// Two deviations of one resource, path, value and case scope would split
		// one decision's count between them.
		key := d.Resource + " " + d.Path + " " + strings.Join(d.Values, "|") + " " + strings.Join(d.Cases, "|")
		if at, dup := seen[key]; dup {
			t.Errorf("%s repeats the deviation at %s", d.Source, at)
		}
		seen[key] = d.Source
	}
}

func TestParseDeviations(t *testing.T) {
	good := `# a comment
- resource: Location
  path: physicalType.coding.code
  values: [lvl]
  reason: the point of care is not a level
  ig: PL[Location] PL.1
- resource: Observation
  path: "*"
  cases: [MDM_]
  reason: the OBX are the document
  ig: MDM_T02 row 10.1
`
	devs, err := ParseDeviations("d.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	want := []Deviation{
		{Resource: "Location", Path: "physicalType.coding.code", Values: []string{"lvl"}, Reason: "the point of care is not a level", IGRow: "PL[Location] PL.1", Source: "d.yaml:2"},
		{Resource: "Observation", Path: "*", Cases: []string{"MDM_"}, Reason: "the OBX are the document", IGRow: "MDM_T02 row 10.1", Source: "d.yaml:7"},
	}
	if !reflect.DeepEqual(devs, want) {
		t.Errorf("ParseDeviations:\n got %+v\nwant %+v", devs, want)
	}

	for _, empty := range []string{"", "# nothing yet\n"} {
		if devs, err := ParseDeviations("empty.yaml", []byte(empty)); err != nil || len(devs) != 0 {
			t.Errorf("ParseDeviations(%q) = %v, %v; want none and no error", empty, devs, err)
		}
	}

	// Every problem at once, each at its line.
	bad := `- resource: Location
  path: physicalType.coding.code
  value: [lvl]
  reason: a misspelt key would widen the deviation to every value
  ig: PL[Location] PL.1
- resource: Patient
  path: name.given
- resource: Patient
  path: "name.*.given"
  reason: a star inside the path
  ig: PID[Patient] PID-5
- just a string
- resource: Patient
  path: name
  values: lvl
  reason: values is a list
  ig: PID[Patient] PID-5
`
	_, err = ParseDeviations("bad.yaml", []byte(bad))
	if err == nil {
		t.Fatal("ParseDeviations accepted a file with five bad deviations")
	}
	for _, want := range []string{
		`bad.yaml:3: unknown key "value" (want resource, path, values, cases, reason or ig)`,
		"bad.yaml:6: deviation lacks reason, ig",
		`bad.yaml:8: path "name.*.given": * may only end a path`,
		"bad.yaml:12: a deviation is a mapping",
		"bad.yaml:13: ",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}

	if _, err := ParseDeviations("list.yaml", []byte("resource: Patient\n")); err == nil || !strings.Contains(err.Error(), "list.yaml:1: want a list of deviations") {
		t.Errorf("a mapping at the top: error %v, want list.yaml:1: want a list of deviations", err)
	}
	if _, err := ParseDeviations("syntax.yaml", []byte("- [unclosed\n")); err == nil || !strings.HasPrefix(err.Error(), "syntax.yaml: ") {
		t.Errorf("a YAML syntax error: %v, want it named by the file", err)
	}
}

func TestReadDeviations(t *testing.T) {
	path := filepath.Join(t.TempDir(), "deviations.yaml")
	if err := os.WriteFile(path, []byte("- {resource: Patient, path: name.given, reason: from PDS, ig: PID-5}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	devs, err := ReadDeviations(path)
	if err != nil || len(devs) != 1 || devs[0].Source != path+":1" {
		t.Errorf("ReadDeviations = %+v, %v; want one deviation from %s:1", devs, err, path)
	}
	if _, err := ReadDeviations(filepath.Join(t.TempDir(), "none.yaml")); err == nil {
		t.Error("ReadDeviations of a missing file: no error")
	}
}
