package fhirmodel

import (
	"fmt"
	"slices"
	"strings"
)

// PathError reports the first step of a dotted element path that names no
// element, with the nearest names there are.
type PathError struct {
	Root        string   // the resource or data type the path starts from: "Patient"
	Path        string   // the path up to and including the bad step: "contact.name.famly"
	Reason      string   // what is wrong, with suggestions: `HumanName has no element "famly"; did you mean "family"?`
	Suggestions []string // the names suggested, nearest first; for a choice named without its type, every alternative
}

func (e *PathError) Error() string {
	if e.Path == "" {
		return "fhirmodel: " + e.Reason
	}
	return "fhirmodel: " + e.Root + "." + e.Path + ": " + e.Reason
}

// Lookup resolves a dotted element path, such as "contact.name.family",
// from the resource or data type named root, and returns the element of
// each step. Steps use JSON names, choices with their type
// ("deceasedBoolean"). Below a primitive only its id and extension exist,
// as in JSON's "_birthDate"; below an element of type Resource nothing
// does, since it may hold any resource. The error is a *PathError naming
// the first bad step.
func Lookup(root, path string) ([]Element, error) {
	t, ok := Resource(root)
	if !ok {
		t, ok = Datatype(root)
	}
	if !ok {
		m := loadModel()
		names := make([]string, 0, len(m.resources)+len(m.datatypes))
		for name := range m.resources {
			names = append(names, name)
		}
		for name := range m.datatypes {
			names = append(names, name)
		}
		near := nearest(root, names)
		return nil, &PathError{Root: root, Reason: fmt.Sprintf("no R4 resource or data type is named %q%s", root, didYouMean(near)), Suggestions: near}
	}
	if path == "" {
		return nil, &PathError{Root: root, Reason: fmt.Sprintf("empty element path in %s", root)}
	}
	steps := strings.Split(path, ".")
	chain := make([]Element, 0, len(steps))
	cur := t
	for i, name := range steps {
		walked := strings.Join(steps[:i+1], ".")
		fail := func(reason string, suggestions []string) ([]Element, error) {
			return nil, &PathError{Root: root, Path: walked, Reason: reason, Suggestions: suggestions}
		}
		if name == "" {
			return fail(fmt.Sprintf("path %q has an empty step", path), nil)
		}
		if cur == nil {
			prev := chain[i-1]
			if prev.Type == "Resource" {
				return fail(fmt.Sprintf("%q may hold any resource, so it has no element %q; look the element up from the resource type", prev.Name, name), nil)
			}
			el, next, ok := primitiveElement(name)
			if !ok {
				return fail(fmt.Sprintf("%q is a primitive %s; only id and extension lie below it", prev.Name, prev.Type), nil)
			}
			chain = append(chain, el)
			cur = next
			continue
		}
		el, next, ok := cur.Element(name)
		if ok {
			chain = append(chain, el)
			cur = next
			continue
		}
		if alts, ok := cur.choices[name]; ok {
			return fail(fmt.Sprintf("%q is a choice; name one of %s", name, strings.Join(alts, ", ")), alts)
		}
		near := cur.nearest(name)
		return fail(fmt.Sprintf("%s has no element %q%s", cur.name, name, didYouMean(near)), near)
	}
	return chain, nil
}

// primitiveElement resolves a step below a primitive: FHIR JSON carries a
// primitive's id and extensions beside it, in "_birthDate".
func primitiveElement(name string) (Element, *Type, bool) {
	switch name {
	case "id":
		return Element{Name: "id", Type: "string"}, nil, true
	case "extension":
		ext, _ := Datatype("Extension")
		return Element{Name: "extension", Type: "Extension", Repeated: true}, ext, true
	}
	return Element{}, nil, false
}

// nearest returns the elements of t nearest to name. Choices are compared
// by their base name too, so that "valu" leads to "value" and from there to
// its alternatives.
func (t *Type) nearest(name string) []string {
	names := make([]string, 0, len(t.elements)+len(t.choices))
	for _, el := range t.elements {
		names = append(names, el.Name)
	}
	for base := range t.choices {
		names = append(names, base)
	}
	var out []string
	for _, n := range nearest(name, names) {
		if alts, ok := t.choices[n]; ok {
			for _, alt := range alts {
				if !slices.Contains(out, alt) {
					out = append(out, alt)
				}
			}
			continue
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// nearest returns up to three of names closest to name: those equal but
// for case, else those within an edit distance of a third of name's length
// (at least one), else those that start with name. Mapping authors mostly
// mistype case ("birthdate") or a letter or two ("famly").
func nearest(name string, names []string) []string {
	lower := strings.ToLower(name)
	type scored struct {
		name string
		dist int
	}
	var found []scored
	limit := max(1, len(name)/3)
	for _, n := range names {
		if d := distance(lower, strings.ToLower(n)); d <= limit {
			found = append(found, scored{n, d})
		}
	}
	if len(found) == 0 {
		for _, n := range names {
			if strings.HasPrefix(strings.ToLower(n), lower) {
				found = append(found, scored{n, len(n) - len(name)})
			}
		}
	}
	slices.SortFunc(found, func(a, b scored) int {
		if a.dist != b.dist {
			return a.dist - b.dist
		}
		return strings.Compare(a.name, b.name)
	})
	out := make([]string, 0, min(3, len(found)))
	for _, s := range found[:min(3, len(found))] {
		out = append(out, s.name)
	}
	return out
}

func didYouMean(names []string) string {
	switch len(names) {
	case 0:
		return ""
	case 1:
		return fmt.Sprintf("; did you mean %q?", names[0])
	}
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = fmt.Sprintf("%q", n)
	}
	return "; did you mean one of " + strings.Join(quoted, ", ") + "?"
}

// distance is the edit distance between a and b, in bytes (element names
// are ASCII), counting a swap of two neighbours as one edit, as in "valeu".
func distance(a, b string) int {
	// d[i][j] is the distance between a[:i] and b[:j]; three rows suffice.
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
