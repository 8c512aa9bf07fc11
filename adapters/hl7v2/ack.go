package hl7v2

import (
	"errors"
	"strconv"
	"time"
)

// AckCode is MSA-1, the acknowledgment code (HL7 table 0008).
type AckCode string

// Acknowledgment codes. The A codes answer in original mode, and in enhanced mode
// at the application level; the C codes are enhanced-mode accept (commit)
// acknowledgments.
const (
	AA AckCode = "AA" // application accept
	AE AckCode = "AE" // application error
	AR AckCode = "AR" // application reject
	CA AckCode = "CA" // commit accept
	CE AckCode = "CE" // commit error
	CR AckCode = "CR" // commit reject
)

// ErrorCode is an HL7 table 0357 message error condition code.
type ErrorCode int

// Table 0357 codes: 0 for success, 1xx for errors in the message as sent, 2xx for
// messages the receiving application cannot or will not process.
const (
	CodeAccepted                 ErrorCode = 0
	CodeSegmentSequence          ErrorCode = 100
	CodeRequiredFieldMissing     ErrorCode = 101
	CodeDataType                 ErrorCode = 102
	CodeTableValueNotFound       ErrorCode = 103
	CodeValueTooLong             ErrorCode = 104
	CodeUnsupportedMessageType   ErrorCode = 200
	CodeUnsupportedEventCode     ErrorCode = 201
	CodeUnsupportedProcessingID  ErrorCode = 202
	CodeUnsupportedVersionID     ErrorCode = 203
	CodeUnknownKeyIdentifier     ErrorCode = 204
	CodeDuplicateKeyIdentifier   ErrorCode = 205
	CodeApplicationRecordLocked  ErrorCode = 206
	CodeApplicationInternalError ErrorCode = 207
)

// Text returns the table 0357 display text of c, e.g. "Data type error", or "" for
// a code outside the table.
func (c ErrorCode) Text() string {
	switch c {
	case CodeAccepted:
		return "Message accepted"
	case CodeSegmentSequence:
		return "Segment sequence error"
	case CodeRequiredFieldMissing:
		return "Required field missing"
	case CodeDataType:
		return "Data type error"
	case CodeTableValueNotFound:
		return "Table value not found"
	case CodeValueTooLong:
		return "Value too long"
	case CodeUnsupportedMessageType:
		return "Unsupported message type"
	case CodeUnsupportedEventCode:
		return "Unsupported event code"
	case CodeUnsupportedProcessingID:
		return "Unsupported processing id"
	case CodeUnsupportedVersionID:
		return "Unsupported version id"
	case CodeUnknownKeyIdentifier:
		return "Unknown key identifier"
	case CodeDuplicateKeyIdentifier:
		return "Duplicate key identifier"
	case CodeApplicationRecordLocked:
		return "Application record locked"
	case CodeApplicationInternalError:
		return "Application internal error"
	}
	return ""
}

// Severity is HL7 table 0516, ERR-4: 'E' error (the default when zero), 'W'
// warning, 'I' information, 'F' fatal error.
type Severity byte

// AckError is one error an ACK reports, written as one ERR segment.
type AckError struct {
	Code     ErrorCode
	Severity Severity // zero, or a value outside table 0516, is written as 'E'
	// Location is where in the inbound message the error is; zero parts are left
	// out, and a named segment with no occurrence is taken as its first.
	Location Location
	// Diagnostic is ERR-7, text of our own for the support team. It must never hold
	// a value from the message, which may be patient data.
	Diagnostic string
}

// AckOptions says how AppendACK builds an acknowledgment.
type AckOptions struct {
	Code      AckCode   // MSA-1; AA when empty
	ControlID string    // MSH-10 of the ACK (the caller makes it unique)
	Time      time.Time // MSH-7; time.Now() when zero
	// Text is the MSA-3 text message (receivers before v2.5) and the ERR-8 user
	// message (v2.5 and later); it may be empty.
	Text   string
	Errors []AckError
}

// ackTimeLayout is MSH-7 to the second with a numeric zone, the precision every
// version since 2.1 accepts.
const ackTimeLayout = "20060102150405-0700"

// ackStyle is which ERR segment layout a receiver understands.
type ackStyle uint8

const (
	// ackBoth is for a receiver whose version is unknown: MSA-3, ERR-1 and ERR-2..8
	// together, so a reader of either layout finds what it looks for.
	ackBoth ackStyle = iota
	// ackLegacy is v2.1 to v2.4: MSA-3 and ERR-1 only.
	ackLegacy
	// ackModern is v2.5 and later, where MSA-3 and ERR-1 are withdrawn in favour of
	// ERR-2..8.
	ackModern
)

// AppendACK appends to dst an acknowledgment of in, built as o says, and returns
// it. Every segment, the last included, ends with CR.
//
// in may hold only part of a message: Message.Parse keeps the segments read before
// an error, so a message with a sound MSH can be answered whatever follows it. The
// ACK echoes in's delimiters, swaps its sending and receiving application and
// facility, copies MSH-11, MSH-12 and MSH-18 and answers MSH-10 in MSA-2. When in
// has no MSH (nil, empty, or unparseable delimiters) the ACK uses DefaultDelimiters
// and leaves those fields empty. in's MSH-12.1 decides the layout of the error
// segments: ERR-1 for v2.1 to v2.4, ERR-2 to ERR-8 for v2.5 and later, and both
// when the version is missing or unknown.
//
// AppendACK does not allocate when dst has room for the ACK. It reads in's MSH,
// which the first time may grow in's index as any read does, so it must not run
// concurrently with other use of in. A nil o is taken as a zero AckOptions.
func AppendACK(dst []byte, in *Message, o *AckOptions) []byte {
	if o == nil {
		o = &AckOptions{}
	}
	var msh Segment
	d := DefaultDelimiters
	if in != nil {
		if s, ok := in.Find("MSH", 1); ok {
			msh, d = s, in.Delimiters()
		}
	}
	style := ackStyleFor(msh.Field(12).Comp(1).Bytes())
	f := d.Field

	start := len(dst)
	dst = append(dst, "MSH"...)
	dst = append(dst, f)
	dst = d.AppendEncodingCharacters(dst)
	for _, n := range [...]int{5, 6, 3, 4} {
		dst = append(dst, f)
		dst = append(dst, msh.Field(n).Bytes()...)
	}
	dst = append(dst, f)
	t := o.Time
	if t.IsZero() {
		t = time.Now()
	}
	dst = t.AppendFormat(dst, ackTimeLayout)
	dst = append(dst, f, f)
	dst = append(dst, "ACK"...)
	if trigger := msh.Field(9).Comp(2).Bytes(); len(trigger) > 0 {
		dst = append(dst, d.Component)
		dst = append(dst, trigger...)
		dst = append(dst, d.Component)
		dst = append(dst, "ACK"...)
	}
	dst = append(dst, f)
	dst = appendEscapedString(dst, d, o.ControlID)
	dst = append(dst, f)
	dst = append(dst, msh.Field(11).Bytes()...)
	dst = append(dst, f)
	dst = append(dst, msh.Field(12).Bytes()...)
	// MSH-15 and MSH-16 stay empty so that no receiver acknowledges the ACK itself;
	// MSH-13, MSH-14 and MSH-17 describe the inbound exchange, not this reply.
	dst = append(dst, f, f, f, f, f, f)
	dst = append(dst, msh.Field(18).Bytes()...)
	dst = endSegment(dst, start, f)

	start = len(dst)
	dst = append(dst, "MSA"...)
	dst = append(dst, f)
	code := o.Code
	if code == "" {
		code = AA
	}
	dst = appendEscapedString(dst, d, string(code))
	dst = append(dst, f)
	dst = append(dst, msh.Field(10).Bytes()...)
	if style != ackModern {
		dst = append(dst, f)
		dst = appendEscapedString(dst, d, o.Text)
	}
	dst = endSegment(dst, start, f)

	for i := range o.Errors {
		dst = appendERR(dst, d, style, &o.Errors[i], o.Text)
	}
	return dst
}

// appendERR appends the ERR segment that reports e in the given style.
func appendERR(dst []byte, d Delimiters, style ackStyle, e *AckError, text string) []byte {
	f := d.Field
	start := len(dst)
	dst = append(dst, "ERR"...)
	dst = append(dst, f)
	if style != ackModern {
		dst = appendELD(dst, d, e)
	}
	if style == ackLegacy {
		return endSegment(dst, start, f)
	}
	dst = append(dst, f)
	dst = appendERL(dst, d, e.Location)
	dst = append(dst, f)
	dst = strconv.AppendInt(dst, int64(e.Code), 10)
	dst = append(dst, d.Component)
	dst = append(dst, e.Code.Text()...)
	dst = append(dst, d.Component)
	dst = append(dst, "HL70357"...)
	dst = append(dst, f)
	dst = append(dst, severityOrError(e.Severity))
	dst = append(dst, f, f, f)
	dst = appendEscapedString(dst, d, e.Diagnostic)
	dst = append(dst, f)
	dst = appendEscapedString(dst, d, text)
	return endSegment(dst, start, f)
}

// appendELD appends ERR-1 as the ELD of v2.1 to v2.4: segment, occurrence, field,
// then the table 0357 code as a CE whose parts are subcomponents.
func appendELD(dst []byte, d Delimiters, e *AckError) []byte {
	l := e.Location
	dst = appendEscapedString(dst, d, l.Segment)
	dst = append(dst, d.Component)
	if occ := occurrence(l); occ > 0 {
		dst = strconv.AppendInt(dst, int64(occ), 10)
	}
	dst = append(dst, d.Component)
	if l.Field > 0 {
		dst = strconv.AppendInt(dst, int64(l.Field), 10)
	}
	dst = append(dst, d.Component)
	dst = strconv.AppendInt(dst, int64(e.Code), 10)
	// Without a subcomponent separator the CE cannot be split, so only its first
	// part, the code the receiver acts on, can be said.
	if d.Subcomponent != d.Field {
		dst = append(dst, d.Subcomponent)
		dst = append(dst, e.Code.Text()...)
		dst = append(dst, d.Subcomponent)
		dst = append(dst, "HL70357"...)
	}
	return dst
}

// appendERL appends l as the ERL of v2.5 and later, ERR-2, leaving out trailing
// parts that are empty.
func appendERL(dst []byte, d Delimiters, l Location) []byte {
	nums := [...]int{occurrence(l), l.Field, l.Repetition, l.Component, l.Sub}
	last := -1
	for i, n := range nums {
		if n > 0 {
			last = i
		}
	}
	if l.Segment == "" && last < 0 {
		return dst
	}
	dst = appendEscapedString(dst, d, l.Segment)
	for _, n := range nums[:last+1] {
		dst = append(dst, d.Component)
		if n > 0 {
			dst = strconv.AppendInt(dst, int64(n), 10)
		}
	}
	return dst
}

// occurrence returns the occurrence to report for l: a named segment is at least
// its first occurrence, so receivers that require the number get one.
func occurrence(l Location) int {
	if l.Occurrence <= 0 && l.Segment != "" {
		return 1
	}
	return l.Occurrence
}

func severityOrError(s Severity) byte {
	switch s {
	case 'E', 'W', 'I', 'F':
		return byte(s)
	}
	return 'E'
}

// endSegment drops the field separators after the last non-empty field of the
// segment that starts at dst[start:] and ends it with CR. Older receivers count
// fields, so trailing empty ones are left out as the encoding rules allow; no
// field ends in a field separator (raw fields were split on it, others are
// escaped), so only empty fields are dropped.
func endSegment(dst []byte, start int, sep byte) []byte {
	end := len(dst)
	for end > start+4 && dst[end-1] == sep {
		end--
	}
	return append(dst[:end], '\r')
}

// appendEscapedString is Delimiters.AppendEscaped for a string. Escaping works a
// byte at a time, so the string is passed through a stack buffer in pieces rather
// than converted to a []byte, which would allocate for long text.
func appendEscapedString(dst []byte, d Delimiters, s string) []byte {
	var buf [64]byte
	for len(s) > 0 {
		n := copy(buf[:], s)
		dst = d.AppendEscaped(dst, buf[:n])
		s = s[n:]
	}
	return dst
}

// ackStyleFor returns the ERR layout for a receiver of the given MSH-12.1.
func ackStyleFor(version []byte) ackStyle {
	switch string(version) {
	case "2.1", "2.2", "2.3", "2.3.1", "2.4":
		return ackLegacy
	}
	// 2.5 and every release since, including ones not yet published: "2." then a
	// minor number of at least 5, then any number of ".n" parts.
	if len(version) < 3 || version[0] != '2' || version[1] != '.' {
		return ackBoth
	}
	minor, i := 0, 2
	for i < len(version) && isDigit(version[i]) && minor < 1000 {
		minor = minor*10 + int(version[i]-'0')
		i++
	}
	if i == 2 || minor < 5 {
		return ackBoth
	}
	for i < len(version) {
		if version[i] != '.' || i+1 == len(version) || !isDigit(version[i+1]) {
			return ackBoth
		}
		for i++; i < len(version) && isDigit(version[i]); i++ {
		}
	}
	return ackModern
}

// ackErrorCodes maps the package's sentinel errors to the table 0357 code an ACK
// reports for them. Each sentinel's own text, which never holds a value, is the
// diagnostic.
var ackErrorCodes = [...]struct {
	err  error
	code ErrorCode
}{
	{ErrEmpty, CodeSegmentSequence},
	{ErrNoHeader, CodeSegmentSequence},
	{ErrSegmentID, CodeSegmentSequence},
	{ErrDelimiters, CodeDataType},
	{ErrTooLarge, CodeApplicationInternalError},
	{ErrBatch, CodeApplicationInternalError},
	{ErrBatchCount, CodeApplicationInternalError},
	{ErrUnknownCharset, CodeApplicationInternalError},
	{ErrCharsetMismatch, CodeApplicationInternalError},
	{ErrEscape, CodeApplicationInternalError},
	{ErrPath, CodeApplicationInternalError},
}

// ackInternalDiagnostic is the diagnostic for errors from outside this package,
// whose text is not ours to vouch for.
const ackInternalDiagnostic = "internal error"

// AckErrorFor turns a parse error (a *ParseError from Message.Parse) into the
// AckError an ACK reports for it: a segment sequence error (100) for ErrEmpty,
// ErrNoHeader and ErrSegmentID, a data type error (102) at MSH-2 for ErrDelimiters,
// and an application internal error (207) for anything else, nil included. The
// location is the ParseError's, and the diagnostic is fixed text named after the
// sentinel, never the error's own text, so no value from the message can reach the
// ACK.
func AckErrorFor(err error) AckError {
	a := AckError{
		Code:       CodeApplicationInternalError,
		Severity:   'E',
		Diagnostic: ackInternalDiagnostic,
	}
	var pe *ParseError
	if errors.As(err, &pe) {
		a.Location = pe.Location
	}
	for _, s := range ackErrorCodes {
		if errors.Is(err, s.err) {
			a.Code, a.Diagnostic = s.code, s.err.Error()
			break
		}
	}
	if errors.Is(err, ErrDelimiters) {
		a.Location = Location{Segment: "MSH", Field: 2}
	}
	return a
}
