package hl7v2

// Unescape decodes the escape sequences of src, a raw value of a message with
// delimiters d. When src holds no escape character it is returned as it is, with no
// copy; otherwise the decoded bytes are appended to buf[:0] and that is returned.
//
// \F\ \S\ \T\ \R\ \E\ (and \P\ when a truncation character is declared) become the
// delimiter they name, \Xhh...\ the bytes it spells in hex, and the formatting
// command \.br\ a line feed. The highlighting, character-set and locally defined
// sequences (\H\ \N\ \Cxxyy\ \Mxxyyzz\ \Zxx\) and the other formatting commands are
// kept as they stand, for the receiver that knows them.
//
// A malformed sequence (unterminated, bad hex, unknown letter) is kept as it stands
// and reported with ErrEscape; the returned bytes are still the best decoding, so
// the error is a warning.
func (d Delimiters) Unescape(buf, src []byte) ([]byte, error) {
	return d.unescape(buf, src, false)
}

// UnescapeFormatted is Unescape but keeps every formatting command, \.br\ included,
// as it stands: for a receiver that renders formatted text (FT) itself.
func (d Delimiters) UnescapeFormatted(buf, src []byte) ([]byte, error) {
	return d.unescape(buf, src, true)
}

func (d Delimiters) unescape(buf, src []byte, keepFormatting bool) ([]byte, error) {
	e := d.Escape
	if !d.HasEscape() || indexFrom(src, 0, len(src), e) == len(src) {
		return src, nil
	}
	out := buf[:0]
	var warn error
	for i := 0; i < len(src); {
		c := src[i]
		if c != e {
			out = append(out, c)
			i++
			continue
		}
		j := indexFrom(src, i+1, len(src), e)
		if j == len(src) {
			// Unterminated: keep the rest as it stands.
			out = append(out, src[i:]...)
			return out, ErrEscape
		}
		seq := src[i+1 : j]
		var ok bool
		out, ok = d.decodeSequence(out, seq, keepFormatting)
		if !ok {
			out = append(out, src[i:j+1]...)
			warn = ErrEscape
		}
		i = j + 1
	}
	return out, warn
}

// decodeSequence appends the decoding of one escape sequence, the bytes between the
// escape characters. It reports false for a malformed sequence, appending nothing.
func (d Delimiters) decodeSequence(out, seq []byte, keepFormatting bool) ([]byte, bool) {
	if len(seq) == 0 {
		return out, false
	}
	if len(seq) == 1 {
		switch seq[0] {
		case 'F':
			return append(out, d.Field), true
		case 'S':
			return append(out, d.Component), true
		case 'T':
			return append(out, d.Subcomponent), true
		case 'R':
			return append(out, d.Repetition), true
		case 'E':
			return append(out, d.Escape), true
		case 'P':
			if d.Truncation != 0 {
				return append(out, d.Truncation), true
			}
			return out, false
		case 'H', 'N':
			return d.keep(out, seq), true
		}
		return out, false
	}
	switch seq[0] {
	case 'X':
		hex := seq[1:]
		if len(hex)%2 != 0 {
			return out, false
		}
		n := len(out)
		for k := 0; k < len(hex); k += 2 {
			hi, ok1 := unhex(hex[k])
			lo, ok2 := unhex(hex[k+1])
			if !ok1 || !ok2 {
				return out[:n], false
			}
			out = append(out, hi<<4|lo)
		}
		return out, true
	case 'C', 'M', 'Z':
		return d.keep(out, seq), true
	case '.':
		if !keepFormatting && string(seq) == ".br" {
			return append(out, '\n'), true
		}
		return d.keep(out, seq), true
	}
	return out, false
}

// keep appends seq back between escape characters.
func (d Delimiters) keep(out, seq []byte) []byte {
	out = append(out, d.Escape)
	out = append(out, seq...)
	return append(out, d.Escape)
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// AppendEscaped appends src to dst with every delimiter escaped (\F\ \S\ \T\ \R\ \E\,
// and \P\ for a declared truncation character) and CR and LF as \X0D\ and \X0A\, so
// the result can stand in a field of a message with delimiters d.
func (d Delimiters) AppendEscaped(dst, src []byte) []byte {
	for _, c := range src {
		var code byte
		switch {
		case c == d.Field:
			code = 'F'
		case c == d.Component && d.Component != d.Field:
			code = 'S'
		case c == d.Subcomponent && d.Subcomponent != d.Field:
			code = 'T'
		case c == d.Repetition && d.Repetition != d.Field:
			code = 'R'
		case c == d.Escape && d.HasEscape():
			code = 'E'
		case c == d.Truncation && d.Truncation != 0:
			code = 'P'
		case c == '\r' || c == '\n':
			if d.HasEscape() {
				dst = append(dst, d.Escape, 'X', '0', "0123456789ABCDEF"[c&0xf], d.Escape)
			} else {
				dst = append(dst, ' ')
			}
			continue
		default:
			dst = append(dst, c)
			continue
		}
		if !d.HasEscape() {
			// Nothing can say it: a delimiter in a message without an escape
			// character is replaced rather than allowed to split the value.
			dst = append(dst, ' ')
			continue
		}
		dst = append(dst, d.Escape, code, d.Escape)
	}
	return dst
}

// Unescape decodes v's escape sequences with Delimiters.Unescape.
func (v Value) Unescape(buf []byte) ([]byte, error) { return v.d.Unescape(buf, v.b) }
