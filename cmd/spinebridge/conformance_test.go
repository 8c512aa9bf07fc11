package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// conversionSuite is the conformance package's own small suite of cases.
var conversionSuite = filepath.Join("..", "..", "conformance", "testdata", "conversion", "suite")

func TestConformanceRunDeviations(t *testing.T) {
	dir := t.TempDir()
	devs := filepath.Join(dir, "deviations.yaml")
	writeTestFile(t, devs, "- resource: Observation\n  path: \"*\"\n  reason: results are not compared here\n  ig: OBX[Observation]\n")
	report := filepath.Join(dir, "report.json")

	code, out, errOut := runCLI(t, "", "conformance", "run", "--deviations", devs, "--json", report, conversionSuite)
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut)
	}
	if !strings.Contains(out, "\nDeviations (") {
		t.Errorf("the table lists no deviations:\n%s", out)
	}
	raw, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Totals struct {
			Expected, Found, Deviated, Missing int
		} `json:"totals"`
		Deviations []struct {
			Resource string `json:"resource"`
			Source   string `json:"source"`
			Facts    int    `json:"facts"`
		} `json:"deviations"`
	}
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatal(err)
	}
	// The file's one deviation, and not the built-in list, is the one applied.
	if len(rep.Deviations) != 1 || rep.Deviations[0].Resource != "Observation" || rep.Deviations[0].Source != devs+":1" {
		t.Fatalf("deviations = %+v, want the one of %s", rep.Deviations, devs)
	}
	tot := rep.Totals
	if tot.Deviated != rep.Deviations[0].Facts || tot.Found+tot.Deviated+tot.Missing != tot.Expected {
		t.Errorf("totals = %+v with %d facts deviated: found, deviated and missing do not add up to expected", tot, rep.Deviations[0].Facts)
	}

	// Without --deviations the built-in list applies.
	code, out, errOut = runCLI(t, "", "conformance", "run", conversionSuite)
	if code != 0 || !strings.Contains(out, "\nDeviations (") {
		t.Errorf("built-in deviations: exit %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	// /dev/null: none.
	if code, out, _ = runCLI(t, "", "conformance", "run", "--deviations", os.DevNull, conversionSuite); code != 0 || strings.Contains(out, "\nDeviations (") {
		t.Errorf("--deviations %s: exit %d, want 0 and no deviations:\n%s", os.DevNull, code, out)
	}

	bad := filepath.Join(dir, "bad.yaml")
	writeTestFile(t, bad, "- resource: Patient\n  path: name\n")
	code, _, errOut = runCLI(t, "", "conformance", "run", "--deviations", bad, conversionSuite)
	if code == 0 || !strings.Contains(errOut, bad+":1: deviation lacks reason, ig") {
		t.Errorf("a deviation without reason: exit %d, stderr %q; want an error at %s:1", code, errOut, bad)
	}
}
