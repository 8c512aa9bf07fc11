package conformance

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Fact is one clinical statement a bundle makes: in a resource of type Resource,
// the element at Path (dotted element names from the resource, without indexes)
// holds Value. Values are normalised so that two bundles saying the same thing in
// different ways yield the same Fact: date-times become UTC instants with their
// precision, decimals lose insignificant zeros, references name their target's
// resource type ("->Patient") rather than its id.
type Fact struct {
	Resource string `json:"resource"`
	Path     string `json:"path"`
	Value    string `json:"value"`
}

// String renders the fact as Resource.Path = "Value", the form reports use.
func (f Fact) String() string {
	return fmt.Sprintf("%s.%s = %q", f.Resource, f.Path, f.Value)
}

// Facts returns the clinical facts of every resource in a FHIR Bundle (JSON),
// sorted by resource type, path and value; a fact said twice appears twice. The
// package documentation lists what counts as a fact. Elements that cannot be read
// as their type (empty strings, malformed dates or decimals, references that
// resolve to nothing) are left out rather than failing the bundle: validation is
// the Validate function's job, not the extractor's. The error is for input that is
// not a JSON Bundle at all.
func Facts(bundle []byte) ([]Fact, error) {
	facts, _, err := extract(bundle)
	return facts, err
}

// Resource types whose content is never a fact: Provenance records how the
// bundle was made, not what happened to the patient.
var excludedResources = map[string]bool{"Provenance": true}

// Reference targets that are not facts. Location hierarchies (point of care,
// room, bed) are modelled differently by every converter, and a reference to a
// Provenance is bookkeeping.
var excludedTargets = map[string]bool{"Location": true, "Provenance": true}

// The only code systems whose URI is a fact: they name the clinical meaning of a
// code. Other system URIs (identifier namespaces, v2 tables, local systems) are
// choices of the converter; Spinebridge uses NHS systems where Microsoft's
// converter uses its own.
var factSystems = map[string]bool{"http://loinc.org": true, "http://snomed.info/sct": true}

// Elements whose value is a date, dateTime or instant that says when something
// clinical happened or was recorded.
var timeElements = map[string]bool{
	"issued": true, "authoredOn": true, "recordedDate": true, "birthDate": true,
	"date": true, "start": true, "end": true, "timestamp": true,
}

// Choice elements ([x]) whose dateTime, instant, Period or boolean forms are facts.
// performed[x] and collected[x] sit beside effective[x]: the time of a procedure
// and of a specimen collection are as clinical as the time of an observation.
var timeChoices = []string{"effective", "onset", "occurrence", "performed", "collected", "deceased"}

// extractor gathers the facts of one bundle.
type extractor struct {
	// targets maps a fullUrl and a "Type/id" of each entry to its resource type,
	// so that both urn:uuid and relative references resolve.
	targets map[string]string
	facts   []Fact
	unread  int // elements that could not be read as their type
}

var bom = []byte("\uFEFF")

// extract returns the facts of a bundle and how many elements could not be read.
func extract(bundle []byte) ([]Fact, int, error) {
	dec := json.NewDecoder(bytes.NewReader(bytes.TrimPrefix(bundle, bom)))
	dec.UseNumber() // keeps decimals as written, so "5.20" is not rounded through a float
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, 0, fmt.Errorf("conformance: facts: not JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, 0, errors.New("conformance: facts: data after the JSON value")
	}
	root, ok := doc.(map[string]any)
	if !ok {
		return nil, 0, errors.New("conformance: facts: not a JSON object")
	}
	if rt, _ := root["resourceType"].(string); rt != "Bundle" {
		return nil, 0, fmt.Errorf("conformance: facts: resourceType is %q, want Bundle", rt)
	}
	entries, _ := root["entry"].([]any)
	x := &extractor{targets: make(map[string]string)}
	var resources []map[string]any
	for _, e := range entries {
		entry, _ := e.(map[string]any)
		res, _ := entry["resource"].(map[string]any)
		if res == nil {
			continue // a request without a resource, such as a DELETE
		}
		rt, _ := res["resourceType"].(string)
		if rt == "" {
			x.unread++
			continue
		}
		resources = append(resources, res)
		if u, _ := entry["fullUrl"].(string); u != "" {
			x.targets[u] = rt
		}
		if id, _ := res["id"].(string); id != "" {
			x.targets[rt+"/"+id] = rt
		}
	}
	for _, res := range resources {
		x.resource(res)
	}
	slices.SortFunc(x.facts, compareFacts)
	return x.facts, x.unread, nil
}

func compareFacts(a, b Fact) int {
	return cmp.Or(cmp.Compare(a.Resource, b.Resource), cmp.Compare(a.Path, b.Path), cmp.Compare(a.Value, b.Value))
}

func (x *extractor) add(rt, path, value string) {
	x.facts = append(x.facts, Fact{Resource: rt, Path: path, Value: value})
}

// resource emits the facts of one entry's resource.
func (x *extractor) resource(res map[string]any) {
	rt := res["resourceType"].(string)
	if excludedResources[rt] {
		return
	}
	for key, v := range res {
		switch key {
		case "resourceType", "id", "meta", "text", "implicitRules", "language", "contained":
			// Identity, bookkeeping and narrative: choices of the converter.
		case "status", "intent":
			x.str(rt, key, v) // only the resource's own; a participant's status is not
		default:
			x.element(rt, key, key, v)
		}
	}
}

// element emits the facts of the element named key at path, by what the element
// is; anything not recognised is descended into, so that a fact is found at any
// depth (Observation.component.valueQuantity, Patient.contact.name).
func (x *extractor) element(rt, path, key string, v any) {
	if list, ok := v.([]any); ok {
		for _, item := range list {
			x.element(rt, path, key, item)
		}
		return
	}
	switch {
	case key == "id" || key == "extension" || key == "modifierExtension" || strings.HasPrefix(key, "_"):
		// Element ids and extensions: local to the converter.
	case key == "identifier" || strings.HasSuffix(key, "Identifier"):
		x.identifier(rt, path, v)
	case key == "name":
		if name, ok := v.(map[string]any); ok { // a HumanName; a plain string name is not a fact
			x.each(name["family"], func(v any) { x.str(rt, path+".family", v) })
			x.each(name["given"], func(v any) { x.str(rt, path+".given", v) })
		}
	case key == "address":
		if addr, ok := v.(map[string]any); ok {
			x.each(addr["line"], func(v any) { x.str(rt, path+".line", v) })
			x.each(addr["city"], func(v any) { x.str(rt, path+".city", v) })
			x.each(addr["postalCode"], func(v any) { x.str(rt, path+".postalCode", v) })
		}
	case key == "telecom":
		if cp, ok := v.(map[string]any); ok {
			x.each(cp["value"], func(v any) { x.str(rt, path+".value", v) })
		}
	case key == "gender":
		x.str(rt, path, v)
	case key == "referenceRange":
		if rr, ok := v.(map[string]any); ok {
			x.quantity(rt, path+".low", rr["low"])
			x.quantity(rt, path+".high", rr["high"])
			x.each(rr["text"], func(v any) { x.str(rt, path+".text", v) })
		}
	case isChoice(key, "value"):
		x.value(rt, path, strings.TrimPrefix(key, "value"), v)
	case timeElements[key]:
		x.time(rt, path, v)
	default:
		for _, prefix := range timeChoices {
			if isChoice(key, prefix) {
				x.timeChoice(rt, path, strings.TrimPrefix(key, prefix), v)
				return
			}
		}
		x.complex(rt, path, v)
	}
}

// complex emits the facts of an element with no rule of its own: a Reference, a
// CodeableConcept or a Coding by their shape, anything else by its children.
func (x *extractor) complex(rt, path string, v any) {
	obj, ok := v.(map[string]any)
	if !ok {
		return // a primitive nobody named as a fact
	}
	if ref, ok := obj["reference"]; ok {
		x.reference(rt, path, ref)
		if id, ok := obj["identifier"]; ok { // a logical reference beside the literal one
			x.identifier(rt, path+".identifier", id)
		}
		return
	}
	if _, ok := obj["coding"]; ok {
		x.codeableConcept(rt, path, obj)
		return
	}
	if isCoding(obj) {
		x.coding(rt, path, obj)
		return
	}
	for key, child := range obj {
		x.element(rt, path+"."+key, key, child)
	}
}

// isCoding tells a Coding (Encounter.class, MessageHeader.eventCoding) from other
// elements with a code: it has a system or display, and no value as a Quantity
// would.
func isCoding(obj map[string]any) bool {
	if _, ok := obj["code"].(string); !ok {
		return false
	}
	_, system := obj["system"]
	_, display := obj["display"]
	_, value := obj["value"]
	return (system || display) && !value
}

// isChoice reports whether key is a choice element name[x], such as valueQuantity
// for "value".
func isChoice(key, name string) bool {
	if len(key) <= len(name) || !strings.HasPrefix(key, name) {
		return false
	}
	return unicode.IsUpper(rune(key[len(name)]))
}

// each calls fn for v, or for each item when v is an array.
func (x *extractor) each(v any, fn func(any)) {
	switch v := v.(type) {
	case nil:
	case []any:
		for _, item := range v {
			fn(item)
		}
	default:
		fn(v)
	}
}

// str emits a string element, trimmed. An empty string is invalid FHIR and is
// not a fact.
func (x *extractor) str(rt, path string, v any) {
	s, ok := v.(string)
	if !ok || strings.TrimSpace(s) == "" {
		x.unread++
		return
	}
	x.add(rt, path, strings.TrimSpace(s))
}

func (x *extractor) boolean(rt, path string, v any) {
	b, ok := v.(bool)
	if !ok {
		x.unread++
		return
	}
	x.add(rt, path, strconv.FormatBool(b))
}

func (x *extractor) decimal(rt, path string, v any) {
	n, ok := v.(json.Number)
	if !ok {
		x.unread++
		return
	}
	d, ok := normaliseDecimal(string(n))
	if !ok {
		x.unread++
		return
	}
	x.add(rt, path, d)
}

func (x *extractor) time(rt, path string, v any) {
	s, ok := v.(string)
	if !ok {
		x.unread++
		return
	}
	t, ok := normaliseTime(strings.TrimSpace(s))
	if !ok {
		x.unread++
		return
	}
	x.add(rt, path, t)
}

func (x *extractor) period(rt, path string, v any) {
	p, ok := v.(map[string]any)
	if !ok {
		x.unread++
		return
	}
	x.each(p["start"], func(v any) { x.time(rt, path+".start", v) })
	x.each(p["end"], func(v any) { x.time(rt, path+".end", v) })
}

// timeChoice emits effective[x], onset[x] and the like when they are a point or
// span in time, or a boolean (deceasedBoolean); other forms (occurrenceTiming,
// onsetAge) are descended into like any element.
func (x *extractor) timeChoice(rt, path, typ string, v any) {
	switch typ {
	case "DateTime", "Instant", "Date":
		x.time(rt, path, v)
	case "Period":
		x.period(rt, path, v)
	case "Boolean":
		x.boolean(rt, path, v)
	default:
		x.complex(rt, path, v)
	}
}

// value emits a value[x] element: the result of an Observation or component, and
// the same shape wherever else it appears.
func (x *extractor) value(rt, path, typ string, v any) {
	switch typ {
	case "Quantity", "SimpleQuantity", "Age", "Duration", "Distance", "Count", "Money":
		x.quantity(rt, path, v)
	case "CodeableConcept":
		x.codeableConcept(rt, path, v)
	case "Coding":
		x.coding(rt, path, v)
	case "String", "Code", "Id", "Markdown", "Uri", "Url", "Canonical", "Oid", "Uuid", "Time":
		x.str(rt, path, v)
	case "Boolean":
		x.boolean(rt, path, v)
	case "Integer", "Decimal", "PositiveInt", "UnsignedInt":
		x.decimal(rt, path, v)
	case "DateTime", "Instant", "Date":
		x.time(rt, path, v)
	case "Period":
		x.period(rt, path, v)
	case "Range":
		if r, ok := v.(map[string]any); ok {
			x.quantity(rt, path+".low", r["low"])
			x.quantity(rt, path+".high", r["high"])
		}
	case "Ratio":
		if r, ok := v.(map[string]any); ok {
			x.quantity(rt, path+".numerator", r["numerator"])
			x.quantity(rt, path+".denominator", r["denominator"])
		}
	case "Reference":
		x.complex(rt, path, v)
	}
	// Attachments and sampled data are payloads, not statements.
}

// quantity emits a Quantity's value and its human-readable unit. The unit code and
// system are left out: converters disagree on UCUM versus local unit tables while
// meaning the same unit.
func (x *extractor) quantity(rt, path string, v any) {
	q, ok := v.(map[string]any)
	if !ok {
		return
	}
	if n, ok := q["value"]; ok {
		x.decimal(rt, path+".value", n)
	}
	if u, ok := q["unit"]; ok {
		x.str(rt, path+".unit", u)
	}
}

func (x *extractor) identifier(rt, path string, v any) {
	id, ok := v.(map[string]any)
	if !ok {
		x.unread++
		return
	}
	if val, ok := id["value"]; ok {
		x.str(rt, path+".value", val)
	}
	if typ, ok := id["type"]; ok {
		x.codeableConcept(rt, path+".type", typ)
	}
	// system, period and assigner are left out: the namespace of an identifier is
	// where converters legitimately differ (NHS systems versus generated ones).
}

func (x *extractor) codeableConcept(rt, path string, v any) {
	cc, ok := v.(map[string]any)
	if !ok {
		x.unread++
		return
	}
	x.each(cc["coding"], func(c any) { x.coding(rt, path+".coding", c) })
}

func (x *extractor) coding(rt, path string, v any) {
	c, ok := v.(map[string]any)
	if !ok {
		x.unread++
		return
	}
	if code, ok := c["code"]; ok {
		x.str(rt, path+".code", code)
	}
	if system, _ := c["system"].(string); factSystems[system] {
		x.add(rt, path+".system", system)
	}
}

// reference emits the type of the resource a reference points at, resolved
// through the bundle: "urn:uuid:..." against fullUrls, "Type/id" against the
// entries' ids. A relative reference to a resource outside the bundle still names
// its type, as FHIR defines it; anything else unresolved is not a fact.
func (x *extractor) reference(rt, path string, v any) {
	s, ok := v.(string)
	if !ok || strings.TrimSpace(s) == "" {
		x.unread++
		return
	}
	ref := strings.TrimSpace(s)
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		ref = ref[:i]
	}
	target, ok := x.targets[ref]
	if !ok && !strings.HasPrefix(ref, "urn:") && !strings.HasPrefix(ref, "#") {
		parts := strings.Split(ref, "/")
		if n := len(parts); n >= 2 && isResourceType(parts[n-2]) && parts[n-1] != "" {
			target, ok = x.targets[parts[n-2]+"/"+parts[n-1]]
			if !ok {
				target, ok = parts[n-2], true
			}
		}
	}
	if !ok {
		x.unread++
		return
	}
	if excludedTargets[target] {
		return
	}
	x.add(rt, path, "->"+target)
}

// isResourceType reports whether s has the form of a FHIR resource type name.
func isResourceType(s string) bool {
	if s == "" || !unicode.IsUpper(rune(s[0])) {
		return false
	}
	for _, r := range s {
		if !unicode.IsLetter(r) || r > unicode.MaxASCII {
			return false
		}
	}
	return true
}

// A FHIR date, dateTime or instant. Seconds are optional here although R4
// requires them: a value written to the minute is read at minute precision rather
// than dropped.
var dateTimePattern = regexp.MustCompile(`^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:\d{2}))?)?)?$`)

// normaliseTime turns a FHIR date, dateTime or instant into a value that compares
// equal exactly when the two mean the same instant at the same precision. A value
// with a time of day becomes a UTC instant followed by its precision
// ("2006-09-01T05:00:00Z@second"); a date, year-month or year stays as written,
// since without a time of day it names a calendar day, not an instant. Fractions
// of a second are kept to the millisecond. A time of day without an offset is not
// an instant and is not accepted.
func normaliseTime(s string) (string, bool) {
	m := dateTimePattern.FindStringSubmatch(s)
	if m == nil {
		return "", false
	}
	year, month, day, hour, minute, second, fraction, zone := m[1], m[2], m[3], m[4], m[5], m[6], m[7], m[8]
	switch {
	case year == "0000":
		return "", false
	case month == "":
		return year, true
	case day == "":
		if _, err := time.Parse("2006-01", year+"-"+month); err != nil {
			return "", false
		}
		return year + "-" + month, true
	}
	date := year + "-" + month + "-" + day
	if _, err := time.Parse("2006-01-02", date); err != nil {
		return "", false
	}
	if hour == "" {
		return date, true
	}
	precision, layout := "minute", "2006-01-02T15:04:05Z"
	if second == "" {
		second = "00"
	} else {
		precision = "second"
	}
	if fraction != "" {
		precision, layout = "millisecond", "2006-01-02T15:04:05.000Z"
		fraction = (fraction + "00")[:3]
	} else {
		fraction = "000"
	}
	if zone == "Z" {
		zone = "+00:00"
	}
	t, err := time.Parse("2006-01-02T15:04:05.000-07:00", date+"T"+hour+":"+minute+":"+second+"."+fraction+zone)
	if err != nil {
		return "", false
	}
	return t.UTC().Format(layout) + "@" + precision, true
}

// A JSON number; FHIR decimals are JSON numbers.
var decimalPattern = regexp.MustCompile(`^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$`)

// normaliseDecimal writes a decimal in its shortest plain form, so that "5.20",
// "5.2" and "0.52e1" compare equal: no exponent, no leading zeros before the point,
// no trailing zeros after it, "-0" as "0".
func normaliseDecimal(s string) (string, bool) {
	m := decimalPattern.FindStringSubmatch(s)
	if m == nil {
		return "", false
	}
	neg, whole, frac, exp := m[1] == "-", m[2], m[3], 0
	if m[4] != "" {
		e, err := strconv.Atoi(m[4])
		if err != nil || e > 1000 || e < -1000 { // far beyond any clinical value
			return "", false
		}
		exp = e
	}
	digits := whole + frac
	point := len(whole) + exp // position of the decimal point within digits
	trimmed := strings.TrimLeft(digits, "0")
	point -= len(digits) - len(trimmed)
	digits = strings.TrimRight(trimmed, "0")
	if digits == "" {
		return "0", true
	}
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	switch {
	case point <= 0:
		b.WriteString("0.")
		b.WriteString(strings.Repeat("0", -point))
		b.WriteString(digits)
	case point >= len(digits):
		b.WriteString(digits)
		b.WriteString(strings.Repeat("0", point-len(digits)))
	default:
		b.WriteString(digits[:point])
		b.WriteByte('.')
		b.WriteString(digits[point:])
	}
	return b.String(), true
}
