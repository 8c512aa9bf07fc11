package routes

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	iofs "io/fs"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/prometheus/client_golang/prometheus"
)

// Retention removes the records the journal no longer needs, so that its disk
// does not fill (LocalOptions.Retention). A record goes only when it is older
// than the retention, by Received, and nothing needs it any more: the
// dispatcher's cursor is past it (it is routed), none of its deliveries is
// pending or dead-lettered, and no replay of it is asked for.
//
// Dead letters do not expire. A delivery given up on is work an operator has
// still to look at, so its message, journey and segment stay until it is sent
// again and delivered, or replayed. Each pass counts the records it kept, and
// why, in its log line and in spinebridge_journal_retained_messages.
//
// Removing a record deletes its meta, its index entries ('s', 'c', 'd', 'n'),
// its journey ('e') and, for a layout 1 record, its body ('b'), a few hundred
// records to a batch. A run of removed IDs is deleted as ranges of 'm', 'e' and
// 'b', which Pebble can drop whole from its tables. A zone goes once no record
// of its block is left.
//
// Segment files are the unit of disk reclaim: one goes once no record in it is
// left, and one record still needed keeps its whole file. The committer gives
// out IDs in log order and a group never spans two files, so each segment
// holds one run of IDs, and a pass that has looked at every record left below
// a segment's end knows whether any is left in it. The segment of the newest
// record is never removed: appends may still go to it, and the indexed
// position the open scans from is in it.
//
// Order makes it crash-safe. A batch's index deletions are made durable (the
// store's log is synced) before any file is removed, so no index entry can
// name a missing segment after a crash. A crash between the two leaves files
// that nothing names, which the next pass removes. The open indexes again only
// what the log holds after the indexed position, in the newest segment, so it
// neither brings back a removed record nor looks for a removed file.
//
// A pass holds the locks of SetStatus and RequestReplay while it decides and
// commits a batch, so that neither writes for a record it removes: each comes
// first, and the pass sees its write, or after, and finds the record gone.
// Appends, reads and the dispatcher's writes go on beside it; between batches
// it pauses as long as the batch took, so it uses at most half of one core.
//
// The retention's part of the key space:
//
//	'r' -> the horizon: every ID below it is still here (kept) or was
//	       removed by retention, so Get can tell ErrRemoved from ErrNotFound
const kindRetention = 'r'

var keyRetention = []byte{kindRetention}

const (
	// retentionInterval is how often a pass runs, after the one at open: a
	// few minutes' records are a few megabytes on a busy engine.
	retentionInterval = 5 * time.Minute
	// retentionMinInterval bounds passInterval below.
	retentionMinInterval = time.Second
	// retentionBatch is how many records one batch looks at, holding the
	// locks of SetStatus and RequestReplay: 1-4 ms on the development
	// machine (TestRetentionInBatches logs it).
	retentionBatch = 256
)

// retentionStats is what one pass did.
type retentionStats struct {
	removed int
	// Records old enough that were kept, by why: a dead letter, a replay
	// asked for, a pending delivery (in that order, each counted once).
	keptDeadLetters, keptReplays, keptPending int

	segments int   // segment files removed
	bytes    int64 // their size
	// longest is the longest a batch held SetStatus and RequestReplay.
	longest time.Duration
}

// retentionPass is a pass's state from one batch to the next.
type retentionPass struct {
	cutoff int64 // Unix nanoseconds: records received before it are old enough
	from   ID    // the next record to look at
	// The segments and zone blocks holding a record kept in this pass. A pass
	// looks at every record left from the first on, so below where it has
	// reached, a segment or block that is not here holds none.
	pinned     map[uint64]bool
	keptBlocks map[uint64]bool
	// cleared is a segment number every segment before which, unless pinned,
	// is already removed: a batch whose frontier has not moved past it need
	// not list the directory.
	cleared uint64
	stats   retentionStats
}

// Outcomes of a record's check in a pass.
const (
	keptNone = iota
	keptDeadLetter
	keptReplay
	keptPending
)

// passInterval is how often passes run for a retention of r: every
// retentionInterval, or a tenth of r when shorter (a second at least), so that
// a record outlives its retention by about a tenth of it at most.
func passInterval(r time.Duration) time.Duration {
	return min(retentionInterval, max(retentionMinInterval, r/10))
}

// retainLoop runs a pass at open and then every interval, until Close.
func (l *Local) retainLoop(every time.Duration) {
	defer close(l.retained)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		l.retainOnce()
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
	}
}

// retainOnce runs one pass and reports it.
func (l *Local) retainOnce() {
	start := time.Now()
	st, err := l.purge()
	if err == nil {
		l.metrics.kept.WithLabelValues("dead_letter").Set(float64(st.keptDeadLetters))
		l.metrics.kept.WithLabelValues("replay").Set(float64(st.keptReplays))
		l.metrics.kept.WithLabelValues("pending").Set(float64(st.keptPending))
	}
	attrs := []any{"removed", st.removed, "kept_dead_letters", st.keptDeadLetters, "kept_replays", st.keptReplays,
		"kept_pending", st.keptPending, "segments_removed", st.segments, "bytes_reclaimed", st.bytes,
		"retention", l.retention, "took", time.Since(start).Round(time.Millisecond), "longest_batch", st.longest}
	switch {
	case errors.Is(err, ErrClosed):
		l.log.Info("journal: retention pass stopped by close", attrs...)
	case err != nil:
		l.log.Error("journal: retention pass failed; the next one starts again", append(attrs, "err", err)...)
	case st.removed > 0 || st.segments > 0 || st.keptDeadLetters+st.keptReplays+st.keptPending > 0:
		l.log.Info("journal: retention pass", attrs...)
	default:
		l.log.Debug("journal: retention pass", attrs...)
	}
}

// purge runs one retention pass: batches from the first record on, until a
// record too new or not yet routed. It returns ErrClosed when Close stops it.
func (l *Local) purge() (retentionStats, error) {
	if l.retention <= 0 || l.readOnly {
		return retentionStats{}, nil
	}
	l.passMu.Lock()
	defer l.passMu.Unlock()
	p := &retentionPass{
		cutoff:     l.now().Add(-l.retention).UnixNano(),
		from:       1,
		pinned:     map[uint64]bool{},
		keptBlocks: map[uint64]bool{},
	}
	for {
		start := time.Now()
		done, err := l.purgeBatch(p)
		if err != nil || done {
			return p.stats, err
		}
		t := time.NewTimer(time.Since(start))
		select {
		case <-l.stop:
			t.Stop()
			return p.stats, ErrClosed
		case <-t.C:
		}
	}
}

// purgeBatch removes up to retentionBatch records' index entries, then the
// segment files left with no record; done is true at the pass's end.
func (l *Local) purgeBatch(p *retentionPass) (done bool, err error) {
	if err := l.enter(); err != nil {
		return true, err
	}
	defer l.leave()
	frontier, done, err := l.purgeIndex(p)
	if err != nil {
		return true, fmt.Errorf("journal: retention: %w", err)
	}
	if frontier > p.cleared {
		if err := l.removeSegments(p, frontier); err != nil {
			return true, fmt.Errorf("journal: retention: %w", err)
		}
		p.cleared = frontier
	}
	return done, nil
}

// purgeIndex deletes the index entries of the records of one batch that may
// go, and returns the segment of the first record it did not look at (or of
// the newest, at the end): every segment before it that holds no kept record
// is left with none.
func (l *Local) purgeIndex(p *retentionPass) (frontierSeg uint64, done bool, err error) {
	l.replayMu.Lock()
	for i := range l.statusLocks {
		l.statusLocks[i].Lock()
	}
	locked := time.Now()
	defer func() {
		for i := range l.statusLocks {
			l.statusLocks[i].Unlock()
		}
		l.replayMu.Unlock()
		p.stats.longest = max(p.stats.longest, time.Since(locked))
	}()

	// One snapshot, so that the cursor, a record and its deliveries are read
	// as they stood together (Revive turns a dead letter into a pending
	// delivery in one batch; read apart, the record could seem to have
	// neither).
	snap := l.db.NewSnapshot()
	defer snap.Close()
	cursor, err := readCursor(snap)
	if err != nil {
		return 0, true, err
	}
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: idKey(nil, kindMeta, p.from), UpperBound: []byte{kindMeta + 1}})
	if err != nil {
		return 0, true, err
	}
	defer it.Close()
	var hs [3]*holdIter
	for i, kind := range [...]byte{kindDeadLetter, kindReplay, kindPending} {
		if hs[i], err = newHoldIter(snap, kind); err != nil {
			return 0, true, err
		}
		defer hs[i].it.Close()
	}

	b := l.db.NewBatch()
	defer b.Close()
	var (
		removed             []ID
		runFirst, runLast   ID
		inRun, runUnlocated bool
		key                 []byte
		n                   int
		lastID, frontierID  ID
		last                segLoc
		lastLocated         bool
	)
	endRun := func() {
		if !inRun {
			return
		}
		kinds := []byte{kindMeta, kindEvent}
		if runUnlocated {
			kinds = append(kinds, kindBody)
		}
		for _, k := range kinds {
			b.DeleteRange(idKey(nil, k, runFirst), idKey(nil, k, runLast+1), nil)
		}
		inRun, runUnlocated = false, false
	}
	for ok := it.First(); ok; ok = it.Next() {
		id, valid := keyID(it.Key())
		if !valid || len(it.Key()) != 9 {
			return 0, true, fmt.Errorf("%w: record key", ErrCorrupt)
		}
		rec := Record{ID: id}
		loc, located, err := decodeStoredMeta(&rec, it.Value())
		if err != nil {
			return 0, true, err
		}
		if n == retentionBatch || id >= cursor || rec.Received.UnixNano() >= p.cutoff {
			frontierID = id
			if located {
				frontierSeg = loc.seg
			}
			// Not routed yet, or too new: Received follows ID order
			// closely, so the pass ends here.
			done = n < retentionBatch
			break
		}
		n++
		lastID, last, lastLocated = id, loc, located
		why := keptNone
		for i, h := range hs {
			if h.has(id) {
				why = keptDeadLetter + i
				break
			}
		}
		if why != keptNone {
			switch why {
			case keptDeadLetter:
				p.stats.keptDeadLetters++
			case keptReplay:
				p.stats.keptReplays++
			case keptPending:
				p.stats.keptPending++
			}
			if located {
				p.pinned[loc.seg] = true
			}
			p.keptBlocks[uint64(id)>>zoneShift] = true
			endRun()
			continue
		}
		key = deleteIndexEntries(b, key, id, &rec)
		if !inRun {
			runFirst, inRun = id, true
		}
		runLast = id
		runUnlocated = runUnlocated || !located
		removed = append(removed, id)
	}
	if err := errors.Join(it.Error(), hs[0].it.Error(), hs[1].it.Error(), hs[2].it.Error()); err != nil {
		return 0, true, err
	}
	endRun()
	limit := frontierID
	if frontierID == 0 {
		// Nothing after the last record looked at: the pass is over. That
		// record is the newest, and its segment and zone stay.
		done = true
		limit = lastID
		if lastLocated {
			frontierSeg = last.seg
		}
	}
	if err := deleteZones(snap, b, limit, p.keptBlocks); err != nil {
		return 0, true, err
	}
	horizon := max(ID(l.horizon.Load()), lastID+1)
	if n > 0 {
		b.Set(keyRetention, binary.BigEndian.AppendUint64(nil, uint64(horizon)), nil)
	}
	if b.Empty() {
		return frontierSeg, done, nil
	}
	// Not synced: the deletions become durable with the store's next sync,
	// the background one or the one before a file is removed.
	if err := b.Commit(pebble.NoSync); err != nil {
		return 0, true, err
	}
	if n == 0 {
		return frontierSeg, done, nil
	}
	p.from = lastID + 1
	l.horizon.Store(uint64(horizon))
	l.tail.drop(removed)
	p.stats.removed += len(removed)
	l.metrics.purged.Add(float64(len(removed)))
	if err := l.retentionHook("index"); err != nil {
		return 0, true, err
	}
	return frontierSeg, done, nil
}

// deleteIndexEntries puts into b the deletion of record id's index entries,
// which rec's fields name, as index wrote them; key is scratch space.
func deleteIndexEntries(b *pebble.Batch, key []byte, id ID, rec *Record) []byte {
	key = appendID(indexPrefix(key[:0], kindStatus, string(rec.Status)), id)
	b.Delete(key, nil)
	if rec.ControlID != "" {
		key = appendID(indexPrefix(key[:0], kindControlID, rec.ControlID), id)
		b.Delete(key, nil)
		key = appendID(indexPrefix(key[:0], kindDedupe, rec.Sender, rec.ControlID), id)
		b.Delete(key, nil)
	}
	if rec.NHSNumber != "" {
		key = appendID(indexPrefix(key[:0], kindNHSNumber, rec.NHSNumber), id)
		b.Delete(key, nil)
	}
	return key
}

// deleteZones puts into b the deletion of the zones of the blocks wholly
// below ID limit that hold no kept record.
func deleteZones(r pebble.Reader, b *pebble.Batch, limit ID, kept map[uint64]bool) error {
	end := uint64(limit) >> zoneShift
	if end == 0 {
		return nil
	}
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: []byte{kindZone}, UpperBound: zone{block: end}.key()})
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		if len(it.Key()) != 9 {
			it.Close()
			return fmt.Errorf("%w: zone key", ErrCorrupt)
		}
		if !kept[binary.BigEndian.Uint64(it.Key()[1:])] {
			b.Delete(it.Key(), nil)
		}
	}
	return it.Close()
}

// removeSegments removes the segment files before segment before that hold no
// kept record, once the index deletions that emptied them are durable.
func (l *Local) removeSegments(p *retentionPass, before uint64) error {
	nums, err := l.seg.list()
	if err != nil {
		return fmt.Errorf("segment log: %w", err)
	}
	var doomed []uint64
	for _, num := range nums {
		if num < before && !p.pinned[num] {
			doomed = append(doomed, num)
		}
	}
	if len(doomed) == 0 {
		return nil
	}
	if err := l.db.LogData(nil, pebble.Sync); err != nil {
		return fmt.Errorf("sync the index: %w", err)
	}
	if err := l.retentionHook("synced"); err != nil {
		return err
	}
	for _, num := range doomed {
		size, err := l.seg.remove(num)
		if err != nil {
			return fmt.Errorf("segment log: remove segment %d: %w", num, err)
		}
		p.stats.segments++
		p.stats.bytes += size
		if err := l.retentionHook("removed"); err != nil {
			return err
		}
	}
	if err := l.seg.syncDir(); err != nil {
		return fmt.Errorf("segment log: %w", err)
	}
	return l.retentionHook("segments")
}

// retentionHook lets a test stop a pass at a stage, as a crash would:
// "index" after a batch's index deletions are committed, "synced" once they
// are durable, "removed" after each segment file is removed, "segments" once
// the removals are durable.
func (l *Local) retentionHook(stage string) error {
	if l.onRetention == nil {
		return nil
	}
	return l.onRetention(stage)
}

// holdIter tells whether records have outbox rows of one kind, for IDs asked
// in increasing order.
type holdIter struct {
	it   *pebble.Iterator
	kind byte
	key  []byte
}

func newHoldIter(r pebble.Reader, kind byte) (*holdIter, error) {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: []byte{kind}, UpperBound: []byte{kind + 1}})
	if err != nil {
		return nil, err
	}
	return &holdIter{it: it, kind: kind}, nil
}

func (h *holdIter) has(id ID) bool {
	h.key = idKey(h.key[:0], h.kind, id)
	return h.it.SeekGE(h.key) && bytes.HasPrefix(h.it.Key(), h.key)
}

// readCursor reads the routing cursor through r: 1 when nothing was routed.
func readCursor(r pebble.Reader) (ID, error) {
	v, closer, err := r.Get(keyCursor)
	if errors.Is(err, pebble.ErrNotFound) {
		return 1, nil
	} else if err != nil {
		return 0, err
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: cursor", ErrCorrupt)
	}
	return ID(binary.BigEndian.Uint64(v)), nil
}

// readHorizon reads the retention's horizon through r: 0 before any pass.
func readHorizon(r pebble.Reader) (ID, error) {
	v, closer, err := r.Get(keyRetention)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	} else if err != nil {
		return 0, fmt.Errorf("read retention horizon: %w", err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: retention horizon", ErrCorrupt)
	}
	return ID(binary.BigEndian.Uint64(v)), nil
}

// removedBy turns the error of a read of record id into ErrRemoved when
// retention removed the record: before the read (the record is gone and below
// the horizon), or during it (its segment went after its meta was read).
func (l *Local) removedBy(id ID, err error) error {
	switch {
	case errors.Is(err, ErrNotFound):
		if id < ID(l.horizon.Load()) {
			return ErrRemoved
		}
	case errors.Is(err, iofs.ErrNotExist):
		_, closer, gerr := l.reader().Get(idKey(nil, kindMeta, id))
		if errors.Is(gerr, pebble.ErrNotFound) {
			return ErrRemoved
		} else if gerr == nil {
			closer.Close()
		}
	}
	return err
}

// journalMetrics are the journal's own metrics; see Local.Collectors.
type journalMetrics struct {
	purged prometheus.Counter
	kept   *prometheus.GaugeVec
	bytes  prometheus.GaugeFunc
}

func newJournalMetrics(seg *segmentLog) *journalMetrics {
	return &journalMetrics{
		purged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "spinebridge_journal_purged_total",
			Help: "Messages removed from the journal by its retention.",
		}),
		kept: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "spinebridge_journal_retained_messages",
			Help: "Messages older than the journal's retention kept at the last pass because work remains: a dead letter, a replay asked for, or a pending delivery.",
		}, []string{"reason"}),
		bytes: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "spinebridge_journal_segment_bytes",
			Help: "Bytes of the journal's segment files on disk.",
		}, func() float64 { return float64(seg.diskBytes()) }),
	}
}

// Collectors returns the journal's metrics, to register: messages removed by
// retention, messages kept past it and why, and the segment files' bytes.
func (l *Local) Collectors() []prometheus.Collector {
	return []prometheus.Collector{l.metrics.purged, l.metrics.kept, l.metrics.bytes}
}
