package transforms

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"time"
)

// Conversions from HL7 v2 primitive values to FHIR primitive values. Each
// appends to dst and allocates beyond dst's growth only to say why it refuses
// a value, or to parse an unusual URI (see uriText).

var (
	errDate    = errors.New("not an HL7 date/time (YYYY[MM[DD[HH[MM[SS[.S...]]]]]][+/-ZZZZ])")
	errDecimal = errors.New("not a number")
	errBase64  = errors.New("not base64 data")
	errHex     = errors.New("not hexadecimal data")
)

// dtm is a parsed HL7 v2 DTM/TS value, keeping its precision.
type dtm struct {
	year, month, day, hour, min, sec int
	frac                             []byte // digits after the point, if any
	digits                           int    // 4, 6, 8, 10, 12 or 14: how much was given
	offset                           int    // seconds east of UTC, when hasOffset
	hasOffset                        bool
}

// parseDTM reads YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]. A TS's second
// component (the v2.3 "degree of precision") is not part of b.
func parseDTM(b []byte) (dtm, error) {
	var d dtm
	i := 0
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	digits := b[:i]
	switch len(digits) {
	case 4, 6, 8, 10, 12, 14:
	default:
		return d, errDate
	}
	d.digits = len(digits)
	num := func(s []byte) int {
		n := 0
		for _, c := range s {
			n = n*10 + int(c-'0')
		}
		return n
	}
	d.year = num(digits[:4])
	d.month, d.day = 1, 1
	if d.digits >= 6 {
		d.month = num(digits[4:6])
	}
	if d.digits >= 8 {
		d.day = num(digits[6:8])
	}
	if d.digits >= 10 {
		d.hour = num(digits[8:10])
	}
	if d.digits >= 12 {
		d.min = num(digits[10:12])
	}
	if d.digits >= 14 {
		d.sec = num(digits[12:14])
	}
	if i < len(b) && b[i] == '.' {
		if d.digits != 14 {
			return d, errDate
		}
		j := i + 1
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		if j == i+1 || j-i-1 > 9 {
			return d, errDate
		}
		d.frac = b[i+1 : j]
		i = j
	}
	if i < len(b) && (b[i] == '+' || b[i] == '-') {
		z := b[i+1:]
		if len(z) != 4 || !allDigits(z) {
			return d, errDate
		}
		h, m := num(z[:2]), num(z[2:])
		if h > 14 || m > 59 {
			return d, errDate
		}
		d.offset = h*3600 + m*60
		if b[i] == '-' {
			d.offset = -d.offset
		}
		d.hasOffset = true
		i += 5
	}
	if i != len(b) {
		return d, errDate
	}
	if d.month < 1 || d.month > 12 || d.day < 1 || d.day > daysIn(d.year, d.month) ||
		d.hour > 23 || d.min > 59 || d.sec > 59 {
		return d, errDate
	}
	return d, nil
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}

func daysIn(year, month int) int {
	return time.Date(year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// appendDate writes the date part at the precision given (FHIR date: YYYY,
// YYYY-MM or YYYY-MM-DD).
func (d dtm) appendDate(dst []byte) []byte {
	dst = appendPadded(dst, d.year, 4)
	if d.digits >= 6 {
		dst = appendPadded(append(dst, '-'), d.month, 2)
	}
	if d.digits >= 8 {
		dst = appendPadded(append(dst, '-'), d.day, 2)
	}
	return dst
}

// appendDateTime writes a FHIR dateTime. A value with a time of day must carry
// seconds and an offset in FHIR, so minutes-only and hours-only values gain
// ":00", and a value without an offset is read in zone (Europe/London by
// default, never the host's zone), whose offset that day it then carries.
// Fractions of a second are kept as given.
func (d dtm) appendDateTime(dst []byte, zone *time.Location) []byte {
	if d.digits <= 8 {
		return d.appendDate(dst)
	}
	dst = d.appendDate(dst)
	dst = appendPadded(append(dst, 'T'), d.hour, 2)
	dst = appendPadded(append(dst, ':'), d.min, 2)
	dst = appendPadded(append(dst, ':'), d.sec, 2)
	if len(d.frac) > 0 {
		dst = append(append(dst, '.'), d.frac...)
	}
	off := d.offset
	if !d.hasOffset {
		_, off = time.Date(d.year, time.Month(d.month), d.day, d.hour, d.min, d.sec, 0, zone).Zone()
	}
	return appendOffset(dst, off)
}

// instant reports whether d is precise enough for a FHIR instant.
func (d dtm) instant() bool { return d.digits >= 12 }

// appendInstant writes a FHIR instant, which needs seconds and an offset; a
// value with less than a minute's precision is not an instant, and reports false.
func (d dtm) appendInstant(dst []byte, zone *time.Location) ([]byte, bool) {
	if !d.instant() {
		return dst, false
	}
	return d.appendDateTime(dst, zone), true
}

func appendOffset(dst []byte, off int) []byte {
	if off < 0 {
		dst = append(dst, '-')
		off = -off
	} else {
		dst = append(dst, '+')
	}
	dst = appendPadded(dst, off/3600, 2)
	return appendPadded(append(dst, ':'), off%3600/60, 2)
}

func appendPadded(dst []byte, n, width int) []byte {
	var buf [8]byte
	i := len(buf)
	for n > 0 || width > 0 {
		i--
		buf[i] = byte('0' + n%10)
		n /= 10
		width--
	}
	return append(dst, buf[i:]...)
}

// appendDecimal writes an HL7 NM as a JSON number that FHIR accepts as a
// decimal: leading '+' and zeros dropped, ".5" becomes "0.5", trailing zeros
// after the point kept (FHIR decimals keep their precision).
func appendDecimal(dst, b []byte) ([]byte, error) {
	b = trimSpace(b)
	neg := false
	if len(b) > 0 && (b[0] == '+' || b[0] == '-') {
		neg = b[0] == '-'
		b = b[1:]
	}
	i := 0
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	intPart, rest := b[:i], b[i:]
	var frac []byte
	if len(rest) > 0 {
		if rest[0] != '.' || !allDigits(rest[1:]) {
			return dst, errDecimal
		}
		frac = rest[1:]
	}
	if len(intPart) == 0 && len(frac) == 0 {
		return dst, errDecimal
	}
	for len(intPart) > 1 && intPart[0] == '0' {
		intPart = intPart[1:]
	}
	if neg && !(allZero(intPart) && allZero(frac)) {
		dst = append(dst, '-')
	}
	if len(intPart) == 0 {
		dst = append(dst, '0')
	} else {
		dst = append(dst, intPart...)
	}
	if len(frac) > 0 {
		dst = append(append(dst, '.'), frac...)
	}
	return dst, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != '0' {
			return false
		}
	}
	return true
}

// appendInteger writes an HL7 NM or SI holding a whole number as a JSON
// integer; min is the least value the FHIR type allows (1 for positiveInt, 0
// for unsignedInt).
func appendInteger(dst, b []byte, min int64) ([]byte, error) {
	b = trimSpace(b)
	neg := false
	if len(b) > 0 && (b[0] == '+' || b[0] == '-') {
		neg = b[0] == '-'
		b = b[1:]
	}
	if !allDigits(b) || len(b) > 10 {
		return dst, errDecimal
	}
	var n int64
	for _, c := range b {
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	if n < min || n > 1<<31-1 || n < -1<<31 {
		return dst, fmt.Errorf("%d is out of the element's range %d to 2147483647", n, max(min, -1<<31))
	}
	return appendInt64(dst, n), nil
}

func appendInt64(dst []byte, n int64) []byte {
	if n < 0 {
		dst = append(dst, '-')
		n = -n
	}
	var buf [20]byte
	i := len(buf)
	for {
		i--
		buf[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	return append(dst, buf[i:]...)
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// validNHSNumber reports whether b is ten digits whose last is the Modulus 11
// check digit of the first nine (weights 10 down to 2; a remainder giving 10
// makes the number invalid, 11 means 0).
func validNHSNumber(b []byte) bool {
	if len(b) != 10 || !allDigits(b) {
		return false
	}
	sum := 0
	for i := 0; i < 9; i++ {
		sum += int(b[i]-'0') * (10 - i)
	}
	check := 11 - sum%11
	if check == 11 {
		check = 0
	}
	return check != 10 && check == int(b[9]-'0')
}

// appendBase64 writes base64 data as FHIR's base64Binary holds it: the line
// breaks and spaces senders wrap it with dropped, and the rest checked by
// decoding it into *scratch, so that a corrupt attachment is reported rather
// than making the whole bundle invalid.
func appendBase64(dst, b []byte, scratch *[]byte) ([]byte, error) {
	start := len(dst)
	for _, ch := range b {
		if ch != ' ' && ch != '\t' && ch != '\r' && ch != '\n' {
			dst = append(dst, ch)
		}
	}
	data := dst[start:]
	if len(data) == 0 {
		return dst, errBase64
	}
	if _, err := base64.StdEncoding.Decode(room(scratch, base64.StdEncoding.DecodedLen(len(data))), data); err != nil {
		return dst[:start], errBase64
	}
	return dst, nil
}

// appendHexBase64 writes hexadecimal data (ED.4 "Hex") as base64.
func appendHexBase64(dst, b []byte, scratch *[]byte) ([]byte, error) {
	b = trimSpace(b)
	data := room(scratch, hex.DecodedLen(len(b)))
	n, err := hex.Decode(data, b)
	if err != nil || n == 0 {
		return dst, errHex
	}
	return base64.StdEncoding.AppendEncode(dst, data[:n]), nil
}

// room returns n bytes of *scratch, growing it first when it holds fewer.
func room(scratch *[]byte, n int) []byte {
	if cap(*scratch) < n {
		*scratch = make([]byte, n)
	}
	return (*scratch)[:n]
}

// uriText reports whether b can be written as a uri, url or canonical. R4's
// pattern for them is \S*, and google/fhir/go's validator parses them with
// net/url, which refuses control characters, a malformed %-escape and a colon
// in a first path segment that starts no scheme. A value with no space or
// control character, no %, [ or ], and a scheme before any colon (urn:oid:...,
// http://...) or no colon at all, which is nearly every value, is checked here
// byte by byte; only the rest is parsed, which allocates.
func uriText(b []byte) bool {
	parse, scheme := false, true
	for i, ch := range b {
		switch {
		case ch <= ' ' || ch == 0x7f:
			return false
		case ch == '%' || ch == '[' || ch == ']':
			parse = true
		case scheme && ch == ':':
			// A scheme is a letter, then letters, digits, + - and .
			parse, scheme = parse || i == 0, false
		case scheme && !('a' <= ch && ch <= 'z' || 'A' <= ch && ch <= 'Z' ||
			i > 0 && ('0' <= ch && ch <= '9' || ch == '+' || ch == '-' || ch == '.')):
			scheme = false
			// A colon from here on is no scheme's: parse to see whether
			// net/url minds it.
			parse = parse || bytes.IndexByte(b[i:], ':') >= 0
		}
	}
	if !parse {
		return true
	}
	_, err := url.Parse(string(b))
	return err == nil
}

// codeText reports whether b is a code: R4's pattern is [^\s]+(\s[^\s]+)*,
// words with one blank between them and none at either end.
func codeText(b []byte) bool {
	for i, ch := range b {
		if isBlank(ch) && (i == 0 || i == len(b)-1 || isBlank(b[i+1])) {
			return false
		}
	}
	return len(b) > 0
}

// isBlank reports whether ch is one of the characters \s matches.
func isBlank(ch byte) bool {
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\f' || ch == '\r'
}
