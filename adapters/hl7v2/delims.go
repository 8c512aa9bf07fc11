package hl7v2

// Delimiters are the separators and escape character a message declares in MSH-1 and
// MSH-2 (or FHS-1/FHS-2, BHS-1/BHS-2 for batches).
//
// A separator the sender left out of MSH-2 is set to the field separator, which can
// never occur inside a field, so splitting on it finds nothing. Truncation is zero
// unless MSH-2 carries a fifth character (HL7 v2.7 and later).
type Delimiters struct {
	Field        byte // MSH-1, usually '|'
	Component    byte // usually '^'
	Repetition   byte // usually '~'
	Escape       byte // usually '\'
	Subcomponent byte // usually '&'
	Truncation   byte // usually '#'; 0 when not declared
}

// DefaultDelimiters are the delimiters HL7 recommends, |^~\&, without a truncation
// character.
var DefaultDelimiters = Delimiters{'|', '^', '~', '\\', '&', 0}

// HasEscape reports whether the delimiters declare an escape character.
func (d Delimiters) HasEscape() bool { return d.Escape != d.Field }

// AppendEncodingCharacters appends MSH-2 as d declares it: component, repetition,
// escape and subcomponent characters, then truncation when set, leaving out
// characters that were not declared.
func (d Delimiters) AppendEncodingCharacters(dst []byte) []byte {
	for _, c := range [...]byte{d.Component, d.Repetition, d.Escape, d.Subcomponent} {
		if c == d.Field {
			return dst
		}
		dst = append(dst, c)
	}
	if d.Truncation != 0 {
		dst = append(dst, d.Truncation)
	}
	return dst
}

// readDelimiters reads the delimiters from a header segment (MSH, FHS or BHS) whose
// id starts seg. It returns the delimiters and the length of MSH-2.
func readDelimiters(seg []byte) (Delimiters, int, bool) {
	var d Delimiters
	if len(seg) < 5 {
		return d, 0, false
	}
	d.Field = seg[3]
	if !isDelimiter(d.Field) {
		return d, 0, false
	}
	enc := seg[4:]
	n := 0
	for n < len(enc) && enc[n] != d.Field {
		n++
	}
	// MSH-2 must be followed by a field separator: a message that ends inside it is
	// truncated, whatever characters it got to.
	if n == 0 || n > 5 || n == len(enc) {
		return d, n, false
	}
	chars := [5]byte{d.Field, d.Field, d.Field, d.Field, 0}
	for i := 0; i < n; i++ {
		c := enc[i]
		if !isDelimiter(c) || c == d.Field {
			return d, n, false
		}
		for j := 0; j < i; j++ {
			if chars[j] == c {
				return d, n, false
			}
		}
		chars[i] = c
	}
	d.Component, d.Repetition, d.Escape, d.Subcomponent, d.Truncation = chars[0], chars[1], chars[2], chars[3], chars[4]
	return d, n, true
}

// isDelimiter reports whether c may serve as a delimiter: printable, not a letter,
// digit or space.
func isDelimiter(c byte) bool {
	switch {
	case c <= ' ' || c >= 0x7f:
		return false
	case c >= '0' && c <= '9', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		return false
	}
	return true
}
