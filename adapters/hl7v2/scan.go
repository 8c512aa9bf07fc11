package hl7v2

import (
	"encoding/binary"
	"math/bits"
)

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// indexFrom returns the index of the first sep in b[i:j], or j when there is none.
// Fields are short, so eight bytes are tested at a time in a register rather than
// paying the call set-up of bytes.IndexByte for each field.
func indexFrom(b []byte, i, j int, sep byte) int {
	pat := uint64(sep) * lsb
	for ; i+8 <= j; i += 8 {
		x := binary.LittleEndian.Uint64(b[i:]) ^ pat
		if t := (x - lsb) &^ x & msb; t != 0 {
			return i + bits.TrailingZeros64(t)/8
		}
	}
	for ; i < j; i++ {
		if b[i] == sep {
			return i
		}
	}
	return j
}
