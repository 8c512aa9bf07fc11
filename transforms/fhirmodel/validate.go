package fhirmodel

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/google/fhir/go/fhirversion"
	"github.com/google/fhir/go/jsonformat"
	"github.com/google/fhir/go/jsonformat/errorreporter"
	"google.golang.org/protobuf/proto"

	apb "github.com/google/fhir/go/proto/google/fhir/proto/annotations_go_proto"
)

// ValidationError is one problem in a FHIR resource. It names where the
// problem is and what it is, never the value: that may be patient data.
type ValidationError struct {
	// Path is the element's path as jsonformat writes it, with array
	// indices and the type of each nested resource:
	// "Bundle.entry[1].resource.Observation.status".
	Path string
	// Reason says what is wrong: `missing required field "status"`,
	// "code type mismatch", "expected date".
	Reason string
}

func (e *ValidationError) Error() string {
	if e.Path == "" {
		return "fhirmodel: " + e.Reason
	}
	return "fhirmodel: " + e.Path + ": " + e.Reason
}

// codecs are jsonformat's unmarshallers and marshaller. They hold no state
// between calls, so one of each serves every goroutine.
type codecs struct {
	validating *jsonformat.Unmarshaller // required elements and reference types too
	parsing    *jsonformat.Unmarshaller // JSON shape and primitive formats only
	marshaller *jsonformat.Marshaller   // compact
}

var (
	codecsOnce   sync.Once
	sharedCodecs codecs
	codecsErr    error
)

func loadCodecs() (*codecs, error) {
	codecsOnce.Do(func() {
		var c codecs
		var err error
		if c.validating, err = jsonformat.NewUnmarshaller("UTC", fhirversion.R4); err != nil {
			codecsErr = fmt.Errorf("fhirmodel: new validating unmarshaller: %w", err)
			return
		}
		if c.parsing, err = jsonformat.NewUnmarshallerWithoutValidation("UTC", fhirversion.R4); err != nil {
			codecsErr = fmt.Errorf("fhirmodel: new unmarshaller: %w", err)
			return
		}
		if c.marshaller, err = jsonformat.NewMarshaller(false, "", "", fhirversion.R4); err != nil {
			codecsErr = fmt.Errorf("fhirmodel: new marshaller: %w", err)
			return
		}
		sharedCodecs = c
	})
	if codecsErr != nil {
		return nil, codecsErr
	}
	return &sharedCodecs, nil
}

// Validate parses one FHIR R4 resource in JSON, usually a Bundle, with
// jsonformat's validating unmarshaller, and returns every problem found as
// one error: errors.Join of *ValidationError, sorted by path. It returns
// nil for a valid resource.
//
// jsonformat checks in two passes, and the second runs only when the first
// found nothing. Parsing checks the JSON's shape (unknown elements, arrays,
// two alternatives of one choice), primitive formats (dates, decimals,
// positiveInt) and codes bound to a required value set. Validation then
// checks required elements, reference types ("Patient/1" where only a
// Practitioner may be named) and the id, code, oid, uuid and uri patterns.
// The second pass skips the resources inside contained. When both passes
// find nothing, Validate adds the checks jsonformat lacks: R4 allows no
// empty strings, objects or arrays (see empty.go). Neither checks
// invariants (FHIRPath constraints), codes bound to extensible or
// preferred value sets, or whether a reference names a resource in the
// bundle.
func Validate(data []byte) error {
	c, err := loadCodecs()
	if err != nil {
		return err
	}
	var r reporter
	msg, err := c.validating.UnmarshalWithErrorReporter(data, &r)
	if r.err != nil {
		return fmt.Errorf("fhirmodel: validate: %w", r.err)
	}
	problems := r.problems
	if err != nil {
		found, ok := problemsOf(err)
		if !ok {
			return fmt.Errorf("fhirmodel: validate: %w", err)
		}
		problems = append(problems, found...)
	} else {
		// An empty code, id or uri already failed its pattern, and an empty
		// Narrative lacks its required status: say so once.
		for _, p := range emptyElements(msg) {
			if !slices.ContainsFunc(problems, func(q *ValidationError) bool { return q.Path == p.Path }) {
				problems = append(problems, p)
			}
		}
		problems = append(problems, emptyArrays(data)...)
	}
	return joinProblems(data, problems)
}

// Parse unmarshals one FHIR R4 resource in JSON into google/fhir/go's
// proto, a *ContainedResource, for callers that want the model. It checks
// what parsing needs, the JSON's shape and primitive formats, but not
// required elements or reference types: Validate does. Its errors are
// *ValidationError, joined.
func Parse(data []byte) (proto.Message, error) {
	c, err := loadCodecs()
	if err != nil {
		return nil, err
	}
	msg, err := c.parsing.Unmarshal(data)
	if err != nil {
		found, ok := problemsOf(err)
		if !ok {
			return nil, fmt.Errorf("fhirmodel: parse: %w", err)
		}
		return nil, joinProblems(data, found)
	}
	return msg, nil
}

// Marshal writes a *ContainedResource, or one resource's own message, as
// compact FHIR JSON with jsonformat's marshaller. jsonformat rewrites the
// references in m into their JSON form as it goes, so m must not be read
// by another goroutine during the call.
func Marshal(m proto.Message) ([]byte, error) {
	c, err := loadCodecs()
	if err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("fhirmodel: marshal: nil message")
	}
	md := m.ProtoReflect().Descriptor()
	var out []byte
	switch {
	case md.FullName() == containedResourceName:
		out, err = c.marshaller.Marshal(m)
	case kind(md) == apb.StructureDefinitionKindValue_KIND_RESOURCE:
		out, err = c.marshaller.MarshalResource(m)
	default:
		return nil, fmt.Errorf("fhirmodel: marshal: %s is not an R4 resource", md.FullName())
	}
	if err != nil {
		return nil, fmt.Errorf("fhirmodel: marshal %s: %w", md.Name(), err)
	}
	return out, nil
}

// reporter collects the problems of jsonformat's second pass, all of them,
// where its default reporter would keep them in its own types.
type reporter struct {
	problems []*ValidationError
	err      error // an error that is not a problem with the resource
}

var _ errorreporter.ErrorReporter = (*reporter)(nil)

func (r *reporter) ReportValidationError(_ string, err error) error {
	found, ok := problemsOf(err)
	if !ok {
		r.err = errors.Join(r.err, err)
		return nil
	}
	r.problems = append(r.problems, found...)
	return nil
}

// ReportValidationWarning ignores warnings: they do not make a resource
// invalid, and jsonformat v0.7.4 never reports one.
func (r *reporter) ReportValidationWarning(string, error) error { return nil }

// problemsOf reads jsonformat's errors: *UnmarshalError values, alone or
// in an UnmarshalErrorList. Their package is internal to jsonformat, so
// their exported Path and Details fields are read by reflection; parsing
// Error()'s text instead would break silently when its wording changed.
// It reports false for any other error.
func problemsOf(err error) ([]*ValidationError, bool) {
	v := reflect.ValueOf(err)
	if v.Kind() == reflect.Slice {
		found := make([]*ValidationError, 0, v.Len())
		for i := 0; i < v.Len(); i++ {
			p, ok := problemOf(v.Index(i))
			if !ok {
				return nil, false
			}
			found = append(found, p)
		}
		return found, len(found) > 0
	}
	p, ok := problemOf(v)
	if !ok {
		return nil, false
	}
	return []*ValidationError{p}, true
}

func problemOf(v reflect.Value) (*ValidationError, bool) {
	if v.Kind() == reflect.Interface {
		v = v.Elem()
	}
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return nil, false
	}
	s := v.Elem()
	path, details, diagnostics := s.FieldByName("Path"), s.FieldByName("Details"), s.FieldByName("Diagnostics")
	if path.Kind() != reflect.String || details.Kind() != reflect.String || diagnostics.Kind() != reflect.String {
		return nil, false
	}
	p := &ValidationError{Path: loadModel().normalisePath(path.String()), Reason: details.String()}
	// Diagnostics may quote a value, which must not be repeated, except
	// for an unknown element, where it quotes the element's JSON name.
	if p.Reason == "unknown field" {
		if name, err := strconv.Unquote(diagnostics.String()); err == nil {
			p.Path = strings.TrimPrefix(p.Path+"."+name, ".")
			p.Reason = "unknown element"
		}
	}
	return p, true
}

// joinProblems sorts the problems by path and joins them.
func joinProblems(in []byte, problems []*ValidationError) error {
	if len(problems) == 0 {
		return nil
	}
	for _, p := range problems {
		if p.Path == "" {
			// jsonformat's JSON errors quote the input; say where instead.
			var syntax *json.SyntaxError
			if err := json.Unmarshal(in, new(json.RawMessage)); errors.As(err, &syntax) {
				p.Reason = fmt.Sprintf("invalid JSON at byte %d", syntax.Offset)
			}
		}
	}
	slices.SortStableFunc(problems, func(a, b *ValidationError) int {
		return cmp.Or(strings.Compare(a.Path, b.Path), strings.Compare(a.Reason, b.Reason))
	})
	errs := make([]error, len(problems))
	for i, p := range problems {
		errs[i] = p
	}
	return errors.Join(errs...)
}

// normalisePath rewrites a path from jsonformat's second pass in the form
// of its first. The first names elements as JSON does
// ("Bundle.entry[0].resource.Observation.valueQuantity"); the second walks
// the proto, splitting choices and lower-casing nested resource types
// ("Bundle.entry[0].resource.observation.value.quantity"). Where the path
// leaves the model it is kept as it is.
func (m *model) normalisePath(path string) string {
	segs := strings.Split(path, ".")
	root, ok := m.resources[upperFirst(segs[0])]
	if !ok {
		return path
	}
	out := make([]string, 1, len(segs))
	out[0] = root.name
	cur := root
	holdsResource := false
	for i := 1; i < len(segs); i++ {
		name, index := splitIndex(segs[i])
		if holdsResource {
			t, ok := m.resources[upperFirst(name)]
			if !ok {
				return strings.Join(append(out, segs[i:]...), ".")
			}
			out = append(out, t.name+index)
			cur, holdsResource = t, false
			continue
		}
		if cur == nil {
			if _, next, ok := primitiveElement(name); ok {
				out = append(out, segs[i])
				cur = next
				continue
			}
			return strings.Join(append(out, segs[i:]...), ".")
		}
		if _, ok := cur.choices[name]; ok && i+1 < len(segs) {
			alt, altIndex := splitIndex(segs[i+1])
			if el, next, ok := cur.Element(name + upperFirst(alt)); ok {
				out = append(out, el.Name+altIndex)
				cur, holdsResource = next, el.Type == "Resource"
				i++
				continue
			}
		}
		el, next, ok := cur.Element(name)
		if !ok {
			return strings.Join(append(out, segs[i:]...), ".")
		}
		out = append(out, segs[i])
		cur, holdsResource = next, el.Type == "Resource"
	}
	return strings.Join(out, ".")
}

// splitIndex splits "entry[0]" into "entry" and "[0]".
func splitIndex(seg string) (name, index string) {
	if i := strings.IndexByte(seg, '['); i >= 0 {
		return seg[:i], seg[i:]
	}
	return seg, ""
}
