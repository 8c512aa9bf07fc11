package routes

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/cockroachdb/pebble"
)

// reader is what reads the index: the store, or, when read-only, the store
// with the entries of records found only in the segment log (see reindex).
func (l *Local) reader() pebble.Reader {
	if l.overlay != nil {
		return l.overlay
	}
	return l.db
}

// Get returns the record with the given id. See Journal.Get.
func (l *Local) Get(ctx context.Context, id ID) (*Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("journal: get %d: %w", id, err)
	}
	if err := l.enter(); err != nil {
		return nil, fmt.Errorf("journal: get %d: %w", id, err)
	}
	defer l.leave()
	rec, err := l.readRecent(id)
	if err != nil {
		return nil, fmt.Errorf("journal: get %d: %w", id, l.removedBy(id, err))
	}
	return rec, nil
}

// readRecent reads record id from the tail cache when it holds it, else from
// the store.
func (l *Local) readRecent(id ID) (*Record, error) {
	if l.tail != nil {
		rec := &Record{ID: id}
		if ok, err := l.tail.get(rec); ok {
			return rec, err
		}
	}
	return l.readRecord(l.reader(), id, nil)
}

// readRecord reads record id through r. meta, when not nil, is its stored meta,
// already read by a scan.
func (l *Local) readRecord(r pebble.Reader, id ID, meta []byte) (*Record, error) {
	rec := &Record{ID: id}
	var (
		loc     segLoc
		located bool
	)
	if meta == nil {
		v, closer, err := r.Get(idKey(nil, kindMeta, id))
		if errors.Is(err, pebble.ErrNotFound) {
			return nil, ErrNotFound
		} else if err != nil {
			return nil, err
		}
		loc, located, err = decodeStoredMeta(rec, v)
		closer.Close()
		if err != nil {
			return nil, err
		}
	} else {
		var err error
		if loc, located, err = decodeStoredMeta(rec, meta); err != nil {
			return nil, err
		}
	}
	return l.readBody(r, rec, loc, located)
}

// readBody adds the body to rec, whose meta is read: from the segment log at
// loc when located, else from the 'b' key (records written before the log).
func (l *Local) readBody(r pebble.Reader, rec *Record, loc segLoc, located bool) (*Record, error) {
	if located {
		_, body, err := l.seg.read(loc, rec.ID)
		if err != nil {
			return nil, err
		}
		if err := decodeBody(rec, body); err != nil {
			return nil, err
		}
		return rec, nil
	}
	v, closer, err := r.Get(idKey(nil, kindBody, rec.ID))
	if errors.Is(err, pebble.ErrNotFound) {
		// Meta and body were written in one batch; one without the other is damage.
		return nil, fmt.Errorf("%w: record %d has no body", ErrCorrupt, rec.ID)
	} else if err != nil {
		return nil, err
	}
	defer closer.Close()
	if err := decodeBody(rec, v); err != nil {
		return nil, err
	}
	return rec, nil
}

// errControlIDNew answers FindControlID for a control id the recent set proves
// new, nearly every message: made once, not per message.
var errControlIDNew = fmt.Errorf("journal: find control id: %w", ErrNotFound)

// FindControlID returns the latest record from sender with the given MSH-10
// received at or after since. See Journal.FindControlID.
func (l *Local) FindControlID(ctx context.Context, sender, controlID string, since time.Time) (*Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("journal: find control id: %w", err)
	}
	if controlID == "" {
		return nil, fmt.Errorf("journal: find control id: empty control id: %w", ErrNotFound)
	}
	from, ok := sinceNanos(since)
	if !ok {
		return nil, fmt.Errorf("journal: find control id: %w", ErrNotFound)
	}
	if err := l.enter(); err != nil {
		return nil, fmt.Errorf("journal: find control id: %w", err)
	}
	defer l.leave()

	prefix := indexPrefix(nil, kindDedupe, sender, controlID)
	if l.recent != nil && !l.recent.mayHave(l.recent.hash(prefix), from) {
		return nil, errControlIDNew
	}
	it, err := l.reader().NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return nil, fmt.Errorf("journal: find control id: %w", err)
	}
	defer it.Close()
	// A sender's resends of one control id are few, so reading them all, newest
	// first, costs little; Received is not strictly in ID order, so the first
	// one too old does not end the search.
	for ok := it.Last(); ok; ok = it.Prev() {
		if v := it.Value(); len(v) != 8 || int64(binary.BigEndian.Uint64(v)) < from {
			continue
		}
		id, _ := keyID(it.Key())
		rec, err := l.readRecent(id)
		if err != nil {
			return nil, fmt.Errorf("journal: find control id: %w", err)
		}
		return rec, nil
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("journal: find control id: %w", err)
	}
	return nil, fmt.Errorf("journal: find control id: %w", ErrNotFound)
}

// sinceNanos is a lower time bound in Unix nanoseconds; false when no stored
// time can be at or after it.
func sinceNanos(t time.Time) (int64, bool) {
	switch {
	case t.IsZero() || t.Before(minTime):
		return math.MinInt64, true
	case t.After(maxTime):
		return 0, false
	}
	return t.UnixNano(), true
}

// List calls fn with each record that matches q. See Journal.List.
//
// One index drives the scan and every filter is then checked on the record
// itself: ControlID's or NHSNumber's entries when set (a handful of records),
// else the zones of the time range, reading within each zone Status's entries
// or the records, else Status's entries, else every record. The scan reads a
// snapshot, so it sees the journal as it stood when List began.
func (l *Local) List(ctx context.Context, q Query, fn func(*Record) bool) error {
	if q.Limit < 0 {
		return errors.New("journal: list: negative limit")
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("journal: list: %w", err)
	}
	if err := l.enter(); err != nil {
		return fmt.Errorf("journal: list: %w", err)
	}
	defer l.leave()

	s := scan{l: l, ctx: ctx, q: q, fn: fn, until: math.MaxInt64}
	var ok bool
	if s.since, ok = sinceNanos(q.Since); !ok {
		return nil
	}
	if !q.Until.IsZero() {
		switch {
		case q.Until.Before(minTime) || !q.Until.After(q.Since) && !q.Since.IsZero():
			return nil
		case !q.Until.After(maxTime):
			s.until = q.Until.UnixNano()
			s.bounded = true
		}
	}
	s.bounded = s.bounded || !q.Since.IsZero()

	if l.overlay != nil {
		s.r = l.overlay // read-only: nothing changes under the scan
	} else {
		snap := l.db.NewSnapshot()
		defer snap.Close()
		s.r = snap
	}
	it, err := s.r.NewIter(nil)
	if err != nil {
		return fmt.Errorf("journal: list: %w", err)
	}
	s.it = it

	switch {
	case q.ControlID != "":
		err = s.scanIndex(indexPrefix(nil, kindControlID, q.ControlID), false, 0, 0)
	case q.NHSNumber != "":
		err = s.scanIndex(indexPrefix(nil, kindNHSNumber, q.NHSNumber), false, 0, 0)
	case s.bounded:
		err = s.scanZones()
	case q.Status != "":
		err = s.scanIndex(indexPrefix(nil, kindStatus, string(q.Status)), false, 0, 0)
	default:
		err = s.scanIndex([]byte{kindMeta}, true, 0, 0)
	}
	if cerr := it.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, errStop) {
		err = nil
	}
	if err != nil {
		return fmt.Errorf("journal: list: %w", err)
	}
	return nil
}

// errStop ends a scan early without an error: fn said stop, or Limit was met.
var errStop = errors.New("stop")

// scan is one List call in progress.
type scan struct {
	l   *Local
	ctx context.Context
	q   Query
	fn  func(*Record) bool
	r   pebble.Reader // a snapshot of the store, or the read-only overlay
	it  *pebble.Iterator

	since, until int64 // Received bounds in Unix nanoseconds: since <= t < until
	bounded      bool  // q has a usable time bound
	sent         int   // records passed to fn
}

// scanIndex reads the keys that start with prefix, in the query's order: each is
// an index entry (prefix, ID) or, when isMeta, a record's meta. A nonzero hi
// limits the scan to IDs in [lo, hi).
func (s *scan) scanIndex(prefix []byte, isMeta bool, lo, hi ID) error {
	lower, upper := prefix, prefixEnd(prefix)
	if hi != 0 {
		lower = appendID(append([]byte(nil), prefix...), lo)
		upper = appendID(append([]byte(nil), prefix...), hi)
	}
	s.it.SetBounds(lower, upper)
	next := s.it.Next
	ok := s.it.First()
	if s.q.Descending {
		next = s.it.Prev
		ok = s.it.Last()
	}
	for ; ok; ok = next() {
		if err := s.check(); err != nil {
			return err
		}
		id, valid := keyID(s.it.Key())
		if !valid {
			return fmt.Errorf("%w: index entry", ErrCorrupt)
		}
		var meta []byte
		if isMeta {
			meta = s.it.Value()
		}
		if err := s.visit(id, meta); err != nil {
			return err
		}
	}
	return s.it.Error()
}

// check ends a long scan when the context ends or the journal is closing. It
// runs at every key: both checks cost tens of nanoseconds, next to a read of
// microseconds, and a consumer that is slow per record should still stop soon.
func (s *scan) check() error {
	if err := s.ctx.Err(); err != nil {
		return err
	}
	select {
	case <-s.l.stop:
		return ErrClosed
	default:
		return nil
	}
}

// visit reads record id, and passes it to fn when it matches every filter.
func (s *scan) visit(id ID, meta []byte) error {
	rec := &Record{ID: id}
	var (
		loc     segLoc
		located bool
	)
	if meta == nil {
		v, closer, err := s.r.Get(idKey(nil, kindMeta, id))
		if errors.Is(err, pebble.ErrNotFound) {
			return fmt.Errorf("%w: index entry for missing record %d", ErrCorrupt, id)
		} else if err != nil {
			return err
		}
		loc, located, err = decodeStoredMeta(rec, v)
		closer.Close()
		if err != nil {
			return err
		}
	} else {
		var err error
		if loc, located, err = decodeStoredMeta(rec, meta); err != nil {
			return err
		}
	}
	if !s.match(rec) {
		return nil
	}
	full, err := s.l.readBody(s.r, rec, loc, located)
	if err != nil {
		if errors.Is(s.l.removedBy(id, err), ErrRemoved) {
			return nil // removed by retention since the scan began
		}
		return err
	}
	s.sent++
	if !s.fn(full) || s.q.Limit > 0 && s.sent >= s.q.Limit {
		return errStop
	}
	return nil
}

func (s *scan) match(r *Record) bool {
	q := &s.q
	t := r.Received.UnixNano()
	return (q.ControlID == "" || r.ControlID == q.ControlID) &&
		(q.NHSNumber == "" || r.NHSNumber == q.NHSNumber) &&
		(q.Status == "" || r.Status == q.Status) &&
		t >= s.since && t < s.until
}

// scanZones reads the blocks of IDs whose zone overlaps the time range, in the
// query's order. Within a block it reads Status's entries when the query has a
// status, else the records.
func (s *scan) scanZones() error {
	zit, err := s.r.NewIter(&pebble.IterOptions{LowerBound: []byte{kindZone}, UpperBound: []byte{kindZone + 1}})
	if err != nil {
		return err
	}
	defer zit.Close()

	block := func(z zone) error {
		if z.max < s.since || z.min >= s.until {
			return nil
		}
		lo, hi := ID(z.block<<zoneShift), ID((z.block+1)<<zoneShift)
		if s.q.Status != "" {
			return s.scanIndex(indexPrefix(nil, kindStatus, string(s.q.Status)), false, lo, hi)
		}
		return s.scanIndex([]byte{kindMeta}, true, lo, hi)
	}

	if s.q.Descending {
		for ok := zit.Last(); ok; ok = zit.Prev() {
			z, err := decodeZone(zit.Key(), zit.Value())
			if err != nil {
				return err
			}
			if z.prefixMax < s.since {
				break // no block before this one has a record late enough
			}
			if err := s.check(); err != nil {
				return err
			}
			if err := block(z); err != nil {
				return err
			}
		}
		return zit.Error()
	}

	start, err := s.firstZone(zit)
	if err != nil {
		return err
	}
	for ok := zit.SeekGE(zone{block: start}.key()); ok; ok = zit.Next() {
		z, err := decodeZone(zit.Key(), zit.Value())
		if err != nil {
			return err
		}
		if err := s.check(); err != nil {
			return err
		}
		if err := block(z); err != nil {
			return err
		}
	}
	return zit.Error()
}

// firstZone finds, by binary search, the first block that can hold a record
// received at or after since: prefixMax never decreases from block to block.
func (s *scan) firstZone(zit *pebble.Iterator) (uint64, error) {
	if s.since == math.MinInt64 || !zit.Last() {
		return 0, zit.Error()
	}
	last, err := decodeZone(zit.Key(), zit.Value())
	if err != nil {
		return 0, err
	}
	lo, hi := uint64(0), last.block+1
	for lo < hi {
		mid := lo + (hi-lo)/2
		// Blocks can be missing (IDs lost to a failed commit); the block at or
		// after mid stands for it, which keeps the predicate monotonic.
		if !zit.SeekGE(zone{block: mid}.key()) {
			return 0, zit.Error()
		}
		z, err := decodeZone(zit.Key(), zit.Value())
		if err != nil {
			return 0, err
		}
		if z.prefixMax >= s.since {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo, nil
}

// Read calls fn with records from id from on. See Outbox.Read.
//
// The dispatcher reads what was just appended, which the tail cache holds;
// records before the cache's first come from the store.
func (l *Local) Read(ctx context.Context, from ID, limit int, fn func(*Record) bool) error {
	return l.read(ctx, "read", func() error {
		for n := 0; n < limit; {
			first, last, cached := ID(0), ID(0), false
			if l.tail != nil {
				first, last, cached = l.tail.bounds()
			}
			switch {
			case !cached:
				_, _, err := l.readStore(from, 0, limit-n, fn)
				return err
			case from > last:
				return nil // the cache ends at the last record committed
			case from < first:
				sent, stopped, err := l.readStore(from, first, limit-n, fn)
				if err != nil || stopped {
					return err
				}
				n += sent
				from = first
			default:
				rec := &Record{ID: from}
				ok, err := l.tail.get(rec)
				if err != nil {
					return err
				}
				if !ok {
					// Evicted since bounds, or removed by retention: the
					// store has it, or nothing does.
					sent, stopped, err := l.readStore(from, from+1, 1, fn)
					if err != nil || stopped {
						return err
					}
					from++
					n += sent
					continue
				}
				from++
				n++
				if !fn(rec) {
					return nil
				}
			}
		}
		return nil
	})
}

// readStore calls fn with up to limit stored records from id from on, below
// upper unless it is 0. It returns how many it passed, and whether fn asked to
// stop.
func (l *Local) readStore(from, upper ID, limit int, fn func(*Record) bool) (sent int, stopped bool, err error) {
	ub := []byte{kindMeta + 1}
	if upper != 0 {
		ub = idKey(nil, kindMeta, upper)
	}
	r := l.reader()
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: idKey(nil, kindMeta, from), UpperBound: ub})
	if err != nil {
		return 0, false, err
	}
	for ok := it.First(); ok && sent < limit; ok = it.Next() {
		id, ok := keyID(it.Key())
		if !ok {
			it.Close()
			return sent, false, fmt.Errorf("%w: record key", ErrCorrupt)
		}
		rec, err := l.readRecord(r, id, it.Value())
		if err != nil {
			it.Close()
			return sent, false, err
		}
		sent++
		if !fn(rec) {
			stopped = true
			break
		}
	}
	return sent, stopped, it.Close()
}
