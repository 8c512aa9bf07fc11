package transforms

import (
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/text/language"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
)

// exprEnv is what a mapping expression sees. Expressions are compiled against
// it once, at load, so a misspelt name is a load error:
//
//	Value        the text of the value the rule reads (its first, for a field
//	             that repeats), unescaped; "" when the rule has no from
//	Get(path)    the text at path: "PID-8" anywhere in the message (the
//	             current segment when it is a PID, else the first PID); "8" or
//	             "3.4" in the current segment; in a data-type map "1" or "4.2"
//	             in the current value
//	Has(path)    whether Get(path) is not empty
//	IsInstant(path) whether path holds a date/time precise to the minute at
//	             least (its first component: a TS's degree of precision is
//	             not part of it), which an instant element needs
//	Segment      the id of the current segment, e.g. "OBX"
//	AddMinutes(dtm, n) the date/time n minutes after dtm (a DTM, precise to
//	             the minute at least: "" otherwise), as a DTM with its offset,
//	             read in the configured zone when dtm has none; n not a number
//	             of minutes is reported as an issue and gives ""
//	AddDuration(dtm, n, unit) as AddMinutes, n in unit: s, min, h, d or wk
//	             (UCUM and ISO+ codes and their common spellings, in any
//	             case), minutes when unit is "" as v2's duration units
//	             default; a unit of no fixed length (mo, a) or none known is
//	             reported as an issue and gives ""
//	URIEscape(s) s with every byte a URI path segment cannot hold as it is
//	             (spaces, control characters, %, non-ASCII, / ? # and the
//	             like) %-escaped: net/url's PathEscape
//	Language(s)  the BCP-47 tag for a language code as senders write it
//	             (ISO 639-1, 639-2/B or /T, or a BCP-47 tag, in any case):
//	             "ara" gives "ar", "ENG" gives "en", "en_GB" gives "en-GB";
//	             "" for text that names no language
//
// with expr-lang's builtins (upper, trim, hasPrefix, split, ...).
type exprEnv struct {
	Value   string
	Segment string

	c *Converter
	f frame
}

// Get returns the unescaped text at path, or "" (also for a malformed path,
// which cannot be checked at load because it may be computed).
func (e *exprEnv) Get(path string) string {
	src, err := exprPath(path, e.f.inDT)
	if err != nil {
		return ""
	}
	return string(e.text(&src))
}

// Has reports whether path holds a value.
func (e *exprEnv) Has(path string) bool {
	src, err := exprPath(path, e.f.inDT)
	return err == nil && e.has(&src)
}

// IsInstant reports whether path holds a date/time an instant can be made of.
func (e *exprEnv) IsInstant(path string) bool {
	src, err := exprPath(path, e.f.inDT)
	return err == nil && e.isInstant(&src)
}

// URIEscape returns s escaped to stand in a URI (see exprEnv).
func (e *exprEnv) URIEscape(s string) string { return url.PathEscape(s) }

// Language returns the BCP-47 tag for code, or "" when code names no
// language. HL7 table 0296 (primary language) is the site's own, and most
// sites fill it with ISO 639 codes; FHIR's communication.language is BCP-47,
// whose tags use the shortest ISO 639 code there is ("ar", not "ara").
func (e *exprEnv) Language(code string) string {
	code = strings.TrimSpace(code)
	if tag, ok := e.c.langs[code]; ok {
		return tag
	}
	var bcp47 string
	if tag, err := language.Parse(code); err == nil && tag != language.Und {
		bcp47 = tag.String()
	}
	// A converter meets a handful of codes; a sender of endless new ones
	// only ever costs the parse.
	if len(e.c.langs) >= maxLanguages {
		clear(e.c.langs)
	}
	e.c.langs[strings.Clone(code)] = bcp47
	return bcp47
}

// AddMinutes returns the DTM minutes after dtm, with an explicit offset: a
// procedure's end is its start (PR1-5) plus its length (PR1-7).
func (e *exprEnv) AddMinutes(dtm, minutes string) string {
	return e.AddDuration(dtm, minutes, "min")
}

// AddDuration returns the DTM n units after dtm, with an explicit offset: an
// appointment resource's end is its start (AIL-6) plus its duration (AIL-9)
// in its units (AIL-10). The sum is taken in absolute time, so that a span
// across a change of clocks ends at the right hour, and carries the offset in
// force at its end.
func (e *exprEnv) AddDuration(dtm, n, unit string) string {
	d, err := parseDTM(trimSpace([]byte(dtm)))
	if err != nil || !d.instant() {
		return "" // no start to add to; a malformed one is its own rule's issue
	}
	per, ok := minutesPer(unit)
	if !ok {
		e.c.exprIssue = quoteShort([]byte(n+" "+unit)) + " left out: not a unit of time of fixed length"
		return ""
	}
	x, err := strconv.ParseFloat(strings.TrimSpace(n), 64)
	minutes := x * per
	if err != nil || x < 0 || minutes > maxMinutes || math.IsNaN(x) {
		e.c.exprIssue = quoteShort([]byte(n)) + " left out: not a length of time"
		return ""
	}
	zone := e.c.opts.Zone
	if d.hasOffset {
		zone = time.FixedZone("", d.offset)
	}
	start := time.Date(d.year, time.Month(d.month), d.day, d.hour, d.min, d.sec, 0, zone)
	end := start.Add(time.Duration(minutes * float64(time.Minute)))
	return end.Format("20060102150405-0700")
}

// minutesPer returns how many minutes one unit is, for the units of time of
// fixed length senders write in a duration's units (AIS-8, AIL-10, TQ1-13's
// CQ.2): UCUM and ISO+ codes and their spellings. "" is minutes, the default
// v2 gives every appointment duration's units.
func minutesPer(unit string) (float64, bool) {
	switch strings.ToLower(strings.TrimSpace(unit)) {
	case "s", "sec", "secs", "second", "seconds":
		return 1.0 / 60, true
	case "", "min", "mins", "minute", "minutes", "m":
		return 1, true
	case "h", "hr", "hrs", "hour", "hours":
		return 60, true
	case "d", "day", "days":
		return 24 * 60, true
	case "wk", "week", "weeks":
		return 7 * 24 * 60, true
	}
	return 0, false
}

// maxMinutes bounds AddDuration's n: a year is no procedure's or appointment's length.
const maxMinutes = 366 * 24 * 60

// maxLanguages bounds a converter's cache of Language's answers.
const maxLanguages = 256

// exprPath reads the path given to Get or Has: relative to a data-type map's
// value inside one, unless it names a segment ("PID-32").
func exprPath(path string, inDatatype bool) (source, error) {
	return parseSource(path, inDatatype && !strings.Contains(path, "-"))
}

// segmentIDs interns segment ids, so that filling Segment does not allocate.
var segmentIDs sync.Map // [3]byte -> string

func segmentName(id []byte) string {
	var k [3]byte
	copy(k[:], id)
	if s, ok := segmentIDs.Load(k); ok {
		return s.(string)
	}
	s, _ := segmentIDs.LoadOrStore(k, string(id))
	return s.(string)
}

// prepare fills the environment for p about to run in f.
func (c *Converter) prepare(f *frame, r *rule, p *program) *exprEnv {
	c.setEnv(f)
	if p.usesSegment && f.seg.Exists() {
		c.env.Segment = segmentName(f.seg.ID())
	}
	if p.usesValue && r != nil && r.hasSrc {
		if v, _, ok := c.firstValue(&r.src, f); ok {
			c.env.Value = c.keep(trimSpace(c.textOf(v)), "")
		}
	}
	return &c.env
}

// keep returns a followed by b as a string held in c.strs, the arena of this
// message's expression strings, rather than a string of its own on the heap:
// an expression's strings are read while the message converts and copied
// into the tree if written, never kept beyond it. The arena is cleared for
// the next message; an append that outgrows it moves on to a new array and
// leaves the strings already made in the old one.
func (c *Converter) keep(a []byte, b string) string {
	start := len(c.strs)
	c.strs = append(append(c.strs, a...), b...)
	if len(c.strs) == start {
		return ""
	}
	return unsafe.String(&c.strs[start], len(c.strs)-start)
}

// setEnv points the environment at f with no Value or Segment, copying f
// only when its id differs from the frame the environment holds: a segment's
// rules test dozens of conditions in one frame. The frame held may be another
// of the same segment (an entry's condition's, without the object being
// filled), which reads the same things; expressions never use the object. A
// frame without an id (not made by newFrame) is always copied.
func (c *Converter) setEnv(f *frame) {
	if f.id == 0 || c.env.c == nil || c.env.f.id != f.id {
		c.env.c, c.env.f = c, *f
	}
	c.env.Value, c.env.Segment = "", ""
}

// run evaluates p in f: natively when it compiled to closures, else on the VM.
func (c *Converter) run(p *program, f *frame, r *rule) (nval, bool, error) {
	env := c.prepare(f, r, p)
	if p.native != nil {
		v := p.native(env)
		return v, true, nil
	}
	out, err := c.vm.Run(p.vm, env)
	if err != nil {
		return nval{}, false, err
	}
	switch v := out.(type) {
	case bool:
		return nval{b: v}, true, nil
	case string:
		return nval{s: v}, true, nil
	case nil:
		return nval{}, false, nil
	}
	return nval{s: fmt.Sprint(out)}, true, nil
}

// test runs a condition; an expression that fails at run time counts as false
// and is reported.
func (c *Converter) test(p *program, f *frame, pos string) bool {
	return c.testRule(p, f, pos, nil)
}

func (c *Converter) testRule(p *program, f *frame, pos string, r *rule) bool {
	v, _, err := c.run(p, f, r)
	if err != nil {
		c.issues = append(c.issues, Issue{Kind: IssueMapping, Location: c.env.Segment, Rule: pos, Message: "condition failed: " + err.Error()})
		return false
	}
	return v.b
}

// computeValue runs a rule's expr and writes its result like a value read from
// the message, so that conversions, tables and code checks still apply.
func (c *Converter) computeValue(r *rule, f *frame) {
	c.at = hl7v2.Value{} // computed: an issue names the rule's source
	if src := r.compute.get; src != nil {
		// 'Get("1")' alone: the text where it lies, as a from: rule reads it.
		c.setEnv(f)
		if text := c.env.text(src); len(text) > 0 {
			c.computeText(r, f, text)
		}
		return
	}
	c.exprIssue = ""
	v, ok, err := c.run(r.compute, f, r)
	if err != nil {
		c.issue(r, f, IssueMapping, "expression failed: "+err.Error())
		return
	}
	if c.exprIssue != "" {
		c.issue(r, f, IssueValue, c.exprIssue)
	}
	if !ok {
		return
	}
	if v.s == "" {
		return
	}
	c.computed = append(c.computed[:0], v.s...)
	c.computeText(r, f, c.computed)
}

// computeText writes an expression's result: through the rule's table, as a
// boolean already written as one, else converted as a value read from the
// message would be.
func (c *Converter) computeText(r *rule, f *frame, text []byte) {
	if r.table != nil {
		mapped, ok := r.table.lookup(text)
		if !ok {
			return
		}
		c.computed = append(c.computed[:0], mapped...)
		text = c.computed
	}
	if r.conv == convBoolean && (string(text) == "true" || string(text) == "false") {
		c.writeScalar(r, f, text, r.kind)
		return
	}
	c.writeConverted(r, f, text)
}
