// Package hl7v2 reads and writes HL7 version 2 messages in their traditional
// encoding (ER7, "pipe and hat"), without allocating on the hot path.
//
// # The format
//
// A message is a sequence of segments. Each segment is one line, ended by a carriage
// return (CR); this package also accepts LF and CRLF, mixed within a message, and a
// last segment with no terminator. A segment starts with a three-character id (MSH,
// PID, OBX, or a Z-segment such as ZPI) followed by its fields, separated by the
// field separator:
//
//	MSH|^~\&|PAS|RX1|SPINEBRIDGE|NHS|20261121093015+0000||ADT^A01^ADT_A01|MSG0001|P|2.5.1
//	PID|1||9990000018^^^NHS^NH~RX1A123456^^^RX1^MR||THOMPSON^ELEANOR^^^MRS
//	PV1|1|I|RX1W12^BAY 3^BED 4
//
// The first segment, MSH, declares the delimiters. Its fourth byte is the field
// separator (MSH-1) and the characters up to the next field separator are the
// encoding characters (MSH-2): component, repetition, escape and subcomponent
// separators, and from HL7 v2.7 an optional truncation character. Nothing in this
// package assumes the usual |^~\&; a message may as well start MSH#$*@%.
//
// A field may repeat (separated by ~), each repetition may have components (^), and
// each component subcomponents (&). So in the PID above, field 3 has two
// repetitions, and the first repetition's fourth component is NHS. Because MSH-1 is
// the separator itself, MSH fields are numbered one ahead of their position after
// the split: MSH-2 is the encoding characters, MSH-3 the sending application. FHS
// and BHS, the batch headers, follow the same rule.
//
// A delimiter inside a value is written as an escape sequence: \F\ \S\ \T\ \R\ \E\
// for the field, component, subcomponent and repetition separators and the escape
// character, \Xhh..\ for bytes in hex, \.br\ for a line break. Raw values keep their
// escapes; Unescape decodes them into a caller's buffer. MSH-18 names the character
// set of the message's bytes; Message.Text decodes a value to UTF-8.
//
// # Paths
//
// One path syntax addresses any part of a message, here and in the command line,
// routes, mappings and error messages:
//
//	SEG[k]-F[r].C.S
//
// SEG is the segment id, k its occurrence, F the field number (HL7 numbering), r the
// field repetition, C the component and S the subcomponent, all 1-based. [k] and [r]
// may be left out and mean the first; .C and .S may be left out and mean the whole
// repetition or component. Examples: PID-5.1 (family name), PID-3[2].1 (the second
// identifier), OBX[3]-5 (the third observation's value), MSH-9.2 (trigger event).
// A path with no field, such as ZPI or OBX[2], addresses a whole segment.
//
// # Using the parser
//
// Parse indexes a message held in a []byte: it records where each segment starts and
// ends and splits a segment's fields only when one is first read, and then only as
// far as needed. Accessors return views into the caller's buffer, valid until the
// next Parse. A Message value reused across Parse calls keeps its memory, so a warm
// Message parses and reads with no heap allocation:
//
//	var m hl7v2.Message
//	for _, msg := range msgs {
//		if err := m.Parse(msg); err != nil { ... }
//		family := m.Get(familyPath).Bytes()
//		for obx := range m.All("OBX") {
//			value := obx.Field(5)
//			...
//		}
//	}
//
// Errors are *ParseError values that say where the problem is (segment position,
// path, byte offset) around sentinel errors for errors.Is. They never include the
// bytes found there, which may be patient data.
//
// Batches (FHS, BHS, BTS, FTS) are split into messages by SplitBatch, and AppendACK
// builds the acknowledgement of a message into a caller's buffer.
package hl7v2
