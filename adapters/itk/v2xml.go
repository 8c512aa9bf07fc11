package itk

import (
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
)

// The HL7 v2 XML encoding names every part of a message after what it is:
//
//	<ADT_A01 xmlns="urn:hl7-org:v2xml">        message structure
//	  <MSH>                                    segment
//	    <MSH.9><MSG.1>ADT</MSG.1>...</MSH.9>   field 9, components by data type
//	  <ADT_A01.INSURANCE><IN1>...</IN1>        segment group
//	  <PID>
//	    <PID.3><CX.1>...</CX.1><CX.4><HD.1>NHS</HD.1></CX.4></PID.3>
//	    <PID.3>...</PID.3>                     a second repetition
//
// A field, component or subcomponent is numbered by what follows the last dot
// of its name; the data type before it is not checked, so Z-segments and local
// types convert as well. A segment is an element with a three-character id;
// any other element among segments is a group and is read through. Values are
// plain text; <escape V=".br"/> inside one is an HL7 escape sequence (\.br\).

var segmentIDRE = regexp.MustCompile(`^[A-Z][A-Z0-9]{2}$`)

// er7Delims are the delimiters of every message converted from XML: the
// standard ones, whatever MSH.1 and MSH.2 said.
var er7Delims = hl7v2.DefaultDelimiters

// utf8Charsets are the MSH-18 values that describe the converted message's
// bytes, which are UTF-8 (ASCII being a subset).
var utf8Charsets = []string{"", "UNICODE UTF-8", "UTF-8", "ISO IR192", "ASCII", "ISO IR6"}

// appendER7 converts an HL7 v2 XML message to ER7 with standard delimiters.
// Delimiters in values are escaped; MSH.1 and MSH.2 are written as |^~\&
// whatever they held; and an MSH-18 naming a character set other than UTF-8 is
// rewritten to UNICODE UTF-8, as that is what the bytes now are.
func appendER7(dst []byte, root *xmlElem) ([]byte, error) {
	if root.space != nsV2XML {
		return dst, v2Error("v2xml-namespace", root.local, "the message is not in the urn:hl7-org:v2xml namespace")
	}
	var segs []*xmlElem
	if err := collectSegments(root, root.local, &segs); err != nil {
		return dst, err
	}
	if len(segs) == 0 || segs[0].local != "MSH" {
		return dst, v2Error("v2xml-msh", root.local, "the message must start with an MSH segment")
	}
	for _, s := range segs {
		var err error
		if dst, err = appendSegment(dst, s, root.local+"/"+s.local); err != nil {
			return dst, err
		}
		dst = append(dst, '\r')
	}
	return dst, nil
}

func collectSegments(e *xmlElem, path string, segs *[]*xmlElem) error {
	if e.hasText() {
		return v2Error("v2xml-text", path, "text is not allowed between segments")
	}
	for _, k := range e.elems() {
		if k.space != nsV2XML {
			return v2Error("v2xml-namespace", path+"/"+k.local, "an element outside the urn:hl7-org:v2xml namespace")
		}
		if segmentIDRE.MatchString(k.local) {
			*segs = append(*segs, k)
			continue
		}
		if err := collectSegments(k, path+"/"+k.local, segs); err != nil {
			return err
		}
	}
	return nil
}

// position returns the number after the last dot of name, when name is
// prefix + "." + number and prefix is want (or any prefix, when want is "").
func position(name, want string) (int, bool) {
	i := strings.LastIndexByte(name, '.')
	if i <= 0 || want != "" && name[:i] != want {
		return 0, false
	}
	n, err := strconv.Atoi(name[i+1:])
	if err != nil || n < 1 || n > 9999 {
		return 0, false
	}
	return n, true
}

func appendSegment(dst []byte, seg *xmlElem, path string) ([]byte, error) {
	if seg.hasText() {
		return dst, v2Error("v2xml-text", path, "a segment holds fields, not text")
	}
	fields := map[int][]*xmlElem{}
	last := 0
	for _, f := range seg.elems() {
		n, ok := position(f.local, seg.local)
		if !ok || f.space != nsV2XML {
			return dst, v2Error("v2xml-field", path+"/"+f.local, "a segment's children must be its fields, named like PID.3")
		}
		fields[n] = append(fields[n], f)
		last = max(last, n)
	}
	dst = append(dst, seg.local...)
	first := 1
	if seg.local == "MSH" {
		// MSH-1 is the field separator itself and MSH-2 the encoding
		// characters: both are fixed by the delimiters this writes.
		dst = append(dst, er7Delims.Field)
		dst = er7Delims.AppendEncodingCharacters(dst)
		first = 3
		// The encoding characters end where a field separator follows them;
		// an MSH without MSH-3 still needs that one.
		last = max(last, 3)
	}
	for n := first; n <= last; n++ {
		dst = append(dst, er7Delims.Field)
		if seg.local == "MSH" && n == 18 && len(fields[n]) > 0 {
			dst = appendCharset(dst, fields[n])
			continue
		}
		for r, rep := range fields[n] {
			if r > 0 {
				dst = append(dst, er7Delims.Repetition)
			}
			var err error
			if dst, err = appendValue(dst, rep, 1, path+"/"+rep.local); err != nil {
				return dst, err
			}
		}
	}
	return dst, nil
}

// appendCharset writes MSH-18, rewritten to UNICODE UTF-8 unless it already
// describes UTF-8 bytes.
func appendCharset(dst []byte, reps []*xmlElem) []byte {
	first := strings.ToUpper(strings.TrimSpace(reps[0].text()))
	if len(reps) == 1 && len(reps[0].elems()) == 0 && slices.Contains(utf8Charsets, first) {
		return er7Delims.AppendEscaped(dst, []byte(reps[0].text()))
	}
	return append(dst, "UNICODE UTF-8"...)
}

// appendValue writes a field repetition (level 1), component (level 2) or
// subcomponent (level 3): text, or numbered parts joined by the next
// delimiter down.
func appendValue(dst []byte, e *xmlElem, level int, path string) ([]byte, error) {
	if isLeaf(e) {
		return appendLeaf(dst, e, path)
	}
	if level == 3 {
		return dst, v2Error("v2xml-depth", path, "a subcomponent cannot have parts of its own")
	}
	if e.hasText() {
		return dst, v2Error("v2xml-text", path, "a value has both text and parts")
	}
	sep := er7Delims.Component
	if level == 2 {
		sep = er7Delims.Subcomponent
	}
	parts := map[int]*xmlElem{}
	last := 0
	for _, p := range e.elems() {
		n, ok := position(p.local, "")
		if !ok || p.space != nsV2XML {
			return dst, v2Error("v2xml-component", path+"/"+p.local, "a part must be named like CX.1")
		}
		if parts[n] != nil {
			return dst, v2Error("v2xml-component-once", path+"/"+p.local, "a part appears more than once")
		}
		parts[n] = p
		last = max(last, n)
	}
	for n := 1; n <= last; n++ {
		if n > 1 {
			dst = append(dst, sep)
		}
		if p := parts[n]; p != nil {
			var err error
			if dst, err = appendValue(dst, p, level+1, path+"/"+p.local); err != nil {
				return dst, err
			}
		}
	}
	return dst, nil
}

// isLeaf reports whether e is a value: text and escape elements only.
func isLeaf(e *xmlElem) bool {
	for _, k := range e.elems() {
		if !k.is(nsV2XML, "escape") {
			return false
		}
	}
	return true
}

func appendLeaf(dst []byte, e *xmlElem, path string) ([]byte, error) {
	for _, k := range e.kids {
		if k.elem == nil {
			dst = er7Delims.AppendEscaped(dst, []byte(k.text))
			continue
		}
		v, _ := k.elem.attr("V")
		if v == "" || strings.ContainsAny(v, "|^~\\&\r\n") {
			return dst, v2Error("v2xml-escape", path+"/escape", "an escape element needs a V without delimiters")
		}
		dst = append(dst, er7Delims.Escape)
		dst = append(dst, v...)
		dst = append(dst, er7Delims.Escape)
	}
	return dst, nil
}

func v2Error(rule, path, text string) *Error {
	return invalid(rule, "DE0012", path, text, ErrPayload)
}
