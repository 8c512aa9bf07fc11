package routes

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"
)

// The Local journal's key space. Every key starts with one byte naming its kind;
// IDs are 8 bytes big-endian so that byte order is ID order. Strings inside keys
// are length-prefixed (uvarint), so no value can run into the next part of a key
// and a prefix scan matches one value exactly.
//
//	'm' id                              -> meta: the record's place in the
//	                                       segment log, then its small fields
//	'b' id                              -> body: the ACK and the raw message,
//	                                       for records written before the log
//	'c' lp(controlID) id                -> ""            List by ControlID
//	'n' lp(nhsNumber) id                -> ""            List by NHSNumber
//	's' lp(status) id                   -> ""            List by Status
//	'd' lp(sender) lp(controlID) id     -> received      FindControlID
//	'z' block                           -> zone          List by time range
//	'h'                                 -> the highest ID ever assigned
//	'i'                                 -> the segment log's position indexed
//	'v'                                 -> layout version
//
// Bodies live in the segment log (local_segment.go), metas in the store, so
// that a filtered scan reads ~100-byte metas rather than whole messages, and so
// that SetStatus rewrites only the meta. Layout version 1, before the log,
// kept bodies under 'b'; such records are still read there.
//
// A zone summarises one block of zoneSize consecutive IDs: the least and greatest
// Received in it, and the greatest Received in it and every block before it
// (prefixMax). Received is near enough to ID order that a time range touches few
// blocks, yet any Received a caller sets is still found: the zones bound every
// record exactly, they only cost more blocks when times arrive out of order. This
// is PostgreSQL's BRIN index, with prefixMax added so that a newest-first scan
// knows when no older block can match.
const (
	kindMeta      = 'm'
	kindBody      = 'b'
	kindControlID = 'c'
	kindNHSNumber = 'n'
	kindStatus    = 's'
	kindDedupe    = 'd'
	kindZone      = 'z'
	kindHighWater = 'h'
	kindIndexed   = 'i'
	kindLayout    = 'v'

	// layoutVersion changes when the key space or an encoding changes in a way
	// an older build would misread. Version 2 added the segment log, which a
	// build of version 1 would not read; this build reads both.
	layoutVersion       = 2
	layoutBeforeSegment = 1
	// encodingVersion leads every meta and body value.
	encodingVersion = 1
	// metaLocated leads a stored meta whose record is in the segment log: its
	// place there, then the meta (which starts with encodingVersion).
	metaLocated = 2

	zoneShift = 10
	zoneSize  = 1 << zoneShift
)

var (
	keyHighWater = []byte{kindHighWater}
	keyIndexed   = []byte{kindIndexed}
	keyLayout    = []byte{kindLayout}
)

// idKey is a key of one byte of kind and an ID.
func idKey(dst []byte, kind byte, id ID) []byte {
	dst = append(dst, kind)
	return binary.BigEndian.AppendUint64(dst, uint64(id))
}

// appendLP appends s with its length in front.
func appendLP(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// indexPrefix is the part of an index key before the ID: the kind and the
// length-prefixed values.
func indexPrefix(dst []byte, kind byte, values ...string) []byte {
	dst = append(dst, kind)
	for _, v := range values {
		dst = appendLP(dst, v)
	}
	return dst
}

// keyID reads the ID at the end of an index, meta or body key.
func keyID(k []byte) (ID, bool) {
	if len(k) < 9 {
		return 0, false
	}
	return ID(binary.BigEndian.Uint64(k[len(k)-8:])), true
}

// prefixEnd is the least key greater than every key that starts with p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil // p is all 0xff: no upper bound
}

// Times are kept as Unix nanoseconds, which span the years 1678 to 2262.
var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

func timeInRange(t time.Time) bool { return !t.Before(minTime) && !t.After(maxTime) }

// encodeMeta appends the meta value of rec. Fields are in a fixed order, each
// length-prefixed; a reader of a later version can append fields after these.
func encodeMeta(dst []byte, rec *Record) []byte {
	dst = append(dst, encodingVersion)
	dst = binary.AppendVarint(dst, rec.Received.UnixNano())
	for _, s := range [...]string{rec.Listener, rec.Peer, rec.Sender, rec.ControlID,
		rec.Type, rec.Trigger, rec.Version, rec.NHSNumber, string(rec.Status), rec.AckCode, rec.Format} {
		dst = appendLP(dst, s)
	}
	return dst
}

// decodeMeta fills rec's small fields from a meta value.
func decodeMeta(rec *Record, b []byte) error {
	if len(b) == 0 || b[0] != encodingVersion {
		return fmt.Errorf("%w: record %d: meta encoding version", ErrCorrupt, rec.ID)
	}
	d := decoder{b: b[1:]}
	rec.Received = time.Unix(0, d.varint()).UTC()
	rec.Listener = d.string()
	rec.Peer = d.string()
	rec.Sender = d.string()
	rec.ControlID = d.string()
	rec.Type = d.string()
	rec.Trigger = d.string()
	rec.Version = d.string()
	rec.NHSNumber = d.string()
	rec.Status = Status(d.string())
	rec.AckCode = d.string()
	if len(d.b) > 0 { // absent from records written before formats
		rec.Format = d.string()
	}
	if d.bad {
		return fmt.Errorf("%w: record %d: meta truncated", ErrCorrupt, rec.ID)
	}
	return nil
}

// encodeLocatedMeta appends the stored meta of a record in the segment log at
// loc: the place, then the meta value.
func encodeLocatedMeta(dst []byte, loc segLoc, meta []byte) []byte {
	dst = append(dst, metaLocated)
	dst = binary.AppendUvarint(dst, loc.seg)
	dst = binary.AppendUvarint(dst, uint64(loc.off))
	dst = binary.AppendUvarint(dst, uint64(loc.n))
	return append(dst, meta...)
}

// decodeStoredMeta fills rec's small fields from a stored meta and returns
// where its record lies in the segment log; located is false for a record
// written before the log, whose body is under 'b'.
func decodeStoredMeta(rec *Record, v []byte) (loc segLoc, located bool, err error) {
	if len(v) == 0 || v[0] != metaLocated {
		return segLoc{}, false, decodeMeta(rec, v)
	}
	d := decoder{b: v[1:]}
	loc.seg = d.uvarint()
	off, n := d.uvarint(), d.uvarint()
	if d.bad || off > math.MaxInt64 || n <= segmentHeader || n > segmentHeader+math.MaxUint32 {
		return segLoc{}, false, fmt.Errorf("%w: record %d: segment location", ErrCorrupt, rec.ID)
	}
	loc.off, loc.n = int64(off), int64(n)
	return loc, true, decodeMeta(rec, d.b)
}

// encodePos and decodePos are the value of 'i'.
func encodePos(p segPos) []byte {
	v := binary.BigEndian.AppendUint64(make([]byte, 0, 16), p.seg)
	return binary.BigEndian.AppendUint64(v, uint64(p.off))
}

func decodePos(v []byte) (segPos, error) {
	if len(v) != 16 || int64(binary.BigEndian.Uint64(v[8:])) < 0 {
		return segPos{}, fmt.Errorf("%w: indexed position", ErrCorrupt)
	}
	return segPos{binary.BigEndian.Uint64(v), int64(binary.BigEndian.Uint64(v[8:]))}, nil
}

// encodeBody appends the body value: the ACK, length-prefixed, then the raw
// message to the end.
func encodeBody(dst []byte, rec *Record) []byte {
	dst = append(dst, encodingVersion)
	dst = binary.AppendUvarint(dst, uint64(len(rec.Ack)))
	dst = append(dst, rec.Ack...)
	return append(dst, rec.Raw...)
}

// decodeBody fills rec.Ack and rec.Raw from a body value, copying: the value
// belongs to the store.
func decodeBody(rec *Record, b []byte) error {
	if len(b) == 0 || b[0] != encodingVersion {
		return fmt.Errorf("%w: record %d: body encoding version", ErrCorrupt, rec.ID)
	}
	d := decoder{b: b[1:]}
	ack := d.bytes()
	if d.bad {
		return fmt.Errorf("%w: record %d: body truncated", ErrCorrupt, rec.ID)
	}
	// One allocation for both; each is capped so an append to one cannot
	// overwrite the other.
	buf := make([]byte, len(ack)+len(d.b))
	n := copy(buf, ack)
	copy(buf[n:], d.b)
	rec.Ack = nil
	if len(ack) > 0 {
		rec.Ack = buf[:n:n]
	}
	rec.Raw = buf[n:]
	return nil
}

// decoder reads varints and length-prefixed fields; a short or malformed input
// sets bad and yields zero values from then on.
type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.bad = true
		d.b = nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	l, n := binary.Uvarint(d.b)
	if n <= 0 || l > uint64(len(d.b)-n) {
		d.bad = true
		d.b = nil
		return nil
	}
	v := d.b[n : n+int(l)]
	d.b = d.b[n+int(l):]
	return v
}

func (d *decoder) string() string { return string(d.bytes()) }

// zone is the summary of one block of IDs; times are Unix nanoseconds.
type zone struct {
	block     uint64
	min, max  int64
	prefixMax int64 // greatest Received in this block and all before it
}

func (z zone) key() []byte {
	return binary.BigEndian.AppendUint64([]byte{kindZone}, z.block)
}

func (z zone) value() []byte {
	v := make([]byte, 0, 24)
	v = binary.BigEndian.AppendUint64(v, uint64(z.min))
	v = binary.BigEndian.AppendUint64(v, uint64(z.max))
	return binary.BigEndian.AppendUint64(v, uint64(z.prefixMax))
}

func decodeZone(k, v []byte) (zone, error) {
	if len(k) != 9 || len(v) != 24 {
		return zone{}, fmt.Errorf("%w: zone entry", ErrCorrupt)
	}
	return zone{
		block:     binary.BigEndian.Uint64(k[1:]),
		min:       int64(binary.BigEndian.Uint64(v)),
		max:       int64(binary.BigEndian.Uint64(v[8:])),
		prefixMax: int64(binary.BigEndian.Uint64(v[16:])),
	}, nil
}

// add widens z to cover a record received at t (Unix nanoseconds).
func (z *zone) add(t int64) {
	z.min = min(z.min, t)
	z.max = max(z.max, t)
	z.prefixMax = max(z.prefixMax, t)
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.bad = true
		d.b = nil
		return 0
	}
	d.b = d.b[n:]
	return v
}
