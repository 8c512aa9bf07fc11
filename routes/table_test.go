package routes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
)

// fakeDest is a destination that delivers nowhere; it remembers its url and
// whether it was closed.
type fakeDest struct {
	name, url string
	closed    atomic.Bool
}

var _ Destination = (*fakeDest)(nil)

func (d *fakeDest) Deliver(context.Context, *Delivery) error { return nil }
func (d *fakeDest) Ready(context.Context) error              { return nil }
func (d *fakeDest) Close() error                             { d.closed.Store(true); return nil }

// fakeFactory builds fakeDests from {url: string}, as a real kind decodes its
// own configuration.
func fakeFactory(name string, node *yaml.Node) (Destination, error) {
	var cfg struct {
		URL string `yaml:"url"`
	}
	if err := Decode(node, &cfg); err != nil {
		return nil, err
	}
	if cfg.URL == "" {
		return nil, fmt.Errorf("%d:%d: url: required", node.Line, node.Column)
	}
	return &fakeDest{name: name, url: cfg.URL}, nil
}

// patientTransformer turns a message into a Bundle holding a Patient named from
// PID-5, enough for facts to be checked.
type patientTransformer struct{}

func (patientTransformer) Transform(dst []byte, rec *Record) ([]byte, string, error) {
	m, err := hl7v2.Parse(rec.Raw)
	if err != nil {
		return dst, "", err
	}
	family, _ := m.Lookup("PID-5.1")
	given, _ := m.Lookup("PID-5.2")
	dst = fmt.Appendf(dst, `{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Patient","name":[{"family":%q,"given":[%q]}]}}]}`,
		family.String(), given.String())
	return dst, ContentTypeFHIR, nil
}

// brokenTransformer fails every message.
type brokenTransformer struct{}

func (brokenTransformer) Transform(dst []byte, _ *Record) ([]byte, string, error) {
	return dst, "", errors.New("no mapping for this structure")
}

func testOptions() TableOptions {
	return TableOptions{
		Kinds:        map[string]DestinationFactory{"fhir": fakeFactory, "amqp": fakeFactory, "mllp": fakeFactory},
		Transformers: map[string]Transformer{"patient": patientTransformer{}, "broken": brokenTransformer{}},
	}
}

// writeTable writes files (name -> content) into a new directory and returns it.
func writeTable(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// tableErrors returns the messages of a LoadTable error, one per problem.
func tableErrors(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		t.Fatal("LoadTable succeeded, want errors")
	}
	var out []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var te *TableError
		if !errors.As(e, &te) {
			t.Errorf("%v is not a *TableError", e)
		}
		out = append(out, e.Error())
	}
	return out
}

// message parses HL7 v2 text written with \n between segments and returns a
// Msg for it, as the dispatcher would fill one from the journal record.
func message(t testing.TB, text string) *Msg {
	t.Helper()
	raw := []byte(strings.ReplaceAll(strings.TrimSpace(text), "\n", "\r") + "\r")
	m, err := hl7v2.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	rec := &Record{Listener: "mllp", Peer: "10.0.0.7:51234", Raw: raw}
	fillHeader(rec, m)
	msg := new(Msg)
	msg.Reset(rec, m)
	return msg
}

const adtA01 = `MSH|^~\&|PAS|RX1^1.2.3^ISO|SPINEBRIDGE|X26|20261121093015+0000||ADT^A01^ADT_A01|ADT000000101|P|2.5.1
PID|1||9990000018^^^NHS^NH~RX1A123456^^^RX1^MR||O\S\BRIEN^ELEANOR||19580314|F
PV1|1|I|RX1W12^BAY 3^BED 4^RX1`

const oruR01 = `MSH|^~\&|ICE|RX1|SPINEBRIDGE|NHSDIGITAL|20260715101500||ORU^R01^ORU_R01|ORU000000077|T|2.4
PID|1||9990000034^^^NHS^NH||FORSYTH^ISLA
OBX|1|NM|718-7^Haemoglobin^LN||135|g/L`

func TestLoadTableGood(t *testing.T) {
	tab, err := LoadTable([]string{"testdata/table/good"}, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer tab.Close()
	wantFiles := []string{"testdata/table/good/destinations.yaml", "testdata/table/good/routes.yaml"}
	if !slices.Equal(tab.Files, wantFiles) {
		t.Errorf("Files = %q, want %q (test files left out)", tab.Files, wantFiles)
	}
	var names []string
	for _, r := range tab.Routes {
		names = append(names, r.Name)
	}
	if want := []string{"adt-to-pds", "results", "legacy-passthrough"}; !slices.Equal(names, want) {
		t.Fatalf("routes %q, want %q", names, want)
	}
	adt := tab.Routes[0]
	if adt.Pos != "testdata/table/good/routes.yaml:4:5" || adt.Transform != "patient" || adt.Transformer == nil ||
		!slices.Equal(adt.To, []string{"pds", "spine-events"}) || !adt.Validate || !adt.Continue || adt.Ack != "" ||
		adt.OrderBy != `msg.Get("PID-3.1")` {
		t.Errorf("adt-to-pds = %+v", adt)
	}
	if r := tab.Routes[1]; r.Ack != AckProcessed || r.Transformer != nil || r.Validate {
		t.Errorf("results = %+v", r)
	}
	if len(tab.Destinations) != 3 {
		t.Fatalf("destinations %v", tab.Destinations)
	}
	pds := tab.Destinations["pds"].(*fakeDest)
	if pds.url != "https://pds.example/FHIR/R4" || pds.name != "pds" {
		t.Errorf("pds built as %+v: the factory gets the name and the mapping without kind", pds)
	}
	if err := tab.Close(); err != nil || !pds.closed.Load() {
		t.Errorf("Close: %v, pds closed %v", err, pds.closed.Load())
	}
}

// TestLoadTableErrors checks that every problem of every file is reported at
// once, in file and position order, each at the character to fix.
func TestLoadTableErrors(t *testing.T) {
	_, err := LoadTable([]string{"testdata/table/bad"}, testOptions())
	got := tableErrors(t, err)
	want := []string{
		`testdata/table/bad/a.yaml:3:15: routes[0].when: msg has no field "Typ"; did you mean "Type"?`,
		`testdata/table/bad/a.yaml:4:16: routes[0].transform: unknown transform "patinet"; did you mean "patient"?`,
		`testdata/table/bad/a.yaml:5:15: routes[0].to[1]: unknown destination "pdss"; did you mean "pds"?`,
		`testdata/table/bad/a.yaml:7:20: routes[1].when: msg.Get: "PID-3.x" is not an HL7 v2 path`,
		`testdata/table/bad/a.yaml:9:15: routes[1].order_by: expected string, but got bool`,
		`testdata/table/bad/a.yaml:10:11: routes[2].name: route "adt" is already declared at testdata/table/bad/a.yaml:2:5`,
		`testdata/table/bad/a.yaml:13:21: routes[2].when: invalid operation: == (mismatched types string and int)`,
		`testdata/table/bad/a.yaml:15:5: routes[2]: unknown key "contineu"; did you mean "continue"?`,
		`testdata/table/bad/b.yaml:2:3: destinations.pds: already declared at testdata/table/bad/a.yaml:17:3`,
		`testdata/table/bad/b.yaml:3:19: destinations.events.kind: unknown kind "amqq"; did you mean "amqp"?`,
		`testdata/table/bad/b.yaml:4:25: destinations.legacy: unknown key "urll"; known: url`,
		`testdata/table/bad/b.yaml:5:1: unknown key "routs"; did you mean "routes"?`,
	}
	for i := range max(len(got), len(want)) {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if !strings.HasPrefix(g, w) || w == "" {
			t.Errorf("error %d:\n got %s\nwant %s...", i, g, w)
		}
	}
}

// TestExprPositions checks that an error inside an expression is placed at its
// character in the file whatever the scalar style: the marker Nope is where
// each error must point.
func TestExprPositions(t *testing.T) {
	cases := map[string]string{
		"plain":         `when: msg.Type == "ADT" && msg.Nope == "x"`,
		"single quoted": `when: 'msg.Get(''PID-3'') == ''a'' && msg.Nope == ""'`,
		"double quoted": `when: "msg.Type == \"ADT\" && msg.Nope == \"\\u00e9\""`,
		"escape before": `when: "msg.Type == \"\u00e9\" && msg.Nope == \"\""`,
		"unicode":       `when: msg.Type == "é€" && msg.Nope == ""`,
		"literal": `when: |
      msg.Type == "ADT" &&
        msg.Nope == "x"`,
		"literal keep": `when: |+   # a comment
      msg.Type == "ADT" &&

      msg.Nope == "x"
`,
		"folded": `when: >-
      msg.Type == "ADT" &&
      msg.Trigger == "A01" && msg.Nope == ""`,
		"plain multi-line": `when: msg.Type == "ADT" &&
      msg.Trigger == "A01" &&
      msg.Nope == ""`,
		"double multi-line": `when: "msg.Type == \"ADT\" &&
      msg.Nope == \"\""`,
		"double escaped break": `when: "msg.Type == \"ADT\" && \
      msg.Nope == \"\""`,
		"tagged":   `when: !!str msg.Type == "ADT" && msg.Nope == ""`,
		"bad path": `when: msg.Type == "ADT" && msg.Has("Nope")`,
	}
	for name, when := range cases {
		t.Run(name, func(t *testing.T) {
			src := "routes:\n  - name: r\n    to: []\n    " + when + "\n"
			dir := writeTable(t, map[string]string{"r.yaml": src})
			_, err := LoadTable([]string{dir}, testOptions())
			errs := tableErrors(t, err)
			line := strings.Count(src[:strings.Index(src, "Nope")], "\n") + 1
			lineStart := strings.LastIndex(src[:strings.Index(src, "Nope")], "\n") + 1
			col := len([]rune(src[lineStart:strings.Index(src, "Nope")])) + 1
			if name == "bad path" {
				col-- // the error points at the string's opening quote
			}
			want := fmt.Sprintf("%s:%d:%d: ", filepath.Join(dir, "r.yaml"), line, col)
			if len(errs) != 1 || !strings.HasPrefix(errs[0], want) {
				t.Errorf("errors %q, want one at %s", errs, want)
			}
		})
	}
}

// TestLoadTableProblems checks each kind of problem a table can have, and where
// it is reported.
func TestLoadTableProblems(t *testing.T) {
	const dests = "destinations:\n  pds: {kind: fhir, url: x}\n"
	cases := []struct {
		name, src string
		want      []string // line:col: message prefix, one per error
	}{
		{"empty file", "", []string{"1:1: empty file"}},
		{"comments only", "# nothing\n", []string{"1:1: empty file"}},
		{"neither key", "other: 1\n", []string{`1:1: unknown key "other"`, "1:1: neither routes: nor destinations:"}},
		{"not a mapping", "- a\n", []string{"1:1: expected a mapping with routes: and destinations:"}},
		// yaml names the line of the collection it was reading, not the
		// line at fault, and no column.
		{"syntax", "routes:\n  - name: a\n   when: x\n", []string{"1: did not find expected '-' indicator"}},
		{"two documents", dests + "---\nroutes: []\n", []string{"3:1: a second YAML document"}},
		{"routes not a list", "routes: {a: 1}\n", []string{"1:9: routes: expected a list of routes"}},
		{"route not a mapping", "routes: [a]\n", []string{"1:10: routes[0]: expected a mapping"}},
		{"missing keys", "routes:\n  - transform: patient\n", []string{
			"2:5: routes[0]: name: is required"}},
		{"missing when and to", "routes:\n  - name: a\n", []string{
			"2:5: routes[0]: when: is required", "2:5: routes[0]: to: is required"}},
		{"bad name", dests + "routes:\n  - name: a.b\n    when: 'true'\n    to: [pds]\n", []string{
			`4:11: routes[0].name: "a.b": use letters, digits, '-' and '_'`}},
		{"empty when", dests + "routes:\n  - name: a\n    when: ''\n    to: [pds]\n", []string{"5:11: routes[0].when: empty"}},
		{"when not boolean", dests + "routes:\n  - name: a\n    when: msg.Type\n    to: [pds]\n", []string{
			"5:11: routes[0].when: expected bool, but got string"}},
		{"syntax in when", dests + "routes:\n  - name: a\n    when: msg.Type == \n    to: [pds]\n", []string{
			"5:21: routes[0].when: unexpected token EOF"}},
		{"name without msg", dests + "routes:\n  - name: a\n    when: Type == 'ADT'\n    to: [pds]\n", []string{
			"5:11: routes[0].when: unknown name Type; did you mean msg.Type?"}},
		{"Reset", dests + "routes:\n  - name: a\n    when: msg.Reset(nil, nil) == nil\n    to: [pds]\n", []string{
			"5:15: routes[0].when: msg.Reset is not for expressions"}},
		{"ack", dests + "routes:\n  - name: a\n    when: 'true'\n    to: [pds]\n    ack: received\n", []string{
			`7:10: routes[0].ack: "received": want durable or processed`}},
		{"booleans", dests + "routes:\n  - name: a\n    when: 'true'\n    to: [pds]\n    continue: yes\n", []string{
			"7:15: routes[0].continue: expected true or false"}},
		{"validate without transform", dests + "routes:\n  - name: a\n    when: 'true'\n    to: [pds]\n    validate: true\n", []string{
			"4:5: routes[0]: validate: needs a transform"}},
		{"destination twice in to", dests + "routes:\n  - name: a\n    when: 'true'\n    to: [pds, pds]\n", []string{
			`6:15: routes[0].to[1]: "pds" is listed twice`}},
		{"key twice", dests + "routes:\n  - name: a\n    when: 'true'\n    when: 'false'\n    to: [pds]\n", []string{
			"6:5: routes[0].when: given twice"}},
		{"to not a list", dests + "routes:\n  - name: a\n    when: 'true'\n    to: {pds: 1}\n", []string{
			"6:9: routes[0].to: expected a list of destination names"}},
		{"no kind", "destinations:\n  pds: {url: x}\n", []string{"2:8: destinations.pds: kind: is required (known: amqp, fhir, mllp)"}},
		{"destination not a mapping", "destinations:\n  pds: x\n", []string{"2:8: destinations.pds: expected a mapping with kind:"}},
		{"destination twice in a file", "destinations:\n  a: {kind: fhir, url: x}\n  a: {kind: fhir, url: y}\n", []string{
			"3:3: destinations.a: already declared at "}},
		{"factory error without position", "destinations:\n  a: {kind: fhir}\n", []string{"2:6: destinations.a: url: required"}},
		{"destination key twice", "destinations:\n  a: {kind: fhir, url: x, kind: mllp}\n", []string{
			"2:27: destinations.a.kind: given twice"}},
		{"concurrency zero", "destinations:\n  a: {kind: fhir, url: x, concurrency: 0}\n", []string{
			"2:40: destinations.a.concurrency: want a whole number from 1 to 4096"}},
		{"concurrency not a number", "destinations:\n  a: {kind: fhir, url: x, concurrency: [8]}\n", []string{
			"2:40: destinations.a.concurrency: want a whole number from 1 to 4096"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := writeTable(t, map[string]string{"r.yaml": c.src})
			_, err := LoadTable([]string{dir}, testOptions())
			got := tableErrors(t, err)
			path := filepath.Join(dir, "r.yaml") + ":"
			if len(got) != len(c.want) {
				t.Fatalf("errors:\n%s\nwant %d", strings.Join(got, "\n"), len(c.want))
			}
			for i, w := range c.want {
				if !strings.HasPrefix(got[i], path+w) {
					t.Errorf("error %d:\n got %s\nwant %s%s...", i, got[i], path, w)
				}
			}
		})
	}
}

func TestLoadTablePaths(t *testing.T) {
	opts := testOptions()
	t.Run("files and directories", func(t *testing.T) {
		dir := writeTable(t, map[string]string{
			"b.yml":          "routes:\n  - {name: b, when: 'true', to: [pds]}\n",
			"a.yaml":         "routes:\n  - {name: a, when: 'false', to: [pds]}\n",
			"x_test.yaml":    "cases: []\n",
			".#a.yaml":       "not: [yaml",
			"notes.txt":      "not routes",
			"destinations.y": "not routes either",
		})
		other := writeTable(t, map[string]string{"d.yaml": "destinations:\n  pds: {kind: fhir, url: x}\n"})
		tab, err := LoadTable([]string{dir, filepath.Join(other, "d.yaml"), filepath.Join(dir, "a.yaml")}, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer tab.Close()
		want := []string{filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yml"), filepath.Join(other, "d.yaml")}
		if !slices.Equal(tab.Files, want) {
			t.Errorf("Files %q, want %q", tab.Files, want)
		}
		if len(tab.Routes) != 2 || tab.Routes[0].Name != "a" || tab.Routes[1].Name != "b" {
			t.Errorf("routes not in file order: %v", tab.Routes)
		}
	})
	t.Run("empty routes", func(t *testing.T) {
		dir := writeTable(t, map[string]string{"r.yaml": "routes:\ndestinations:\n"})
		tab, err := LoadTable([]string{dir}, opts)
		if err != nil {
			t.Fatal(err)
		}
		got, err := tab.NewMatcher().Match(message(t, adtA01), nil)
		if err != nil || len(got) != 0 {
			t.Errorf("an empty table matched %v, %v", got, err)
		}
	})
	t.Run("missing", func(t *testing.T) {
		dir := writeTable(t, map[string]string{"notes.txt": "x"})
		_, err := LoadTable([]string{dir, filepath.Join(dir, "gone.yaml")}, opts)
		got := tableErrors(t, err)
		want := []string{
			dir + ": no routes files (*.yaml, *.yml) in the directory",
			filepath.Join(dir, "gone.yaml") + ": stat: no such file or directory",
		}
		if !slices.Equal(got, want) {
			t.Errorf("errors %q, want %q", got, want)
		}
	})
	t.Run("none", func(t *testing.T) {
		if _, err := LoadTable(nil, opts); err == nil {
			t.Error("no paths loaded")
		}
	})
}

// TestLoadTableClosesOnError checks that a table that fails to load closes the
// destinations it had built.
func TestLoadTableClosesOnError(t *testing.T) {
	var built []*fakeDest
	opts := testOptions()
	opts.Kinds = map[string]DestinationFactory{"fhir": func(name string, node *yaml.Node) (Destination, error) {
		d, err := fakeFactory(name, node)
		if err == nil {
			built = append(built, d.(*fakeDest))
		}
		return d, err
	}}
	dir := writeTable(t, map[string]string{"r.yaml": "destinations:\n  a: {kind: fhir, url: x}\n  b: {kind: fhir, url: y}\nroutes:\n  - {name: r, when: 'true', to: [c]}\n"})
	if _, err := LoadTable([]string{dir}, opts); err == nil {
		t.Fatal("loaded")
	}
	if len(built) != 2 || !built[0].closed.Load() || !built[1].closed.Load() {
		t.Errorf("built %d destinations; all must be closed", len(built))
	}
}

// loadString loads a table from one routes file with the given routes and the
// destinations pds, events and legacy.
func loadString(t testing.TB, routes string) *Table {
	t.Helper()
	src := "destinations:\n  pds: {kind: fhir, url: x}\n  events: {kind: amqp, url: y}\n  legacy: {kind: mllp, url: z}\nroutes:\n" + routes
	dir, err := os.MkdirTemp("", "routes")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, "r.yaml"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	tab, err := LoadTable([]string{dir}, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tab.Close() })
	return tab
}

func routeNames(routes []*Route) []string {
	names := []string{}
	for _, r := range routes {
		names = append(names, r.Name)
	}
	return names
}

func TestMatch(t *testing.T) {
	tab := loadString(t, `
  - name: adt-to-pds
    when: msg.Type == "ADT" && msg.Trigger in ["A01", "A04", "A08"]
    to: [pds, events]
    continue: true
  - name: test-messages
    when: msg.ProcessingID == "T"
    to: []
  - name: results
    when: msg.Type == "ORU"
    to: [events]
    continue: true
  - name: legacy
    when: "true"
    to: [legacy]
  - name: never
    when: "true"
    to: [pds]
`)
	m := tab.NewMatcher()
	cases := []struct {
		name, text string
		want       []string
	}{
		{"continue goes on to later routes", adtA01, []string{"adt-to-pds", "legacy"}},
		{"first match wins", oruR01, []string{"test-messages"}},
		{"a trigger not listed", strings.Replace(adtA01, "ADT^A01", "ADT^A03", 1), []string{"legacy"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := m.Match(message(t, c.text), nil)
			if err != nil {
				t.Fatal(err)
			}
			if names := routeNames(got); !slices.Equal(names, c.want) {
				t.Errorf("matched %q, want %q", names, c.want)
			}
		})
	}
	t.Run("appends to dst", func(t *testing.T) {
		dst := make([]*Route, 1, 8)
		got, _ := m.Match(message(t, adtA01), dst)
		if len(got) != 3 || got[0] != nil || &got[0] != &dst[0] {
			t.Errorf("Match(dst) = %v: want dst's first element kept and its memory reused", got)
		}
	})
}

func TestMatchRuntimeError(t *testing.T) {
	tab := loadString(t, `
  - name: first
    when: msg.Type == "ADT"
    to: [pds]
    continue: true
  - name: dates
    when: int(msg.Get("PID-7")) > 19000000 && int(msg.Get("PID-8")) > 0
    to: [events]
`)
	got, err := tab.NewMatcher().Match(message(t, adtA01), nil)
	var ee *EvalError
	if !errors.As(err, &ee) || ee.Route != "dates" || ee.Key != "when" || ee.Column != 37 || ee.At != "int" {
		t.Fatalf("err = %#v, want an EvalError at the second int() of route dates", err)
	}
	if strings.Contains(err.Error(), `"F"`) || !strings.Contains(ee.Err.Error(), "F") {
		t.Errorf("Error() = %q must not quote the value, Err = %q should", err, ee.Err)
	}
	if names := routeNames(got); !slices.Equal(names, []string{"first"}) {
		t.Errorf("routes before the error: %q", names)
	}
}

func TestOrderKey(t *testing.T) {
	tab := loadString(t, `
  - name: by-patient
    when: "true"
    to: [pds]
    order_by: msg.Get("PID-3.1")
    continue: true
  - name: by-sender-vm
    when: "true"
    to: [pds]
    order_by: msg.Sender + "/" + msg.Get("PID-5.1")
    continue: true
  - name: connection
    when: "true"
    to: [pds]
`)
	m := tab.NewMatcher()
	msg := message(t, adtA01)
	want := []string{"9990000018", "PAS|RX1^1.2.3^ISO/O^BRIEN", ""}
	for i, r := range tab.Routes {
		key, err := m.OrderKey(r, msg)
		if err != nil || key != want[i] {
			t.Errorf("%s: OrderKey = %q, %v; want %q", r.Name, key, err, want[i])
		}
	}
	if tab.Routes[0].orderBy.str == nil || tab.Routes[1].orderBy.str != nil {
		t.Error("order_by: a constant Get runs natively, a concatenation on the VM")
	}
	// The key outlives the message.
	key, _ := m.OrderKey(tab.Routes[1], msg)
	msg.Reset(&Record{}, nil)
	message(t, oruR01)
	if key != "PAS|RX1^1.2.3^ISO/O^BRIEN" {
		t.Errorf("key changed with the next message: %q", key)
	}
}

func TestMsg(t *testing.T) {
	msg := message(t, `MSH|^~\&|PAS^X|RX1^1.2.3^ISO|SPINE|X26|20261121093015+0000||ADT^A01^ADT_A01|C1|P|2.5.1
PID|1||9990000018^^^NHS^NH~RX1A123456^^^RX1^MR||O\S\BRIEN  ^  ELEANOR ||19580314|F
OBX|1|NM|A
OBX|2|ST|B||T\T\G`)
	want := Msg{Type: "ADT", Trigger: "A01", Structure: "ADT_A01", Version: "2.5.1", ControlID: "C1", ProcessingID: "P",
		Sender: "PAS^X|RX1^1.2.3^ISO", SendingApp: "PAS", SendingFacility: "RX1", ReceivingApp: "SPINE", ReceivingFacility: "X26",
		NHSNumber: "9990000018", Listener: "mllp", Peer: "10.0.0.7:51234", Format: "hl7v2"}
	got := *msg
	got.parsed, got.scratch = nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Reset filled\n%+v\nwant\n%+v", got, want)
	}
	for path, want := range map[string]string{
		"PID-5.1":    "O^BRIEN", // unescaped, spaces trimmed
		"PID-5.2":    "ELEANOR",
		"PID-3[2].1": "RX1A123456",
		"PID-3.1":    "9990000018",
		"OBX[2]-5":   "T&G",
		"OBX-3":      "A",
		"PV1-3":      "",
		"PID-99":     "",
		"nonsense":   "",
	} {
		if got := msg.Get(path); got != want {
			t.Errorf("Get(%q) = %q, want %q", path, got, want)
		}
		if has := msg.Has(path); has != (want != "") {
			t.Errorf("Has(%q) = %v", path, has)
		}
	}
	// Strings handed out stay as they are while later ones are unescaped.
	first := msg.Get("PID-5.1")
	for range 100 {
		msg.Get("OBX[2]-5")
	}
	if first != "O^BRIEN" {
		t.Errorf("an earlier Get changed to %q", first)
	}

	msg.Reset(&Record{Type: "REF", Format: FormatCDA, Listener: "itk"}, nil)
	if msg.Format != "cda" || msg.Type != "REF" || msg.Listener != "itk" || msg.Structure != "" || msg.Get("PID-3.1") != "" {
		t.Errorf("a CDA record: %+v", msg)
	}
}

// TestMsgFields checks that every field of Msg can be read by the native
// closures and is listed for expressions.
func TestMsgFields(t *testing.T) {
	typ := reflect.TypeFor[Msg]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		if !f.IsExported() {
			continue
		}
		if f.Type.Kind() != reflect.String {
			t.Errorf("Msg.%s is a %s: the native closures read strings only", f.Name, f.Type)
		}
		get, ok := msgFields[f.Name]
		if !ok {
			t.Errorf("msgFields lacks %s", f.Name)
			continue
		}
		var m Msg
		reflect.ValueOf(&m).Elem().Field(i).SetString("x" + f.Name)
		if got := get(&m); got != "x"+f.Name {
			t.Errorf("msgFields[%s] reads %q", f.Name, got)
		}
	}
	if len(msgFields) != len(msgMembers)-2 {
		t.Errorf("msgFields has %d entries, Msg %d fields", len(msgFields), len(msgMembers)-2)
	}
}

// TestNativeMatchesVM runs expressions both as closures and on the VM over
// several messages: both must agree, and the closures must cover the forms
// routes mostly use.
func TestNativeMatchesVM(t *testing.T) {
	boolean := []string{
		`true`, `false`, `!true`, `not false`,
		`msg.Type == "ADT"`, `msg.Type != "ADT"`, `"ADT" == msg.Type`,
		`msg.Type == "ADT" && msg.Trigger in ["A01", "A04"]`,
		`msg.Type == "ORU" || msg.Trigger not in ["A01"]`,
		`msg.Type == "ADT" and msg.ProcessingID == "P" or msg.Version == "2.4"`,
		`msg.Has("PV1-3")`, `!msg.Has("PV1-3")`, `msg.Has("PID-3[2].1") == true`, `msg.Has("OBX-5") != msg.Has("PV1")`,
		`msg.Get("PID-3.1") == "9990000018"`, `msg.Get("PID-5.1") in ["O^BRIEN", "FORSYTH"]`,
		`msg.SendingFacility startsWith "RX"`, `msg.Sender endsWith "ISO"`, `msg.Sender contains "|"`,
		`msg.Type == "ADT" ? msg.Trigger == "A01" : msg.Has("OBX-5")`,
		`msg.Format == "hl7v2" && msg.Listener == "mllp" && msg.Peer != "" && msg.NHSNumber != ""`,
		`msg.Structure == "ADT_A01" || msg.ReceivingApp == "X" || msg.ReceivingFacility == "Y" || msg.ControlID == "Z" || msg.SendingApp == "PAS"`,
	}
	vmOnly := []string{
		`msg.Get("PID-3.1") matches "^999"`,
		`len(msg.Get("PID-3.1")) == 10`,
		`msg.Type in ["ADT", msg.Trigger]`,
		`msg.Get("PID-" + "3.1") == "9990000018"`,
	}
	str := []string{`msg.Get("PID-3.1")`, `"fixed"`, `msg.Has("PV1-3") ? msg.Get("PV1-3.1") : msg.Sender`, `msg.Trigger`}
	msgs := []*Msg{message(t, adtA01), message(t, oruR01), message(t, strings.Replace(adtA01, "PV1|1|I|RX1W12^BAY 3^BED 4^RX1", "PV1|1|O", 1)), {}}
	compile := func(src string, boolean bool) *program {
		f := &routesFile{path: "t", src: []byte(src), lines: []int{0}}
		l := &loader{}
		p := l.compile(f, &yaml.Node{Kind: yaml.ScalarNode, Value: src, Line: 1, Column: 1}, "when", boolean)
		if p == nil {
			t.Fatalf("%s: %v", src, l.err())
		}
		return p
	}
	var m Matcher
	for _, src := range append(boolean, vmOnly...) {
		p := compile(src, true)
		if native := slices.Contains(boolean, src); (p.boolean != nil) != native {
			t.Errorf("%s: native %v, want %v", src, p.boolean != nil, native)
		}
		for i, msg := range msgs {
			out, err := m.run(p, msg)
			if err != nil {
				t.Fatalf("%s: %v", src, err)
			}
			if p.boolean != nil && p.boolean(msg) != out.(bool) {
				t.Errorf("%s on message %d: native %v, VM %v", src, i, p.boolean(msg), out)
			}
		}
	}
	for _, src := range str {
		p := compile(src, false)
		if p.str == nil {
			t.Errorf("%s: not native", src)
			continue
		}
		for i, msg := range msgs {
			out, err := m.run(p, msg)
			if err != nil || p.str(msg) != out.(string) {
				t.Errorf("%s on message %d: native %q, VM %q, %v", src, i, p.str(msg), out, err)
			}
		}
	}
}

// TestRouting checks the table as the dispatcher sees it.
func TestRouting(t *testing.T) {
	tab := loadString(t, `
  - name: adt
    when: msg.Type == "ADT"
    transform: patient
    validate: true
    order_by: msg.NHSNumber
    to: [pds, events]
    continue: true
  - name: legacy
    when: "true"
    to: [legacy]
`)
	r := tab.Routing()
	raw := []byte(strings.ReplaceAll(adtA01, "\n", "\r"))
	m, _ := hl7v2.Parse(raw)
	rec := &Record{Raw: raw}
	fillHeader(rec, m)
	got, err := r.Match(rec, m, nil)
	want := []Match{
		{Route: "adt", Transform: "patient", Validate: true, Key: "9990000018", To: []string{"pds", "events"}},
		{Route: "legacy", To: []string{"legacy"}},
	}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("Match = %+v, %v\nwant %+v", got, err, want)
	}
	if r.Destination("pds") != tab.Destinations["pds"] || r.Destination("nope") != nil {
		t.Error("Destination does not look up the table's destinations")
	}
	if err := r.Close(); err != nil || !tab.Destinations["pds"].(*fakeDest).closed.Load() {
		t.Errorf("Close: %v; the table's destinations must be closed", err)
	}
}

// hintDest is a destination that suggests its own concurrency.
type hintDest struct{ fakeDest }

func (*hintDest) Concurrency() int { return 256 }

// TestRoutingConcurrency checks where a destination's concurrency comes from:
// the routes file's concurrency: key first, then the destination's own
// suggestion, else 0 for the dispatcher's default.
func TestRoutingConcurrency(t *testing.T) {
	opts := testOptions()
	opts.Kinds["hint"] = func(name string, node *yaml.Node) (Destination, error) {
		return &hintDest{fakeDest{name: name}}, nil
	}
	dir := writeTable(t, map[string]string{"r.yaml": `destinations:
  set: {kind: fhir, url: x, concurrency: 32}
  plain: {kind: fhir, url: x}
  hinted: {kind: hint}
  overridden: {kind: hint, concurrency: 4}
`})
	tab, err := LoadTable([]string{dir}, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer tab.Close()
	r := tab.Routing()
	for name, want := range map[string]int{"set": 32, "plain": 0, "hinted": 256, "overridden": 4, "absent": 0} {
		if got := r.Concurrency(name); got != want {
			t.Errorf("Concurrency(%q) = %d, want %d", name, got, want)
		}
	}
	if got := tab.Destinations["set"].(*fakeDest).url; got != "x" {
		t.Errorf("the factory got url %q: concurrency: must be taken out, the rest passed on", got)
	}
}

// tenRoutes is a table as a trust might run: header comparisons, a Has, a Get,
// a catch-all last.
const tenRoutes = `
  - {name: r1, when: 'msg.Type == "ORM"', to: [pds]}
  - {name: r2, when: 'msg.Type == "ORU" && msg.Trigger == "R01"', to: [events]}
  - {name: r3, when: 'msg.Type == "SIU"', to: [events]}
  - {name: r4, when: 'msg.Type == "MDM" && msg.Has("TXA-12")', to: [events]}
  - {name: r5, when: 'msg.ProcessingID == "D"', to: []}
  - {name: r6, when: 'msg.SendingFacility == "RX9"', to: [legacy]}
  - {name: r7, when: 'msg.Type == "ADT" && msg.Trigger in ["A01", "A04", "A08", "A28", "A31"]', to: [pds, events], order_by: 'msg.Get("PID-3.1")', continue: true}
  - {name: r8, when: 'msg.Type == "ADT" && msg.Get("PV1-2") == "I"', to: [events], continue: true}
  - {name: r9, when: 'msg.Type == "ADT" && msg.Trigger == "A40"', to: [pds]}
  - {name: r10, when: 'true', to: [legacy]}
`

// TestMatchAllocs holds matching to its promise: a table of the usual forms
// matches a message without allocating.
func TestMatchAllocs(t *testing.T) {
	tab := loadString(t, tenRoutes)
	m := tab.NewMatcher()
	msg := message(t, adtA01)
	dst := make([]*Route, 0, 10)
	var err error
	allocs := testing.AllocsPerRun(100, func() {
		dst, err = m.Match(msg, dst[:0])
	})
	if err != nil || !slices.Equal(routeNames(dst), []string{"r7", "r8", "r10"}) {
		t.Fatalf("matched %q, %v", routeNames(dst), err)
	}
	if allocs != 0 {
		t.Errorf("Match allocates %.0f times per message", allocs)
	}
}

func BenchmarkMatch(b *testing.B) {
	tab := loadString(b, tenRoutes)
	raw := []byte(strings.ReplaceAll(adtA01, "\n", "\r"))
	var parsed hl7v2.Message
	rec := &Record{Listener: "mllp", Raw: raw}
	if err := parsed.Parse(raw); err != nil {
		b.Fatal(err)
	}
	fillHeader(rec, &parsed)
	b.Run("native", func(b *testing.B) {
		m := tab.NewMatcher()
		var msg Msg
		dst := make([]*Route, 0, 10)
		b.ReportAllocs()
		for b.Loop() {
			msg.Reset(rec, &parsed)
			dst, _ = m.Match(&msg, dst[:0])
		}
	})
	b.Run("vm", func(b *testing.B) {
		// The same table with every expression on expr-lang's VM.
		vmTab := *tab
		vmTab.Routes = nil
		for _, r := range tab.Routes {
			vr := *r
			vr.when = &program{vm: r.when.vm}
			vmTab.Routes = append(vmTab.Routes, &vr)
		}
		m := vmTab.NewMatcher()
		var msg Msg
		dst := make([]*Route, 0, 10)
		b.ReportAllocs()
		for b.Loop() {
			msg.Reset(rec, &parsed)
			dst, _ = m.Match(&msg, dst[:0])
		}
	})
}

// FuzzLoadTable loads arbitrary routes files: loading must not panic, and every
// problem must be a TableError at a place inside the file.
func FuzzLoadTable(f *testing.F) {
	for _, seed := range []string{"good/routes.yaml", "good/destinations.yaml", "bad/a.yaml", "bad/b.yaml", "failing/routes.yaml"} {
		src, err := os.ReadFile(filepath.Join("testdata/table", seed))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(src)
	}
	f.Add([]byte("routes:\n  - name: a\n    when: |\n      msg.Type == \"ADT\" &&\n        msg.Nope\n    to: []\n"))
	f.Add([]byte("routes:\n  - {name: a, when: \"msg.Type == \\\"\\u00e9\\\" && \\\n  msg.Nope\", to: []}\n"))
	opts := testOptions()
	f.Fuzz(func(t *testing.T, src []byte) {
		l := newLoader(opts)
		l.order["r.yaml"] = 0
		l.readFile("r.yaml", src)
		tab, err := l.build([]string{"r.yaml"})
		if err == nil {
			tab.Close()
			return
		}
		lines := bytes.Count(src, []byte("\n")) + 1
		for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
			te, ok := e.(*TableError)
			if !ok {
				t.Fatalf("%v is not a *TableError", e)
			}
			if te.Line < 0 || te.Line > lines || te.Column < 0 {
				t.Errorf("%v: outside a file of %d lines", te, lines)
			}
		}
	})
}

// FuzzNativeMatchesVM compiles arbitrary when expressions: whenever one runs
// as a closure, the closure and the VM must agree.
func FuzzNativeMatchesVM(f *testing.F) {
	for _, seed := range []string{
		`msg.Type == "ADT" && msg.Trigger in ["A01", "A04"]`,
		`msg.Has("PV1-3") ? msg.Get("PID-3.1") startsWith "999" : not msg.Has("OBX-5")`,
		`msg.Sender contains "|" || msg.Get("PID-5.1") != "O^BRIEN"`,
	} {
		f.Add(seed)
	}
	msgs := []*Msg{message(f, adtA01), message(f, oruR01), {}}
	f.Fuzz(func(t *testing.T, src string) {
		l := newLoader(TableOptions{})
		file := &routesFile{path: "r.yaml", src: []byte(src), lines: []int{0}}
		p := l.compile(file, &yaml.Node{Kind: yaml.ScalarNode, Value: src, Line: 1, Column: 1}, "when", true)
		if p == nil || p.boolean == nil {
			return
		}
		var m Matcher
		for i, msg := range msgs {
			out, err := m.run(p, msg)
			if err != nil {
				t.Fatalf("%s: the VM fails on message %d (%v) where the closure gives %v", src, i, err, p.boolean(msg))
			}
			if out.(bool) != p.boolean(msg) {
				t.Fatalf("%s on message %d: closure %v, VM %v", src, i, p.boolean(msg), out)
			}
		}
	})
}

// TestMatchersConcurrent matches on one table from several goroutines, each
// with its own Matcher and Msg, as the dispatcher's workers do (run with -race).
func TestMatchersConcurrent(t *testing.T) {
	tab := loadString(t, "  - {name: vm, when: 'len(msg.Get(\"PID-3.1\")) == 10', to: [pds], continue: true}"+tenRoutes)
	raw := []byte(strings.ReplaceAll(adtA01, "\n", "\r"))
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			var parsed hl7v2.Message
			if err := parsed.Parse(raw); err != nil {
				errs <- err
				return
			}
			rec := &Record{Raw: raw}
			fillHeader(rec, &parsed)
			m, msg := tab.NewMatcher(), new(Msg)
			for range 200 {
				msg.Reset(rec, &parsed)
				got, err := m.Match(msg, nil)
				if err != nil {
					errs <- err
					return
				}
				if names := routeNames(got); !slices.Equal(names, []string{"vm", "r7", "r8", "r10"}) {
					errs <- fmt.Errorf("matched %q", names)
					return
				}
			}
			errs <- nil
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
