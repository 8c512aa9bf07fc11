package hl7v2

// Path addresses a part of a message: SEG[k]-F[r].C.S, all numbers 1-based. An
// omitted occurrence or repetition means the first; an omitted component or
// subcomponent means the whole field repetition or component. A Path with Field 0
// addresses a whole segment.
type Path struct {
	id       uint32
	Location // the path as written; zero Occurrence/Repetition when omitted
}

// ParsePath parses s in path syntax, e.g. "PID-5.1", "PID-3[2].1", "OBX[3]-5",
// "MSH-9.2", "ZPI-1". It does not allocate.
func ParsePath(s string) (Path, error) {
	var p Path
	if len(s) < 3 || !isSegmentID(s[0], s[1], s[2]) {
		return p, ErrPath
	}
	p.Segment = s[:3]
	p.id = packID(p.Segment)
	i := 3
	var ok bool
	if i < len(s) && s[i] == '[' {
		if p.Occurrence, i, ok = bracket(s, i); !ok {
			return p, ErrPath
		}
	}
	if i == len(s) {
		return p, nil
	}
	if s[i] != '-' {
		return p, ErrPath
	}
	if p.Field, i, ok = number(s, i+1); !ok {
		return p, ErrPath
	}
	if i < len(s) && s[i] == '[' {
		if p.Repetition, i, ok = bracket(s, i); !ok {
			return p, ErrPath
		}
	}
	if i < len(s) && s[i] == '.' {
		if p.Component, i, ok = number(s, i+1); !ok {
			return p, ErrPath
		}
		if i < len(s) && s[i] == '.' {
			if p.Sub, i, ok = number(s, i+1); !ok {
				return p, ErrPath
			}
		}
	}
	if i != len(s) {
		return p, ErrPath
	}
	return p, nil
}

// MustParsePath is ParsePath for paths known to be valid; it panics on error.
func MustParsePath(s string) Path {
	p, err := ParsePath(s)
	if err != nil {
		panic("hl7v2: MustParsePath(" + s + "): " + err.Error())
	}
	return p
}

// String returns p in path syntax.
func (p Path) String() string { return p.Location.String() }

// bracket reads "[n]" at s[i:], n >= 1.
func bracket(s string, i int) (int, int, bool) {
	n, i, ok := number(s, i+1)
	if !ok || i >= len(s) || s[i] != ']' {
		return 0, i, false
	}
	return n, i + 1, true
}

// number reads a decimal number >= 1 at s[i:] of at most six digits.
func number(s string, i int) (int, int, bool) {
	n, start := 0, i
	for i < len(s) && isDigit(s[i]) && i-start < 6 {
		n = n*10 + int(s[i]-'0')
		i++
	}
	return n, i, n >= 1 && (i == len(s) || !isDigit(s[i]))
}

// Get returns the part of m that p addresses, or an empty Value when m has no such
// part.
func (m *Message) Get(p Path) Value {
	occ := max(p.Occurrence, 1)
	for i := range m.segs {
		if m.segs[i].id != p.id {
			continue
		}
		if occ--; occ > 0 {
			continue
		}
		s := Segment{m: m, i: int32(i)}
		if p.Field == 0 {
			return Value{b: s.Bytes(), d: m.delims, lvl: levelAtom}
		}
		v := s.Field(p.Field).Rep(max(p.Repetition, 1))
		if p.Component > 0 {
			v = v.Comp(p.Component)
			if p.Sub > 0 {
				v = v.Sub(p.Sub)
			}
		}
		return v
	}
	return Value{d: m.delims}
}

// Lookup parses path and returns the part of m it addresses. It does not allocate.
func (m *Message) Lookup(path string) (Value, error) {
	p, err := ParsePath(path)
	if err != nil {
		return Value{d: m.delims}, err
	}
	return m.Get(p), nil
}
