package transforms

import "unicode/utf8"

// A tree holds the resources of one bundle while they are built: an arena of
// nodes in one slice and their text in one buffer, both kept between messages,
// so that building a bundle allocates almost nothing once warm. Mapping rules
// for the same element arrive from different segments and data-type maps in
// any order (PID-3 and PID-2 both add to Patient.identifier), so the JSON
// cannot be written as rules run; the tree gathers it, and write emits it in one
// pass, leaving out every element that ended up empty.
type tree struct {
	nodes []node
	text  []byte
}

type nodeKind uint8

const (
	kindObject nodeKind = iota
	kindArray
	kindString // text is written as a JSON string
	kindRaw    // text is a JSON literal: number or boolean
)

// node is an element. Children form a singly linked list (first, last, next)
// so that appending is O(1) and no child slice is allocated per node.
type node struct {
	name        string // element name; "" for array items
	kind        nodeKind
	weak        bool  // does not make its parent non-empty on its own (an extension's url)
	cut         bool  // left out, with all below it (see Converter.prune)
	start, end  int32 // text, for scalars
	first, last int32 // children, -1 when none
	next        int32 // next sibling, -1 at the end
	// yield is, for one type of a choice element, the node of another type
	// preferred to it: while that one holds a value, this one is empty.
	yield int32
}

const none = -1

func (t *tree) reset() {
	t.nodes = t.nodes[:0]
	t.text = t.text[:0]
}

// newNode appends a node and returns its index.
func (t *tree) newNode(name string, kind nodeKind) int32 {
	t.nodes = append(t.nodes, node{name: name, kind: kind, first: none, last: none, next: none, yield: none})
	return int32(len(t.nodes) - 1)
}

// root starts a top-level object (a resource).
func (t *tree) root() int32 { return t.newNode("", kindObject) }

func (t *tree) appendChild(parent, child int32) {
	p := &t.nodes[parent]
	if p.last == none {
		p.first = child
	} else {
		t.nodes[p.last].next = child
	}
	p.last = child
}

// child returns parent's child named name, or none.
func (t *tree) child(parent int32, name string) int32 {
	for c := t.nodes[parent].first; c != none; c = t.nodes[c].next {
		if t.nodes[c].name == name {
			return c
		}
	}
	return none
}

// ensure returns parent's child named name of the given kind, creating it.
func (t *tree) ensure(parent int32, name string, kind nodeKind) int32 {
	if c := t.child(parent, name); c != none {
		return c
	}
	c := t.newNode(name, kind)
	t.appendChild(parent, c)
	return c
}

// addItem appends an item of the given kind to array arr.
func (t *tree) addItem(arr int32, kind nodeKind) int32 {
	c := t.newNode("", kind)
	t.appendChild(arr, c)
	return c
}

// lastItem returns the last item of arr, or none.
func (t *tree) lastItem(arr int32) int32 { return t.nodes[arr].last }

// walkTo finds or makes the node at steps from obj, the last of the given
// kind: intermediate repeated elements reuse their last item (or start one when
// written name[+]), a final repeated one gains a new item, a final single object
// is merged into, and a final single scalar already filled gives none (the
// first value wins), as does a choice another of whose types holds a value
// (see choiceOpen).
func (t *tree) walkTo(obj int32, steps []step, kind nodeKind) int32 {
	last := len(steps) - 1
	for i := range steps {
		s := &steps[i]
		if s.others != nil && !t.choiceOpen(obj, s) {
			return none
		}
		k := kindObject
		if i == last {
			k = kind
		}
		if !s.repeated {
			n := t.ensure(obj, s.name, k)
			if i == last && k != kindObject && !t.empty(n) {
				return none
			}
			if s.prefer {
				t.preferTo(obj, s, n)
			}
			obj = n
			continue
		}
		arr := t.ensure(obj, s.name, kindArray)
		if i == last {
			return t.addItem(arr, k)
		}
		if it := t.lastItem(arr); it != none && !s.fresh {
			obj = it
		} else {
			obj = t.addItem(arr, kindObject)
		}
	}
	return obj
}

// choiceOpen reports whether s, one alternative of a choice element of obj,
// may be written: when another alternative already holds a value, only when s
// prefers its own.
func (t *tree) choiceOpen(obj int32, s *step) bool {
	if s.prefer {
		return true
	}
	for _, alt := range s.others {
		if n := t.child(obj, alt); n != none && !t.empty(n) {
			return false
		}
	}
	return true
}

// preferTo makes the other alternatives of s in obj give way to n: they are
// empty, and not written, once n holds a value, and keep theirs if it never
// does (a preferred map that found nothing to write).
func (t *tree) preferTo(obj int32, s *step, n int32) {
	for _, alt := range s.others {
		if o := t.child(obj, alt); o != none {
			t.nodes[o].yield = n
		}
	}
}

// setText makes n a scalar holding text.
func (t *tree) setText(n int32, kind nodeKind, text []byte) {
	start := int32(len(t.text))
	t.text = append(t.text, text...)
	t.nodes[n].kind = kind
	t.nodes[n].start, t.nodes[n].end = start, int32(len(t.text))
}

// textOf returns the text of scalar n.
func (t *tree) textOf(n int32) []byte { return t.text[t.nodes[n].start:t.nodes[n].end] }

// empty reports whether n would write nothing: cut, a scalar with no text, an
// object or array whose children are all empty or weak, or a choice's type
// giving way to a preferred one that holds a value.
func (t *tree) empty(n int32) bool {
	nd := &t.nodes[n]
	if nd.cut || t.yielded(n) {
		return true
	}
	switch nd.kind {
	case kindString, kindRaw:
		return nd.start == nd.end
	}
	for c := nd.first; c != none; c = t.nodes[c].next {
		if !t.nodes[c].weak && !t.empty(c) {
			return false
		}
	}
	return true
}

// yielded reports whether n, one type of a choice element, gives way to a
// preferred type that holds a value (see preferTo).
func (t *tree) yielded(n int32) bool {
	y := t.nodes[n].yield
	return y != none && !t.empty(y)
}

// writeMembers writes the members of object n (without braces), each preceded
// by a comma when comma is true or an earlier member was written. It reports
// whether anything but weak members was written: an object holding nothing
// else is empty, and its caller takes back what it wrote.
//
// Emptiness is found while writing, not asked of each subtree beforehand:
// asking at every level walks a subtree once per ancestor.
func (t *tree) writeMembers(dst []byte, n int32, comma bool) ([]byte, bool) {
	return t.writeChildren(dst, n, comma, true)
}

// writeChildren writes the children of n, as members when named, else as
// array items, taking back each child that turns out empty.
func (t *tree) writeChildren(dst []byte, n int32, comma, named bool) ([]byte, bool) {
	strong := false
	for c := t.nodes[n].first; c != none; c = t.nodes[c].next {
		if t.nodes[c].cut || t.yielded(c) {
			continue
		}
		mark := len(dst)
		if comma {
			dst = append(dst, ',')
		}
		if named {
			// Element names are FHIR's (checked against the model at load)
			// or the engine's own: letters and digits, nothing to escape.
			dst = append(dst, '"')
			dst = append(dst, t.nodes[c].name...)
			dst = append(dst, '"', ':')
		}
		var wrote bool
		if dst, wrote = t.writeValue(dst, c); !wrote {
			dst = dst[:mark]
			continue
		}
		comma = true
		strong = strong || !t.nodes[c].weak
	}
	return dst, strong
}

// writeValue writes n and reports whether it holds anything but weak members;
// when it does not, what it wrote is for the caller to take back.
func (t *tree) writeValue(dst []byte, n int32) ([]byte, bool) {
	nd := &t.nodes[n]
	switch nd.kind {
	case kindString:
		return appendJSONBytes(dst, t.text[nd.start:nd.end]), nd.start != nd.end
	case kindRaw:
		return append(dst, t.text[nd.start:nd.end]...), nd.start != nd.end
	case kindArray:
		dst = append(dst, '[')
		dst, strong := t.writeChildren(dst, n, false, false)
		return append(dst, ']'), strong
	}
	dst = append(dst, '{')
	dst, strong := t.writeMembers(dst, n, false)
	return append(dst, '}'), strong
}

const hexDigits = "0123456789abcdef"

// jsonPlain marks the bytes a JSON string holds as they are: printable ASCII
// other than the quote and the backslash.
var jsonPlain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendJSONString writes s as a JSON string. Invalid UTF-8 becomes U+FFFD,
// so the output is always valid JSON and valid FHIR.
func appendJSONString(dst []byte, s string) []byte { return appendJSON(dst, s) }

// appendJSONBytes is appendJSONString for text held as bytes.
func appendJSONBytes(dst, b []byte) []byte { return appendJSON(dst, b) }

func appendJSON[T string | []byte](dst []byte, s T) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		// Copy the run of bytes that need no escaping in one append.
		j := i
		for j < len(s) && jsonPlain[s[j]] {
			j++
		}
		dst = append(dst, s[i:j]...)
		if i = j; i == len(s) {
			break
		}
		c := s[i]
		var r rune
		var size int
		switch v := any(s[i:]).(type) {
		case string:
			r, size = utf8.DecodeRuneInString(v)
		case []byte:
			r, size = utf8.DecodeRune(v)
		}
		dst = appendEscapedRune(dst, r, c, size)
		i += size
	}
	return append(dst, '"')
}

func appendEscapedRune(dst []byte, r rune, c byte, size int) []byte {
	switch {
	case c == '"' || c == '\\':
		return append(dst, '\\', c)
	case c == '\n':
		return append(dst, '\\', 'n')
	case c == '\r':
		return append(dst, '\\', 'r')
	case c == '\t':
		return append(dst, '\\', 't')
	case c < 0x20:
		return append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
	case r == utf8.RuneError && size == 1:
		return utf8.AppendRune(dst, utf8.RuneError)
	}
	return utf8.AppendRune(dst, r)
}
