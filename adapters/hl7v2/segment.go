package hl7v2

// Segment is one segment of a parsed Message. It is a small value; copy it freely.
// The zero Segment is absent: it has no id and no fields.
type Segment struct {
	m *Message
	i int32
}

// Exists reports whether s is a segment of a message, not the zero Segment.
func (s Segment) Exists() bool { return s.m != nil }

// Index returns the position of s in its message, counting from 0.
func (s Segment) Index() int { return int(s.i) }

// ID returns the three-byte segment id, a view into the message.
func (s Segment) ID() []byte {
	if s.m == nil {
		return nil
	}
	seg := &s.m.segs[s.i]
	return s.m.buf[seg.start : seg.start+3]
}

// Is reports whether s has the given segment id.
func (s Segment) Is(id string) bool { return s.m != nil && s.m.segs[s.i].id == packID(id) }

// Bytes returns the whole segment, id included, terminator excluded.
func (s Segment) Bytes() []byte {
	if s.m == nil {
		return nil
	}
	seg := &s.m.segs[s.i]
	return s.m.buf[seg.start:seg.end]
}

// Offset returns the byte offset of s in the message buffer.
func (s Segment) Offset() int {
	if s.m == nil {
		return 0
	}
	return int(s.m.segs[s.i].start)
}

// isHeader reports whether s is MSH, FHS or BHS, whose field 1 is the field
// separator itself and field 2 the encoding characters.
func (s Segment) isHeader() bool {
	id := s.m.segs[s.i].id
	return id == idMSH || id == idFHS || id == idBHS
}

// FieldCount returns the number of fields in s, in HL7 numbering: the number of the
// last field present.
func (s Segment) FieldCount() int {
	if s.m == nil {
		return 0
	}
	s.m.split(s.i, 1<<30)
	n := int(s.m.segs[s.i].nf)
	if n > 0 && s.isHeader() {
		n++ // field 1 is the separator after the id, not split out
	}
	return n
}

// Field returns field n (1-based, HL7 numbering) of s. For MSH, FHS and BHS, field 1
// is the field separator and field 2 the encoding characters, neither split further.
// A field s does not have is returned empty.
func (s Segment) Field(n int) Value {
	if s.m == nil || n < 1 {
		return Value{}
	}
	m := s.m
	j := int32(n)
	if s.isHeader() {
		seg := &m.segs[s.i]
		switch n {
		case 1:
			if seg.end-seg.start < 4 {
				return Value{d: m.delims}
			}
			return Value{b: m.buf[seg.start+3 : seg.start+4], d: m.delims, lvl: levelAtom}
		case 2:
			start, end, _ := m.splitField(s.i, 1)
			return Value{b: m.buf[start:end], d: m.delims, lvl: levelAtom}
		}
		j--
	}
	start, end, ok := m.splitField(s.i, j)
	if !ok {
		return Value{d: m.delims}
	}
	return Value{b: m.buf[start:end], d: m.delims, lvl: levelField}
}

// Locate returns where in s the value v lies, to the level v was taken at (a
// field, a repetition, a component or a subcomponent), with the occurrence of
// s's id in the message. It reports false when v is empty or is not a view of
// s, such as text already unescaped into another buffer: an empty value has
// no place to point at.
func (s Segment) Locate(v Value) (Location, bool) {
	if s.m == nil || len(v.b) == 0 {
		return Location{}, false
	}
	m := s.m
	seg := &m.segs[s.i]
	at := cap(m.buf) - cap(v.b)
	if at < int(seg.start) || at >= int(seg.end) || &m.buf[at] != &v.b[0] {
		return Location{}, false
	}
	loc := Location{Segment: string(s.ID())}
	for j := int32(0); j <= s.i; j++ {
		if m.segs[j].id == seg.id {
			loc.Occurrence++
		}
	}
	// Count the separators between the segment's id and v, each level's
	// count starting again after a separator of the level above.
	d := m.delims
	field, rep, comp, sub := 0, 1, 1, 1
	for _, c := range m.buf[seg.start+3 : at] {
		switch c {
		case d.Field:
			field, rep, comp, sub = field+1, 1, 1, 1
		case d.Repetition:
			rep, comp, sub = rep+1, 1, 1
		case d.Component:
			comp, sub = comp+1, 1
		case d.Subcomponent:
			sub++
		}
	}
	if s.isHeader() {
		field++ // the separator after the id is field 1 itself
		if field <= 2 {
			loc.Field = field // the encoding characters hold separators
			return loc, true
		}
	}
	loc.Field = field
	switch v.lvl {
	case levelSub:
		loc.Sub = sub
		fallthrough
	case levelComp:
		loc.Component = comp
		fallthrough
	case levelRep:
		loc.Repetition = rep
	}
	return loc, true
}
