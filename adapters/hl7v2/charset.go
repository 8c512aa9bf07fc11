package hl7v2

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"unicode/utf8"

	"golang.org/x/text/encoding/charmap"
)

// charsetKind says how the bytes of a character set become UTF-8.
type charsetKind uint8

const (
	// charsetUndeclared is an empty MSH-18. The standard says ASCII, but in practice
	// it is UTF-8 or a legacy code page, so UTF-8 is accepted without complaint.
	charsetUndeclared charsetKind = iota
	charsetASCII
	charsetUTF8
	charsetSingleByte // one byte per character, mapped by a charmap
)

type charset struct {
	kind charsetKind
	cm   *charmap.Charmap // for charsetSingleByte
}

// charsetNames are the MSH-18 values (HL7 table 0211) this package decodes, each
// with its ISO-IR registration alias, upper-case for equalFoldASCII. The UTF-16 and
// UTF-32 forms are left out on purpose: ER7 delimiters are single bytes, so a message
// in them could not have been split in the first place.
var charsetNames = [...]struct {
	name string
	set  charset
}{
	{"ASCII", charset{kind: charsetASCII}},
	{"ISO IR6", charset{kind: charsetASCII}},
	{"8859/1", charset{charsetSingleByte, charmap.ISO8859_1}},
	{"ISO IR100", charset{charsetSingleByte, charmap.ISO8859_1}},
	{"8859/2", charset{charsetSingleByte, charmap.ISO8859_2}},
	{"ISO IR101", charset{charsetSingleByte, charmap.ISO8859_2}},
	{"8859/3", charset{charsetSingleByte, charmap.ISO8859_3}},
	{"ISO IR109", charset{charsetSingleByte, charmap.ISO8859_3}},
	{"8859/4", charset{charsetSingleByte, charmap.ISO8859_4}},
	{"ISO IR110", charset{charsetSingleByte, charmap.ISO8859_4}},
	{"8859/5", charset{charsetSingleByte, charmap.ISO8859_5}},
	{"ISO IR144", charset{charsetSingleByte, charmap.ISO8859_5}},
	{"8859/6", charset{charsetSingleByte, charmap.ISO8859_6}},
	{"ISO IR127", charset{charsetSingleByte, charmap.ISO8859_6}},
	{"8859/7", charset{charsetSingleByte, charmap.ISO8859_7}},
	{"ISO IR126", charset{charsetSingleByte, charmap.ISO8859_7}},
	{"8859/8", charset{charsetSingleByte, charmap.ISO8859_8}},
	{"ISO IR138", charset{charsetSingleByte, charmap.ISO8859_8}},
	{"8859/9", charset{charsetSingleByte, charmap.ISO8859_9}},
	{"ISO IR148", charset{charsetSingleByte, charmap.ISO8859_9}},
	{"8859/15", charset{charsetSingleByte, charmap.ISO8859_15}},
	{"UNICODE UTF-8", charset{kind: charsetUTF8}},
	{"UTF-8", charset{kind: charsetUTF8}},
	{"ISO IR192", charset{kind: charsetUTF8}},
}

// lookupCharset finds the character set an MSH-18 value names, ignoring case and
// surrounding spaces. It does not allocate unless the name is unknown.
func lookupCharset(name []byte) (charset, error) {
	name = bytes.TrimSpace(name)
	if len(name) == 0 {
		return charset{kind: charsetUndeclared}, nil
	}
	for i := range charsetNames {
		if equalFoldASCII(name, charsetNames[i].name) {
			return charsetNames[i].set, nil
		}
	}
	// The name is configuration, not patient data, but MSH-18 may hold anything
	// when a sender's fields are out of place: quote it, and not all of it.
	if len(name) > 32 {
		name = name[:32]
	}
	return charset{}, fmt.Errorf("hl7v2: character set %q: %w", name, ErrUnknownCharset)
}

// equalFoldASCII reports whether b equals upper, an upper-case ASCII name, ignoring
// ASCII case.
func equalFoldASCII(b []byte, upper string) bool {
	if len(b) != len(upper) {
		return false
	}
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != upper[i] {
			return false
		}
	}
	return true
}

// DecodeText appends src, text in the character set named by charset (an MSH-18 value), to buf[:0] as UTF-8 and returns it.
// It returns src itself, with no copy, when src is already valid UTF-8 text of that set (e.g. pure ASCII).
// buf must not overlap src; a cap(buf) of three times len(src) is always enough.
//
// Names are those of HL7 table 0211, matched ignoring case and surrounding spaces:
// ASCII (ISO IR6), 8859/1 to 8859/9 (ISO IR100, IR101, IR109, IR110, IR144, IR127,
// IR126, IR138, IR148), 8859/15, and UNICODE UTF-8 (UTF-8, ISO IR192). An empty
// charset means none was declared. Any other name, the UTF-16 and UTF-32 forms
// included, returns nil and an error wrapping ErrUnknownCharset.
//
// Bytes that do not fit the declared set are read as Windows-1252, the usual
// real-world cause being Latin-1 from a legacy system, and reported with
// ErrCharsetMismatch: a warning, the text returned being the best reading. Declared
// UTF-8 that is not valid UTF-8, and non-ASCII bytes under a declared ASCII, are
// mismatches; but under a declared ASCII, or none, valid UTF-8 is kept as it is,
// with the warning only when ASCII was declared.
func DecodeText(buf, src, charset []byte) ([]byte, error) {
	cs, err := lookupCharset(charset)
	if err != nil {
		return nil, err
	}
	return cs.decode(buf[:0], src)
}

// decode appends src decoded to UTF-8 to dst, or returns src when it needs no
// decoding. dst must not overlap src.
func (cs charset) decode(dst, src []byte) ([]byte, error) {
	i := asciiPrefix(src)
	if i == len(src) {
		return src, nil
	}
	switch cs.kind {
	case charsetSingleByte:
		return decodeSingleByte(dst, src, i, cs.cm), nil
	case charsetUTF8, charsetUndeclared:
		if utf8.Valid(src[i:]) {
			return src, nil
		}
	case charsetASCII:
		if utf8.Valid(src[i:]) {
			return src, ErrCharsetMismatch
		}
	}
	return decodeSingleByte(dst, src, i, charmap.Windows1252), ErrCharsetMismatch
}

// decodeSingleByte appends src to dst, decoding with cm every byte from src[i],
// the first that is not ASCII. DecodeByte is a table lookup, unlike cm.NewDecoder,
// which would allocate on every call.
func decodeSingleByte(dst, src []byte, i int, cm *charmap.Charmap) []byte {
	dst = append(dst, src[:i]...)
	for _, c := range src[i:] {
		if c < utf8.RuneSelf {
			dst = append(dst, c)
			continue
		}
		dst = utf8.AppendRune(dst, cm.DecodeByte(c))
	}
	return dst
}

// asciiPrefix returns the length of the ASCII prefix of b. Most values are pure
// ASCII, so it tests eight bytes at a time, as indexFrom does.
func asciiPrefix(b []byte) int {
	i := 0
	for ; i+8 <= len(b); i += 8 {
		if binary.LittleEndian.Uint64(b[i:])&msb != 0 {
			break
		}
	}
	for i < len(b) && b[i] < utf8.RuneSelf {
		i++
	}
	return i
}

// Charset returns MSH-18's first repetition, raw; empty when absent.
// Later repetitions name the sets that ISO 2022 escapes switch to, for the \C..\ and
// \M..\ sequences that Unescape keeps as they stand.
func (m *Message) Charset() []byte {
	if len(m.segs) == 0 || m.segs[0].id != idMSH {
		return nil
	}
	return m.Segment(0).Field(18).Rep(1).Bytes()
}

// Text returns v unescaped (Delimiters.Unescape) and decoded to UTF-8 with m's character set (MSH-18).
// It returns v's bytes with no copy when neither is needed, and otherwise uses buf's memory: with cap(buf) big enough it does not allocate.
// Four times len(v.Bytes()) is always big enough.
//
// Escapes are decoded first, since \Xhh\ spells bytes in the message's character
// set. A malformed escape (ErrEscape) and bytes that do not fit the character set
// (ErrCharsetMismatch, see DecodeText) are warnings: the best text is returned with
// the first of them. An MSH-18 this package cannot decode returns nil and an error
// wrapping ErrUnknownCharset.
func (m *Message) Text(buf []byte, v Value) ([]byte, error) {
	cs, err := lookupCharset(m.Charset())
	if err != nil {
		return nil, err
	}
	u, escErr := v.Unescape(buf)
	dst := buf[:0]
	if !sameView(u, v.b) {
		// Unescape wrote into buf; decoding cannot run in place, since the UTF-8
		// may be longer than the bytes it comes from, so it goes after.
		dst = u[len(u):]
	}
	out, decErr := cs.decode(dst, u)
	if escErr != nil {
		return out, escErr
	}
	return out, decErr
}

// sameView reports whether a and b are the same view of the same memory.
func sameView(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}
