package routes

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"
	"go.yaml.in/yaml/v3"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
)

// A routing table is read from YAML files:
//
//	routes:
//	  - name: adt-to-pds
//	    when: msg.Type == "ADT" && msg.Trigger in ["A01", "A04", "A08"]
//	    transform: adt          # a transform's name; absent: the original bytes
//	    to: [pds, spine-events]
//	    order_by: msg.Get("PID-3.1")  # absent: the inbound connection
//	    validate: true          # validate the transformed output
//	    reject: [nhs-number]    # AE for a message whose transform finds these
//	    continue: true          # also try the routes after this one
//	    ack: processed          # durable (the listener's default) or processed
//	  - name: legacy-passthrough
//	    when: "true"
//	    to: [legacy-pas]
//	destinations:
//	  pds:          { kind: fhir, url: "https://example/FHIR/R4" }
//	  legacy-pas:   { kind: mllp, addr: "pas.example.nhs.uk:2575" }
//
// A message takes the first route whose when holds, and goes on to later
// routes only while the routes it takes say continue. to: [] takes a message
// and delivers it nowhere. A table may span several files, read in order
// (a directory's in name order); its routes keep that order, and a route
// may name a destination declared in another file. A route or destination
// name is declared once, in letters, digits, '-' and '_'.
//
// when (a boolean) and order_by (a string) are expr-lang expressions over msg
// (Env, Msg), compiled when the table loads: a name msg does not have, a
// comparison of a string with a number, a constant path given to msg.Get or
// msg.Has that is not an HL7 v2 path are load errors, placed at their
// character in the file. Each destination is built by the factory of its kind,
// which receives its settings without the kind key.

// TableOptions are what a routing table is built with.
type TableOptions struct {
	// Kinds builds each destination by its kind ("fhir", "amqp", "mllp", ...).
	// A factory receives the destination's mapping without its kind key.
	Kinds map[string]DestinationFactory
	// Transformers are the transforms a route may name.
	Transformers map[string]Transformer
}

// Table is a loaded routing table: its routes in order, the destinations they
// deliver to, and the files it was read from. A Table is immutable and safe for
// concurrent use; each worker matches through its own Matcher.
type Table struct {
	Routes       []*Route
	Destinations map[string]Destination
	// Concurrency holds the destinations' concurrency: keys, where the routes
	// file sets them.
	Concurrency map[string]int
	Files       []string // the files read, in the order their routes stand
}

// Route is one entry of the routing table.
type Route struct {
	Name string
	Pos  string // where it is declared, as "path:line:col"
	// When and OrderBy are the route's expressions as written; OrderBy is ""
	// when the route has none.
	When, OrderBy string
	// Transform names the transform of the route's deliveries, and Transformer
	// is it; both are empty when the route delivers the original bytes.
	Transform   string
	Transformer Transformer
	To          []string // destination names, in the order written
	Validate    bool     // validate the transformed output before delivery
	// Reject holds the kinds of transform issue that refuse a message: the
	// sender gets an AE naming them and the route's deliveries are
	// dead-lettered. Issues of other kinds are delivered with, as warnings in
	// the message's journey. A route that rejects acknowledges at
	// AckProcessed.
	Reject   IssueKinds
	Continue bool     // a message this route takes also goes on to later routes
	Ack      AckPoint // "" when the route leaves it to the listener

	when, orderBy *program
}

// program is a compiled expression: the VM program, and for the forms routes
// mostly use, the same expression as a Go closure (table_env.go).
type program struct {
	vm      *vm.Program
	boolean func(*Msg) bool   // native form of a when, or nil
	str     func(*Msg) string // native form of an order_by, or nil
}

// TableError is one problem in a routes file or a routes test file, at the
// place it is to be fixed.
type TableError struct {
	Path   string
	Line   int // 1-based; 0 when the problem has no line (an unreadable file)
	Column int // 1-based; 0 when only the line is known
	Err    error
}

func (e *TableError) Error() string {
	switch {
	case e.Line == 0:
		return fmt.Sprintf("%s: %v", e.Path, e.Err)
	case e.Column == 0:
		return fmt.Sprintf("%s:%d: %v", e.Path, e.Line, e.Err)
	}
	return fmt.Sprintf("%s:%d:%d: %v", e.Path, e.Line, e.Column, e.Err)
}

func (e *TableError) Unwrap() error { return e.Err }

// LoadTable reads a routing table from paths, each a routes file or a directory
// whose *.yaml and *.yml files (except *_test.yaml and *_test.yml, which hold
// test cases) are read in name order. It builds every destination through
// opts.Kinds, without connecting, and compiles every expression. Every problem
// found in any file is returned, each a *TableError, joined and in file and
// position order; the destinations built are then closed again.
func LoadTable(paths []string, opts TableOptions) (*Table, error) {
	if len(paths) == 0 {
		return nil, errors.New("routes: no routes files given")
	}
	l := newLoader(opts)
	files := l.files(paths)
	for _, name := range files {
		src, err := os.ReadFile(name)
		if err != nil {
			l.add(name, 0, 0, "%w", unwrapPathError(err))
			continue
		}
		l.readFile(name, src)
	}
	return l.build(files)
}

func newLoader(opts TableOptions) *loader {
	return &loader{opts: opts, order: map[string]int{}, dests: map[string]*destSpec{}, routeNames: map[string]string{}}
}

// build builds the table from the files read, or returns every problem found.
func (l *loader) build(files []string) (*Table, error) {
	t := &Table{Destinations: map[string]Destination{}, Concurrency: map[string]int{}, Files: files}
	l.buildDestinations(t)
	l.buildRoutes(t)
	if err := l.err(); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

// Close closes every destination of t, reporting every failure.
func (t *Table) Close() error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(t.Destinations)) {
		if err := t.Destinations[name].Close(); err != nil {
			errs = append(errs, fmt.Errorf("destination %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// NewMatcher returns a Matcher over t, for one goroutine.
func (t *Table) NewMatcher() *Matcher { return &Matcher{t: t} }

// Matcher runs a table's expressions. It owns an expression VM and so serves one
// goroutine at a time; each worker has its own.
type Matcher struct {
	t   *Table
	vm  vm.VM
	env Env
}

// Match appends to dst the routes msg takes, in table order: the first route
// whose when holds, and after it the next, and so on, for as long as the route
// taken says continue. An expression that fails at run time stops matching; its
// error names the route, and the routes taken before it are returned with it.
func (m *Matcher) Match(msg *Msg, dst []*Route) ([]*Route, error) {
	for _, r := range m.t.Routes {
		ok, err := m.test(r, msg)
		if err != nil {
			return dst, evalError(r, "when", r.When, err)
		}
		if ok {
			dst = append(dst, r)
			if !r.Continue {
				break
			}
		}
	}
	return dst, nil
}

func (m *Matcher) test(r *Route, msg *Msg) (bool, error) {
	if r.when.boolean != nil {
		return r.when.boolean(msg), nil
	}
	out, err := m.run(r.when, msg)
	if err != nil {
		return false, err
	}
	b, _ := out.(bool)
	return b, nil
}

// OrderKey returns the key that keeps r's deliveries of msg in order: the value
// of its order_by, or "" when it has none, in which case (as when order_by gives
// "") the dispatcher orders by the inbound connection.
func (m *Matcher) OrderKey(r *Route, msg *Msg) (string, error) {
	if r.orderBy == nil {
		return "", nil
	}
	if r.orderBy.str != nil {
		return strings.Clone(r.orderBy.str(msg)), nil
	}
	out, err := m.run(r.orderBy, msg)
	if err != nil {
		return "", evalError(r, "order_by", r.OrderBy, err)
	}
	s, _ := out.(string)
	// The key outlives msg, whose strings are reused.
	return strings.Clone(s), nil
}

func (m *Matcher) run(p *program, msg *Msg) (any, error) {
	m.env.Msg = msg
	out, err := m.vm.Run(p.vm, &m.env)
	m.env.Msg = nil
	return out, err
}

// EvalError is an expression that failed at run time, such as int() of a field
// that holds no number. Its text names the route and where in the expression
// it failed but not why: expr-lang's reason quotes the values involved, which
// come from the message and may be patient data. Err holds the reason, for
// tests and debugging.
type EvalError struct {
	Route  string
	Key    string // "when" or "order_by"
	Column int    // where in the expression, 1-based; 0 when unknown
	At     string // the operator or call at Column
	Err    error
}

func (e *EvalError) Error() string {
	if e.Column == 0 {
		return fmt.Sprintf("route %s: %s: evaluation failed", e.Route, e.Key)
	}
	return fmt.Sprintf("route %s: %s: evaluation failed at column %d (%s)", e.Route, e.Key, e.Column, e.At)
}

func (e *EvalError) Unwrap() error { return e.Err }

func evalError(r *Route, key, src string, err error) error {
	e := &EvalError{Route: r.Name, Key: key, Err: err}
	var fe *file.Error
	if errors.As(err, &fe) {
		e.Err = errors.New(fe.Message) // without the snippet of source expr adds
		runes := []rune(src)
		if from, to := fe.From, fe.To; from >= 0 && from < to && to <= len(runes) {
			e.Column, e.At = from+1, string(runes[from:to])
		}
	}
	return e
}

// loader gathers a table from its files, collecting every problem.
type loader struct {
	opts       TableOptions
	errs       []*TableError
	order      map[string]int // file path -> position in the table, for sorting errors
	routes     []*routeSpec
	dests      map[string]*destSpec
	destOrder  []*destSpec
	routeNames map[string]string // name -> position of its first declaration
}

// routesFile is a file's bytes and where its lines start, for positions inside
// scalars.
type routesFile struct {
	path  string
	src   []byte
	lines []int
}

type routeSpec struct {
	f        *routesFile
	node     *yaml.Node
	where    string // "routes[i]"
	name     string
	when     *yaml.Node
	orderBy  *yaml.Node
	trans    *yaml.Node
	to       []*yaml.Node
	hasTo    bool
	validate bool
	reject   IssueKinds
	cont     bool
	ack      AckPoint
}

type destSpec struct {
	f    *routesFile
	name string
	key  *yaml.Node
	node *yaml.Node
}

var (
	topKeys   = []string{"routes", "destinations"}
	routeKeys = []string{"name", "when", "transform", "to", "order_by", "validate", "reject", "continue", "ack"}
	// Names end up in delivery ids ("<journal id>.<route>.<destination>"), file
	// names and metric labels.
	namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]*$`)
	// A yaml syntax error: "yaml: line 3: did not find expected key".
	yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	// A factory error at a position: "3:7: unknown key".
	posPrefix = regexp.MustCompile(`^(\d+):(\d+): (.*)$`)
)

// add records a problem at line and column of path.
func (l *loader) add(path string, line, col int, format string, args ...any) {
	l.errs = append(l.errs, &TableError{Path: path, Line: line, Column: col, Err: fmt.Errorf(format, args...)})
}

// at records a problem at node n of f.
func (l *loader) at(f *routesFile, n *yaml.Node, format string, args ...any) {
	line, col := n.Line, n.Column
	if line > len(f.lines) { // see readYAML
		line, col = len(f.lines), 0
	}
	l.add(f.path, line, col, format, args...)
}

// err returns the problems found, sorted by file and position, or nil.
func (l *loader) err() error {
	return sortedErrors(l.errs, l.order)
}

func sortedErrors(list []*TableError, order map[string]int) error {
	if len(list) == 0 {
		return nil
	}
	rank := func(path string) int {
		if i, ok := order[path]; ok {
			return i
		}
		return -1
	}
	slices.SortStableFunc(list, func(a, b *TableError) int {
		return cmp.Or(cmp.Compare(rank(a.Path), rank(b.Path)), cmp.Compare(a.Path, b.Path), cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
	errs := make([]error, len(list))
	for i, e := range list {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// files expands paths into the routes files to read, in order.
func (l *loader) files(paths []string) []string {
	var files []string
	seen := map[string]bool{}
	for _, p := range paths {
		info, err := os.Stat(p)
		if err != nil {
			l.add(p, 0, 0, "%w", unwrapPathError(err))
			continue
		}
		var names []string
		if info.IsDir() {
			entries, err := os.ReadDir(p)
			if err != nil {
				l.add(p, 0, 0, "%w", unwrapPathError(err))
				continue
			}
			for _, e := range entries {
				if isTableFile(e.Name()) && !e.IsDir() {
					names = append(names, filepath.Join(p, e.Name()))
				}
			}
			if len(names) == 0 {
				l.add(p, 0, 0, "no routes files (*.yaml, *.yml) in the directory")
			}
		} else {
			names = []string{p}
		}
		for _, n := range names {
			if clean := filepath.Clean(n); !seen[clean] {
				seen[clean] = true
				files = append(files, n)
			}
		}
	}
	for i, f := range files {
		l.order[f] = i
	}
	return files
}

// unwrapPathError drops the path an *fs.PathError repeats.
func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}

// isTableFile reports whether a directory entry is a routes file: YAML, not a
// test file, not an editor's hidden file.
func isTableFile(name string) bool {
	if strings.HasPrefix(name, ".") || isCaseFile(name) {
		return false
	}
	ext := filepath.Ext(name)
	return ext == ".yaml" || ext == ".yml"
}

// isCaseFile reports whether name is a routes test file.
func isCaseFile(name string) bool {
	return !strings.HasPrefix(name, ".") && (strings.HasSuffix(name, "_test.yaml") || strings.HasSuffix(name, "_test.yml"))
}

// readYAML reads the one YAML document in src, the content of path, reporting
// problems through add. It returns the document's root node, or nil.
func readYAML(path string, src []byte, add func(line, col int, format string, args ...any)) (*routesFile, *yaml.Node) {
	f := &routesFile{path: path, src: src, lines: []int{0}}
	for i, c := range src {
		if c == '\n' {
			f.lines = append(f.lines, i+1)
		}
	}
	// YAML counts a lone CR as a line break too, and places end-of-stream
	// errors on the line after the last: keep positions inside the file as an
	// editor shows it.
	inner := add
	add = func(line, col int, format string, args ...any) {
		if line > len(f.lines) {
			line, col = len(f.lines), 0
		}
		inner(line, col, format, args...)
	}
	dec := yaml.NewDecoder(bytes.NewReader(src))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			add(1, 1, "empty file")
		} else {
			yamlError(err, add)
		}
		return f, nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		add(extra.Line, extra.Column, "a second YAML document; a file holds one")
	} else if !errors.Is(err, io.EOF) {
		yamlError(err, add)
	}
	if len(doc.Content) == 0 {
		add(1, 1, "empty file")
		return f, nil
	}
	return f, doc.Content[0]
}

// yamlError reports a YAML syntax error at the line it names; yaml gives no
// column.
func yamlError(err error, add func(line, col int, format string, args ...any)) {
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		n, _ := strconv.Atoi(m[1])
		add(n, 0, "%s", m[2])
		return
	}
	add(0, 0, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
}

// readFile reads one routes file's routes and destinations.
func (l *loader) readFile(path string, src []byte) {
	f, root := readYAML(path, src, func(line, col int, format string, args ...any) { l.add(path, line, col, format, args...) })
	if root == nil {
		return
	}
	root = resolve(root)
	if root.Kind != yaml.MappingNode {
		l.at(f, root, "expected a mapping with routes: and destinations:")
		return
	}
	found := false
	l.eachKey(f, root, "", func(k, v *yaml.Node, _ string) {
		switch k.Value {
		case "routes":
			found = true
			l.readRoutes(f, v)
		case "destinations":
			found = true
			l.readDestinations(f, v)
		default:
			l.at(f, k, "unknown key %q%s", k.Value, suggest(k.Value, topKeys))
		}
	})
	if !found {
		l.at(f, root, "neither routes: nor destinations:")
	}
}

// eachKey calls fn with each key of mapping n, its value resolved, and the
// key's path below where (the key alone when where is ""). A key given twice
// is reported and passed over. It returns the keys seen.
func (l *loader) eachKey(f *routesFile, n *yaml.Node, where string, fn func(k, v *yaml.Node, key string)) map[string]bool {
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolve(n.Content[i+1])
		key := k.Value
		if where != "" {
			key = where + "." + k.Value
		}
		if seen[k.Value] {
			l.at(f, k, "%s: given twice", key)
			continue
		}
		seen[k.Value] = true
		fn(k, v, key)
	}
	return seen
}

func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

func (l *loader) readRoutes(f *routesFile, n *yaml.Node) {
	if isNull(n) {
		return // "routes:" with nothing under it: a table that routes nothing
	}
	if n.Kind != yaml.SequenceNode {
		l.at(f, n, "routes: expected a list of routes")
		return
	}
	for i, item := range n.Content {
		l.readRoute(f, resolve(item), fmt.Sprintf("routes[%d]", i))
	}
}

func (l *loader) readRoute(f *routesFile, n *yaml.Node, where string) {
	if n.Kind != yaml.MappingNode {
		l.at(f, n, "%s: expected a mapping (name:, when:, to:, ...)", where)
		return
	}
	r := &routeSpec{f: f, node: n, where: where}
	var nameNode *yaml.Node
	seen := l.eachKey(f, n, where, func(k, v *yaml.Node, key string) {
		switch k.Value {
		case "name":
			if l.scalar(f, v, key) {
				r.name, nameNode = v.Value, v
			}
		case "when":
			if l.scalar(f, v, key) {
				r.when = v
			}
		case "order_by":
			if l.scalar(f, v, key) {
				r.orderBy = v
			}
		case "transform":
			if l.scalar(f, v, key) {
				r.trans = v
			}
		case "to":
			r.hasTo = true
			switch {
			case v.Kind == yaml.SequenceNode:
				for j, d := range v.Content {
					if d = resolve(d); l.scalar(f, d, fmt.Sprintf("%s[%d]", key, j)) {
						r.to = append(r.to, d)
					}
				}
			case v.Kind == yaml.ScalarNode && !isNull(v):
				r.to = append(r.to, v)
			default:
				l.at(f, v, "%s: expected a list of destination names", key)
			}
		case "validate":
			r.validate = l.boolean(f, v, key)
		case "reject":
			r.reject = l.issueKinds(f, v, key)
		case "continue":
			r.cont = l.boolean(f, v, key)
		case "ack":
			if !l.scalar(f, v, key) {
				break
			}
			switch AckPoint(v.Value) {
			case AckDurable, AckProcessed:
				r.ack = AckPoint(v.Value)
			default:
				l.at(f, v, "%s: %q: want %s or %s", key, v.Value, AckDurable, AckProcessed)
			}
		default:
			l.at(f, k, "%s: unknown key %q%s", where, k.Value, suggest(k.Value, routeKeys))
		}
	})
	switch {
	case !seen["name"]:
		l.at(f, n, "%s: name: is required", where)
		return
	case nameNode == nil: // reported as it was read
	case !namePattern.MatchString(r.name):
		l.at(f, nameNode, "%s.name: %q: use letters, digits, '-' and '_'", where, r.name)
	default:
		if first, dup := l.routeNames[r.name]; dup {
			l.at(f, nameNode, "%s.name: route %q is already declared at %s", where, r.name, first)
		} else {
			l.routeNames[r.name] = pos(f, n)
		}
	}
	if !seen["when"] {
		l.at(f, n, "%s: when: is required (\"true\" takes every message)", where)
	}
	if !r.hasTo {
		l.at(f, n, "%s: to: is required (a list of destinations; [] takes the message and delivers it nowhere)", where)
	}
	if r.validate && r.trans == nil {
		l.at(f, n, "%s: validate: needs a transform; the original bytes are not FHIR", where)
	}
	if r.reject != 0 {
		switch {
		case r.trans == nil:
			l.at(f, n, "%s: reject: needs a transform; issues are what a transform finds", where)
		case r.ack == AckDurable:
			l.at(f, n, "%s: reject: answers with an AE, so the ACK must wait for the transform: use ack: %s, or leave ack: out", where, AckProcessed)
		default:
			r.ack = AckProcessed
		}
	}
	l.routes = append(l.routes, r)
}

// issueKinds reads a list of issue kinds (a single name may stand alone),
// reporting each name that is not one.
func (l *loader) issueKinds(f *routesFile, n *yaml.Node, key string) IssueKinds {
	items := []*yaml.Node{n}
	if n.Kind == yaml.SequenceNode {
		items = n.Content
	}
	var k IssueKinds
	for j, item := range items {
		item = resolve(item)
		where := key
		if n.Kind == yaml.SequenceNode {
			where = fmt.Sprintf("%s[%d]", key, j)
		}
		if !l.scalar(f, item, where) {
			continue
		}
		b, ok := ParseIssueKind(item.Value)
		if !ok {
			l.at(f, item, "%s: unknown issue kind %q%s", where, item.Value, suggest(item.Value, IssueKindNames))
		}
		k |= b
	}
	return k
}

// scalar reports whether n is a non-empty scalar, reporting it when it is not.
func (l *loader) scalar(f *routesFile, n *yaml.Node, key string) bool {
	switch {
	case n.Kind != yaml.ScalarNode:
		l.at(f, n, "%s: expected a single value", key)
	case isNull(n) || n.Value == "":
		l.at(f, n, "%s: empty", key)
	default:
		return true
	}
	return false
}

func (l *loader) boolean(f *routesFile, n *yaml.Node, key string) bool {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!bool" {
		var b bool
		if err := n.Decode(&b); err == nil {
			return b
		}
	}
	l.at(f, n, "%s: expected true or false", key)
	return false
}

func (l *loader) readDestinations(f *routesFile, n *yaml.Node) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		l.at(f, n, "destinations: expected a mapping of names to destinations")
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolve(n.Content[i+1])
		name := k.Value
		switch first, dup := l.dests[name]; {
		case !namePattern.MatchString(name):
			l.at(f, k, "destinations: %q: use letters, digits, '-' and '_'", name)
		case dup:
			l.at(f, k, "destinations.%s: already declared at %s", name, pos(first.f, first.key))
		default:
			d := &destSpec{f: f, name: name, key: k, node: v}
			l.dests[name] = d
			l.destOrder = append(l.destOrder, d)
		}
	}
}

// maxConcurrency bounds a destination's concurrency: key.
const maxConcurrency = 4096

// buildDestinations builds every declared destination through its kind's
// factory, and reads the keys every kind shares (kind, concurrency).
func (l *loader) buildDestinations(t *Table) {
	known := slices.Sorted(maps.Keys(l.opts.Kinds))
	for _, d := range l.destOrder {
		where := "destinations." + d.name
		if d.node.Kind != yaml.MappingNode {
			l.at(d.f, d.node, "%s: expected a mapping with kind:", where)
			continue
		}
		var kind, concurrency *yaml.Node
		rest := *d.node
		rest.Content = nil
		l.eachKey(d.f, d.node, where, func(k, v *yaml.Node, _ string) {
			switch k.Value {
			case "kind":
				kind = v
			case "concurrency":
				concurrency = v
			default:
				rest.Content = append(rest.Content, k, v)
			}
		})
		if concurrency != nil {
			n, err := strconv.Atoi(concurrency.Value)
			if concurrency.Kind != yaml.ScalarNode || err != nil || n < 1 || n > maxConcurrency {
				l.at(d.f, concurrency, "%s.concurrency: want a whole number from 1 to %d", where, maxConcurrency)
			} else {
				t.Concurrency[d.name] = n
			}
		}
		if kind == nil {
			l.at(d.f, d.node, "%s: kind: is required (known: %s)", where, listOr(known))
			continue
		}
		if !l.scalar(d.f, kind, where+".kind") {
			continue
		}
		factory, ok := l.opts.Kinds[kind.Value]
		if !ok {
			l.at(d.f, kind, "%s.kind: unknown kind %q%s", where, kind.Value, suggest(kind.Value, known))
			continue
		}
		dest, err := factory(d.name, &rest)
		if err != nil {
			if dest != nil {
				dest.Close()
			}
			l.factoryErrors(d, where, err)
			continue
		}
		t.Destinations[d.name] = dest
	}
}

// factoryErrors reports a factory's errors at the positions they name, or at the
// destination when they name none.
func (l *loader) factoryErrors(d *destSpec, where string, err error) {
	for _, line := range strings.Split(err.Error(), "\n") {
		if line == "" {
			continue
		}
		if m := posPrefix.FindStringSubmatch(line); m != nil {
			ln, _ := strconv.Atoi(m[1])
			col, _ := strconv.Atoi(m[2])
			l.add(d.f.path, ln, col, "%s: %s", where, m[3])
			continue
		}
		l.at(d.f, d.node, "%s: %s", where, line)
	}
}

// buildRoutes compiles every route's expressions and resolves its transform and
// destinations.
func (l *loader) buildRoutes(t *Table) {
	destNames := slices.Sorted(maps.Keys(l.dests))
	transNames := slices.Sorted(maps.Keys(l.opts.Transformers))
	for _, s := range l.routes {
		r := &Route{Name: s.name, Pos: pos(s.f, s.node), Validate: s.validate, Reject: s.reject, Continue: s.cont, Ack: s.ack, To: []string{}}
		if s.when != nil {
			r.When = s.when.Value
			r.when = l.compile(s.f, s.when, s.where+".when", true)
		}
		if s.orderBy != nil {
			r.OrderBy = s.orderBy.Value
			r.orderBy = l.compile(s.f, s.orderBy, s.where+".order_by", false)
		}
		if s.trans != nil {
			r.Transform = s.trans.Value
			tr, ok := l.opts.Transformers[r.Transform]
			if ok {
				r.Transformer = tr
			} else {
				l.at(s.f, s.trans, "%s.transform: unknown transform %q%s", s.where, r.Transform, suggest(r.Transform, transNames))
			}
		}
		for i, d := range s.to {
			switch {
			case l.dests[d.Value] == nil:
				l.at(s.f, d, "%s.to[%d]: unknown destination %q%s", s.where, i, d.Value, suggest(d.Value, destNames))
			case slices.Contains(r.To, d.Value):
				l.at(s.f, d, "%s.to[%d]: %q is listed twice", s.where, i, d.Value)
			default:
				r.To = append(r.To, d.Value)
			}
		}
		t.Routes = append(t.Routes, r)
	}
}

// pos formats the position of n in f.
func pos(f *routesFile, n *yaml.Node) string {
	return fmt.Sprintf("%s:%d:%d", f.path, n.Line, n.Column)
}

// compile compiles the expression in scalar n: a when (boolean) or an order_by
// (string). Problems are reported at their character in the file.
func (l *loader) compile(f *routesFile, n *yaml.Node, where string, boolean bool) *program {
	src := n.Value
	fail := func(offset int, format string, args ...any) {
		line, col := f.valuePos(n, offset)
		l.add(f.path, line, col, "%s: %s", where, fmt.Sprintf(format, args...))
	}
	exprError := func(err error) {
		var fe *file.Error
		if errors.As(err, &fe) {
			fail(fe.From, "%s", fe.Message)
			return
		}
		fail(0, "%v", err)
	}
	tree, err := parser.Parse(src)
	if err != nil {
		exprError(err)
		return nil
	}
	if problems := checkExpr(tree.Node); len(problems) > 0 {
		for _, p := range problems {
			fail(p.offset, "%s", p.msg)
		}
		return nil
	}
	opts := []expr.Option{expr.Env(Env{})}
	if boolean {
		opts = append(opts, expr.AsBool())
	} else {
		opts = append(opts, expr.AsKind(reflect.String))
	}
	p, err := expr.Compile(src, opts...)
	if err != nil {
		exprError(err)
		return nil
	}
	prog := &program{vm: p}
	if boolean {
		prog.boolean = nativeBool(tree.Node)
	} else {
		prog.str = nativeString(tree.Node)
	}
	return prog
}

// exprProblem is a problem checkExpr finds, at a rune offset in the expression.
type exprProblem struct {
	offset int
	msg    string
}

// checkExpr finds what expr's own checks would miss or explain less well: a
// constant path given to Get or Has that is not a path, msg.Reset, a field of
// msg that does not exist (with a suggestion), a field written without "msg.".
func checkExpr(root ast.Node) []exprProblem {
	c := &exprChecker{}
	ast.Walk(&root, c)
	return c.problems
}

type exprChecker struct {
	problems []exprProblem
	lets     bool // the expression declares variables, which may shadow names
}

// msgMembers are the names msg has in an expression.
var msgMembers = func() []string {
	names := []string{"Get", "Has"}
	t := reflect.TypeFor[Msg]()
	for i := range t.NumField() {
		if t.Field(i).IsExported() {
			names = append(names, t.Field(i).Name)
		}
	}
	return names
}()

func (c *exprChecker) add(n ast.Node, format string, args ...any) {
	c.problems = append(c.problems, exprProblem{offset: n.Location().From, msg: fmt.Sprintf(format, args...)})
}

func (c *exprChecker) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.VariableDeclaratorNode:
		c.lets = true
	case *ast.MemberNode:
		id, ok := n.Node.(*ast.IdentifierNode)
		prop, isStr := n.Property.(*ast.StringNode)
		if !ok || id.Value != "msg" || !isStr {
			return
		}
		switch {
		case prop.Value == "Reset":
			c.add(prop, "msg.Reset is not for expressions")
		case !slices.Contains(msgMembers, prop.Value):
			c.add(prop, "msg has no field %q%s", prop.Value, suggest(prop.Value, msgMembers))
		}
	case *ast.CallNode:
		m, ok := n.Callee.(*ast.MemberNode)
		if !ok || len(n.Arguments) != 1 {
			return
		}
		prop, _ := m.Property.(*ast.StringNode)
		arg, isStr := n.Arguments[0].(*ast.StringNode)
		if prop == nil || (prop.Value != "Get" && prop.Value != "Has") || !isStr {
			return
		}
		if _, err := hl7v2.ParsePath(arg.Value); err != nil {
			c.add(arg, "msg.%s: %q is not an HL7 v2 path (e.g. \"PID-3.1\", \"PID-3[2].1\", \"OBX[2]-5\")", prop.Value, arg.Value)
		}
	case *ast.IdentifierNode:
		if !c.lets && n.Value != "msg" && slices.Contains(msgMembers, n.Value) {
			c.add(n, "unknown name %s; did you mean msg.%s?", n.Value, n.Value)
		}
	}
}

// suggest returns "; did you mean "x"?" for an unknown name s when a known name
// is close to it, and the known names otherwise.
func suggest(s string, known []string) string {
	if len(known) == 0 {
		return " (none are available)"
	}
	if best, ok := closest(s, known); ok {
		return fmt.Sprintf("; did you mean %q?", best)
	}
	return fmt.Sprintf(" (known: %s)", strings.Join(known, ", "))
}

func listOr(names []string) string {
	if len(names) == 0 {
		return "none are available"
	}
	return strings.Join(names, ", ")
}

// closest returns the name in known nearest to s, when it is near enough to be
// a slip of the keyboard.
func closest(s string, known []string) (string, bool) {
	best, bestD := "", -1
	for _, k := range known {
		d := editDistance(strings.ToLower(s), strings.ToLower(k))
		if bestD < 0 || d < bestD {
			best, bestD = k, d
		}
	}
	limit := max(1, min(3, utf8.RuneCountInString(s)/3))
	return best, bestD >= 0 && bestD <= limit
}

// editDistance is the Levenshtein distance between a and b, in runes.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// offset returns the byte offset in f of a 1-based line and column (in
// characters), or -1.
func (f *routesFile) offset(line, col int) int {
	if line < 1 || line > len(f.lines) {
		return -1
	}
	i := f.lines[line-1]
	for c := 1; c < col && i < len(f.src) && f.src[i] != '\n'; c++ {
		_, size := utf8.DecodeRune(f.src[i:])
		i += size
	}
	return i
}

// lineCol returns the 1-based line and column (in characters) of byte offset i.
func (f *routesFile) lineCol(i int) (int, int) {
	line := sort.Search(len(f.lines), func(k int) bool { return f.lines[k] > i })
	return line, utf8.RuneCount(f.src[f.lines[line-1]:i]) + 1
}

// valuePos returns the line and column in f of the character at offset (in
// runes) of scalar n's value, as an expression error names it. It walks the
// source beside the value: quotes, escapes, a block scalar's header and
// indentation, and the line breaks YAML folds into spaces take no place in the
// value.
func (f *routesFile) valuePos(n *yaml.Node, offset int) (int, int) {
	i := f.offset(n.Line, n.Column)
	if i < 0 {
		return n.Line, n.Column
	}
	src := f.src
	if n.Style&yaml.TaggedStyle != 0 && i < len(src) && src[i] == '!' {
		for i < len(src) && src[i] != ' ' && src[i] != '\t' && src[i] != '\n' {
			i++
		}
		i = skipBlanks(src, i)
	}
	style := n.Style &^ (yaml.TaggedStyle | yaml.FlowStyle)
	block := style == yaml.LiteralStyle || style == yaml.FoldedStyle
	indent := -1 // all leading blanks of a continuation line
	switch {
	case style == yaml.DoubleQuotedStyle || style == yaml.SingleQuotedStyle:
		i++
	case block:
		nl := bytes.IndexByte(src[i:], '\n')
		if nl < 0 {
			return n.Line, n.Column
		}
		i += nl + 1
		indent = blockIndent(src[i:])
		i = skipIndent(src, i, indent)
	}
	v := n.Value
	for k, vi := 0, 0; k < offset && vi < len(v) && i < len(src); {
		c := src[i]
		if style == yaml.DoubleQuotedStyle && c == '\\' && i+1 < len(src) {
			switch src[i+1] {
			case '\n', '\r': // an escaped line break stands for nothing
				i = skipIndent(src, skipLineBreak(src, i+1), -1)
				continue
			case 'x':
				i += 4
			case 'u':
				i += 6
			case 'U':
				i += 10
			default:
				i += 2
			}
			_, size := utf8.DecodeRuneInString(v[vi:])
			vi += size
			k++
			continue
		}
		if style == yaml.SingleQuotedStyle && c == '\'' && i+1 < len(src) && src[i+1] == '\'' {
			i += 2
			vi++
			k++
			continue
		}
		sr, ssize := utf8.DecodeRune(src[i:])
		vr, vsize := utf8.DecodeRuneInString(v[vi:])
		switch {
		case sr == vr:
			i += ssize
			vi += vsize
			k++
			if sr == '\n' {
				i = skipIndent(src, i, indent)
			}
		case sr == '\n':
			i = skipIndent(src, i+1, indent)
		case sr == ' ' || sr == '\t' || sr == '\r':
			i += ssize
		case vr == ' ' || vr == '\n':
			vi += vsize // a line break folded into the value
			k++
		default:
			return f.lineCol(i) // lost: the nearest place is the best guess
		}
	}
	return f.lineCol(min(i, len(src)))
}

func skipBlanks(src []byte, i int) int {
	for i < len(src) && (src[i] == ' ' || src[i] == '\t') {
		i++
	}
	return i
}

// skipIndent skips a line's indentation: indent spaces in a block scalar, all
// blanks (indent < 0) elsewhere.
func skipIndent(src []byte, i, indent int) int {
	if indent < 0 {
		return skipBlanks(src, i)
	}
	for n := 0; n < indent && i < len(src) && src[i] == ' '; n++ {
		i++
	}
	return i
}

func skipLineBreak(src []byte, i int) int {
	if i < len(src) && src[i] == '\r' {
		i++
	}
	if i < len(src) && src[i] == '\n' {
		i++
	}
	return i
}

// blockIndent returns the indentation of a block scalar's content: that of its
// first line that is not blank.
func blockIndent(src []byte) int {
	for len(src) > 0 {
		n := 0
		for n < len(src) && src[n] == ' ' {
			n++
		}
		if n < len(src) && src[n] != '\n' && src[n] != '\r' {
			return n
		}
		nl := bytes.IndexByte(src, '\n')
		if nl < 0 {
			return n
		}
		src = src[nl+1:]
	}
	return 0
}

// Routing returns t as the dispatcher sees it. It matches through a Matcher of
// its own, so it serves one goroutine at a time, as the dispatcher calls it.
// Closing it closes t's destinations.
func (t *Table) Routing() Routing { return &tableRouting{t: t, m: t.NewMatcher()} }

type tableRouting struct {
	t      *Table
	m      *Matcher
	msg    Msg
	routes []*Route
}

var _ Routing = (*tableRouting)(nil)

func (r *tableRouting) Match(rec *Record, parsed *hl7v2.Message, dst []Match) ([]Match, error) {
	r.msg.Reset(rec, parsed)
	routes, err := r.m.Match(&r.msg, r.routes[:0])
	r.routes = routes
	if err != nil {
		return dst, err
	}
	n := len(dst)
	for _, rt := range routes {
		key, err := r.m.OrderKey(rt, &r.msg)
		if err != nil {
			return dst[:n], err
		}
		dst = append(dst, Match{Route: rt.Name, Transform: rt.Transform, Validate: rt.Validate, Reject: rt.Reject, Key: key, To: rt.To, Ack: rt.Ack})
	}
	return dst, nil
}

func (r *tableRouting) Destination(name string) Destination { return r.t.Destinations[name] }

func (r *tableRouting) Concurrency(name string) int {
	if n := r.t.Concurrency[name]; n > 0 {
		return n
	}
	if c, ok := r.t.Destinations[name].(Concurrent); ok {
		return c.Concurrency()
	}
	return 0
}

func (r *tableRouting) HoldsAcks() bool {
	for _, rt := range r.t.Routes {
		if rt.Ack == AckProcessed {
			return true
		}
	}
	return false
}

func (r *tableRouting) Close() error { return r.t.Close() }
