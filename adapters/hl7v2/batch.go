package hl7v2

import "bytes"

var (
	idBTS = packID("BTS")
	idFTS = packID("FTS")
)

// File is the structure of an HL7 batch file, FHS {BHS {MSH...} BTS} FTS, each part optional.
type File struct {
	Header, Trailer []byte // FHS and FTS segments (views of the input, terminator excluded); nil when absent
	Batches         []Batch
}

// Batch is one batch of a File, BHS {MSH...} BTS. A batch whose messages were not
// preceded by a BHS has neither header nor trailer.
type Batch struct {
	Header, Trailer []byte   // BHS and BTS; nil when absent
	Messages        [][]byte // each a view of the input from its MSH up to (and including the terminator of) its last segment
}

// SplitBatch splits b into the batches and messages of an HL7 batch file,
// [FHS] { [BHS] { MSH ... } [BTS] } [FTS], without copying: every part of the File
// is a view of b. Segment endings, a leading byte order mark, empty segments and
// trailing whitespace are accepted as Message.Parse accepts them. Input with no FHS
// or BHS is one File with one Batch, without headers, holding every message; each
// MSH starts a new message. The messages themselves are not parsed.
//
// BTS-1 and FTS-1, when present and not empty, must count the messages of their
// batch and the batches of the file. A count that differs is reported with a
// *ParseError wrapping ErrBatchCount, located at BTS-1 or FTS-1, returned together
// with the complete File: the messages are all there, so a receiver can still
// acknowledge each one. Any other error is a *ParseError wrapping ErrEmpty,
// ErrNoHeader (the first segment is none of FHS, BHS, MSH) or ErrBatch, and the
// File is nil. ErrBatch reports batch segments that do not nest:
// a BTS or FTS without its header, an FHS that is not first, a BHS before the BTS
// of a batch that had one, a segment outside any message, anything after the FTS.
// A header without its trailer is accepted, as senders often leave trailers out.
// ParseError.Index counts segments from the start of b, not of a message.
func SplitBatch(b []byte) (*File, error) {
	p, end := 0, len(b)
	if len(b) >= 3 && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF {
		p = 3
	}
	for end > p && isTrailer(b[end-1]) {
		end--
	}
	s := batchSplitter{b: b, msg: -1}
	for t := newTerminators(); p < end; {
		q := t.next(b, p, end)
		if err := s.segment(p, q); err != nil {
			return nil, err
		}
		p = q + 1
	}
	if s.index == 0 {
		return nil, &ParseError{Offset: p, Err: ErrEmpty}
	}
	s.closeBatch()
	return &s.file, s.countErr
}

// SplitMessages returns every message in b, whether b is one message, several one after another, or a batch file.
// Each is a view of b, as in SplitBatch, whose errors it returns: on a count
// mismatch (ErrBatchCount) the messages are returned with the error, on any other
// error none are.
func SplitMessages(b []byte) ([][]byte, error) {
	f, err := SplitBatch(b)
	if f == nil {
		return nil, err
	}
	if len(f.Batches) == 1 {
		return f.Batches[0].Messages, err
	}
	n := 0
	for i := range f.Batches {
		n += len(f.Batches[i].Messages)
	}
	msgs := make([][]byte, 0, n)
	for i := range f.Batches {
		msgs = append(msgs, f.Batches[i].Messages...)
	}
	return msgs, err
}

// batchSplitter holds the state of SplitBatch between segments.
type batchSplitter struct {
	b        []byte
	file     File
	batch    Batch  // the open batch, valid while inBatch
	inBatch  bool   // a BHS or an MSH opened a batch that has not been closed
	msg      int    // start of the open message; -1 when none is open
	msgEnd   int    // end of the open message so far, terminator included
	lastMSH  []byte // the latest MSH, whose delimiters stand in for a header's
	index    int    // 1-based position of the current segment in b
	bts      int    // BTS segments seen, for error locations
	ended    bool   // FTS seen: nothing may follow
	countErr error  // the first count mismatch
}

// segment places the segment b[start:stop] in the file's structure.
func (s *batchSplitter) segment(start, stop int) error {
	seg := s.b[start:stop]
	if isBlank(seg) {
		return nil
	}
	s.index++
	if s.ended {
		return s.structureError(start, seg)
	}
	var id uint32
	if len(seg) >= 3 {
		id = packID3(seg)
	}
	switch id {
	case idFHS:
		if s.index != 1 {
			return s.structureError(start, seg)
		}
		s.file.Header = seg
	case idBHS:
		// A headerless batch ends where a BHS starts; one with a header must
		// first be closed by its BTS.
		if s.inBatch && s.batch.Header != nil {
			return s.structureError(start, seg)
		}
		s.closeBatch()
		s.batch, s.inBatch = Batch{Header: seg}, true
	case idBTS:
		if !s.inBatch || s.batch.Header == nil {
			return s.structureError(start, seg)
		}
		s.closeMessage()
		s.batch.Trailer = seg
		s.bts++
		s.checkCount(start, seg, fieldSeparator(s.batch.Header, s.lastMSH), len(s.batch.Messages), s.bts)
		s.closeBatch()
	case idFTS:
		if s.file.Header == nil {
			return s.structureError(start, seg)
		}
		s.closeBatch()
		s.file.Trailer = seg
		s.ended = true
		s.checkCount(start, seg, fieldSeparator(s.file.Header, s.lastMSH), len(s.file.Batches), 0)
	case idMSH:
		s.closeMessage()
		if !s.inBatch {
			s.batch, s.inBatch = Batch{}, true
		}
		s.msg, s.lastMSH = start, seg
		s.msgEnd = afterTerminator(s.b, stop)
	default:
		// Any other segment, well-formed or not, belongs to the open message;
		// Message.Parse judges it.
		if s.msg < 0 && s.index == 1 {
			return &ParseError{Index: 1, Offset: start, Err: ErrNoHeader}
		}
		if s.msg < 0 {
			return s.structureError(start, seg)
		}
		s.msgEnd = afterTerminator(s.b, stop)
	}
	return nil
}

func (s *batchSplitter) closeMessage() {
	if s.msg >= 0 {
		s.batch.Messages = append(s.batch.Messages, s.b[s.msg:s.msgEnd])
		s.msg = -1
	}
}

func (s *batchSplitter) closeBatch() {
	s.closeMessage()
	if s.inBatch {
		s.file.Batches = append(s.file.Batches, s.batch)
		s.batch, s.inBatch = Batch{}, false
	}
}

// checkCount compares field 1 of seg, a BTS or FTS starting at offset start, with
// want, and records the first mismatch. An absent or empty count is not checked.
func (s *batchSplitter) checkCount(start int, seg []byte, sep byte, want, occurrence int) {
	if s.countErr != nil || len(seg) <= 3 {
		return
	}
	// A trailer that does not use its header's separator has no readable count,
	// which is no better than a wrong one.
	ok := seg[3] == sep
	if ok {
		f := seg[4:]
		f = bytes.TrimSpace(f[:indexFrom(f, 0, len(f), sep)])
		n, isNum := parseCount(f)
		ok = len(f) == 0 || isNum && n == want
	}
	if !ok {
		s.countErr = &ParseError{
			Index:    s.index,
			Offset:   start + 4,
			Location: Location{Segment: string(seg[:3]), Occurrence: occurrence, Field: 1},
			Err:      ErrBatchCount,
		}
	}
}

func (s *batchSplitter) structureError(start int, seg []byte) error {
	e := &ParseError{Index: s.index, Offset: start, Err: ErrBatch}
	// Only a well-formed id is named: anything else may be a fragment of a value.
	if len(seg) >= 3 && isSegmentID(seg[0], seg[1], seg[2]) {
		e.Segment = string(seg[:3])
	}
	return e
}

// fieldSeparator returns the field separator that header declares, or failing that
// fallback (an MSH), or failing both the usual '|'.
func fieldSeparator(header, fallback []byte) byte {
	if d, _, ok := readDelimiters(header); ok {
		return d.Field
	}
	if d, _, ok := readDelimiters(fallback); ok {
		return d.Field
	}
	return DefaultDelimiters.Field
}

// parseCount reads b as a decimal count. Nine digits keep it clear of overflow and are
// more messages than any batch holds.
func parseCount(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 9 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// terminators finds segment terminators: every CR and every LF ends a segment, so
// a CRLF leaves an empty segment between its two bytes. Each kind is searched for
// again only once passed, so input that uses one kind pays a single scan for the
// other. Message.Parse and SplitBatch share it so they agree on every framing.
type terminators struct{ cr, lf int }

func newTerminators() terminators { return terminators{-1, -1} }

// next returns the end of the segment that starts at p: the index of the first CR or
// LF in b[p:end], or end when there is none.
func (t *terminators) next(b []byte, p, end int) int {
	if t.cr < p {
		t.cr = indexByteFrom(b, p, end, '\r')
	}
	if t.lf < p {
		t.lf = indexByteFrom(b, p, end, '\n')
	}
	return min(t.cr, t.lf)
}

// indexByteFrom returns the index of the first c in b[p:end], or end when there is
// none. Unlike indexFrom it is meant for long spans: a whole message or file.
func indexByteFrom(b []byte, p, end int, c byte) int {
	i := bytes.IndexByte(b[p:end], c)
	if i < 0 {
		return end
	}
	return p + i
}

// afterTerminator returns the end of the segment that stops at q, with its CR, LF or
// CRLF terminator when it has one.
func afterTerminator(b []byte, q int) int {
	if q < len(b) {
		switch b[q] {
		case '\r':
			if q+1 < len(b) && b[q+1] == '\n' {
				return q + 2
			}
			return q + 1
		case '\n':
			return q + 1
		}
	}
	return q
}
