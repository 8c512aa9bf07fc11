package hl7v2

import (
	"errors"
	"strconv"
)

// Sentinel errors. A *ParseError wraps one of them; callers branch with errors.Is.
var (
	// ErrEmpty reports input with no segment in it.
	ErrEmpty = errors.New("empty message")
	// ErrNoHeader reports a message whose first segment is not MSH.
	ErrNoHeader = errors.New("message does not start with MSH")
	// ErrDelimiters reports an MSH-1/MSH-2 pair that cannot define delimiters.
	ErrDelimiters = errors.New("invalid delimiters in MSH-1/MSH-2")
	// ErrSegmentID reports a segment whose first three bytes are not a segment id
	// followed by the field separator.
	ErrSegmentID = errors.New("invalid segment id")
	// ErrTooLarge reports a message too large to index (2 GiB and over).
	ErrTooLarge = errors.New("message too large")
	// ErrBatch reports a batch or file whose header and trailer segments do not nest.
	ErrBatch = errors.New("malformed batch")
	// ErrBatchCount reports a BTS-1 or FTS-1 count that differs from what the batch holds.
	ErrBatchCount = errors.New("batch count mismatch")
	// ErrPath reports a path that does not follow SEG[k]-F[r].C.S.
	ErrPath = errors.New("invalid path")
	// ErrUnknownCharset reports an MSH-18 character set this package cannot decode.
	ErrUnknownCharset = errors.New("unknown character set")
	// ErrCharsetMismatch is a warning: the bytes do not match the declared character set.
	// The decoded text is still returned, with the best reading of the bytes.
	ErrCharsetMismatch = errors.New("text does not match the declared character set")
	// ErrEscape is a warning: an escape sequence was unterminated or malformed and was
	// kept as it stood. The decoded text is still returned.
	ErrEscape = errors.New("malformed escape sequence")
)

// Location names a place in a message in the package's path syntax, SEG[k]-F[r].C.S.
// Zero parts are left out of its string form.
type Location struct {
	Segment    string // segment id, e.g. "PID"; empty when the id itself is unreadable
	Occurrence int    // 1-based occurrence of Segment in the message; 0 when unknown
	Field      int    // 1-based field number; 0 for the whole segment
	Repetition int    // 1-based repetition; 0 when not relevant
	Component  int    // 1-based component; 0 when not relevant
	Sub        int    // 1-based subcomponent; 0 when not relevant
}

// String formats l in path syntax, e.g. "PID[2]-3[1].1".
func (l Location) String() string { return string(l.AppendTo(nil)) }

// AppendTo appends l in path syntax to dst.
func (l Location) AppendTo(dst []byte) []byte {
	dst = append(dst, l.Segment...)
	if l.Occurrence > 0 {
		dst = append(dst, '[')
		dst = strconv.AppendInt(dst, int64(l.Occurrence), 10)
		dst = append(dst, ']')
	}
	if l.Field == 0 {
		return dst
	}
	dst = append(dst, '-')
	dst = strconv.AppendInt(dst, int64(l.Field), 10)
	if l.Repetition > 0 {
		dst = append(dst, '[')
		dst = strconv.AppendInt(dst, int64(l.Repetition), 10)
		dst = append(dst, ']')
	}
	if l.Component > 0 {
		dst = append(dst, '.')
		dst = strconv.AppendInt(dst, int64(l.Component), 10)
		if l.Sub > 0 {
			dst = append(dst, '.')
			dst = strconv.AppendInt(dst, int64(l.Sub), 10)
		}
	}
	return dst
}

// ParseError reports where a message is malformed. Its text names the place
// (segment number, path, byte offset) and never the value found there, which may be
// patient data.
type ParseError struct {
	Index  int // 1-based position of the segment in the message; 0 when not tied to one
	Offset int // byte offset into the input where the problem was found
	Location
	Err error // one of the package's sentinel errors
}

func (e *ParseError) Error() string {
	b := make([]byte, 0, 64)
	b = append(b, "hl7v2: "...)
	if e.Index > 0 {
		b = append(b, "segment "...)
		b = strconv.AppendInt(b, int64(e.Index), 10)
		if e.Segment != "" {
			b = append(b, " ("...)
			b = e.Location.AppendTo(b)
			b = append(b, ')')
		}
		b = append(b, ' ')
	}
	b = append(b, "at byte "...)
	b = strconv.AppendInt(b, int64(e.Offset), 10)
	b = append(b, ": "...)
	b = append(b, e.Err.Error()...)
	return string(b)
}

func (e *ParseError) Unwrap() error { return e.Err }
