package transforms

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
	"github.com/spinebridge/spinebridge/mappings"
	"github.com/spinebridge/spinebridge/transforms/fhirmodel"
)

// Set is a compiled mapping set: every file checked against the FHIR R4 model
// and every expression compiled, once, at load. It is read-only after Load and
// safe to share; each goroutine converts with its own Converter.
type Set struct {
	structures map[string]*structure // by message type "ADT^A01" and by structure "ADT_A01"
	names      []string              // structure names, sorted, for errors
	unused     []string              // maps and tables nothing uses, as warnings (see Unused)
	paths      *pathTable            // the sources expressions read, each with a memo slot
	// required holds, by resource type, what R4 requires of each resource
	// the set builds (see requirementsOf).
	required map[string]*requirements
}

// requirements are what R4 requires a resource of one type to hold: each of
// elements (one of its alternatives, for a choice) and, in every item of the
// backbone elements items names, what that item requires. A resource the
// message leaves without one of them is not written (see Converter.prune).
type requirements struct {
	elements []requirement
	items    []itemRequirements
}

type itemRequirements struct {
	name     string
	elements []requirement
}

// requirement is one required element: its name, or a choice's
// ("occurrence[x]") and its alternatives, any of which satisfies it.
type requirement struct {
	label string
	names []string
}

// requirementsOf reads typ's requirements from the FHIR model.
func requirementsOf(typ string) *requirements {
	t, ok := fhirmodel.Resource(typ)
	if !ok {
		return &requirements{}
	}
	req := &requirements{elements: requiredOf(t)}
	for _, el := range t.Elements() {
		if el.Type != "BackboneElement" {
			continue
		}
		if _, child, _ := t.Element(el.Name); child != nil {
			if els := requiredOf(child); len(els) > 0 {
				req.items = append(req.items, itemRequirements{name: el.Name, elements: els})
			}
		}
	}
	return req
}

// requiredOf lists t's elements of min cardinality 1, a required choice as
// its alternatives.
func requiredOf(t *fhirmodel.Type) []requirement {
	var out []requirement
	seen := map[string]bool{}
	for _, el := range t.Elements() {
		switch {
		case el.Required:
			out = append(out, requirement{label: el.Name, names: []string{el.Name}})
		case el.Choice != "" && !seen[el.Choice] && t.ChoiceRequired(el.Choice):
			seen[el.Choice] = true
			out = append(out, requirement{label: el.Choice + "[x]", names: t.Alternatives(el.Choice)})
		}
	}
	return out
}

// conv says how a source value becomes a FHIR primitive.
type conv uint8

const (
	convText conv = iota
	convDate
	convDateTime
	convInstant
	convBase64 // checked base64, whitespace dropped
	convHex    // hexadecimal text, written as base64
	convURI    // a uri, url or canonical: checked (see uriText)
	convCode   // a code: checked (see codeText)
	convDecimal
	convInteger
	convPositiveInt
	convUnsignedInt
	convBoolean
)

// step is one element of a compiled target path.
type step struct {
	name     string
	repeated bool
	fresh    bool // written name[+]: start a new item rather than reuse the last
	// others are, for one alternative of a choice, the other alternatives:
	// a choice holds one type, so the step is not taken while another holds
	// a value, unless prefer, when that value is dropped for this one.
	others []string
	prefer bool
}

// rule is a compiled ruleSpec.
type rule struct {
	pos      string
	src      source
	hasSrc   bool
	target   []step
	kind     nodeKind // of the final element when it is a scalar; kindObject for maps
	conv     conv
	codes    []string // the only codes the element allows, when bound
	table    *table
	dt       *datatypeMap // applied to each value
	resource string       // dt builds a separate resource of this type; target gets a Reference
	constant []byte
	when     *program
	// guards are when's conjuncts, each with its index among its map's
	// conditions (see conditions); nil when when is not split so.
	guards   []guard
	conjs    []conjunct // at load, before conditions numbers them
	compute  *program
	extURL   string
	each     bool
	weak     bool
	checkNHS bool
	// atomic: the value is read as a primitive, its first component's first
	// subcomponent (see compileRule).
	atomic bool
}

// source is where a rule's values come from.
type source struct {
	abs      bool       // an absolute message path
	path     hl7v2.Path // when abs
	near     int        // when abs: -1 the nearest such segment before the one read, +1 after (see nearSegment)
	field    int        // segment maps: field number
	rep      int        // a fixed repetition, 0 for every one
	parts    []int      // component (and subcomponent) below the field, or below a data-type map's value
	relative bool       // a data-type map's component path
	// A rule's or expression's path has a slot in its set's memo (see pathTable).
	paths *pathTable
	slot  int32
}

type datatypeMap struct {
	name     string
	fhirType string
	profile  string
	datatype string   // the v2 data type it reads
	identity []idPart // the components whose values make the id of the resource it builds
	idWhen   *program // identity applies only when it holds
	pos      string   // file:line of the map, for issues its identity_when raises
	rules    []rule
	conds    int // how many conditions its rules' guards name
	// context lists, in order, the rules that read beyond the value mapped:
	// a path naming a segment (from: RXA-28), or Segment or such a path in
	// their condition or expression. Only they can add to a resource built
	// from an earlier value (see Converter.complete).
	context  []int
	compiled bool
}

// idPart is one component a data-type map's identity: names.
type idPart struct {
	path string // as written: "1", "4.1"
	src  source
}

type segmentMap struct {
	name        string
	segment     string
	resource    string
	profile     string
	identity    []source
	conditional bool
	shared      bool
	when        *program // the segment is mapped only when it holds
	pos         string
	rules       []rule
	conds       int // how many conditions its rules' guards name
}

type table struct {
	name    string
	m       map[string]string
	def     string
	keep    bool
	targets []string
}

type structure struct {
	name    string
	entries []entry
}

type entry struct {
	pos     string
	segment string
	smap    *segmentMap
	name    string
	into    string
	repeat  bool
	follows []string // the segments whose group this entry's segment must be in
	over    []string // segments that may stand between it and the one opening its group
	group   bool     // into only a resource built from its group's segments, else nothing
	near    []nearSide
	when    *program
	refs    []ref
	links   []link
}

// nearSide is, for one entry, the side of its segment where the nearest
// segment of kind seg is read: -1 before it, +1 after it, whichever of < or >
// the map's path writes (see Converter.pathSegment).
type nearSide struct {
	seg string
	dir int
}

type ref struct {
	element []step
	name    string
	// early: the element starts a new item (guarantor[+].party), made when
	// the entry runs and before its rules, so that they fill the same item
	// (guarantor.period) and each segment's reference lands in its own.
	early bool
}

type link struct {
	name    string // the resource that gains the reference
	element []step // its element
}

// compiler holds the state of one Load: the specs by name and every error found.
type compiler struct {
	errs      []error
	dtSpecs   map[string]*datatypeMapSpec
	datatypes map[string]*datatypeMap
	tables    map[string]*table
	segments  map[string]*segmentMap
	paths     pathTable
	// used holds the maps and tables something names, by kind and name
	// ("segment map PID-Patient"), and defined where each is defined.
	used    map[string]bool
	defined map[string]string
}

// define notes where the map or table key is defined, and use that something
// names it.
func (c *compiler) define(key, pos string) { c.defined[key] = pos }
func (c *compiler) use(key string)         { c.used[key] = true }

func (c *compiler) errorf(pos, format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("%s: %s", pos, fmt.Sprintf(format, args...)))
}

// Load reads and compiles every mapping file of the layers (each with
// segments/, datatypes/, tables/, messages/; a later layer's file replaces an
// earlier one's at the same path). Every problem is reported, each with its
// file:line, joined into one error.
func Load(layers ...Layer) (*Set, error) {
	sp, errs := readSpecs(layers)
	if sp == nil {
		return nil, errors.Join(errs...)
	}
	c := &compiler{
		errs:      errs,
		dtSpecs:   map[string]*datatypeMapSpec{},
		datatypes: map[string]*datatypeMap{},
		tables:    map[string]*table{},
		segments:  map[string]*segmentMap{},
		used:      map[string]bool{},
		defined:   map[string]string{},
	}
	for _, t := range sp.tables {
		c.compileTable(t)
	}
	for _, d := range sp.datatypes {
		name := d.Name
		if name == "" {
			name = d.Datatype + "-" + d.FHIR
		}
		if prev, dup := c.dtSpecs[name]; dup {
			c.errorf(d.pos, "data-type map %q is also defined at %s", name, prev.pos)
			continue
		}
		c.dtSpecs[name] = d
		c.define("data-type map "+name, d.pos)
	}
	for _, name := range sortedKeys(c.dtSpecs) {
		c.datatypeMap(name, c.dtSpecs[name].pos)
	}
	for _, s := range sp.segments {
		c.compileSegmentMap(s)
	}
	set := &Set{structures: map[string]*structure{}}
	for _, s := range c.extend(sp.structures) {
		st := c.compileStructure(s)
		if st == nil {
			continue
		}
		keys := append([]string{s.Structure}, s.Messages...)
		slices.Sort(keys)
		for _, key := range slices.Compact(keys) {
			if _, dup := set.structures[key]; dup {
				c.errorf(s.pos, "message %q is mapped by two structure files", key)
				continue
			}
			set.structures[key] = st
		}
		set.names = append(set.names, s.Structure)
	}
	slices.Sort(set.names)
	if len(set.structures) == 0 && len(c.errs) == 0 {
		c.errs = append(c.errs, errors.New("no message structures (messages/*.yaml) in the mapping set"))
	}
	if len(c.errs) > 0 {
		return nil, errors.Join(c.errs...)
	}
	for _, key := range sortedKeys(c.defined) {
		if !c.used[key] {
			set.unused = append(set.unused, fmt.Sprintf("%s: %s is used by nothing", c.defined[key], key))
		}
	}
	set.paths = &c.paths
	set.required = map[string]*requirements{}
	for _, sm := range c.segments {
		set.required[sm.resource] = requirementsOf(sm.resource)
	}
	for _, d := range c.datatypes {
		if _, ok := fhirmodel.Resource(d.fhirType); ok {
			set.required[d.fhirType] = requirementsOf(d.fhirType)
		}
	}
	return set, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func (c *compiler) compileTable(t *tableSpec) {
	if t.Table == "" {
		c.errorf(t.pos, "a table needs a name (table:)")
		return
	}
	if prev, dup := c.tables[t.Table]; dup {
		c.errorf(t.pos, "table %q is defined twice (also %s)", t.Table, prev.name)
		return
	}
	tb := &table{name: t.Table, m: t.Map, def: t.Default, keep: t.Keep}
	for _, v := range t.Map {
		tb.targets = append(tb.targets, v)
	}
	if t.Default != "" {
		tb.targets = append(tb.targets, t.Default)
	}
	c.tables[t.Table] = tb
	c.define("table "+t.Table, t.pos)
}

// datatypeMap compiles the named data-type map on first use, so that maps may
// use each other in any file order; a map that uses itself is an error.
func (c *compiler) datatypeMap(name, usedAt string) *datatypeMap {
	if d, ok := c.datatypes[name]; ok {
		if !d.compiled {
			c.errorf(usedAt, "data-type map %q uses itself", name)
			return nil
		}
		return d
	}
	sp, ok := c.dtSpecs[name]
	if !ok {
		c.errorf(usedAt, "no data-type map %q (have: %s)", name, strings.Join(sortedKeys(c.dtSpecs), ", "))
		return nil
	}
	d := &datatypeMap{name: name, fhirType: sp.FHIR, profile: sp.Profile, datatype: sp.Datatype, pos: sp.pos}
	c.datatypes[name] = d
	for _, id := range sp.Identity {
		src, err := parseSource(id, true)
		if err != nil {
			c.errorf(sp.pos, "identity %q: %v", id, err)
			continue
		}
		d.identity = append(d.identity, idPart{path: id, src: src})
	}
	if sp.IdentityWhen != "" {
		if len(sp.Identity) == 0 {
			c.errorf(sp.pos, "identity_when needs an identity: it says when the identity keys the resource")
		}
		d.idWhen = c.compileExpr(sp.pos, sp.IdentityWhen, true, true)
	}
	t, ok := fhirType(sp.FHIR)
	if !ok {
		c.errorf(sp.pos, "%q is not a FHIR R4 data type or resource", sp.FHIR)
		d.compiled = true
		return d
	}
	for i := range sp.Rules {
		if r, ok := c.compileRule(&sp.Rules[i], sp.FHIR, t, true); ok {
			d.rules = append(d.rules, r)
		}
	}
	d.conds = conditions(d.rules)
	for i := range d.rules {
		if r := &d.rules[i]; r.src.abs || r.when != nil && r.when.context || r.compute != nil && r.compute.context {
			d.context = append(d.context, i)
		}
	}
	d.compiled = true
	return d
}

// fhirType finds a resource or complex data type by name, or a backbone
// element by its path ("Encounter.participant").
func fhirType(name string) (*fhirmodel.Type, bool) {
	if root, p, ok := strings.Cut(name, "."); ok {
		t, ok := fhirmodel.Resource(root)
		if !ok {
			return nil, false
		}
		_, _, bt, err := walk(root, t, p)
		return bt, err == nil && bt != nil
	}
	if t, ok := fhirmodel.Resource(name); ok {
		return t, true
	}
	return fhirmodel.Datatype(name)
}

func (c *compiler) compileSegmentMap(s *segmentMapSpec) {
	name := s.Name
	if name == "" {
		name = s.Segment + "-" + s.Resource
	}
	if len(s.Segment) != 3 {
		c.errorf(s.pos, "segment %q is not a segment id", s.Segment)
		return
	}
	if _, dup := c.segments[name]; dup {
		c.errorf(s.pos, "segment map %q is defined twice", name)
		return
	}
	t, ok := fhirmodel.Resource(s.Resource)
	if !ok {
		c.errorf(s.pos, "%q is not a FHIR R4 resource", s.Resource)
		return
	}
	m := &segmentMap{name: name, segment: s.Segment, resource: s.Resource, profile: s.Profile, shared: s.Shared, pos: s.pos}
	if s.When != "" {
		m.when = c.compileExpr(s.pos, s.When, true, false)
	}
	if s.Shared && len(s.Identity) == 0 {
		c.errorf(s.pos, "shared: true needs an identity: the resource a later segment shares is the one with the same identity")
	}
	switch s.Conditional {
	case "":
	case "identifier":
		if _, _, ok := t.Element("identifier"); !ok {
			c.errorf(s.pos, "conditional: identifier, but %s has no identifier", s.Resource)
		}
		m.conditional = true
	default:
		c.errorf(s.pos, "conditional: %q; the only choice is identifier", s.Conditional)
	}
	for _, id := range s.Identity {
		src, err := parseSource(id, false)
		if err != nil {
			c.errorf(s.pos, "identity %q: %v", id, err)
			continue
		}
		m.identity = append(m.identity, src)
	}
	for i := range s.Rules {
		if r, ok := c.compileRule(&s.Rules[i], s.Resource, t, false); ok {
			m.rules = append(m.rules, r)
		}
	}
	m.conds = conditions(m.rules)
	c.segments[name] = m
	c.define("segment map "+name, s.pos)
}

// parseSource reads a rule's from: an absolute path ("PID-32", "MSH-9.1"), one
// of the group of the segment being read ("<ORC-2", ">IN2-49"), or a field of
// the segment ("3", "3[1]", "3.4.1"), or in a data-type map a component path
// ("1", "4.2").
func parseSource(s string, relative bool) (source, error) {
	if strings.Contains(s, "-") {
		near, path := 0, s
		switch s[0] {
		case '<':
			near, path = -1, s[1:]
		case '>':
			near, path = 1, s[1:]
		}
		p, err := hl7v2.ParsePath(path)
		if err != nil {
			return source{}, fmt.Errorf("%q is not a message path (SEG-F[r].C.S, <SEG-F or >SEG-F)", s)
		}
		if near != 0 && p.Occurrence != 0 {
			return source{}, fmt.Errorf("%q: a segment before or after the one read is the nearest; it takes no [n]", s)
		}
		return source{abs: true, path: p, near: near}, nil
	}
	var src source
	rest := s
	if !relative {
		end := strings.IndexAny(rest, ".[")
		if end < 0 {
			end = len(rest)
		}
		f, err := strconv.Atoi(rest[:end])
		if err != nil || f < 1 {
			return src, fmt.Errorf("%q: expected a field number, a component path or SEG-F", s)
		}
		src.field = f
		rest = rest[end:]
		if strings.HasPrefix(rest, "[") {
			close := strings.IndexByte(rest, ']')
			r, err := strconv.Atoi(rest[1:max(close, 1)])
			if close < 0 || err != nil || r < 1 {
				return src, fmt.Errorf("%q: bad repetition", s)
			}
			src.rep = r
			rest = rest[close+1:]
		}
		if rest == "" {
			return src, nil
		}
		if rest[0] != '.' {
			return src, fmt.Errorf("%q: expected .component after the field", s)
		}
		rest = rest[1:]
	} else {
		src.relative = true
		if rest == "." {
			return src, nil // the value itself
		}
	}
	for _, p := range strings.Split(rest, ".") {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 {
			return src, fmt.Errorf("%q: components are numbers from 1", s)
		}
		src.parts = append(src.parts, n)
	}
	if len(src.parts) > 2 {
		return src, fmt.Errorf("%q: at most component.subcomponent", s)
	}
	return src, nil
}

// walk resolves a dotted element path from t. It returns the steps, the final
// element and its type (nil for primitives).
func walk(root string, t *fhirmodel.Type, p string) ([]step, fhirmodel.Element, *fhirmodel.Type, error) {
	var steps []step
	var el fhirmodel.Element
	cur := t
	p = strings.ReplaceAll(p, "[+]", "\x00")
	for i, name := range strings.Split(p, ".") {
		fresh := strings.HasSuffix(name, "\x00")
		name = strings.TrimSuffix(name, "\x00")
		if cur == nil {
			return nil, el, nil, fmt.Errorf("%s.%s: %s is a primitive (%s) and has no element %q", root, p, el.Name, el.Type, name)
		}
		e, next, ok := cur.Element(name)
		if !ok {
			// Lookup words the error, with the nearest names, when it can.
			if _, err := fhirmodel.Lookup(root, strings.ReplaceAll(strings.Join(strings.Split(p, ".")[:i+1], "."), "\x00", "")); err != nil {
				return nil, el, nil, err
			}
			return nil, el, nil, fmt.Errorf("%s has no element %q", cur.Name(), name)
		}
		if fresh && !e.Repeated {
			return nil, el, nil, fmt.Errorf("%s[+]: %s.%s does not repeat, so it has no new item to start", name, cur.Name(), name)
		}
		s := step{name: e.Name, repeated: e.Repeated, fresh: fresh}
		if e.Choice != "" {
			for _, alt := range cur.Alternatives(e.Choice) {
				if alt != e.Name {
					s.others = append(s.others, alt)
				}
			}
		}
		el, cur = e, next
		steps = append(steps, s)
	}
	return steps, el, cur, nil
}

var scalarConv = map[string]conv{
	"date": convDate, "dateTime": convDateTime, "instant": convInstant,
	"decimal": convDecimal, "integer": convInteger, "positiveInt": convPositiveInt,
	"unsignedInt": convUnsignedInt, "boolean": convBoolean, "base64Binary": convBase64,
	"uri": convURI, "url": convURI, "canonical": convURI, "code": convCode,
}

var asConv = map[string]conv{
	"text": convText, "date": convDate, "dateTime": convDateTime, "instant": convInstant,
	"decimal": convDecimal, "integer": convInteger, "boolean": convBoolean, "hex": convHex,
}

// compileRule checks one rule against the FHIR type it writes into.
func (c *compiler) compileRule(rs *ruleSpec, root string, t *fhirmodel.Type, inDatatype bool) (rule, bool) {
	r := rule{pos: rs.pos, weak: rs.Weak, extURL: rs.Extension}
	bad := len(c.errs)
	sources := 0
	if rs.From != "" {
		// Through the set's path table, so that rules and expressions
		// reading the same path share its memo slot.
		src, err := c.paths.source(rs.From, inDatatype)
		if err != nil {
			c.errorf(rs.pos, "from: %v", err)
		} else {
			r.src = *src
		}
		r.hasSrc = true
		sources++
	}
	if rs.Value != nil {
		sources++
	}
	if rs.Expr != "" {
		sources++
	}
	if sources != 1 {
		c.errorf(rs.pos, "a rule needs exactly one of from, value and expr")
		return r, false
	}
	if rs.To == "" {
		c.errorf(rs.pos, "a rule needs to: (the FHIR element it writes)")
		return r, false
	}
	if rs.Check != "" && rs.Check != "nhs-number" {
		c.errorf(rs.pos, "check: %q; the only check is nhs-number", rs.Check)
	}
	r.checkNHS = rs.Check == "nhs-number"

	// An extension rule writes its url and then its value inside a new
	// extension element.
	typeRoot, typeAt := root, t
	if rs.Extension != "" {
		ext, ok := fhirmodel.Datatype("Extension")
		if !ok {
			c.errorf(rs.pos, "the FHIR model has no Extension type")
			return r, false
		}
		if _, _, ok := t.Element("extension"); !ok {
			c.errorf(rs.pos, "%s has no extension element", t.Name())
			return r, false
		}
		typeRoot, typeAt = "Extension", ext
	}
	steps, el, elType, err := walk(typeRoot, typeAt, rs.To)
	if err != nil {
		c.errorf(rs.pos, "to: %v", err)
		return r, false
	}
	r.target = steps
	if rs.Prefer {
		chosen := false
		for i := range r.target {
			if r.target[i].others != nil {
				r.target[i].prefer, chosen = true, true
			}
		}
		if !chosen {
			c.errorf(rs.pos, "prefer: %s is no choice element's type, so there is nothing to prefer it to", rs.To)
		}
	}
	each := el.Repeated
	if rs.Each != nil {
		each = *rs.Each
	}
	r.each = each

	switch {
	case rs.Map != "":
		if rs.Table != "" || rs.As != "" || rs.Value != nil || rs.Expr != "" {
			c.errorf(rs.pos, "map: takes its values from from:, and cannot be combined with table, as, value or expr")
		}
		c.use("data-type map " + rs.Map)
		d := c.datatypeMap(rs.Map, rs.pos)
		if d == nil {
			return r, false
		}
		r.dt, r.kind = d, kindObject
		if rs.Resource != "" {
			if el.Type != "Reference" {
				c.errorf(rs.pos, "resource: %s needs to: to name a Reference, and %s is a %s", rs.Resource, rs.To, el.Type)
			} else if len(el.Targets) > 0 && !slices.Contains(el.Targets, rs.Resource) && !slices.Contains(el.Targets, "Resource") {
				c.errorf(rs.pos, "%s.%s may refer to %s, not %s", root, rs.To, strings.Join(el.Targets, ", "), rs.Resource)
			}
			if d.fhirType != rs.Resource {
				c.errorf(rs.pos, "map %s builds a %s, not the %s named by resource:", d.name, d.fhirType, rs.Resource)
			}
			r.resource = rs.Resource
		} else if d.fhirType != el.Type && !(el.Type == "BackboneElement" && d.fhirType == typeRoot+"."+rs.To) {
			c.errorf(rs.pos, "map %s builds a %s but %s.%s is a %s", d.name, d.fhirType, typeRoot, rs.To, el.Type)
		}
	case elType != nil:
		c.errorf(rs.pos, "%s.%s is a %s: give a map: that builds one", typeRoot, rs.To, el.Type)
	default:
		r.kind = kindString
		if cv, ok := scalarConv[el.Type]; ok {
			r.conv = cv
			if cv >= convDecimal {
				r.kind = kindRaw
			}
		}
		if rs.As != "" {
			cv, ok := asConv[rs.As]
			if !ok {
				c.errorf(rs.pos, "as: %q is not one of text, date, dateTime, instant, decimal, integer, boolean, hex", rs.As)
			}
			if cv == convHex && el.Type != "base64Binary" {
				c.errorf(rs.pos, "as: hex fills a base64Binary, and %s is a %s", rs.To, el.Type)
			}
			// Only conversions that keep the element's JSON type are allowed.
			if ok && (cv >= convDecimal) != (r.kind == kindRaw) {
				c.errorf(rs.pos, "as: %s cannot fill %s, a %s", rs.As, rs.To, el.Type)
			}
			// as: integer reads an integer; the element's own range
			// (positiveInt from 1, unsignedInt from 0) still holds.
			if cv != convInteger || r.conv != convPositiveInt && r.conv != convUnsignedInt {
				r.conv = cv
			}
		}
		r.codes = el.Codes
		// HL7 v2's rule for a receiver: a part it does not expect is
		// ignored. A TS's degree of precision (20261121^D), a code sent with a
		// trailing separator (F^) or a coded field read whole into a code keeps
		// only its first part. Text stays whole: a string may be a composite
		// written out on purpose, or an unescaped separator a reader would want
		// kept.
		r.atomic = rs.Table != "" || (el.Type != "string" && el.Type != "markdown")
		if rs.Table != "" {
			c.use("table " + rs.Table)
			tb, ok := c.tables[rs.Table]
			if !ok {
				c.errorf(rs.pos, "no table %q (have: %s)", rs.Table, strings.Join(sortedKeys(c.tables), ", "))
			} else {
				r.table = tb
				if len(el.Codes) > 0 {
					for _, v := range tb.targets {
						if !slices.Contains(el.Codes, v) {
							c.errorf(rs.pos, "table %s gives %q, which %s.%s does not allow (%s)", tb.name, v, typeRoot, rs.To, strings.Join(el.Codes, ", "))
						}
					}
				}
			}
		}
		if rs.Value != nil {
			r.constant = c.constant(rs, el, r.kind)
		}
	}
	if rs.Resource != "" && rs.Map == "" {
		c.errorf(rs.pos, "resource: needs map: to say how the resource is built")
	}
	if rs.When != "" {
		r.when = c.compileExpr(rs.pos, rs.When, true, inDatatype)
		if r.when != nil {
			nc := nativeCompiler{inDT: inDatatype, paths: &c.paths}
			r.conjs, _ = nc.conjuncts(rs.When)
		}
	}
	if rs.Expr != "" {
		r.compute = c.compileExpr(rs.pos, rs.Expr, false, inDatatype)
	}
	return r, len(c.errs) == bad
}

// A guard is one condition of a rule's when (see conjuncts): its index among
// the conditions of the rule's map, whose result a converter keeps while the
// map's rules run in one frame, and the condition itself.
type guard struct {
	cond int
	p    *program
}

// conditions numbers the conjuncts of the rules of one map, the same condition
// once however many rules test it, and returns how many there are. The OBX
// map tests Get("2") == "NM" in five rules and Has("5[2]") in thirty: each is
// run once per OBX, and a rule one of whose conditions already failed is
// passed over without reading its value (see Converter.holds).
func conditions(rules []rule) int {
	byKey := map[string]guard{}
	for i := range rules {
		r := &rules[i]
		for _, cj := range r.conjs {
			g, ok := byKey[cj.key]
			if !ok {
				g = guard{cond: len(byKey), p: &program{native: cj.fn, usesSegment: strings.Contains(cj.key, "Segment")}}
				byKey[cj.key] = g
			}
			r.guards = append(r.guards, g)
		}
		r.conjs = nil
	}
	return len(byKey)
}

// constant checks a value: against the element's JSON kind and bound codes.
func (c *compiler) constant(rs *ruleSpec, el fhirmodel.Element, kind nodeKind) []byte {
	switch v := rs.Value.(type) {
	case string:
		if kind == kindRaw {
			c.errorf(rs.pos, "value %q: %s is a %s, so the value must be one too", v, rs.To, el.Type)
		}
		if len(el.Codes) > 0 && !slices.Contains(el.Codes, v) {
			c.errorf(rs.pos, "value %q is not a code %s allows (%s)", v, rs.To, strings.Join(el.Codes, ", "))
		}
		return []byte(v)
	case bool:
		if el.Type != "boolean" {
			c.errorf(rs.pos, "value %v: %s is a %s", v, rs.To, el.Type)
		}
		return strconv.AppendBool(nil, v)
	case int:
		return strconv.AppendInt(nil, int64(v), 10)
	case float64:
		if el.Type != "decimal" {
			c.errorf(rs.pos, "value %v: %s is a %s", v, rs.To, el.Type)
		}
		return strconv.AppendFloat(nil, v, 'f', -1, 64)
	}
	c.errorf(rs.pos, "value must be a string, number or boolean")
	return nil
}

// program is a compiled expression: the VM program, and the same expression
// as Go closures when it is simple enough (see native.go).
type program struct {
	vm          *vm.Program
	native      native
	usesValue   bool    // reads Value, which is then filled before it runs
	usesSegment bool    // reads Segment, likewise
	get         *source // the expression is Get of this path alone
	// context: it reads more than the value a data-type map maps (see
	// readsContext), so it may hold for one use of the value and not another.
	context bool
}

// compileExpr compiles an expr-lang program against the rule environment.
func (c *compiler) compileExpr(pos, src string, boolean, inDatatype bool) *program {
	opts := []expr.Option{expr.Env(&exprEnv{})}
	if boolean {
		opts = append(opts, expr.AsBool())
	} else {
		opts = append(opts, expr.AsKind(reflect.String))
	}
	p, err := expr.Compile(src, opts...)
	if err != nil {
		c.errorf(pos, "expression %q: %v", src, strings.ReplaceAll(err.Error(), "\n", " "))
		return nil
	}
	nc := nativeCompiler{inDT: inDatatype, paths: &c.paths}
	prog := &program{
		vm:          p,
		native:      nc.compile(src),
		usesValue:   strings.Contains(src, "Value"),
		usesSegment: strings.Contains(src, "Segment"),
		context:     readsContext(src, inDatatype),
	}
	if get, ok := nc.getPath(src); ok {
		prog.get = get
	}
	return prog
}

// extend adds the entries of each structure file that extends another to the
// end of that structure's, in file order, and returns the structures left. A
// team's segment map for a local Z-segment then needs one small file, not a
// copy of the whole structure it joins.
func (c *compiler) extend(specs []*structureSpec) []*structureSpec {
	byName := map[string]*structureSpec{}
	var out []*structureSpec
	for _, s := range specs {
		if s.Extends == "" {
			byName[s.Structure] = s
			out = append(out, s)
		}
	}
	for _, s := range specs {
		if s.Extends == "" {
			continue
		}
		if s.Structure != "" || len(s.Messages) > 0 {
			c.errorf(s.pos, "a file that extends a structure names no structure or messages of its own")
		}
		base, ok := byName[s.Extends]
		if !ok {
			c.errorf(s.pos, "extends: no structure %q (have: %s)", s.Extends, strings.Join(sortedKeys(byName), ", "))
			continue
		}
		// A copy, so that the base file's own list is never shared.
		base.Resources = append(slices.Clip(base.Resources), s.Resources...)
	}
	return out
}

func (c *compiler) compileStructure(s *structureSpec) *structure {
	if s.Structure == "" {
		c.errorf(s.pos, "a message structure file needs structure: (e.g. ADT_A01)")
		return nil
	}
	st := &structure{name: s.Structure}
	names := map[string]string{} // name -> resource type
	for _, es := range s.Resources {
		e := entry{pos: es.pos, segment: es.Segment, name: es.Name, into: es.Into, repeat: es.Repeat}
		if es.Repeat && es.Into == "" {
			c.errorf(es.pos, "repeat: is for into: entries")
		}
		if len(es.Over) > 0 && len(es.Follows) == 0 {
			c.errorf(es.pos, "over: is for follows: entries")
		}
		for _, id := range append(slices.Clone(es.Follows), es.Over...) {
			if len(id) != 3 {
				c.errorf(es.pos, "follows/over: %q is not a segment id", id)
			}
		}
		e.follows, e.over = es.Follows, es.Over
		if es.Group && (es.Into == "" || len(es.Follows) == 0) {
			c.errorf(es.pos, "group: is for into: entries with follows:")
		}
		e.group = es.Group
		for _, id := range sortedKeys(es.Near) {
			side, ok := map[string]int{"before": -1, "after": 1}[es.Near[id]]
			if !ok || len(id) != 3 {
				c.errorf(es.pos, "near: %s: %q: give a segment id and before or after (near: {ORC: after})", id, es.Near[id])
				continue
			}
			e.near = append(e.near, nearSide{seg: id, dir: side})
		}
		c.use("segment map " + es.Map)
		sm, ok := c.segments[es.Map]
		if !ok {
			c.errorf(es.pos, "no segment map %q (have: %s)", es.Map, strings.Join(sortedKeys(c.segments), ", "))
			continue
		}
		if es.Segment == "" {
			e.segment = sm.segment
		} else if es.Segment != sm.segment {
			c.errorf(es.pos, "segment %s given to map %s, which reads %s", es.Segment, sm.name, sm.segment)
		}
		e.smap = sm
		if es.Into != "" {
			if rt, ok := names[es.Into]; !ok {
				c.errorf(es.pos, "into: %q names no resource above it", es.Into)
			} else if rt != sm.resource {
				c.errorf(es.pos, "into: %s is a %s, but map %s builds a %s", es.Into, rt, sm.name, sm.resource)
			}
			if e.name == "" {
				e.name = es.Into
			}
		}
		if e.name != "" {
			if rt, ok := names[e.name]; ok && rt != sm.resource {
				c.errorf(es.pos, "name %q is already a %s", e.name, rt)
			}
			names[e.name] = sm.resource
		}
		if es.When != "" {
			e.when = c.compileExpr(es.pos, es.When, true, false)
		}
		t, _ := fhirmodel.Resource(sm.resource)
		for _, el := range sortedKeys(es.Refs) {
			target := es.Refs[el]
			stp, ok := c.referenceElement(es.pos, sm.resource, t, el, names, target)
			if ok {
				early := slices.ContainsFunc(stp, func(s step) bool { return s.fresh })
				e.refs = append(e.refs, ref{element: stp, name: target, early: early})
			}
		}
		for _, owner := range sortedKeys(es.Links) {
			el := es.Links[owner]
			rt, ok := names[owner]
			if !ok {
				c.errorf(es.pos, "links: %q names no resource above it", owner)
				continue
			}
			ot, _ := fhirmodel.Resource(rt)
			stp, ok := c.referenceElementTo(es.pos, rt, ot, el, sm.resource)
			if ok {
				e.links = append(e.links, link{name: owner, element: stp})
			}
		}
		st.entries = append(st.entries, e)
	}
	// refs may name resources built further down (MessageHeader.focus and the
	// Patient after it), so they are checked once every name is known.
	for _, e := range st.entries {
		for _, r := range e.refs {
			if _, ok := names[r.name]; !ok {
				c.errorf(e.pos, "refs: %q names no resource in %s", r.name, s.Structure)
			}
		}
	}
	return st
}

// referenceElement checks that resource type rt has a Reference element el
// that may point at the resource named target (when its type is known yet).
func (c *compiler) referenceElement(pos, rt string, t *fhirmodel.Type, el string, names map[string]string, target string) ([]step, bool) {
	if tt, ok := names[target]; ok {
		return c.referenceElementTo(pos, rt, t, el, tt)
	}
	return c.referenceElementTo(pos, rt, t, el, "")
}

func (c *compiler) referenceElementTo(pos, rt string, t *fhirmodel.Type, el, targetType string) ([]step, bool) {
	if t == nil {
		return nil, false
	}
	steps, e, _, err := walk(rt, t, el)
	if err != nil {
		c.errorf(pos, "%v", err)
		return nil, false
	}
	if e.Type != "Reference" {
		c.errorf(pos, "%s.%s is a %s, not a Reference", rt, el, e.Type)
		return nil, false
	}
	if targetType != "" && len(e.Targets) > 0 && !slices.Contains(e.Targets, targetType) && !slices.Contains(e.Targets, "Resource") {
		c.errorf(pos, "%s.%s may refer to %s, not %s", rt, el, strings.Join(e.Targets, ", "), targetType)
		return nil, false
	}
	return steps, true
}

// Structures returns the names of the set's message structures (ADT, ORU_R01,
// ...), sorted: the values Options.Structure accepts.
func (s *Set) Structures() []string { return slices.Clone(s.names) }

// Unused returns the maps and tables of the set that nothing names, each as
// "file:line: segment map ZPI-Patient is used by nothing": a segment map no
// message structure lists, a data-type map no rule maps with, a table no rule
// reads. They load, but change no bundle.
func (s *Set) Unused() []string { return slices.Clone(s.unused) }

// Default loads the embedded mapping set, with the files of overrideDir (when
// not "") replacing or adding to it path by path.
func Default(overrideDir string) (*Set, error) {
	layers := []Layer{{FS: mappings.Files}}
	if overrideDir != "" {
		if _, err := os.Stat(overrideDir); err != nil {
			return nil, fmt.Errorf("mapping overrides: %w", err)
		}
		layers = append(layers, Layer{FS: os.DirFS(overrideDir), Dir: overrideDir})
	}
	return Load(layers...)
}
