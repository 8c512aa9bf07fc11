package transforms

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/expr-lang/expr/vm"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
)

// BundleType is the Bundle.type the converter writes.
type BundleType string

const (
	// Transaction (the default): every entry is a PUT, conditional on a business
	// identifier where the segment map names one, else on the deterministic id,
	// so a replayed message updates what it created instead of duplicating it.
	Transaction BundleType = "transaction"
	Batch       BundleType = "batch"
	// Message puts the MessageHeader first and carries no requests.
	Message    BundleType = "message"
	Collection BundleType = "collection"
)

// ParseBundleType reads a --bundle value.
func ParseBundleType(s string) (BundleType, error) {
	switch b := BundleType(s); b {
	case Transaction, Batch, Message, Collection:
		return b, nil
	}
	return "", fmt.Errorf("bundle type %q: choose transaction, batch, message or collection", s)
}

// Options set how a Converter writes.
type Options struct {
	// Zone is where times without an offset were taken; nil means Europe/London.
	Zone   *time.Location
	Bundle BundleType // "" means Transaction
	// Structure, when set, converts every message with this structure (a name
	// Set.Structures lists) whatever its MSH-9 says; empty picks the structure
	// from MSH-9.
	Structure string
	// KeepIncomplete writes the resources that lack an element R4 requires
	// rather than leaving them out (see Converter.prune): for a mapping author
	// looking at what a set still being written builds. The bundle is then not
	// valid R4.
	KeepIncomplete bool
}

// Issue is a problem in a message that did not stop its conversion: a value
// that could not be read (left out), an NHS number whose check digit fails.
type Issue struct {
	Kind IssueKind
	// At is where in the message the value lies, to its component, when it
	// is known; its segment is empty when the issue is not of one value.
	At       hl7v2.Location
	Location string // where in the message, e.g. "PID[1]-7" (At), "MSH-18", "ORC (segment 2)"
	Rule     string // the mapping rule, file:line; empty for the message as a whole
	Message  string
}

func (i Issue) String() string {
	if i.Rule == "" {
		return i.Location + ": " + i.Message
	}
	return i.Location + ": " + i.Message + " (" + i.Rule + ")"
}

// IssueKind sorts issues for those who act on them: a route may reject a
// message for an issue of some kinds and deliver it with the others.
type IssueKind string

// The kinds of issue.
const (
	// IssueNHSNumber: an NHS number fails its Modulus 11 check.
	IssueNHSNumber IssueKind = "nhs-number"
	// IssueValue: a value could not be read as its element's type (a date
	// that is not one, a code not allowed), and was left out.
	IssueValue IssueKind = "value"
	// IssueIncomplete: a resource was left out, because the message does not
	// give an element R4 requires of it.
	IssueIncomplete IssueKind = "incomplete"
	// IssueCharset: MSH-18 names a character set this build cannot decode.
	IssueCharset IssueKind = "charset"
	// IssueMapping: a mapping's expression failed at run time, a defect of
	// the mapping set rather than of the message.
	IssueMapping IssueKind = "mapping"
)

// IssueKinds lists every kind of issue, in the order above.
var IssueKinds = []IssueKind{IssueNHSNumber, IssueValue, IssueIncomplete, IssueCharset, IssueMapping}

// ErrNoMapping is returned for a message type the set has no structure for.
var ErrNoMapping = errors.New("no mapping for this message type")

// Converter turns parsed messages into FHIR Bundles. It keeps its buffers
// between messages; one goroutine uses it at a time.
type Converter struct {
	set  *Set
	opts Options

	t          tree
	resources  []resource
	byID       map[[16]byte]int
	subs       map[subKey]int       // resources data-type maps built, by what they were built of
	completed  []completion         // context rules that wrote to such a resource (see complete)
	named      map[string][]namedAt // name -> instances in message order
	pending    []pendingRef
	refs       []refAt           // every reference written, for prune
	vals       []valueAt         // values of the rules under way, used as a stack
	conds      []uint8           // condition results of the maps under way, a stack (see openConds)
	hbuf       []byte            // scratch for hashString
	mapped     []byte            // scratch for a table's code
	computed   []byte            // scratch for an expression's result
	exprIssue  string            // a value an expression's function could not read (see AddMinutes)
	binary     []byte            // scratch for base64 and hex data decoded to check it
	strs       []byte            // this message's expression strings (see keep)
	langs      map[string]string // Language's answers, by code
	issues     []Issue
	at         hl7v2.Value // the value being converted, which an issue names
	text       []byte      // scratch for unescaped text
	text2      []byte      // scratch for text decoded leniently
	badCharset bool        // MSH-18 names a set this build cannot decode
	escape     byte        // the message's escape character
	delims     hl7v2.Delimiters
	val        []byte        // scratch for converted values
	split      []hl7v2.Value // scratch for a field's repetitions
	// The components of the value data-type maps last read: a map's rules read
	// components of the same value one after another.
	comps   []hl7v2.Value
	compsOf []byte
	h       hash.Hash
	sum     []byte
	vm      vm.VM
	env     exprEnv
	msg     *hl7v2.Message
	// What each path of the set's table last read, and in which frame (see
	// firstMemo).
	memo []memoEntry
	// frames counts the frame ids given out (see frame.id); the message's
	// segments have theirs from segFrames on.
	frames, segFrames uint64
}

type resource struct {
	typ         string
	id          [16]byte
	root        int32
	profile     string
	conditional bool
	absorbed    []string // segment ids merged in by into:
	// What built it, for an issue about it: the segment (its index, -1 for
	// none) and the map's file:line.
	seg     int
	pos     string
	dropped bool // lacks what R4 requires, and is not written (see prune)
}

// refAt is a reference the converter wrote: its reference node and the
// resource it names.
type refAt struct {
	node int32
	res  int
}

// A completion is a context rule of a data-type map (see datatypeMap.context)
// that wrote to resource res: it has had its say there.
type completion struct {
	res  int
	rule *rule
}

// subKey is what a data-type map's resource is made of (see subResource).
type subKey struct {
	dt       *datatypeMap
	resource string
	val      string
}

type namedAt struct {
	seg int // segment index that built it
	res int
}

type pendingRef struct {
	from    int   // resource that holds the reference
	node    int32 // where it goes, when made as the entry ran; none: walk element
	element []step
	name    string
	seg     int
	reverse bool // a link: the named resource gains a reference to from
}

// NewConverter returns a Converter for s with opts.
func (s *Set) NewConverter(opts Options) *Converter {
	if opts.Zone == nil {
		opts.Zone = london
	}
	if opts.Bundle == "" {
		opts.Bundle = Transaction
	}
	return &Converter{
		set:   s,
		opts:  opts,
		byID:  map[[16]byte]int{},
		subs:  map[subKey]int{},
		langs: map[string]string{},
		named: map[string][]namedAt{},
		h:     sha256.New(),
		memo:  make([]memoEntry, s.paths.slots()),
	}
}

var london = func() *time.Location {
	loc, err := time.LoadLocation("Europe/London")
	if err != nil {
		// time/tzdata is embedded by the command; a library user without it
		// gets a clear failure at the first conversion rather than UTC.
		return nil
	}
	return loc
}()

// Issues returns the problems found in the last message converted.
func (c *Converter) Issues() []Issue { return c.issues }

// Convert appends the FHIR Bundle for m, as JSON, to dst. An error means no
// bundle was written: a message type with no mapping, or no MSH.
func (c *Converter) Convert(dst []byte, m *hl7v2.Message) ([]byte, error) {
	if c.opts.Zone == nil {
		return dst, errors.New("transforms: time zone Europe/London is not available; import time/tzdata or set Options.Zone")
	}
	c.reset(m)
	msh, ok := m.Find("MSH", 1)
	if !ok {
		return dst, errors.New("transforms: the message has no MSH segment")
	}
	st := c.structureFor(msh)
	if st == nil {
		return dst, fmt.Errorf("transforms: MSH-9 %q: %w; mapped: %s", msh.Field(9).String(), ErrNoMapping, strings.Join(c.set.names, ", "))
	}
	for i := 0; i < m.SegmentCount(); i++ {
		seg := m.Segment(i)
		for ei := range st.entries {
			e := &st.entries[ei]
			if !seg.Is(e.segment) {
				continue
			}
			c.runEntry(e, seg)
		}
	}
	c.resolve()
	if !c.opts.KeepIncomplete {
		c.prune()
	}
	return c.write(dst, msh), nil
}

func (c *Converter) reset(m *hl7v2.Message) {
	c.t.reset()
	c.resources = c.resources[:0]
	clear(c.byID)
	clear(c.subs)
	c.completed = c.completed[:0]
	for k, v := range c.named {
		c.named[k] = v[:0]
	}
	c.pending = c.pending[:0]
	c.refs = c.refs[:0]
	c.issues = c.issues[:0]
	c.at = hl7v2.Value{}
	c.badCharset = false
	c.msg = m
	// Ids are never reused, so nothing the memo holds from an earlier
	// message can match a frame of this one.
	c.segFrames = c.frames + 1
	c.frames += uint64(m.SegmentCount()) + 1
	c.compsOf = nil
	c.strs = c.strs[:0]
	c.delims = m.Delimiters()
	c.escape = c.delims.Escape
}

func (c *Converter) structureFor(msh hl7v2.Segment) *structure {
	if c.opts.Structure != "" {
		return c.set.structures[c.opts.Structure]
	}
	typ := msh.Field(9)
	code, trigger := typ.Comp(1).Bytes(), typ.Comp(2).Bytes()
	c.val = append(append(append(c.val[:0], code...), '^'), trigger...)
	if st, ok := c.set.structures[string(c.val)]; ok {
		return st
	}
	if st, ok := c.set.structures[string(typ.Comp(3).Bytes())]; ok {
		return st
	}
	if st, ok := c.set.structures[string(code)]; ok {
		return st
	}
	return nil
}

// runEntry builds (or extends) the resource a structure entry names from seg.
func (c *Converter) runEntry(e *entry, seg hl7v2.Segment) {
	if e.follows != nil && !c.inGroup(e, seg) {
		return
	}
	// The entry's condition, then its map's, in the segment's own frame.
	cond := c.newFrame(frame{seg: seg, near: e.near})
	if e.when != nil && !c.test(e.when, &cond, e.pos) {
		return
	}
	if sm := e.smap; sm.when != nil && !c.test(sm.when, &cond, sm.pos) {
		return
	}
	res := -1
	if e.into != "" {
		if inst := c.named[e.into]; len(inst) > 0 {
			last := inst[len(inst)-1]
			if (e.repeat || !slices.Contains(c.resources[last.res].absorbed, e.segment)) &&
				(!e.group || last.seg >= c.groupStart(e, seg)) {
				res = last.res
				c.resources[res].absorbed = append(c.resources[res].absorbed, e.segment)
			}
		}
		if res < 0 && e.group {
			return
		}
	}
	if res < 0 {
		var built bool
		if res, built = c.newSegmentResource(e.smap, seg, e.near); built {
			r := &c.resources[res]
			r.absorbed = append(r.absorbed[:0], e.segment)
			r.seg, r.pos = seg.Index(), e.smap.pos
		}
		if e.name != "" {
			c.named[e.name] = append(c.named[e.name], namedAt{seg: seg.Index(), res: res})
		}
		if !built {
			// A shared resource an earlier segment built: this one only
			// links to it.
			c.link(e, seg, res)
			return
		}
	}
	c.setProfile(res, e.smap.profile)
	if e.smap.conditional {
		c.resources[res].conditional = true
	}
	for _, r := range e.refs {
		p := pendingRef{from: res, node: none, element: r.element, name: r.name, seg: seg.Index()}
		if r.early {
			p.node = c.t.walkTo(c.resources[res].root, r.element, kindObject)
		}
		c.pending = append(c.pending, p)
	}
	f := c.newFrame(frame{seg: seg, obj: c.resources[res].root, near: e.near})
	f.conds = c.openConds(e.smap.conds)
	for i := range e.smap.rules {
		c.apply(&e.smap.rules[i], &f)
	}
	c.conds = c.conds[:f.conds]
	c.link(e, seg, res)
}

// link writes the references e.links asks for, from the resources they name
// to res.
func (c *Converter) link(e *entry, seg hl7v2.Segment, res int) {
	// A link's owner is named above the entry, so it usually exists already:
	// the reference is written now, into the item the owner's element has at
	// this point, and later rules of the same segment that fill that item
	// (DG1[Encounter]'s diagnosis.use beside the condition its DG1 links)
	// share it. An owner not yet built is found when references resolve.
	for _, l := range e.links {
		if inst := c.named[l.name]; len(inst) > 0 {
			if owner := inst[len(inst)-1].res; owner != res {
				c.writeReference(c.t.walkTo(c.resources[owner].root, l.element, kindObject), res)
			}
			continue
		}
		c.pending = append(c.pending, pendingRef{from: res, node: none, element: l.element, name: l.name, seg: seg.Index(), reverse: true})
	}
}

// inGroup reports whether seg is in the group one of e.follows opens: its
// opener is one of e.follows. An NTE after an OBX and its PRT is the result's
// note; after an OBR it is the order's.
func (c *Converter) inGroup(e *entry, seg hl7v2.Segment) bool {
	prev, ok := c.opener(e, seg)
	return ok && isOneOf(prev, e.follows)
}

// groupStart is the index of the segment that opens seg's group, so that a
// group: entry merges only into what that group built.
func (c *Converter) groupStart(e *entry, seg hl7v2.Segment) int {
	if prev, ok := c.opener(e, seg); ok {
		return prev.Index()
	}
	return 0
}

// opener returns the segment that opens seg's group for e: the nearest one
// before it that is neither of its own kind (NTE after NTE) nor one of e.over.
func (c *Converter) opener(e *entry, seg hl7v2.Segment) (hl7v2.Segment, bool) {
	for i := seg.Index() - 1; i >= 0; i-- {
		prev := c.msg.Segment(i)
		if prev.Is(e.segment) || isOneOf(prev, e.over) {
			continue
		}
		return prev, true
	}
	return hl7v2.Segment{}, false
}

func isOneOf(seg hl7v2.Segment, ids []string) bool {
	for _, id := range ids {
		if seg.Is(id) {
			return true
		}
	}
	return false
}

// newSegmentResource starts a resource whose id is a hash of its identity
// fields, or, without them, of the message's sender, control id and the
// segment's place: the same message always gives the same ids. For a shared
// map, a resource of the same identity built earlier in the message is
// returned instead, with built false.
func (c *Converter) newSegmentResource(sm *segmentMap, seg hl7v2.Segment, near []nearSide) (res int, built bool) {
	c.h.Reset()
	c.hashString(sm.resource)
	if sm.shared {
		// Its own namespace: never another map's resource of the same
		// type and values.
		c.hashString(sm.name)
	}
	identified := false
	f := c.newFrame(frame{seg: seg, near: near})
	for _, src := range sm.identity {
		c.h.Write(sep0)
		start := c.values(&src, &f, true)
		for _, va := range c.vals[start:] {
			c.h.Write(va.v.Bytes())
			identified = true
		}
		c.vals = c.vals[:start]
	}
	// Without identifying values, two different patients would share an id
	// (and a PUT would overwrite one with the other): the message's own key
	// keeps them apart.
	if !identified {
		c.writeMessageKey(seg.Index())
	}
	id := c.sumID()
	if prev, taken := c.byID[id]; taken {
		if sm.shared && identified {
			return prev, false
		}
		// Two segments with the same identity in one message: keep both,
		// apart, and still deterministic.
		c.h.Write(sep1)
		c.writeMessageKey(seg.Index())
		id = c.sumID()
	}
	return c.addResource(sm.resource, id), true
}

// sep0 and sep1 separate the parts hashed into an id; package variables, as a
// slice literal passed to the hash escapes.
var sep0, sep1 = []byte{0}, []byte{1}

// hashString writes s to the id hash without converting it on the heap.
func (c *Converter) hashString(s string) {
	c.hbuf = append(c.hbuf[:0], s...)
	c.h.Write(c.hbuf)
}

func (c *Converter) writeMessageKey(segIndex int) {
	msh, _ := c.msg.Find("MSH", 1)
	// One buffer, one Write: a slice literal given to the hash's Write
	// escapes, an allocation per call.
	b := append(c.hbuf[:0], 0)
	b = append(b, msh.Field(3).Bytes()...)
	b = append(b, 0)
	b = append(b, msh.Field(4).Bytes()...)
	b = append(b, 0)
	b = append(b, msh.Field(10).Bytes()...)
	b = append(b, 0, byte(segIndex>>8), byte(segIndex))
	c.hbuf = b
	c.h.Write(b)
}

func (c *Converter) sumID() [16]byte {
	c.sum = c.h.Sum(c.sum[:0])
	var id [16]byte
	copy(id[:], c.sum)
	// An RFC 9562 name-based UUID (version 5 layout, SHA-256 rather than SHA-1).
	id[6] = id[6]&0x0f | 0x50
	id[8] = id[8]&0x3f | 0x80
	return id
}

func (c *Converter) addResource(typ string, id [16]byte) int {
	// The slot's absorbed list from an earlier message is kept for reuse.
	var absorbed []string
	if n := len(c.resources); n < cap(c.resources) {
		absorbed = c.resources[:n+1][n].absorbed[:0]
	}
	c.resources = append(c.resources, resource{typ: typ, id: id, root: c.t.root(), absorbed: absorbed, seg: -1})
	n := len(c.resources) - 1
	c.byID[id] = n
	return n
}

// frame is where a rule runs: the segment, the value a data-type map works on
// (and how deep it is: 0 a repetition, 1 a component, 2 a subcomponent), and
// the object being filled.
type frame struct {
	seg   hl7v2.Segment
	val   hl7v2.Value
	depth int
	inDT  bool
	obj   int32
	// id tells apart frames that read different things: frames with one id
	// read the same segment and value. Every frame of a segment itself (its
	// entries' conditions and rules) has the segment's id, unless its entry
	// says where a near path reads (near), and each data-type map's frame
	// has its own. What a path read is kept per id (firstMemo),
	// and the expression environment copies a frame only for another id.
	// 0: no id, nothing kept.
	id uint64
	// conds is where the results of the conditions of the map whose rules
	// run in the frame start in Converter.conds (see openConds).
	conds int32
	// near is the structure entry's say on which side of the segment a
	// <SEG or >SEG path reads (see pathSegment); nil for the map's own.
	near []nearSide
}

// newFrame returns f with its id.
func (c *Converter) newFrame(f frame) frame {
	if !f.inDT && f.val.IsEmpty() && f.seg.Exists() && f.near == nil {
		f.id = c.segFrames + uint64(f.seg.Index())
		return f
	}
	c.frames++
	f.id = c.frames
	return f
}

// valueAt is one value a source names, with its depth (0 a repetition, 1 a
// component, 2 a subcomponent).
type valueAt struct {
	v     hl7v2.Value
	depth int
}

// values appends to c.vals every value src names in f: every repetition when
// all, else the first non-empty one. It returns where its values start; the
// caller reads c.vals[start:] by index (rules it runs may append more) and
// truncates c.vals back to start when done. No callback, so nothing escapes.
func (c *Converter) values(src *source, f *frame, all bool) int {
	start := len(c.vals)
	if m := c.memoOf(src, f); m != nil && !all {
		return c.firstMemo(m, src, f, start)
	}
	return c.lookup(src, f, all, start)
}

// memoOf returns the memo entry of src for reads in f, or nil when nothing is
// kept for them: a path outside the set's table (computed, or an identity),
// or a frame without an id.
func (c *Converter) memoOf(src *source, f *frame) *memoEntry {
	if f.id == 0 || src.paths != c.set.paths {
		return nil
	}
	return &c.memo[src.slot]
}

// firstMemo is values for the first value of src, through its memo entry m
// (see memoOf): a rule or expression that read the same path in a frame with
// the same id already found it. The OBX map tests OBX-2 in thirty conditions and reads
// OBX-5[1] in fifteen rules; each is looked up once per segment.
func (c *Converter) firstMemo(m *memoEntry, src *source, f *frame, start int) int {
	if m.frame != f.id {
		c.lookup(src, f, false, start)
		m.frame, m.ok = f.id, len(c.vals) > start
		if m.ok {
			m.v, m.depth = c.vals[start].v, c.vals[start].depth
		}
		return start
	}
	if m.ok {
		c.vals = append(c.vals, valueAt{m.v, m.depth})
	}
	return start
}

// A memoEntry holds the first value a path read in the frame with id frame.
type memoEntry struct {
	frame uint64
	v     hl7v2.Value
	depth int
	ok    bool
}

// lookup appends the values src names in f to c.vals (see values).
func (c *Converter) lookup(src *source, f *frame, all bool, start int) int {
	add := func(v hl7v2.Value, depth int) {
		if !c.absent(v) {
			c.vals = append(c.vals, valueAt{v, depth})
		}
	}
	switch {
	case src.abs:
		seg, ok := c.pathSegment(src, f)
		if !ok {
			return start
		}
		field := seg.Field(src.path.Field)
		if src.path.Repetition == 0 && src.path.Component == 0 {
			c.reps(field, 0, nil, all)
			return start
		}
		v, depth := field.Rep(max(src.path.Repetition, 1)), 0
		if src.path.Component > 0 {
			v, depth = v.Comp(src.path.Component), 1
			if src.path.Sub > 0 {
				v, depth = v.Sub(src.path.Sub), 2
			}
		}
		add(v, depth)
	case src.relative:
		v, depth := f.val, f.depth
		for _, p := range src.parts {
			switch depth {
			case 0:
				v = c.comp(v, p)
			case 1:
				v = v.Sub(p)
			default:
				if p != 1 {
					v = hl7v2.Value{}
				}
			}
			depth++
		}
		add(v, depth)
	default:
		c.reps(f.seg.Field(src.field), src.rep, src.parts, all)
	}
	return start
}

// pathSegment is the segment an absolute path src reads in f. A path naming
// the segment being read, with no [n], means that segment: a data-type map
// applied to IN1-4 reads IN1-5 of the same IN1, not of the message's first.
// One written <SEG or >SEG means the segment's group (see nearSegment), on
// the side the structure entry's near: gives for SEG when it gives one (OUL's
// ORC follows its OBR); any other, or one read outside a segment, the
// message's n-th (first) segment of that kind.
func (c *Converter) pathSegment(src *source, f *frame) (hl7v2.Segment, bool) {
	here := f.seg.Exists()
	switch {
	case src.near != 0 && here:
		dir := src.near
		for _, n := range f.near {
			if n.seg == src.path.Segment {
				dir = n.dir
			}
		}
		return c.nearSegment(f.seg, src.path.Segment, dir)
	case src.path.Occurrence == 0 && here && f.seg.Is(src.path.Segment):
		return f.seg, true
	}
	return c.msg.Find(src.path.Segment, max(src.path.Occurrence, 1))
}

// nearSegment returns the segment of kind id nearest to seg in direction dir
// (-1 before it, +1 after it) that belongs with seg: the search ends at the
// next segment of seg's own kind, which starts another group. The ORC before
// an OBR is its order's, the IN2 after an IN1 that insurance's; the second of
// two orders never reads the first's.
func (c *Converter) nearSegment(seg hl7v2.Segment, id string, dir int) (hl7v2.Segment, bool) {
	own := seg.ID()
	for i := seg.Index() + dir; i >= 0 && i < c.msg.SegmentCount(); i += dir {
		s := c.msg.Segment(i)
		if s.Is(id) {
			return s, true
		}
		if bytes.Equal(s.ID(), own) {
			break
		}
	}
	return hl7v2.Segment{}, false
}

func (c *Converter) reps(field hl7v2.Value, rep int, parts []int, all bool) {
	if rep > 0 {
		c.addRep(field.Rep(rep), parts)
		return
	}
	// Most fields hold one repetition, and most rules want the first value:
	// that needs no split of the whole field.
	if !all && c.addRep(field.Rep(1), parts) {
		return
	}
	c.split = field.AppendReps(c.split[:0])
	for i, v := range c.split {
		if i == 0 && !all {
			continue // read above, and absent
		}
		if c.addRep(v, parts) && !all {
			return
		}
	}
}

// addRep appends the part of repetition v that parts name to c.vals, unless it
// is absent, and reports whether it did.
func (c *Converter) addRep(v hl7v2.Value, parts []int) bool {
	depth := 0
	if len(parts) > 0 {
		v, depth = v.Comp(parts[0]), 1
		if len(parts) > 1 {
			v, depth = v.Sub(parts[1]), 2
		}
	}
	if c.absent(v) {
		return false
	}
	c.vals = append(c.vals, valueAt{v, depth})
	return true
}

// comp returns component p of repetition v, splitting v once for all the
// rules of a data-type map that read it.
func (c *Converter) comp(v hl7v2.Value, p int) hl7v2.Value {
	b := v.Bytes()
	if len(b) == 0 {
		return v.Comp(p)
	}
	if len(c.compsOf) != len(b) || &c.compsOf[0] != &b[0] {
		c.comps, c.compsOf = v.AppendComps(c.comps[:0]), b
	}
	if p < 1 || p > len(c.comps) {
		return hl7v2.Value{}
	}
	return c.comps[p-1]
}

// absent reports whether v says nothing: empty, the explicit null, or only
// separators and blanks ("^^^", "&&", the " " many senders leave before a
// segment's end), a composite sent with every part empty, which would
// otherwise build a resource that names no one.
func (c *Converter) absent(v hl7v2.Value) bool {
	if v.IsEmpty() || v.IsNull() {
		return true
	}
	for _, b := range v.Bytes() {
		if b != c.delims.Component && b != c.delims.Subcomponent && b != ' ' && b != '\t' {
			return false
		}
	}
	return true
}

// firstValue returns the first value src names in f: from the memo when the
// frame read it already.
func (c *Converter) firstValue(src *source, f *frame) (hl7v2.Value, int, bool) {
	if m := c.memoOf(src, f); m != nil && m.frame == f.id {
		return m.v, m.depth, m.ok
	}
	start := c.values(src, f, false)
	if len(c.vals) == start {
		return hl7v2.Value{}, 0, false
	}
	v, depth := c.vals[start].v, c.vals[start].depth
	c.vals = c.vals[:start]
	return v, depth, true
}

// apply runs one rule in f. A rule that reads the message looks for its values
// before it tests its condition: a third of all rules find nothing to read,
// and then the condition need not run.
func (c *Converter) apply(r *rule, f *frame) {
	if r.guards != nil && c.failed(r, f) {
		return
	}
	if r.constant == nil && r.compute == nil && r.hasSrc {
		start := c.values(&r.src, f, r.each)
		if len(c.vals) > start && c.holds(r, f) {
			c.applyValues(r, f, start)
		}
		c.vals = c.vals[:start]
		return
	}
	if !c.holds(r, f) {
		return
	}
	switch {
	case r.constant != nil:
		c.writeScalar(r, f, r.constant, r.kind)
	case r.compute != nil:
		c.computeValue(r, f)
	}
}

// Results of a map's conditions in the frame its rules run in (see
// conditions): c.conds holds them from the frame's conds on.
const (
	condUnknown uint8 = iota
	condFalse
	condTrue
)

// openConds makes room for the n condition results of a map whose rules are
// about to run, all unknown, and returns where they start. The caller closes
// it, once the rules have run, by truncating c.conds back to that start.
func (c *Converter) openConds(n int) int32 {
	start := len(c.conds)
	c.conds = slices.Grow(c.conds, n)[:start+n]
	clear(c.conds[start:])
	return int32(start)
}

// failed reports whether one of r's conditions is already known not to hold
// in f: another rule of the map ran it.
func (c *Converter) failed(r *rule, f *frame) bool {
	for _, g := range r.guards {
		if c.conds[f.conds+int32(g.cond)] == condFalse {
			return true
		}
	}
	return false
}

// holds reports whether r's condition holds in f: through its guards, each run
// once in f, when it has them.
func (c *Converter) holds(r *rule, f *frame) bool {
	if r.guards == nil {
		return r.when == nil || c.testRule(r.when, f, r.pos, r)
	}
	for _, g := range r.guards {
		i := f.conds + int32(g.cond)
		if c.conds[i] == condUnknown {
			c.conds[i] = condFalse
			if c.testRule(g.p, f, r.pos, r) {
				c.conds[i] = condTrue
			}
		}
		if c.conds[i] == condFalse {
			return false
		}
	}
	return true
}

// applyValues writes the values of r that c.vals holds from start.
func (c *Converter) applyValues(r *rule, f *frame, start int) {
	for i := start; i < len(c.vals); i++ {
		va := c.vals[i]
		if r.dt != nil {
			c.applyMap(r, f, va.v, va.depth)
		} else {
			c.convertValue(r, f, va.v)
		}
	}
}

// target returns the node r fills under obj (see tree.walkTo), inside a new
// extension when r writes one.
func (c *Converter) target(r *rule, obj int32, kind nodeKind) int32 {
	if r.extURL != "" {
		arr := c.t.ensure(obj, "extension", kindArray)
		obj = c.t.addItem(arr, kindObject)
		u := c.t.ensure(obj, "url", kindString)
		c.t.setText(u, kindString, []byte(r.extURL))
		c.t.nodes[u].weak = true
	}
	return c.t.walkTo(obj, r.target, kind)
}

func (c *Converter) applyMap(r *rule, f *frame, v hl7v2.Value, depth int) {
	if r.resource != "" {
		res := c.subResource(r, f, v, depth)
		c.writeReference(c.target(r, f.obj, kindObject), res)
		return
	}
	n := c.target(r, f.obj, kindObject)
	if n == none {
		return
	}
	sub := c.newFrame(frame{seg: f.seg, val: v, depth: depth, inDT: true, obj: n, near: f.near})
	c.applyDatatype(r.dt, &sub, -1)
}

// applyDatatype runs the rules of d in f, a frame of the value d maps. When d
// builds resource res (-1 for none), its context rules note what they wrote
// there (see complete).
func (c *Converter) applyDatatype(d *datatypeMap, f *frame, res int) {
	f.conds = c.openConds(d.conds)
	var context []int
	if res >= 0 {
		context = d.context
	}
	for i := range d.rules {
		if len(context) > 0 && context[0] == i {
			context = context[1:]
			c.applyContext(&d.rules[i], f, res)
			continue
		}
		c.apply(&d.rules[i], f)
	}
	c.conds = c.conds[:f.conds]
}

// subResource builds, once per bundle, the resource a data-type map makes from
// a value (a Practitioner from an XCN, say): the same value twice in a message
// is the same resource, as are two values that agree in the components the
// map's identity: names.
func (c *Converter) subResource(r *rule, f *frame, v hl7v2.Value, depth int) int {
	// The id is a hash of these three, so the same three are the same
	// resource: most values met again (the consultant of every result) are
	// found here without hashing. The key's value is a view of the message,
	// which outlives the table (cleared for each message).
	b := v.Bytes()
	key := subKey{dt: r.dt, resource: r.resource, val: unsafe.String(unsafe.SliceData(b), len(b))}
	if res, ok := c.subs[key]; ok {
		c.complete(r.dt, f, v, depth, res)
		return res
	}
	sub := c.newFrame(frame{seg: f.seg, val: v, depth: depth, inDT: true, near: f.near})
	id := c.subResourceID(r, v, &sub)
	if res, ok := c.byID[id]; ok {
		c.subs[key] = res
		c.complete(r.dt, f, v, depth, res)
		return res
	}
	res := c.addResource(r.resource, id)
	if f.seg.Exists() {
		c.resources[res].seg = f.seg.Index()
	}
	c.resources[res].pos = r.dt.pos
	c.subs[key] = res
	c.setProfile(res, r.dt.profile)
	sub.obj = c.resources[res].root
	c.applyDatatype(r.dt, &sub, res)
	return res
}

// complete lets the context rules of d add to resource res, which an earlier
// value built, what this use of the value says: the place RXA-27 names is a
// Location PV1-3 may have built already, and RXA-28 is its address all the
// same. The rules that read only the value said all they could the first
// time. A context rule that wrote to res once is not run for it again, so
// the first use's say stands, as it does for any single element.
func (c *Converter) complete(d *datatypeMap, f *frame, v hl7v2.Value, depth int, res int) {
	if len(d.context) == 0 {
		return
	}
	sub := c.newFrame(frame{seg: f.seg, val: v, depth: depth, inDT: true, obj: c.resources[res].root, near: f.near})
	sub.conds = c.openConds(d.conds)
	for _, i := range d.context {
		if r := &d.rules[i]; !slices.Contains(c.completed, completion{res, r}) {
			c.applyContext(r, &sub, res)
		}
	}
	c.conds = c.conds[:sub.conds]
}

// applyContext applies context rule r to resource res in f, and notes it
// when it wrote there.
func (c *Converter) applyContext(r *rule, f *frame, res int) {
	n := len(c.t.nodes)
	c.apply(r, f)
	if len(c.t.nodes) > n {
		c.completed = append(c.completed, completion{res, r})
	}
}

// subResourceID is the id of the resource r's data-type map builds from v,
// read in f: a hash of the map and the whole value, or, when the map has an
// identity: and its identity_when holds, of the data type and the components
// it names that hold a value. The second leaves the map out, so that maps for
// one place at different levels agree: a ward is one Location whether a PL
// names it alone (PL-Location) or above one of its beds (PL-PointOfCare), and
// whichever bed that is. A value holding none of the identity's components (a
// PL with only a PL.9 description) is keyed on the whole value, so that two
// such values are never one resource for want of anything to tell them apart.
func (c *Converter) subResourceID(r *rule, v hl7v2.Value, f *frame) [16]byte {
	if d := r.dt; d.identity != nil && (d.idWhen == nil || c.test(d.idWhen, f, d.pos)) {
		c.h.Reset()
		c.hashString(r.resource)
		c.h.Write(sep0)
		c.hashString(d.datatype)
		found := false
		for i := range d.identity {
			part := &d.identity[i]
			if iv, _, ok := c.firstValue(&part.src, f); ok {
				found = true
				c.h.Write(sep1)
				c.hashString(part.path)
				c.h.Write(sep0)
				c.h.Write(iv.Bytes())
			}
		}
		if found {
			return c.sumID()
		}
	}
	c.h.Reset()
	c.hashString(r.resource)
	c.h.Write(sep0)
	c.hashString(r.dt.name)
	c.h.Write(sep0)
	c.h.Write(v.Bytes())
	return c.sumID()
}

// setProfile claims a profile in meta.profile, once per resource.
func (c *Converter) setProfile(res int, profile string) {
	r := &c.resources[res]
	if profile == "" || r.profile != "" {
		return
	}
	r.profile = profile
	arr := c.t.ensure(c.t.ensure(r.root, "meta", kindObject), "profile", kindArray)
	c.t.setText(c.t.addItem(arr, kindString), kindString, []byte(profile))
}

// writeReference points Reference n at resource res, unless it already
// points somewhere: a single Reference keeps its first target, as any single
// element keeps its first value.
func (c *Converter) writeReference(n int32, res int) {
	if n == none {
		return
	}
	if ref := c.t.child(n, "reference"); ref != none && !c.t.empty(ref) {
		return
	}
	ref := c.t.ensure(n, "reference", kindString)
	c.val = appendURN(c.val[:0], c.resources[res].id)
	c.t.setText(ref, kindString, c.val)
	c.refs = append(c.refs, refAt{node: ref, res: res})
}

func appendURN(dst []byte, id [16]byte) []byte {
	return appendUUID(append(dst, "urn:uuid:"...), id)
}

func appendUUID(dst []byte, id [16]byte) []byte {
	for i, b := range id {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst = append(dst, '-')
		}
		dst = append(dst, hexDigits[b>>4], hexDigits[b&0xf])
	}
	return dst
}

// convertValue turns one source value into the rule's primitive and writes it.
func (c *Converter) convertValue(r *rule, f *frame, v hl7v2.Value) {
	c.at = v // where an issue with it lies
	if r.atomic {
		v = v.Sub(1)
	}
	text := c.textOf(v)
	if text == nil {
		return
	}
	text = trimSpace(text)
	if r.table != nil {
		mapped, ok := r.table.lookup(text)
		if !ok {
			return
		}
		c.mapped = append(c.mapped[:0], mapped...)
		text = c.mapped
	}
	if r.checkNHS && !validNHSNumber(text) {
		c.issue(r, f, IssueNHSNumber, "NHS number fails its Modulus 11 check")
	}
	c.writeConverted(r, f, text)
}

// textOf returns v unescaped and in UTF-8, without the control characters no
// FHIR string may hold (see dropControls). A character set this build cannot
// decode (MSH-18 holding something else) is reported once per message and the
// text read leniently (UTF-8 kept, other bytes as Windows-1252), rather than
// losing every value of the message.
func (c *Converter) textOf(v hl7v2.Value) []byte {
	// Most values are plain ASCII with no escape sequence: they are their own
	// text in every character set, and need neither unescaping nor decoding.
	if b := v.Bytes(); plainASCII(b, c.escape) {
		return b
	}
	// Text may return a view of the message itself, so c.text is never
	// replaced by what it returns: it is sized up front instead (four bytes out
	// per byte in is Text's bound).
	if need := 4 * len(v.Bytes()); cap(c.text) < need {
		c.text = make([]byte, 0, need)
	}
	if cap(c.text2) < 4*len(v.Bytes()) {
		c.text2 = make([]byte, 0, 4*len(v.Bytes()))
	}
	if !c.badCharset {
		text, err := c.msg.Text(c.text[:0], v)
		if text != nil || !errors.Is(err, hl7v2.ErrUnknownCharset) {
			return dropControls(c.text2[:0], text)
		}
		c.badCharset = true
		c.issues = append(c.issues, Issue{Kind: IssueCharset, Location: "MSH-18", Message: err.Error() + "; text read as UTF-8, else Windows-1252"})
	}
	u, _ := v.Unescape(c.text[:0])
	out, _ := hl7v2.DecodeText(c.text2[:0], u, nil)
	return dropControls(c.text[:0], out)
}

// plainASCII reports whether b holds only ASCII bytes, no escape character and
// no control character a FHIR string may not hold (see dropControls).
func plainASCII(b []byte, escape byte) bool {
	for _, ch := range b {
		if ch >= 0x80 || ch == escape || ch < 0x20 && ch != '\t' {
			return false
		}
	}
	return true
}

// dropControls returns text without the control characters R4 allows in no
// string (below U+0020 but tab, CR and LF), which a sender's stray byte or a
// hex escape (\X1C\) can put in a value: text itself when it has none, else
// what is left of it appended to dst, which must not overlap it. Such a
// byte is never part of a longer UTF-8 sequence.
func dropControls(dst, text []byte) []byte {
	if !slices.ContainsFunc(text, disallowedControl) {
		return text
	}
	for _, ch := range text {
		if !disallowedControl(ch) {
			dst = append(dst, ch)
		}
	}
	return dst
}

func disallowedControl(ch byte) bool {
	return ch < 0x20 && ch != '\t' && ch != '\r' && ch != '\n'
}

func (tb *table) lookup(code []byte) (string, bool) {
	if v, ok := tb.m[string(code)]; ok {
		return v, true
	}
	if tb.keep {
		return string(code), len(code) > 0
	}
	if tb.def != "" {
		return tb.def, true
	}
	return "", false
}

// writeConverted converts text per r.conv and writes it; a value that does not
// convert is left out and reported.
func (c *Converter) writeConverted(r *rule, f *frame, text []byte) {
	if len(text) == 0 {
		return
	}
	var err error
	out := c.val[:0]
	switch r.conv {
	case convText:
		out = append(out, text...)
	case convURI:
		if out = append(out, text...); !uriText(text) {
			err = errors.New("not a URI (spaces, control characters or a malformed %-escape)")
		}
	case convCode:
		if out = append(out, text...); !codeText(text) {
			err = errors.New("not a code (words with one space between them)")
		}
	case convDate, convDateTime, convInstant:
		var d dtm
		if d, err = parseDTM(text); err == nil {
			switch r.conv {
			case convDate:
				out = d.appendDate(out)
			case convDateTime:
				out = d.appendDateTime(out, c.opts.Zone)
			default:
				var ok bool
				if out, ok = d.appendInstant(out, c.opts.Zone); !ok {
					err = errors.New("an instant needs at least minutes")
				}
			}
		}
	case convBase64:
		out, err = appendBase64(out, text, &c.binary)
	case convHex:
		out, err = appendHexBase64(out, text, &c.binary)
	case convDecimal:
		out, err = appendDecimal(out, text)
	case convInteger:
		out, err = appendInteger(out, text, -1<<31)
	case convPositiveInt:
		out, err = appendInteger(out, text, 1)
	case convUnsignedInt:
		out, err = appendInteger(out, text, 0)
	case convBoolean:
		switch string(text) {
		case "Y", "y", "true", "1":
			out = append(out, "true"...)
		case "N", "n", "false", "0":
			out = append(out, "false"...)
		default:
			err = errors.New("not a boolean (Y/N)")
		}
	}
	c.val = out
	if err != nil {
		c.issue(r, f, IssueValue, fmt.Sprintf("%s left out: %v", quoteShort(text), err))
		return
	}
	if len(r.codes) > 0 && !slices.Contains(r.codes, string(out)) {
		c.issue(r, f, IssueValue, fmt.Sprintf("%q left out: not one of %s", out, strings.Join(r.codes, ", ")))
		return
	}
	c.writeScalar(r, f, out, r.kind)
}

// quoteShort quotes a value for an issue, cut to its first 64 bytes: a
// corrupt attachment may be megabytes long.
func quoteShort(text []byte) string {
	const limit = 64
	if len(text) <= limit {
		return strconv.Quote(string(text))
	}
	return strconv.Quote(string(text[:limit])) + fmt.Sprintf(" (%d bytes in all)", len(text))
}

func (c *Converter) writeScalar(r *rule, f *frame, text []byte, kind nodeKind) {
	n := c.target(r, f.obj, kind)
	if n == none {
		return
	}
	c.t.setText(n, kind, text)
	if r.weak {
		c.t.nodes[n].weak = true
	}
}

func (c *Converter) issue(r *rule, f *frame, kind IssueKind, msg string) {
	if at, ok := f.seg.Locate(c.at); ok {
		c.issues = append(c.issues, Issue{Kind: kind, At: at, Location: at.String(), Rule: r.pos, Message: msg})
		return
	}
	loc := "message"
	if f.seg.Exists() {
		loc = string(f.seg.ID())
		if r.hasSrc && !r.src.relative && !r.src.abs {
			loc = fmt.Sprintf("%s-%d", loc, r.src.field)
		} else if r.src.abs {
			loc = r.src.path.String()
		}
	}
	c.issues = append(c.issues, Issue{Kind: kind, Location: loc, Rule: r.pos, Message: msg})
}

// resolve writes the references between resources, now that all exist. A name
// refers to its nearest instance at or before the referring segment (the
// Patient of this PID group, the report of this OBR), else to its first.
func (c *Converter) resolve() {
	for _, p := range c.pending {
		inst := c.named[p.name]
		if len(inst) == 0 {
			continue
		}
		target := inst[0].res
		for _, in := range inst {
			if in.seg > p.seg {
				break
			}
			target = in.res
		}
		from, to := p.from, target
		if p.reverse {
			from, to = target, p.from
		}
		if from == to {
			continue
		}
		n := p.node
		if n == none {
			n = c.t.walkTo(c.resources[from].root, p.element, kindObject)
		}
		c.writeReference(n, to)
	}
}

// prune leaves out what a message did not give enough for. An item of a
// backbone element without what R4 requires of it (an Appointment participant
// with no status) is cut; a resource without what R4 requires (a
// ServiceRequest with no subject, in an ORU sent without a PID; an
// Immunization begun by a stray RXR) is not written, with an issue naming it,
// and every reference to it is cut, which may leave another resource without
// a required reference in turn. So a message the maps cannot make whole still
// gives a valid bundle of what it does say.
func (c *Converter) prune() {
	for i := range c.resources {
		c.cutItems(&c.resources[i])
	}
	for changed := true; changed; {
		changed = false
		for i := range c.resources {
			r := &c.resources[i]
			req := c.set.required[r.typ]
			if r.dropped || req == nil {
				continue
			}
			missing := c.missing(r.root, req.elements)
			if missing == nil {
				continue
			}
			r.dropped, changed = true, true
			c.dropIssue(r, missing)
			for _, ref := range c.refs {
				if ref.res == i {
					c.t.nodes[ref.node].cut = true
				}
			}
		}
	}
}

// cutItems cuts the items of r's backbone elements that lack what R4
// requires of them.
func (c *Converter) cutItems(r *resource) {
	req := c.set.required[r.typ]
	if req == nil {
		return
	}
	for _, ir := range req.items {
		n := c.t.child(r.root, ir.name)
		if n == none {
			continue
		}
		if c.t.nodes[n].kind != kindArray {
			if c.missing(n, ir.elements) != nil {
				c.t.nodes[n].cut = true
			}
			continue
		}
		for it := c.t.nodes[n].first; it != none; it = c.t.nodes[it].next {
			if !c.t.empty(it) && c.missing(it, ir.elements) != nil {
				c.t.nodes[it].cut = true
			}
		}
	}
}

// missing returns the first of elements obj holds no value for, or nil.
func (c *Converter) missing(obj int32, elements []requirement) *requirement {
	for i := range elements {
		held := false
		for _, name := range elements[i].names {
			if n := c.t.child(obj, name); n != none && !c.t.empty(n) {
				held = true
				break
			}
		}
		if !held {
			return &elements[i]
		}
	}
	return nil
}

func (c *Converter) dropIssue(r *resource, missing *requirement) {
	loc := "message"
	if r.seg >= 0 {
		loc = fmt.Sprintf("%s (segment %d)", c.msg.Segment(r.seg).ID(), r.seg+1)
	}
	c.issues = append(c.issues, Issue{Kind: IssueIncomplete, Location: loc, Rule: r.pos,
		Message: fmt.Sprintf("%s left out: R4 requires its %s, and the message gives none", r.typ, missing.label)})
}

// write emits the bundle.
func (c *Converter) write(dst []byte, msh hl7v2.Segment) []byte {
	c.h.Reset()
	c.hashString("Bundle")
	c.writeMessageKey(0)
	bid := c.sumID()
	dst = append(dst, `{"resourceType":"Bundle","id":"`...)
	dst = appendUUID(dst, bid)
	dst = append(dst, '"')
	// MSH[Bundle] MSH-10: the message control ID, by which the sender and
	// the journal know the message. The row leaves the system to the
	// implementer; the ID is unique only per sending application, which the
	// MessageHeader names, so none is claimed.
	if id := trimSpace(c.textOf(msh.Field(10).Rep(1).Comp(1))); len(id) > 0 {
		dst = append(dst, `,"identifier":{"value":`...)
		dst = appendJSONBytes(dst, id)
		dst = append(dst, '}')
	}
	dst = append(dst, `,"type":"`...)
	dst = append(dst, c.opts.Bundle...)
	dst = append(dst, '"')
	if d, err := parseDTM(msh.Field(7).Comp(1).Bytes()); err == nil {
		if ts, ok := d.appendInstant(c.val[:0], c.opts.Zone); ok {
			dst = append(dst, `,"timestamp":`...)
			dst = appendJSONBytes(dst, ts)
		}
	}
	// A message whose every resource was dropped (an MSH alone, say) makes
	// a bundle of no entries: R4 allows no empty array, so then no entry.
	noEntries := len(dst)
	dst = append(dst, `,"entry":[`...)
	first := true
	writeEntry := func(i int) {
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = c.writeEntry(dst, i)
	}
	if c.opts.Bundle == Message {
		for i := range c.resources {
			if c.resources[i].typ == "MessageHeader" && !c.resources[i].dropped {
				writeEntry(i)
				break
			}
		}
	}
	for i := range c.resources {
		if c.resources[i].dropped || c.opts.Bundle == Message && c.resources[i].typ == "MessageHeader" {
			continue
		}
		writeEntry(i)
	}
	if first {
		return append(dst[:noEntries], '}')
	}
	return append(dst, "]}"...)
}

func (c *Converter) writeEntry(dst []byte, i int) []byte {
	r := &c.resources[i]
	dst = append(dst, `{"fullUrl":"`...)
	dst = appendURN(dst, r.id)
	dst = append(dst, `","resource":{"resourceType":"`...)
	dst = append(dst, r.typ...)
	dst = append(dst, `","id":"`...)
	dst = appendUUID(dst, r.id)
	dst = append(dst, '"')
	dst, _ = c.t.writeMembers(dst, r.root, true)
	dst = append(dst, '}')
	if c.opts.Bundle == Transaction || c.opts.Bundle == Batch {
		dst = append(dst, `,"request":{"method":"PUT","url":"`...)
		dst = c.appendRequestURL(dst, r)
		dst = append(dst, `"}`...)
	}
	return append(dst, '}')
}

// appendRequestURL writes a conditional update on the resource's first
// identifier with a system (the NHS number first), or an update of its
// deterministic id.
func (c *Converter) appendRequestURL(dst []byte, r *resource) []byte {
	if r.conditional {
		if sys, val, ok := c.businessIdentifier(r.root); ok {
			dst = append(dst, r.typ...)
			dst = append(dst, "?identifier="...)
			dst = append(dst, url.QueryEscape(string(sys))...)
			dst = append(dst, "%7C"...)
			return append(dst, url.QueryEscape(string(val))...)
		}
	}
	dst = append(dst, r.typ...)
	dst = append(dst, '/')
	return appendUUID(dst, r.id)
}

const nhsNumberSystem = "https://fhir.nhs.uk/Id/nhs-number"

func (c *Converter) businessIdentifier(root int32) (sys, val []byte, ok bool) {
	arr := c.t.child(root, "identifier")
	if arr == none {
		return nil, nil, false
	}
	for it := c.t.nodes[arr].first; it != none; it = c.t.nodes[it].next {
		s, v := c.t.child(it, "system"), c.t.child(it, "value")
		if s == none || v == none || c.t.empty(s) || c.t.empty(v) {
			continue
		}
		if !ok || string(c.t.textOf(s)) == nhsNumberSystem {
			sys, val, ok = c.t.textOf(s), c.t.textOf(v), true
		}
		if string(sys) == nhsNumberSystem {
			break
		}
	}
	return sys, val, ok
}
