package hl7v2

import (
	"bytes"
	"math"
)

// Packed segment ids the parser treats specially.
var (
	idMSH = packID("MSH")
	idFHS = packID("FHS")
	idBHS = packID("BHS")
)

// packID packs a three-byte segment id into an integer for quick comparison.
// Ids that are not three bytes long pack to zero, which no segment has.
func packID(id string) uint32 {
	if len(id) != 3 {
		return 0
	}
	return uint32(id[0])<<16 | uint32(id[1])<<8 | uint32(id[2])
}

// segment is the index entry of one segment: where its bytes are and how far its
// fields have been split.
type segment struct {
	start, end int32  // segment bytes, terminator excluded
	id         uint32 // packed segment id
	fields     int32  // index in Message.fields of the start of split field 1
	nf         int32  // number of split fields recorded
	next       int32  // start of split field nf+1; past end once the segment is fully split
}

// Message is an index over one HL7 v2 message held in a caller's buffer. Parse fills
// it; its accessors return views into that buffer, valid until the next Parse or
// until the caller changes the buffer.
//
// Segments are found when the message is parsed; the fields of a segment are split
// on first access, and only as far as the access needs. A Message reused across
// Parse calls keeps its memory, so once warm, parsing and reading perform no heap
// allocation. A Message is not safe for concurrent use, including concurrent reads,
// since reads may split fields.
type Message struct {
	buf    []byte
	delims Delimiters
	segs   []segment
	fields []int32
}

// Parse indexes b as one message in a new Message.
func Parse(b []byte) (*Message, error) {
	m := new(Message)
	err := m.Parse(b)
	return m, err
}

// Parse indexes b as one message, replacing what m held. It reads the delimiters
// from MSH-1 and MSH-2 and finds every segment. Segments may end with CR, LF or CRLF,
// mixed within a message; the last may have no terminator. A leading UTF-8 byte
// order mark, empty segments, and whitespace or NUL bytes after the last segment are
// ignored.
//
// On error m still holds the segments read before the malformed one, so that a
// message whose MSH is sound can still be answered with an ACK.
func (m *Message) Parse(b []byte) error {
	m.buf = b
	m.delims = Delimiters{}
	m.segs = m.segs[:0]
	m.fields = m.fields[:0]
	if len(b) >= math.MaxInt32 {
		return &ParseError{Err: ErrTooLarge}
	}
	p := 0
	if len(b) >= 3 && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF {
		p = 3
	}
	end := len(b)
	for end > p && isTrailer(b[end-1]) {
		end--
	}
	for p < end && (b[p] == '\r' || b[p] == '\n') {
		p++
	}
	if p == end {
		return &ParseError{Offset: p, Err: ErrEmpty}
	}
	if end-p < 3 || packID3(b[p:]) != idMSH {
		return &ParseError{Index: 1, Offset: p, Err: ErrNoHeader}
	}
	d, _, ok := readDelimiters(b[p:end])
	if !ok {
		return &ParseError{Index: 1, Offset: p, Location: Location{Segment: "MSH", Field: 2}, Err: ErrDelimiters}
	}
	m.delims = d
	return m.index(p, end)
}

// index finds the segments of b[p:end].
func (m *Message) index(p, end int) error {
	b, sep := m.buf, m.delims.Field
	segs := m.segs
	defer func() { m.segs = segs }()
	// This is terminators.next by hand: the parser's loop is the hottest in the
	// engine and a call per segment costs it a tenth of its time.
	cr, lf := -1, -1
	for ; p < end; p++ {
		if cr < p {
			if cr = bytes.IndexByte(b[p:end], '\r') + p; cr < p {
				cr = end
			}
		}
		if lf < p {
			if lf = bytes.IndexByte(b[p:end], '\n') + p; lf < p {
				lf = end
			}
		}
		q := min(cr, lf)
		switch n := q - p; {
		case n > 3 && b[p+3] == sep && isSegmentID(b[p], b[p+1], b[p+2]):
			segs = append(segs, segment{start: int32(p), end: int32(q), id: packID3(b[p:]), next: int32(p + 4)})
		case n == 3 && isSegmentID(b[p], b[p+1], b[p+2]):
			segs = append(segs, segment{start: int32(p), end: int32(q), id: packID3(b[p:]), next: int32(q + 1)})
		case n > 0 && !isBlank(b[p:q]):
			return &ParseError{Index: len(segs) + 1, Offset: p, Err: ErrSegmentID}
		}
		p = q
	}
	return nil
}

func packID3(b []byte) uint32 { return uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2]) }

func isSegmentID(a, b, c byte) bool {
	return isUpper(a) && (isUpper(b) || isDigit(b)) && (isUpper(c) || isDigit(c))
}

func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// isTrailer reports bytes ignored after the last segment.
func isTrailer(c byte) bool { return c == '\r' || c == '\n' || c == ' ' || c == '\t' || c == 0 }

func isBlank(b []byte) bool {
	for _, c := range b {
		if !isTrailer(c) {
			return false
		}
	}
	return true
}

// Bytes returns the buffer m indexes.
func (m *Message) Bytes() []byte { return m.buf }

// Delimiters returns the delimiters m declares.
func (m *Message) Delimiters() Delimiters { return m.delims }

// SegmentCount returns the number of segments in m.
func (m *Message) SegmentCount() int { return len(m.segs) }

// Segment returns the i-th segment of m, counting from 0 in message order.
// It panics if i is out of range, like a slice index.
func (m *Message) Segment(i int) Segment {
	_ = m.segs[i]
	return Segment{m: m, i: int32(i)}
}

// Find returns the occ-th (1-based) segment with the given id.
func (m *Message) Find(id string, occ int) (Segment, bool) {
	want := packID(id)
	for i := range m.segs {
		if m.segs[i].id == want {
			occ--
			if occ <= 0 {
				return Segment{m: m, i: int32(i)}, true
			}
		}
	}
	return Segment{}, false
}

// Count returns how many segments with the given id m holds.
func (m *Message) Count(id string) int {
	want := packID(id)
	n := 0
	for i := range m.segs {
		if m.segs[i].id == want {
			n++
		}
	}
	return n
}

// All calls yield with every segment with the given id, in message order. Use it in
// a range statement: for s := range m.All("OBX") { ... }.
func (m *Message) All(id string) func(yield func(Segment) bool) {
	want := packID(id)
	return func(yield func(Segment) bool) {
		for i := range m.segs {
			if m.segs[i].id == want && !yield(Segment{m: m, i: int32(i)}) {
				return
			}
		}
	}
}

// split records split fields of segment si up to split field j, or to the end of the
// segment if it has fewer fields.
func (m *Message) split(si int32, j int32) {
	s := &m.segs[si]
	if s.nf >= j || s.next > s.end {
		return
	}
	// A segment's split fields are contiguous in m.fields. If another segment was
	// split after this one, move this one's to the end before extending them, and
	// split at least twice as far, so that however reads alternate between
	// segments, moves copy no more entries than were split.
	if s.nf == 0 {
		s.fields = int32(len(m.fields))
	} else if int(s.fields+s.nf) != len(m.fields) {
		at := int32(len(m.fields))
		m.fields = append(m.fields, m.fields[s.fields:s.fields+s.nf]...)
		s.fields = at
		j = max(j, 2*s.nf)
	}
	b, sep, fields := m.buf, m.delims.Field, m.fields
	p, end, nf := int(s.next), int(s.end), s.nf
	for nf < j && p <= end {
		fields = append(fields, int32(p))
		nf++
		p = indexFrom(b, p, end, sep) + 1
	}
	m.fields, s.nf, s.next = fields, nf, int32(p)
}

// splitField returns the bounds of split field j (1-based) of segment si, or
// ok == false when the segment has fewer fields.
func (m *Message) splitField(si, j int32) (start, end int32, ok bool) {
	m.split(si, j)
	s := &m.segs[si]
	if j > s.nf {
		return 0, 0, false
	}
	start = m.fields[s.fields+j-1]
	if j < s.nf {
		end = m.fields[s.fields+j] - 1
	} else {
		end = s.next - 1
	}
	return start, end, true
}
