package routes

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
	"github.com/spinebridge/spinebridge/conformance"
)

// Test cases for a routing table live beside its routes files, in files named
// *_test.yaml (or *_test.yml), which the table itself never reads:
//
//	cases:
//	  - name: an admission goes to PDS and the legacy PAS
//	    message: ../../fixtures/hl7v2/adt_a01.hl7   # relative to the test file
//	    routes: [adt-to-pds, legacy-passthrough]
//	    facts:
//	      - 'Patient.name.family = "THOMPSON"'
//	  - name: a discharge only passes through
//	    text: |
//	      MSH|^~\&|PAS|RX1|SPINEBRIDGE|X26|20261121093015||ADT^A03^ADT_A03|C2|P|2.5.1
//	      PID|1||9990000018^^^NHS^NH||THOMPSON^ELEANOR
//	    routes: [legacy-passthrough]
//
// A case's message is a file (message:) or inline text (text:, one segment a
// line). routes: lists exactly the routes the message must take, in order ([]
// for none). facts: lists facts every route taken that has a transform must
// state in its output, written as conformance reports print them
// (conformance.Fact's String): Resource.path = "value", with the value in the
// facts' normal form (a date-time as "2026-11-21T09:30:00Z@second"). error:
// expects the message's routing or one of its transforms to fail with an
// error containing the text; routes: may then be left out.

// CaseResult is the outcome of one test case.
type CaseResult struct {
	Name string
	Pos  string // where the case is declared, as "path:line"
	// Routes are the routes the message took.
	Routes []string
	// Failures say how the outcome differs from the case; none when it passed.
	Failures []string
}

// Passed reports whether the case passed.
func (r CaseResult) Passed() bool { return len(r.Failures) == 0 }

// testCase is one case as read.
type testCase struct {
	name      string
	pos       string
	file      string // the message file, or "" for text
	text      string
	routes    []string
	hasRoutes bool
	facts     []conformance.Fact
	err       string
}

var caseKeys = []string{"name", "message", "text", "routes", "facts", "error"}

// factPattern is a fact as conformance.Fact's String prints it.
var factPattern = regexp.MustCompile(`^([A-Z][A-Za-z]*)\.(\S+)\s*=\s*(".*")$`)

// RunCases runs every test case in the *_test.yaml and *_test.yml files of
// dir against t, in file and case order. Problems with the test files
// themselves (a key that is not known, a case naming a route t does not have)
// are returned as *TableErrors, joined; the cases of the files that could be
// read are still run.
func RunCases(dir string, t *Table) ([]CaseResult, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("routes: test cases: %w", err)
	}
	var files []string
	for _, e := range entries {
		if !e.IsDir() && isCaseFile(e.Name()) {
			files = append(files, filepath.Join(dir, e.Name()))
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("routes: %s: no test files (*_test.yaml)", dir)
	}
	l := &loader{order: map[string]int{}}
	for i, f := range files {
		l.order[f] = i
	}
	routeNames := make([]string, len(t.Routes))
	for i, r := range t.Routes {
		routeNames[i] = r.Name
	}
	var cases []*testCase
	for _, f := range files {
		cases = append(cases, l.readCases(f, routeNames)...)
	}
	run := &caseRunner{t: t, m: t.NewMatcher()}
	results := make([]CaseResult, 0, len(cases))
	for _, c := range cases {
		results = append(results, run.run(c))
	}
	return results, l.err()
}

// readCases reads the cases of one test file.
func (l *loader) readCases(path string, routeNames []string) []*testCase {
	src, err := os.ReadFile(path)
	if err != nil {
		l.add(path, 0, 0, "%w", unwrapPathError(err))
		return nil
	}
	f, root := readYAML(path, src, func(line, col int, format string, args ...any) { l.add(path, line, col, format, args...) })
	if root == nil {
		return nil
	}
	root = resolve(root)
	if root.Kind != yaml.MappingNode {
		l.at(f, root, "expected a mapping with cases:")
		return nil
	}
	var list *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], resolve(root.Content[i+1])
		if k.Value != "cases" {
			l.at(f, k, "unknown key %q; a test file holds cases:", k.Value)
			continue
		}
		list = v
	}
	if list == nil || isNull(list) {
		l.at(f, root, "no cases:")
		return nil
	}
	if list.Kind != yaml.SequenceNode {
		l.at(f, list, "cases: expected a list of cases")
		return nil
	}
	var cases []*testCase
	for i, n := range list.Content {
		if c := l.readCase(f, resolve(n), fmt.Sprintf("cases[%d]", i), routeNames); c != nil {
			cases = append(cases, c)
		}
	}
	return cases
}

func (l *loader) readCase(f *routesFile, n *yaml.Node, where string, routeNames []string) *testCase {
	if n.Kind != yaml.MappingNode {
		l.at(f, n, "%s: expected a mapping (name:, message: or text:, routes:)", where)
		return nil
	}
	before := len(l.errs)
	c := &testCase{pos: fmt.Sprintf("%s:%d", f.path, n.Line)}
	seen := l.eachKey(f, n, where, func(k, v *yaml.Node, key string) {
		switch k.Value {
		case "name":
			if l.scalar(f, v, key) {
				c.name = v.Value
			}
		case "message":
			if l.scalar(f, v, key) {
				c.file = v.Value
				if !filepath.IsAbs(c.file) {
					c.file = filepath.Join(filepath.Dir(f.path), c.file)
				}
			}
		case "text":
			if l.scalar(f, v, key) {
				c.text = v.Value
			}
		case "error":
			if l.scalar(f, v, key) {
				c.err = v.Value
			}
		case "routes":
			c.hasRoutes = true
			if v.Kind != yaml.SequenceNode {
				l.at(f, v, "%s: expected a list of route names ([] for none)", key)
				break
			}
			for j, r := range v.Content {
				if r = resolve(r); !l.scalar(f, r, fmt.Sprintf("%s[%d]", key, j)) {
					continue
				}
				if !slices.Contains(routeNames, r.Value) {
					l.at(f, r, "%s[%d]: the table has no route %q%s", key, j, r.Value, suggest(r.Value, routeNames))
				}
				c.routes = append(c.routes, r.Value)
			}
		case "facts":
			if v.Kind != yaml.SequenceNode {
				l.at(f, v, "%s: expected a list of facts", key)
				break
			}
			for j, fn := range v.Content {
				fn = resolve(fn)
				fact, ok := parseFact(fn.Value)
				if fn.Kind != yaml.ScalarNode || !ok {
					l.at(f, fn, "%s[%d]: want Resource.path = \"value\", as conformance reports print facts", key, j)
					continue
				}
				c.facts = append(c.facts, fact)
			}
		default:
			l.at(f, k, "%s: unknown key %q%s", where, k.Value, suggest(k.Value, caseKeys))
		}
	})
	if !seen["name"] {
		l.at(f, n, "%s: name: is required", where)
	}
	if seen["message"] == seen["text"] {
		l.at(f, n, "%s: give the message as message: (a file) or text:, one of them", where)
	}
	if !seen["routes"] && !seen["error"] {
		l.at(f, n, "%s: routes: is required (the routes the message takes, [] for none), unless error: is given", where)
	}
	if len(l.errs) > before {
		return nil
	}
	return c
}

// parseFact reads a fact as conformance.Fact's String prints it.
func parseFact(s string) (conformance.Fact, bool) {
	m := factPattern.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return conformance.Fact{}, false
	}
	v, err := strconv.Unquote(m[3])
	if err != nil {
		return conformance.Fact{}, false
	}
	return conformance.Fact{Resource: m[1], Path: m[2], Value: v}, true
}

// caseRunner runs cases as the dispatcher would route their messages.
type caseRunner struct {
	t   *Table
	m   *Matcher
	msg Msg
}

func (cr *caseRunner) run(c *testCase) CaseResult {
	res := CaseResult{Name: c.name, Pos: c.pos, Routes: []string{}}
	fail := func(format string, args ...any) { res.Failures = append(res.Failures, fmt.Sprintf(format, args...)) }
	raw, err := caseMessage(c)
	if err != nil {
		fail("%v", err)
		return res
	}
	// What went wrong, in full: unlike logs, a test's messages are not patient
	// data, and the reason is what its author needs.
	var errs []string
	routes, outputs := cr.route(raw, &errs)
	for _, r := range routes {
		res.Routes = append(res.Routes, r.Name)
	}
	switch {
	case c.err != "" && len(errs) == 0:
		fail("expected an error containing %q; there was none", c.err)
	case c.err != "" && !slices.ContainsFunc(errs, func(e string) bool { return strings.Contains(e, c.err) }):
		fail("expected an error containing %q; got:\n%s", c.err, strings.Join(errs, "\n"))
	case c.err == "":
		for _, e := range errs {
			fail("%s", e)
		}
	}
	if c.hasRoutes && !slices.Equal(res.Routes, c.routes) {
		fail("%s", routesDiff(res.Routes, c.routes))
	}
	if len(c.facts) > 0 {
		res.Failures = append(res.Failures, checkFacts(c.facts, routes, outputs)...)
	}
	return res
}

// caseMessage returns the bytes of a case's message.
func caseMessage(c *testCase) ([]byte, error) {
	if c.file == "" {
		lines := strings.Split(strings.TrimRight(c.text, "\n"), "\n")
		return []byte(strings.Join(lines, "\r") + "\r"), nil
	}
	raw, err := os.ReadFile(c.file)
	if err != nil {
		return nil, fmt.Errorf("message: %w", err)
	}
	msgs, err := hl7v2.SplitMessages(raw)
	if err != nil {
		return nil, fmt.Errorf("message %s: %w", c.file, err)
	}
	if len(msgs) != 1 {
		return nil, fmt.Errorf("message %s holds %d messages; a case takes one", c.file, len(msgs))
	}
	return msgs[0], nil
}

// output is what a route's transform made of the message.
type output struct {
	body        []byte
	contentType string
}

// route parses raw, matches it and runs the transform of each route taken,
// adding every error to errs.
func (cr *caseRunner) route(raw []byte, errs *[]string) ([]*Route, map[string]output) {
	m, err := hl7v2.Parse(raw)
	if err != nil {
		*errs = append(*errs, fmt.Sprintf("parse: %v", err))
		return nil, nil
	}
	rec := &Record{Listener: "test", Raw: raw, Format: FormatHL7v2}
	fillHeader(rec, m)
	cr.msg.Reset(rec, m)
	routes, err := cr.m.Match(&cr.msg, nil)
	if err != nil {
		*errs = append(*errs, errorText(err))
	}
	outputs := map[string]output{}
	for _, r := range routes {
		if _, err := cr.m.OrderKey(r, &cr.msg); err != nil {
			*errs = append(*errs, errorText(err))
		}
		if r.Transformer == nil {
			continue
		}
		body, ct, _, err := transform(r.Transformer, rec, r.Reject)
		if err != nil {
			*errs = append(*errs, fmt.Sprintf("route %s: transform %s: %v", r.Name, r.Transform, err))
			continue
		}
		outputs[r.Name] = output{body: body, contentType: ct}
	}
	return routes, outputs
}

// errorText is err with an expression's reason, which EvalError keeps out of
// its text for logs.
func errorText(err error) string {
	var ee *EvalError
	if errors.As(err, &ee) && ee.Err != nil {
		return err.Error() + ": " + ee.Err.Error()
	}
	return err.Error()
}

// routesDiff says how the routes taken differ from those expected.
func routesDiff(got, want []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "routes: took [%s], want [%s]", strings.Join(got, ", "), strings.Join(want, ", "))
	var missing, extra []string
	for _, w := range want {
		if !slices.Contains(got, w) {
			missing = append(missing, w)
		}
	}
	for _, g := range got {
		if !slices.Contains(want, g) {
			extra = append(extra, g)
		}
	}
	if len(missing) > 0 {
		fmt.Fprintf(&b, "; not taken: %s", strings.Join(missing, ", "))
	}
	if len(extra) > 0 {
		fmt.Fprintf(&b, "; not expected: %s", strings.Join(extra, ", "))
	}
	if len(missing) == 0 && len(extra) == 0 {
		b.WriteString("; the order differs")
	}
	return b.String()
}

// checkFacts checks that the output of every route taken that has a transform
// states each fact, and says what it states instead when it does not.
func checkFacts(facts []conformance.Fact, routes []*Route, outputs map[string]output) []string {
	var failures []string
	transformed := 0
	for _, r := range routes {
		if r.Transformer == nil {
			continue
		}
		transformed++
		out, ok := outputs[r.Name]
		if !ok {
			continue // its transform failed, and that is reported
		}
		if out.contentType != ContentTypeFHIR {
			failures = append(failures, fmt.Sprintf("route %s: facts: the output is %s, not FHIR", r.Name, out.contentType))
			continue
		}
		have, err := conformance.Facts(out.body)
		if err != nil {
			failures = append(failures, fmt.Sprintf("route %s: facts: %v", r.Name, err))
			continue
		}
		byPath := map[string][]string{}
		present := map[conformance.Fact]bool{}
		for _, f := range have {
			present[f] = true
			byPath[f.Resource+"."+f.Path] = append(byPath[f.Resource+"."+f.Path], f.String())
		}
		for _, f := range facts {
			if present[f] {
				continue
			}
			msg := fmt.Sprintf("route %s: missing %s", r.Name, f)
			if near := byPath[f.Resource+"."+f.Path]; len(near) > 0 {
				msg += "; the output has " + strings.Join(near, ", ")
			} else {
				msg += fmt.Sprintf("; the output has no %s.%s", f.Resource, f.Path)
			}
			failures = append(failures, msg)
		}
	}
	if transformed == 0 {
		failures = append(failures, "facts: no route taken has a transform")
	}
	return failures
}
