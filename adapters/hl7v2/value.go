package hl7v2

import "bytes"

// level says which separators a Value may still contain.
type level uint8

const (
	levelNone  level = iota // absent
	levelField              // a whole field: repetitions, components, subcomponents
	levelRep                // one repetition: components, subcomponents
	levelComp               // one component: subcomponents
	levelSub                // one subcomponent
	levelAtom               // not split further: MSH-1, MSH-2, a whole segment
)

// Value is a field, repetition, component or subcomponent of a message: a view of
// its raw (still escaped) bytes plus the delimiters needed to split it further.
// Its accessors never allocate. An absent part is an empty Value.
type Value struct {
	b   []byte
	d   Delimiters
	lvl level
}

// Bytes returns the raw bytes of v, escape sequences included.
func (v Value) Bytes() []byte { return v.b }

// String returns the raw bytes of v as a string. It allocates; hot paths use Bytes.
func (v Value) String() string { return string(v.b) }

// IsEmpty reports whether v has no bytes: absent or present but empty.
func (v Value) IsEmpty() bool { return len(v.b) == 0 }

// IsNull reports whether v is the HL7 explicit null, two double quotes (""), which
// tells the receiver to delete the value it holds.
func (v Value) IsNull() bool { return len(v.b) == 2 && v.b[0] == '"' && v.b[1] == '"' }

// Rep returns repetition r (1-based) of a field. On a repetition, component or
// subcomponent, Rep(1) is v itself.
func (v Value) Rep(r int) Value {
	switch v.lvl {
	case levelField:
		return Value{b: piece(v.b, v.d.Repetition, r), d: v.d, lvl: levelRep}
	case levelNone:
		return v
	}
	return v.only(r)
}

// Comp returns component c (1-based). On a field it reads the first repetition; on a
// component or subcomponent, Comp(1) is v itself.
func (v Value) Comp(c int) Value {
	switch v.lvl {
	case levelField:
		return v.Rep(1).Comp(c)
	case levelRep:
		return Value{b: piece(v.b, v.d.Component, c), d: v.d, lvl: levelComp}
	case levelNone:
		return v
	}
	return v.only(c)
}

// Sub returns subcomponent s (1-based). On a field or repetition it reads the first
// component; on a subcomponent, Sub(1) is v itself.
func (v Value) Sub(s int) Value {
	switch v.lvl {
	case levelField, levelRep:
		return v.Comp(1).Sub(s)
	case levelComp:
		return Value{b: piece(v.b, v.d.Subcomponent, s), d: v.d, lvl: levelSub}
	case levelNone:
		return v
	}
	return v.only(s)
}

// only returns v for n == 1 and an absent Value otherwise.
func (v Value) only(n int) Value {
	if n == 1 {
		return v
	}
	return Value{d: v.d}
}

// AppendReps appends to dst what Rep(1) to Rep(Reps()) return, reading v
// once where those calls read it once each, and returns dst. It allocates
// nothing when dst has room.
func (v Value) AppendReps(dst []Value) []Value {
	if v.lvl == levelField {
		return v.appendParts(dst, v.d.Repetition, levelRep)
	}
	return v.appendOne(dst)
}

// AppendComps appends to dst what Comp(1) to Comp(Comps()) return, reading v
// once, and returns dst.
func (v Value) AppendComps(dst []Value) []Value {
	switch v.lvl {
	case levelField:
		return v.Rep(1).AppendComps(dst)
	case levelRep:
		return v.appendParts(dst, v.d.Component, levelComp)
	}
	return v.appendOne(dst)
}

func (v Value) appendParts(dst []Value, sep byte, lvl level) []Value {
	if len(v.b) == 0 {
		return dst
	}
	b := v.b
	for {
		i := bytes.IndexByte(b, sep)
		if i < 0 {
			return append(dst, Value{b: b, d: v.d, lvl: lvl})
		}
		dst = append(dst, Value{b: b[:i], d: v.d, lvl: lvl})
		b = b[i+1:]
	}
}

func (v Value) appendOne(dst []Value) []Value {
	if len(v.b) == 0 {
		return dst
	}
	return append(dst, v)
}

// Reps returns the number of repetitions of a field; 0 when it is empty.
func (v Value) Reps() int {
	if v.lvl == levelField {
		return count(v.b, v.d.Repetition)
	}
	return v.countOne()
}

// Comps returns the number of components; 0 when v is empty. On a field it counts
// those of the first repetition.
func (v Value) Comps() int {
	switch v.lvl {
	case levelField:
		return v.Rep(1).Comps()
	case levelRep:
		return count(v.b, v.d.Component)
	}
	return v.countOne()
}

// Subs returns the number of subcomponents; 0 when v is empty. On a field or
// repetition it counts those of the first component.
func (v Value) Subs() int {
	switch v.lvl {
	case levelField, levelRep:
		return v.Comp(1).Subs()
	case levelComp:
		return count(v.b, v.d.Subcomponent)
	}
	return v.countOne()
}

func (v Value) countOne() int {
	if len(v.b) == 0 {
		return 0
	}
	return 1
}

// piece returns the n-th (1-based) part of b split on sep, or nil when b has fewer.
func piece(b []byte, sep byte, n int) []byte {
	if n < 1 {
		return nil
	}
	i := 0
	for ; n > 1; n-- {
		for i < len(b) && b[i] != sep {
			i++
		}
		if i == len(b) {
			return nil
		}
		i++
	}
	j := i
	for j < len(b) && b[j] != sep {
		j++
	}
	return b[i:j]
}

// count returns the number of parts of b split on sep; 0 when b is empty.
func count(b []byte, sep byte) int {
	if len(b) == 0 {
		return 0
	}
	n := 1
	for _, c := range b {
		if c == sep {
			n++
		}
	}
	return n
}
