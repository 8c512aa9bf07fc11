package fhirmodel

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// R4's JSON format allows no empty strings, objects or arrays: an element
// with nothing in it is left out. jsonformat checks none of the three. It
// keeps "" for string and markdown, turns "" for a code bound to a required
// value set into an unset code, and parses {} and [] as if they were
// absent, so a writer that leaves a mapped element empty would pass. The
// functions here find them: emptyElements in the parsed proto, which has
// the paths, and emptyArrays in the JSON, since an empty list cannot be
// told from an absent one once parsed.

// primitiveHasNoValue is the extension jsonformat adds to a primitive that
// JSON gave only extensions ("_birthDate": {...}), so that it can tell an
// absent value from an empty one.
const primitiveHasNoValue = "https://g.co/fhir/StructureDefinition/primitiveHasNoValue"

const (
	emptyString = "empty value; R4 allows no empty strings, so leave the element out"
	emptyObject = "empty element; R4 allows no empty objects, so leave the element out"
)

// emptyElements finds the primitives whose value is an empty string and
// the elements with nothing in them, in a parsed *ContainedResource. A
// resource may be empty but for its type. Contained resources are left
// unchecked, as jsonformat leaves them.
func emptyElements(msg proto.Message) []*ValidationError {
	if msg == nil {
		return nil
	}
	w := emptyWalker{model: loadModel()}
	w.walk(msg.ProtoReflect(), false)
	return w.found
}

type emptyWalker struct {
	model *model
	path  []pathSeg // the path to the message being walked; joined only for a problem
	found []*ValidationError
}

type pathSeg struct {
	name  string
	index int // -1 for a single element
}

func (w *emptyWalker) walk(m protoreflect.Message, resource bool) {
	md := m.Descriptor()
	switch {
	case md.FullName() == containedResourceName:
		f := m.WhichOneof(md.Oneofs().Get(0))
		if f == nil {
			return
		}
		w.path = append(w.path, pathSeg{string(f.Message().Name()), -1})
		w.walk(m.Get(f).Message(), true)
		w.path = w.path[:len(w.path)-1]
		return
	case md.FullName() == anyName:
		return
	case w.model.primitives[md.FullName()]:
		w.primitive(m)
		return
	}
	// A loop over the fields rather than m.Range, whose closure would be
	// allocated for every message.
	fields := md.Fields()
	set := 0
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		if !m.Has(f) {
			continue
		}
		set++
		if f.Message() == nil {
			continue
		}
		if f.IsList() {
			l := m.Get(f).List()
			for j := 0; j < l.Len(); j++ {
				w.path = append(w.path, pathSeg{f.JSONName(), j})
				w.walk(l.Get(j).Message(), false)
				w.path = w.path[:len(w.path)-1]
			}
			continue
		}
		name, child := f.JSONName(), m.Get(f).Message()
		if w.model.choices[f.Message().FullName()] {
			alt := child.WhichOneof(f.Message().Oneofs().Get(0))
			if alt == nil {
				continue
			}
			name, child = name+upperFirst(alt.JSONName()), child.Get(alt).Message()
		}
		w.path = append(w.path, pathSeg{name, -1})
		w.walk(child, false)
		w.path = w.path[:len(w.path)-1]
	}
	if set == 0 && !resource {
		w.report(emptyObject)
	}
}

func (w *emptyWalker) primitive(m protoreflect.Message) {
	value := m.Descriptor().Fields().ByName("value")
	if value == nil || m.Has(value) {
		return
	}
	switch value.Kind() {
	case protoreflect.StringKind, protoreflect.BytesKind, protoreflect.EnumKind:
	default:
		return // false and 0 are values; dates keep theirs elsewhere
	}
	if ext := m.Descriptor().Fields().ByName("extension"); ext != nil {
		l := m.Get(ext).List()
		for i := 0; i < l.Len(); i++ {
			if extensionURL(l.Get(i).Message()) == primitiveHasNoValue {
				return
			}
		}
	}
	w.report(emptyString)
}

func (w *emptyWalker) report(reason string) {
	var b strings.Builder
	for i, s := range w.path {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(s.name)
		if s.index >= 0 {
			fmt.Fprintf(&b, "[%d]", s.index)
		}
	}
	w.found = append(w.found, &ValidationError{Path: b.String(), Reason: reason})
}

// extensionURL returns an Extension's url, or "".
func extensionURL(ext protoreflect.Message) string {
	url := ext.Descriptor().Fields().ByName("url")
	if url == nil || url.Message() == nil {
		return ""
	}
	u := ext.Get(url).Message()
	value := u.Descriptor().Fields().ByName("value")
	if value == nil || value.Kind() != protoreflect.StringKind {
		return ""
	}
	return u.Get(value).String()
}

// emptyArrays finds the empty arrays in well-formed JSON. Without a parse
// it knows no path, so each problem names the array's key and where the
// array starts: `"given" at byte 123`.
func emptyArrays(data []byte) []*ValidationError {
	var found []*ValidationError
	inString := false
	for i := 0; i < len(data); i++ {
		c := data[i]
		if inString {
			switch c {
			case '\\':
				i++ // the escaped byte cannot end the string
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '[':
			j := skipSpace(data, i+1)
			if j < len(data) && data[j] == ']' {
				found = append(found, &ValidationError{Reason: fmt.Sprintf("%sempty array at byte %d; R4 allows no empty arrays, so leave the element out", keyBefore(data, i), i)})
			}
		}
	}
	return found
}

// keyBefore returns `"name" ` for the key of the value starting at data[i],
// or "" for an array inside an array.
func keyBefore(data []byte, i int) string {
	j := i - 1
	for j >= 0 && isSpace(data[j]) {
		j--
	}
	if j < 0 || data[j] != ':' {
		return ""
	}
	j--
	for j >= 0 && isSpace(data[j]) {
		j--
	}
	end := j
	if end < 0 || data[end] != '"' {
		return ""
	}
	// Keys in FHIR JSON are element names, with no quotes or escapes.
	start := end - 1
	for start >= 0 && data[start] != '"' {
		start--
	}
	if start < 0 {
		return ""
	}
	return string(data[start:end+1]) + " "
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && isSpace(data[i]) {
		i++
	}
	return i
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r'
}
