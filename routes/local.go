package routes

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"
)

// LocalOptions tunes the embedded journal. The zero value is what the engine
// runs with.
type LocalOptions struct {
	// ReadOnly opens an existing journal for reading only, for tools that inspect
	// it: Append and SetStatus return ErrReadOnly. It still takes the directory's
	// lock, so it fails with ErrLocked while an engine has the journal open.
	ReadOnly bool
	// CacheSize is the bytes of the store's block cache; 0 means 64 MiB.
	CacheSize int64
	// Logger receives the store's warnings and background errors; slog.Default()
	// when nil.
	Logger *slog.Logger
	// DuplicateWindow is the longest span FindControlID is asked to look back
	// (the intake's duplicate window). Control ids received within it are kept in
	// memory so that a new one is proved new without reading the store; 0 keeps
	// the most recent RecentControlIDs whatever their age.
	DuplicateWindow time.Duration
	// RecentControlIDs caps the control ids kept in memory (about 48 bytes
	// each); 0 means 1,048,576. Older lookups read the store.
	RecentControlIDs int
	// Retention is how long a record is kept once nothing needs it: older
	// records that are routed, with no delivery pending or dead-lettered and
	// no replay asked for, are removed in the background, at open and every
	// five minutes (or a tenth of Retention, when shorter), and segment files
	// left with no record are deleted (see local_retention.go). 0 keeps every record for ever. It may not be
	// shorter than DuplicateWindow, or a resent message could be taken for a
	// new one.
	Retention time.Duration

	// tailBytes caps the recent records kept in memory for reading back;
	// 0 means defaultTailBytes. Tests make it small to reach the store.
	tailBytes int
	// indexSync is how often the index is synced in the background; 0 means
	// indexSyncInterval. Tests make it long, so that a crash loses the index.
	indexSync time.Duration

	// retentionEvery is how often retention runs; 0 means passInterval.
	// Negative runs no pass in the background: tests run them.
	retentionEvery time.Duration
	// now is the clock retention judges age by; time.Now when nil.
	now func() time.Time

	// fs replaces the disk, for tests that drop what was never synced.
	fs vfs.FS
}

// Local is the embedded journal: a Pebble store in one directory, written with
// group commit. Open it with OpenLocal.
type Local struct {
	db       *pebble.DB
	seg      *segmentLog
	lock     *pebble.Lock // the directory's lock, held from before Open to after Close
	fs       vfs.FS
	dir      string // absolute on the real disk, the key of openDirs
	readOnly bool
	log      *slog.Logger

	// Group commit. Append encodes its record, queues it and waits; one committer
	// goroutine takes everything queued, numbers it and commits it with one sync.
	queue chan *appendReq
	reqs  sync.Pool // *appendReq
	// Owned by the committer goroutine (and by OpenLocal before it starts).
	next      ID   // the next ID to assign
	zone      zone // the block of the last ID assigned
	zoneValid bool // false until the first record
	// failed, once set, answers every later Append: a group could not be
	// written to the segment log, or not indexed after it was.
	failed         error
	segBuf         []byte // the group's records as the segment log holds them
	keyBuf, valBuf []byte

	// overlay, when read-only, holds the index entries of records found only
	// in the segment log (see reindex); reads go through it.
	overlay *pebble.Batch
	// reindexed is how many records the open found only in the segment log.
	reindexed int
	// lastAtOpen is the highest ID the journal held when it was opened.
	lastAtOpen ID

	// The store's write-ahead log is synced in the background (syncIndex);
	// indexSynced is closed when that goroutine has returned.
	indexSynced chan struct{}

	recent *recentControlIDs // nil when read-only
	tail   *tailCache        // nil when read-only

	appended chan struct{} // signalled after each commit; see Outbox.Appended
	eventSeq atomic.Uint64 // the last event key's sequence number

	statusLocks [64]sync.Mutex // serialise SetStatus's read-modify-write per ID

	// Retention (local_retention.go). A pass holds replayMu and every status
	// lock while it decides and commits a batch; RequestReplay holds replayMu.
	retention   time.Duration
	now         func() time.Time
	horizon     atomic.Uint64 // every absent ID below it was removed by retention
	passMu      sync.Mutex    // one pass at a time
	replayMu    sync.Mutex
	retained    chan struct{} // closed when the retention goroutine has returned
	onRetention func(stage string) error
	metrics     *journalMetrics

	// Shutdown. Every operation counts itself in active; Close sets closing,
	// and the last operation to leave after that (or Close itself when none is
	// under way) closes idle. shutdown then stops the committer and the store.
	active     atomic.Int64
	closing    atomic.Bool
	idle       chan struct{}
	idleOnce   sync.Once
	stop       chan struct{} // closed by Close: List stops between records
	committed  chan struct{} // closed when the committer has returned
	finished   chan struct{} // closed once the store is closed; closeErr is then set
	closeErr   error
	closeStart sync.Once
}

var _ Journal = (*Local)(nil)

// LastAtOpen is the highest ID the journal held when it was opened (0 when it
// held none): the records of earlier runs end there.
func (l *Local) LastAtOpen() ID { return l.lastAtOpen }

// appendReq is one Append waiting for the committer. The committer reads the
// encoded values and index fields and answers on done; it never touches the
// caller's Record, which the caller may abandon when its context ends.
type appendReq struct {
	meta, body []byte
	indexFields
	dedupeHash uint64     // recent.hash of the 'd' prefix, when controlID is set
	id         ID         // set by the committer before it answers
	loc        segLoc     // set by the committer: the record in the segment log
	done       chan error // buffered: the committer never waits for the caller
	scratch    [2][]byte  // meta and body buffers, kept for reuse
	// dedupeScratch holds the 'd' prefix while it is hashed.
	dedupeScratch []byte
}

// indexFields are what the index entries of a record are made of.
type indexFields struct {
	received  int64 // Unix nanoseconds
	sender    string
	controlID string
	nhsNumber string
	status    Status
}

const (
	// maxGroup and maxGroupBytes cap one commit, so that a long queue does not
	// make its first records wait for the last and one batch stays well inside
	// the memtable (a batch over half of it is written to disk on its own).
	maxGroup      = 1024
	maxGroupBytes = 8 << 20
	// defaultCacheSize holds the recent part of a journal: indexes and the
	// records the intake and the dispatcher read back soon after writing.
	defaultCacheSize = 64 << 20
	// memTableSize is large enough that at 20,000 records/s the store flushes
	// every few seconds instead of several times a second, which keeps level 0
	// small and compactions rare.
	memTableSize = 64 << 20
	// indexSyncInterval is how often the store's write-ahead log is synced
	// while it is written to (see syncIndex).
	indexSyncInterval = 100 * time.Millisecond
)

// openDirs holds the journal directories open in this process. The store's
// lock file stops other processes; this stops a second open in the same one,
// with the same error.
var openDirs struct {
	sync.Mutex
	m map[string]bool
}

// OpenLocal opens the embedded journal in dir, creating it when it does not
// exist (unless opts.ReadOnly). It recovers what the last run left: every record
// whose Append returned is there. A directory held by another journal, in this
// process or another, fails with ErrLocked.
func OpenLocal(dir string, opts LocalOptions) (*Local, error) {
	switch {
	case opts.Retention < 0:
		return nil, fmt.Errorf("journal: open %s: retention %v is negative", dir, opts.Retention)
	case opts.Retention > 0 && opts.DuplicateWindow > opts.Retention:
		return nil, fmt.Errorf("journal: open %s: retention %v is shorter than the duplicate window %v: a message resent within the window could be taken for a new one",
			dir, opts.Retention, opts.DuplicateWindow)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	fsys := opts.fs
	if fsys == nil {
		// The real disk: the directory's resolved path names it in openDirs, so
		// it must exist before it is resolved.
		fsys = vfs.Default
		abs, err := filepath.Abs(dir)
		if err == nil && !opts.ReadOnly {
			err = createDir(fsys, abs)
		}
		if err == nil {
			abs, err = filepath.EvalSymlinks(abs)
		}
		if err != nil {
			return nil, fmt.Errorf("journal: open %s: %w", dir, err)
		}
		openDirs.Lock()
		if openDirs.m[abs] {
			openDirs.Unlock()
			return nil, fmt.Errorf("journal: open %s: %w (in this process)", dir, ErrLocked)
		}
		if openDirs.m == nil {
			openDirs.m = map[string]bool{}
		}
		openDirs.m[abs] = true
		openDirs.Unlock()
		dir = abs
	}
	l, err := openLocal(fsys, dir, opts, log)
	if err != nil {
		if fsys == vfs.Default {
			openDirs.Lock()
			delete(openDirs.m, dir)
			openDirs.Unlock()
		}
		return nil, fmt.Errorf("journal: open %s: %w", dir, err)
	}
	return l, nil
}

// createDir creates dir when it is missing and syncs its parent, so that a new
// journal's directory entry is as durable as the records written into it.
func createDir(fsys vfs.FS, dir string) error {
	if _, err := fsys.Stat(dir); err == nil {
		return nil
	}
	if err := fsys.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	return syncAndClose(fsys.OpenDir(fsys.PathDir(dir)))
}

func openLocal(fsys vfs.FS, dir string, opts LocalOptions, log *slog.Logger) (*Local, error) {
	if opts.ReadOnly {
		if _, err := fsys.Stat(dir); err != nil {
			return nil, err
		}
	} else if err := createDir(fsys, dir); err != nil {
		return nil, err
	}
	lock, err := pebble.LockDirectory(dir, fsys)
	if err != nil {
		// fcntl answers EAGAIN or EACCES when another process holds the lock.
		if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) {
			return nil, ErrLocked
		}
		return nil, fmt.Errorf("lock: %w", err)
	}
	// The lock outlives the store: shutdown releases it after closing the store,
	// and a failed open here.
	opened := false
	defer func() {
		if !opened {
			lock.Close()
		}
	}()

	cacheSize := opts.CacheSize
	if cacheSize <= 0 {
		cacheSize = defaultCacheSize
	}
	cache := pebble.NewCache(cacheSize)
	defer cache.Unref() // the store holds its own reference
	po := &pebble.Options{
		FS:                 fsys,
		Cache:              cache,
		Lock:               lock,
		ReadOnly:           opts.ReadOnly,
		MemTableSize:       memTableSize,
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             storeLogger{log},
		EventListener: &pebble.EventListener{
			BackgroundError: func(err error) { log.Error("journal: store background error", "err", err) },
			DiskSlow: func(info pebble.DiskSlowInfo) {
				log.Warn("journal: disk slow", "op", info.OpType.String(), "duration", info.Duration)
			},
		},
	}
	db, err := pebble.Open(dir, po)
	if err != nil {
		if errors.Is(err, pebble.ErrDBDoesNotExist) {
			return nil, fmt.Errorf("no journal here: %w", fs.ErrNotExist)
		}
		return nil, err
	}
	seg, err := openSegmentLog(fsys, dir, opts.ReadOnly)
	if err != nil {
		db.Close()
		return nil, err
	}
	l := &Local{
		db:          db,
		seg:         seg,
		lock:        lock,
		fs:          fsys,
		dir:         dir,
		readOnly:    opts.ReadOnly,
		log:         log,
		idle:        make(chan struct{}),
		stop:        make(chan struct{}),
		committed:   make(chan struct{}),
		indexSynced: make(chan struct{}),
		finished:    make(chan struct{}),
		appended:    make(chan struct{}, 1),
		retention:   opts.Retention,
		now:         opts.now,
		retained:    make(chan struct{}),
		metrics:     newJournalMetrics(seg),
	}
	if l.now == nil {
		l.now = time.Now
	}
	// Event keys must keep increasing across restarts; the clock at open, in
	// nanoseconds, is ahead of every sequence number an earlier run reached
	// unless that run wrote a billion events a second.
	l.eventSeq.Store(uint64(time.Now().UnixNano()))
	if err := l.start(opts); err != nil {
		if l.overlay != nil {
			l.overlay.Close()
		}
		db.Close()
		seg.close()
		return nil, err
	}
	l.lastAtOpen = l.next - 1
	opened = true
	if l.readOnly {
		close(l.committed)
		close(l.indexSynced)
		close(l.retained)
		return l, nil
	}
	l.queue = make(chan *appendReq, maxGroup)
	l.reqs.New = func() any { return &appendReq{done: make(chan error, 1)} }
	go l.commitLoop()
	go l.syncIndex(cmp.Or(opts.indexSync, indexSyncInterval))
	if l.retention > 0 && opts.retentionEvery >= 0 {
		go l.retainLoop(cmp.Or(opts.retentionEvery, passInterval(l.retention)))
	} else {
		close(l.retained)
	}
	return l, nil
}

// start recovers what the last run left and, unless read-only, makes the
// journal ready to append.
func (l *Local) start(opts LocalOptions) error {
	if err := l.recover(); err != nil {
		return err
	}
	if err := l.reindex(); err != nil {
		return err
	}
	if l.readOnly {
		return nil
	}
	if err := l.seg.startWriting(); err != nil {
		return fmt.Errorf("segment log: %w", err)
	}
	var err error
	l.recent, err = loadRecentControlIDs(l.db, opts.RecentControlIDs, opts.DuplicateWindow, time.Now())
	l.tail = newTailCache(opts.tailBytes)
	return err
}

// recover checks the layout version and restores the next ID and the current
// zone from what is stored.
func (l *Local) recover() error {
	v, closer, err := l.db.Get(keyLayout)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		// A new journal, or one whose first write never happened.
		if l.readOnly {
			break
		}
		if err := l.db.Set(keyLayout, []byte{layoutVersion}, pebble.Sync); err != nil {
			return fmt.Errorf("write layout version: %w", err)
		}
	case err != nil:
		return fmt.Errorf("read layout version: %w", err)
	default:
		version := -1
		if len(v) == 1 {
			version = int(v[0])
		}
		closer.Close()
		switch version {
		case layoutVersion:
		case layoutBeforeSegment:
			// Written before the segment log: its records' bodies stay under
			// 'b' and are read there; new records go to the log, whose
			// directory exists by now. The new version stops an older build
			// from opening the journal and missing them.
			if l.readOnly {
				break
			}
			if err := l.db.Set(keyLayout, []byte{layoutVersion}, pebble.Sync); err != nil {
				return fmt.Errorf("write layout version: %w", err)
			}
		default:
			return fmt.Errorf("%w: layout version %v, this build reads %d and %d", ErrCorrupt, v, layoutBeforeSegment, layoutVersion)
		}
	}

	var high ID
	v, closer, err = l.db.Get(keyHighWater)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		return fmt.Errorf("read high water: %w", err)
	default:
		if len(v) == 8 {
			high = ID(binary.BigEndian.Uint64(v))
		}
		closer.Close()
	}

	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: []byte{kindMeta}, UpperBound: []byte{kindMeta + 1}})
	if err != nil {
		return fmt.Errorf("scan records: %w", err)
	}
	if it.Last() {
		if id, ok := keyID(it.Key()); ok {
			high = max(high, id)
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("scan records: %w", err)
	}
	l.next = high + 1

	horizon, err := readHorizon(l.db)
	if err != nil {
		return err
	}
	l.horizon.Store(uint64(horizon))

	it, err = l.db.NewIter(&pebble.IterOptions{LowerBound: []byte{kindZone}, UpperBound: []byte{kindZone + 1}})
	if err != nil {
		return fmt.Errorf("scan zones: %w", err)
	}
	if it.Last() {
		l.zone, err = decodeZone(it.Key(), it.Value())
		l.zoneValid = err == nil
	}
	if cerr := it.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("scan zones: %w", cerr)
	}
	return err
}

// enter counts an operation in, or refuses it once Close has begun. The order
// (count, then check) pairs with Close's (set closing, then check count): either
// Close sees this operation and waits for it, or this operation sees Close.
func (l *Local) enter() error {
	l.active.Add(1)
	if l.closing.Load() {
		l.leave()
		return ErrClosed
	}
	return nil
}

func (l *Local) leave() {
	if l.active.Add(-1) == 0 && l.closing.Load() {
		l.idleOnce.Do(func() { close(l.idle) })
	}
}

// Append stores rec durably. See Journal.Append. When ctx ends while Append waits
// for its commit, Append returns the context's error and the record may or may
// not be stored, as with a crash at that moment: the caller must not acknowledge.
func (l *Local) Append(ctx context.Context, rec *Record) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("journal: append: %w", err)
	}
	if l.readOnly {
		return fmt.Errorf("journal: append: %w", ErrReadOnly)
	}
	if rec.Received.IsZero() {
		rec.Received = time.Now().UTC()
	} else if !timeInRange(rec.Received) {
		return errors.New("journal: append: received time outside the years 1678 to 2262")
	}
	if rec.Status == "" {
		rec.Status = StatusReceived
	}
	if err := l.enter(); err != nil {
		return fmt.Errorf("journal: append: %w", err)
	}
	defer l.leave()

	// Encoding here rather than in the committer spreads the copying over the
	// callers' goroutines and leaves the committer only the ordering.
	r := l.reqs.Get().(*appendReq)
	r.meta = encodeMeta(r.scratch[0][:0], rec)
	r.body = encodeBody(r.scratch[1][:0], rec)
	r.scratch[0], r.scratch[1] = r.meta, r.body
	r.received = rec.Received.UnixNano()
	r.sender, r.controlID, r.nhsNumber, r.status = rec.Sender, rec.ControlID, rec.NHSNumber, rec.Status
	if rec.ControlID != "" {
		r.dedupeScratch = indexPrefix(r.dedupeScratch[:0], kindDedupe, rec.Sender, rec.ControlID)
		r.dedupeHash = l.recent.hash(r.dedupeScratch)
	}

	select {
	case l.queue <- r:
	case <-ctx.Done():
		l.putReq(r)
		return fmt.Errorf("journal: append: %w", ctx.Err())
	}
	select {
	case err := <-r.done:
		id := r.id
		l.putReq(r)
		if err != nil {
			return err
		}
		rec.ID = id
		return nil
	case <-ctx.Done():
		// The committer will still answer on done; the request is left to the
		// garbage collector rather than reused under it.
		return fmt.Errorf("journal: append: %w", ctx.Err())
	}
}

// putReq returns r to the pool, dropping buffers grown for unusually large
// messages so that one big message does not pin its memory for good.
func (l *Local) putReq(r *appendReq) {
	const keep = 64 << 10
	if cap(r.scratch[1]) > keep {
		r.scratch[1] = nil
	}
	r.meta, r.body = nil, nil
	r.sender, r.controlID, r.nhsNumber = "", "", ""
	l.reqs.Put(r)
}

// commitLoop is the committer: it takes every queued Append, up to maxGroup,
// commits them as one synced batch and answers each. While one commit syncs,
// the next group gathers in the queue, so the sync is shared by all of them. It
// returns when Close has waited out every operation, after committing whatever
// an abandoned Append left queued.
func (l *Local) commitLoop() {
	defer close(l.committed)
	group := make([]*appendReq, 0, maxGroup)
	for {
		select {
		case r := <-l.queue:
			group = append(group[:0], r)
		case <-l.idle:
			for {
				select {
				case r := <-l.queue:
					l.commit([]*appendReq{r})
				default:
					return
				}
			}
		}
		size := len(group[0].meta) + len(group[0].body)
	gather:
		for len(group) < maxGroup && size < maxGroupBytes {
			select {
			case r := <-l.queue:
				group = append(group, r)
				size += len(r.meta) + len(r.body)
			default:
				break gather
			}
		}
		l.commit(group)
		clear(group)
	}
}

// commit numbers the group's records, appends them to the segment log with one
// sync, indexes them in the store without one, and answers each. Numbering
// here, in the one goroutine that commits, makes ID order the order of the log
// and of the store's write-ahead log: a record is never visible, or durable,
// before one with a lower ID.
func (l *Local) commit(group []*appendReq) {
	err := l.failed
	if err == nil {
		err = l.commitGroup(group)
	}
	if err != nil {
		// Nothing more may be appended after a group whose write failed (its
		// bytes in the log are unknown), nor indexed after one missing from
		// the index: the journal refuses appends until it is opened again,
		// which indexes from the log whatever reached it.
		if l.failed == nil {
			l.failed = err
			l.log.Error("journal: appends refused until the journal is opened again", "err", err)
		}
		l.tail.reset()
	} else {
		l.tail.publish(group[len(group)-1].id)
		l.recent.add(time.Now(), group)
		l.notify()
	}
	for _, r := range group {
		r.done <- err
	}
	// Let the answered Appends run before this goroutine commits again. Without
	// this they wait in this P's run queue while the next commit's sync, a
	// syscall, holds the P, until the runtime's monitor takes it back; at 10,000
	// records/s arriving in bursts that made p99 latency 4-6 ms instead of
	// 1.5-2 ms (measured with the harness described in docs/architecture.md).
	runtime.Gosched()
}

// commitGroup numbers the group, appends it to the segment log (the one synced
// write) and indexes it; see commit.
func (l *Local) commitGroup(group []*appendReq) error {
	buf := l.segBuf[:0]
	for _, r := range group {
		r.id = l.next
		l.next++
		start := len(buf)
		buf = appendSegmentRecord(buf, r.id, r.meta, r.body)
		r.loc = segLoc{segPos{0, int64(start)}, int64(len(buf) - start)}
	}
	if cap(buf) <= maxGroupBytes*2 {
		l.segBuf = buf
	}
	l.tail.add(group[0].id, len(group),
		func(i int) []byte { return group[i].meta },
		func(i int) []byte { return group[i].body })
	at, err := l.seg.append(buf)
	if err != nil {
		return fmt.Errorf("journal: append: %w", err)
	}
	b := l.db.NewBatch()
	defer b.Close()
	for _, r := range group {
		r.loc.seg = at.seg
		r.loc.off += at.off
	}
	l.index(b, len(group), func(i int) (ID, segLoc, []byte, *indexFields) {
		r := group[i]
		return r.id, r.loc, r.meta, &r.indexFields
	})
	l.finishIndex(b, group[len(group)-1].loc.end())
	// The log holds the group durably; the index can be rebuilt from it, so
	// its commit does not sync (see syncIndex).
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("journal: append: index: %w", err)
	}
	return nil
}

// index puts into b the meta and index entries of n records, the i-th given
// by rec(i) in ID order: its ID, its place in the segment log, its meta and the
// fields of its index entries. It widens the current zone, writing each
// previous one when a record starts a new block; finishIndex ends the batch.
// Only the committer, or OpenLocal before it starts, calls it.
//
// Keys go into the batch one kind at a time, each kind in ID order: Pebble's
// memtable insert keeps its place from one key to the next, so a run of
// ascending keys ('m', and 's' for one status) costs a fraction of the same
// keys interleaved with the others, which made every insert a search from the
// top of the skiplist (8 µs a record, 15 % of the engine's CPU).
func (l *Local) index(b *pebble.Batch, n int, rec func(i int) (ID, segLoc, []byte, *indexFields)) {
	// Set copies keys and values, so one buffer serves them all; it fails only
	// on a batch already committed or closed, which this is not, so its error
	// is not checked.
	key := l.keyBuf[:0]
	for i := range n {
		id, loc, meta, f := rec(i)
		key = idKey(key[:0], kindMeta, id)
		l.valBuf = encodeLocatedMeta(l.valBuf[:0], loc, meta)
		b.Set(key, l.valBuf, nil)
		l.widenZone(b, id, f.received)
	}
	for i := range n {
		id, _, _, f := rec(i)
		key = appendID(indexPrefix(key[:0], kindStatus, string(f.status)), id)
		b.Set(key, nil, nil)
	}
	for i := range n {
		if id, _, _, f := rec(i); f.controlID != "" {
			key = appendID(indexPrefix(key[:0], kindControlID, f.controlID), id)
			b.Set(key, nil, nil)
		}
	}
	for i := range n {
		if id, _, _, f := rec(i); f.controlID != "" {
			var recv [8]byte
			binary.BigEndian.PutUint64(recv[:], uint64(f.received))
			key = appendID(indexPrefix(key[:0], kindDedupe, f.sender, f.controlID), id)
			b.Set(key, recv[:], nil)
		}
	}
	for i := range n {
		if id, _, _, f := rec(i); f.nhsNumber != "" {
			key = appendID(indexPrefix(key[:0], kindNHSNumber, f.nhsNumber), id)
			b.Set(key, nil, nil)
		}
	}
	l.keyBuf = key
}

// widenZone adds a record received at t (Unix nanoseconds) to the current zone,
// or, when id starts a new block, writes the current one into b and starts the
// next.
func (l *Local) widenZone(b *pebble.Batch, id ID, t int64) {
	blk := uint64(id) >> zoneShift
	if l.zoneValid && blk == l.zone.block {
		l.zone.add(t)
		return
	}
	prefixMax := t
	if l.zoneValid {
		b.Set(l.zone.key(), l.zone.value(), nil)
		prefixMax = max(prefixMax, l.zone.prefixMax)
	}
	l.zone = zone{block: blk, min: t, max: t, prefixMax: prefixMax}
	l.zoneValid = true
}

// finishIndex ends a batch of index entries: the current zone, the highest ID
// assigned, and the log position indexed up to.
func (l *Local) finishIndex(b *pebble.Batch, indexed segPos) {
	b.Set(l.zone.key(), l.zone.value(), nil)
	b.Set(keyHighWater, binary.BigEndian.AppendUint64(nil, uint64(l.next-1)), nil)
	b.Set(keyIndexed, encodePos(indexed), nil)
}

// reindex indexes the records the segment log holds after the position last
// indexed: those whose group reached the log but whose index entries never
// reached the disk (the machine lost power, or the process died before the
// store wrote them). Before indexing them it makes them durable, and cuts off
// any torn tail. Read-only, it writes nothing: it keeps their entries in an
// indexed batch that reads go through.
func (l *Local) reindex() error {
	var from segPos
	v, closer, err := l.db.Get(keyIndexed)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		return fmt.Errorf("read indexed position: %w", err)
	default:
		from, err = decodePos(v)
		closer.Close()
		if err != nil {
			return err
		}
	}
	var b *pebble.Batch
	if l.readOnly {
		b = l.db.NewIndexedBatch()
	} else {
		b = l.db.NewBatch()
	}
	type found struct {
		id   ID
		loc  segLoc
		meta []byte
		f    indexFields
	}
	var recs []found
	last := l.next - 1
	ends, err := l.seg.scan(from, func(loc segLoc, id ID, meta, _ []byte) error {
		if id <= last {
			return fmt.Errorf("%w: segment %d offset %d: record %d follows record %d", ErrCorrupt, loc.seg, loc.off, id, last)
		}
		rec := Record{ID: id}
		if err := decodeMeta(&rec, meta); err != nil {
			return fmt.Errorf("segment %d offset %d: %w", loc.seg, loc.off, err)
		}
		recs = append(recs, found{id, loc, slices.Clone(meta), indexFields{
			received:  rec.Received.UnixNano(),
			sender:    rec.Sender,
			controlID: rec.ControlID,
			nhsNumber: rec.NHSNumber,
			status:    rec.Status,
		}})
		last = id
		return nil
	})
	if err != nil {
		b.Close()
		return fmt.Errorf("segment log: %w", err)
	}
	n := len(recs)
	l.next, l.reindexed = last+1, n
	if n > 0 {
		l.index(b, n, func(i int) (ID, segLoc, []byte, *indexFields) {
			r := &recs[i]
			return r.id, r.loc, r.meta, &r.f
		})
		l.finishIndex(b, recs[n-1].loc.end())
	}
	if l.readOnly {
		if n > 0 {
			l.overlay = b
		} else {
			b.Close()
		}
		return nil
	}
	defer b.Close()
	for _, e := range ends {
		switch {
		case e.good < e.size:
			l.log.Warn("journal: cutting off the torn tail of a segment", "segment", e.num, "at", e.good, "bytes", e.size-e.good)
			err = l.seg.truncate(e.num, e.good)
		case e.records > 0:
			err = l.seg.syncFile(e.num)
		}
		if err != nil {
			return fmt.Errorf("segment log: %w", err)
		}
	}
	if n == 0 {
		return nil
	}
	l.log.Info("journal: indexed records found only in the segment log", "records", n)
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("index records from the segment log: %w", err)
	}
	return nil
}

// syncIndex syncs the store's write-ahead log every interval while
// anything is written to it, until the committer returns. Appends do not need
// it: the segment log is what makes them durable. It bounds what a machine
// crash takes from the store: index entries to rebuild from the log at open,
// and outbox writes (routing, settled deliveries), whose loss repeats work.
func (l *Local) syncIndex(every time.Duration) {
	defer close(l.indexSynced)
	t := time.NewTicker(every)
	defer t.Stop()
	var synced uint64
	for {
		select {
		case <-l.committed:
			return
		case <-t.C:
		}
		if l.db.Metrics().WAL.BytesIn == synced {
			continue // nothing written since the last sync
		}
		if err := l.db.LogData(nil, pebble.Sync); err != nil {
			l.log.Error("journal: sync the index", "err", err)
			continue
		}
		synced = l.db.Metrics().WAL.BytesIn
	}
}

// appendID appends id to an index key prefix.
func appendID(dst []byte, id ID) []byte {
	return binary.BigEndian.AppendUint64(dst, uint64(id))
}

// SetStatus changes a record's status durably. See Journal.SetStatus.
func (l *Local) SetStatus(ctx context.Context, id ID, s Status) error {
	return l.SetAnswer(ctx, id, s, "")
}

// SetAnswer changes a record's status and, unless ackCode is empty, the code of
// the ACK it got, durably. See Journal.SetAnswer.
func (l *Local) SetAnswer(ctx context.Context, id ID, s Status, ackCode string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("journal: set status: %w", err)
	}
	if l.readOnly {
		return fmt.Errorf("journal: set status: %w", ErrReadOnly)
	}
	if s == "" {
		return errors.New("journal: set status: empty status")
	}
	if err := l.enter(); err != nil {
		return fmt.Errorf("journal: set status: %w", err)
	}
	defer l.leave()

	mu := &l.statusLocks[uint64(id)%uint64(len(l.statusLocks))]
	mu.Lock()
	defer mu.Unlock()
	metaKey := idKey(nil, kindMeta, id)
	v, closer, err := l.db.Get(metaKey)
	if errors.Is(err, pebble.ErrNotFound) {
		return fmt.Errorf("journal: set status of %d: %w", id, ErrNotFound)
	} else if err != nil {
		return fmt.Errorf("journal: set status of %d: %w", id, err)
	}
	rec := Record{ID: id}
	loc, located, err := decodeStoredMeta(&rec, v)
	closer.Close()
	if err != nil {
		return fmt.Errorf("journal: set status: %w", err)
	}
	old := rec.Status
	rec.Status = s
	if ackCode != "" {
		rec.AckCode = ackCode
	}

	// Written even when the status is unchanged: an earlier SetStatus to the
	// same value may still be syncing, and this call must not return first.
	meta := encodeMeta(nil, &rec)
	val := meta
	if located {
		val = encodeLocatedMeta(nil, loc, meta)
	}
	b := l.db.NewBatch()
	defer b.Close()
	b.Set(metaKey, val, nil)
	if old != s {
		b.Delete(appendID(indexPrefix(nil, kindStatus, string(old)), id), nil)
		b.Set(appendID(indexPrefix(nil, kindStatus, string(s)), id), nil, nil)
	}
	// A status lives only in the store, so this commit syncs; Pebble gathers
	// concurrent synced commits into one write-ahead log sync, so status
	// changes share syncs with each other. The sync also makes every index
	// entry written before it durable, this record's among them.
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("journal: set status of %d: %w", id, err)
	}
	l.tail.setMeta(id, meta)
	return nil
}

// Close waits for the operations under way to finish (a List stops at its next
// record), then closes the store and releases the directory. When ctx ends first,
// Close returns its error and the journal finishes closing in the background as
// soon as those operations end; it admits no new ones either way. Calls after the
// first return ErrClosed.
func (l *Local) Close(ctx context.Context) error {
	first := false
	l.closeStart.Do(func() {
		first = true
		l.closing.Store(true)
		close(l.stop)
		if l.active.Load() == 0 {
			l.idleOnce.Do(func() { close(l.idle) })
		}
		go l.shutdown()
	})
	if !first {
		return fmt.Errorf("journal: close: %w", ErrClosed)
	}
	select {
	case <-l.finished:
		return l.closeErr
	case <-ctx.Done():
		return fmt.Errorf("journal: close: %w", ctx.Err())
	}
}

// shutdown is started by Close and owned by the journal: it ends once every
// operation has, which List's check of stop and the bounded length of every
// other operation make short.
func (l *Local) shutdown() {
	<-l.idle
	<-l.committed   // closed at open when read-only, as no committer runs
	<-l.indexSynced // likewise
	<-l.retained    // closed at open when no retention runs
	if l.overlay != nil {
		l.overlay.Close()
	}
	// Closing the store syncs its write-ahead log: a journal closed cleanly
	// has nothing to index again at the next open.
	err := l.db.Close()
	if serr := l.seg.close(); err == nil {
		err = serr
	}
	if lerr := l.lock.Close(); err == nil {
		err = lerr
	}
	if err != nil {
		l.closeErr = fmt.Errorf("journal: close: %w", err)
	}
	if l.fs == vfs.Default {
		openDirs.Lock()
		delete(openDirs.m, l.dir)
		openDirs.Unlock()
	}
	close(l.finished)
}

// storeLogger passes Pebble's log lines to slog. Pebble's informational lines
// are for its developers, so they go to Debug; Fatalf means the store can no
// longer promise durability, and stopping is the only safe answer.
type storeLogger struct{ log *slog.Logger }

func (s storeLogger) Infof(format string, args ...any) {
	s.log.Debug("journal: store: " + fmt.Sprintf(format, args...))
}

func (s storeLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.log.Error("journal: store failed; stopping", "err", msg)
	panic("journal: store: " + msg)
}
