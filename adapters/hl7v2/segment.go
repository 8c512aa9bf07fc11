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
