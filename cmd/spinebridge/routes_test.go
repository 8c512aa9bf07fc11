package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
	"github.com/spinebridge/spinebridge/routes"
)

// The routes commands are tested with stand-ins for the real destination kinds
// and transforms, which are tested where they live: a destination kind that
// takes {url: string}, a transform that writes a Patient named from PID-5 and
// one that always fails.

type stubDestination struct{}

func (stubDestination) Deliver(context.Context, *routes.Delivery) error { return nil }
func (stubDestination) Ready(context.Context) error                     { return nil }
func (stubDestination) Close() error                                    { return nil }

func stubFactory(_ string, node *yaml.Node) (routes.Destination, error) {
	var cfg struct {
		URL string `yaml:"url"`
	}
	if err := routes.Decode(node, &cfg); err != nil {
		return nil, err
	}
	return stubDestination{}, nil
}

type stubPatient struct{}

func (stubPatient) Transform(dst []byte, rec *routes.Record) ([]byte, string, error) {
	m, err := hl7v2.Parse(rec.Raw)
	if err != nil {
		return dst, "", err
	}
	family, _ := m.Lookup("PID-5.1")
	given, _ := m.Lookup("PID-5.2")
	dst = fmt.Appendf(dst, `{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Patient","name":[{"family":%q,"given":[%q]}]}}]}`,
		family.String(), given.String())
	return dst, routes.ContentTypeFHIR, nil
}

type stubBroken struct{}

func (stubBroken) Transform(dst []byte, _ *routes.Record) ([]byte, string, error) {
	return dst, "", errors.New("no mapping for this structure")
}

var stubDeps = routesDeps{Options: func(*cobra.Command) (routes.TableOptions, error) {
	return routes.TableOptions{
		Kinds:        map[string]routes.DestinationFactory{"fhir": stubFactory, "amqp": stubFactory, "mllp": stubFactory},
		Transformers: map[string]routes.Transformer{"patient": stubPatient{}, "broken": stubBroken{}},
	}, nil
}}

// runRoutes runs `spinebridge routes args...` and returns its exit status and
// output, as run does for the whole command line.
func runRoutes(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := newRoutesCommand(stubDeps)
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	code := 0
	if err := cmd.Execute(); err != nil {
		code = reportError(&errOut, err)
	}
	return code, out.String(), errOut.String()
}

// tableDir is a routing table in the routes package's test data.
func tableDir(name string) string {
	return filepath.Join("..", "..", "routes", "testdata", "table", name)
}

func TestRoutesLintGood(t *testing.T) {
	code, out, errOut := runRoutes(t, "lint", tableDir("good"))
	if code != 0 || out != "ok: 3 routes, 3 destinations in 2 files\n" || errOut != "" {
		t.Errorf("exit %d\nstdout %q\nstderr %q", code, out, errOut)
	}
}

func TestRoutesLintErrors(t *testing.T) {
	code, out, errOut := runRoutes(t, "lint", tableDir("bad"))
	if code != 1 || out != "" {
		t.Errorf("exit %d, stdout %q; want 1 and nothing", code, out)
	}
	a, b := filepath.Join(tableDir("bad"), "a.yaml"), filepath.Join(tableDir("bad"), "b.yaml")
	want := []string{
		a + `:3:15: routes[0].when: msg has no field "Typ"; did you mean "Type"?`,
		a + `:4:16: routes[0].transform: unknown transform "patinet"; did you mean "patient"?`,
		a + `:5:15: routes[0].to[1]: unknown destination "pdss"; did you mean "pds"?`,
		a + `:7:20: routes[1].when: msg.Get: "PID-3.x" is not an HL7 v2 path (e.g. "PID-3.1", "PID-3[2].1", "OBX[2]-5")`,
		a + `:9:15: routes[1].order_by: expected string, but got bool`,
		a + `:10:11: routes[2].name: route "adt" is already declared at ` + a + `:2:5`,
		a + `:13:21: routes[2].when: invalid operation: == (mismatched types string and int)`,
		a + `:15:5: routes[2]: unknown key "contineu"; did you mean "continue"?`,
		b + `:2:3: destinations.pds: already declared at ` + a + `:17:3`,
		b + `:3:19: destinations.events.kind: unknown kind "amqq"; did you mean "amqp"?`,
		b + `:4:25: destinations.legacy: unknown key "urll"; known: url`,
		b + `:5:1: unknown key "routs"; did you mean "routes"?`,
		"12 errors",
	}
	if got := strings.Split(strings.TrimSuffix(errOut, "\n"), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("stderr:\n%s\nwant:\n%s", errOut, strings.Join(want, "\n"))
	}
}

func TestRoutesLintUsage(t *testing.T) {
	if code, _, errOut := runRoutes(t, "lint"); code != 2 || !strings.Contains(errOut, "requires at least 1 arg") {
		t.Errorf("lint with no files: exit %d, %q", code, errOut)
	}
	missing := filepath.Join(t.TempDir(), "routes.yaml")
	if code, _, errOut := runRoutes(t, "lint", missing); code != 1 || errOut != missing+": stat: no such file or directory\n" {
		t.Errorf("lint of a missing file: exit %d, %q", code, errOut)
	}
}

func TestRoutesTestPass(t *testing.T) {
	code, out, errOut := runRoutes(t, "test", tableDir("good"))
	f := filepath.Join(tableDir("good"), "routes_test.yaml")
	want := "ok    " + f + ":2  an admission goes to PDS and the legacy PAS\n" +
		"ok    " + f + ":8  a result goes to the event exchange and the legacy PAS\n" +
		"ok    " + f + ":11  a discharge only passes through\n" +
		"3 cases passed\n"
	if code != 0 || out != want || errOut != "" {
		t.Errorf("exit %d\nstdout:\n%s\nwant:\n%s\nstderr: %s", code, out, want, errOut)
	}
}

func TestRoutesTestFail(t *testing.T) {
	code, out, errOut := runRoutes(t, "test", tableDir("failing"))
	f := filepath.Join(tableDir("failing"), "failing_test.yaml")
	s := filepath.Join(tableDir("failing"), "structure_test.yaml")
	wantOut := []string{
		"ok    " + f + ":2  passes",
		"FAIL  " + f + ":6  the wrong routes",
		"      routes: took [legacy-passthrough], want [adt-to-pds, legacy-passthrough]; not taken: adt-to-pds",
		"FAIL  " + f + ":9  a fact the output does not state",
		`      route adt-to-pds: missing Patient.name.family = "THOMSON"; the output has Patient.name.family = "THOMPSON"`,
		`      route adt-to-pds: missing Patient.gender = "female"; the output has no Patient.gender`,
		"FAIL  " + f + ":15  a transform that fails",
		"      route documents: transform broken: no mapping for this structure",
		"ok    " + f + ":20  an expected failure",
		"FAIL  " + f + ":24  an expected failure that does not come",
		`      expected an error containing "no mapping"; there was none`,
		"FAIL  " + f + ":29  no message",
		"      message: open " + filepath.Join(tableDir("failing"), "nowhere.hl7") + ": no such file or directory",
		"FAIL  " + f + ":32  a batch of several",
		"      message " + filepath.Join("..", "..", "fixtures", "hl7v2", "batch_file.hl7") + " holds 3 messages; a case takes one",
		"2 cases passed, 6 failed",
	}
	if code != 1 || out != strings.Join(wantOut, "\n")+"\n" {
		t.Errorf("exit %d\nstdout:\n%s\nwant:\n%s", code, out, strings.Join(wantOut, "\n"))
	}
	for _, w := range []string{s + ":2:5: ", s + ":8:14: ", s + ":12:13: ", s + ":13:5: ", s + ":14:5: ", "6 errors\n"} {
		if !strings.Contains(errOut, w) {
			t.Errorf("stderr lacks %q:\n%s", w, errOut)
		}
	}
}

func TestRoutesTestBadTable(t *testing.T) {
	code, out, errOut := runRoutes(t, "test", tableDir("bad"))
	if code != 1 || out != "" || !strings.Contains(errOut, "a.yaml:3:15: ") {
		t.Errorf("a table with errors: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}
