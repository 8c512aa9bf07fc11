package routes

import "sync"

// tailCache keeps the most recently committed records in memory, so that the
// dispatcher's read of what was just appended, and a Get of a recent ID, do not
// go to the store. Without it every record was read back through Pebble's
// merging iterator over every level soon after it was written: 15 % of the
// engine's CPU at 14,000 messages/s.
//
// It holds each record's meta and body values as the committer encoded them,
// copied into chunks (tailChunkSize bytes, or an eighth of a smaller limit),
// and evicts whole chunks,
// oldest first, once they hold more than limit bytes; an evicted chunk's memory
// takes the next records, so a steady stream allocates nothing. IDs in it are
// consecutive, as the committer assigns them.
//
// The committer adds a group's records before committing them and publishes
// them after: readers see only IDs up to visible. SetStatus, which can find a
// record only once it is committed, replaces the cached meta after its own
// commit; so once SetStatus has returned, the cache never holds an older status
// than the store, whichever of the committer and SetStatus wrote first.
type tailCache struct {
	limit int // bytes of chunks held before the oldest goes
	chunk int // size of a chunk, unless one record needs more

	mu      sync.RWMutex
	first   ID          // ID of the oldest entry
	ents    []tailEntry // a ring: n entries from head on
	head, n int
	visible ID // the last ID committed; entries after it are still being committed
	chunks  []tailChunk
	size    int      // bytes used in chunks
	spare   [][]byte // evicted chunks' memory, for the next ones
}

// tailEntry is one record's encoded values. meta starts inside a chunk and is
// replaced by a slice of its own when SetStatus changes the record (not counted
// in size: a hundred bytes for some of the records held).
type tailEntry struct {
	meta, body []byte
}

// tailChunk is a run of records' bytes; last is the ID of its last record.
type tailChunk struct {
	buf  []byte
	last ID
}

const (
	// defaultTailBytes holds about 25,000 records of the 2.5 KiB (message and
	// ACK) the engine's benchmark sends, over a second of traffic at 20,000
	// messages/s: the dispatcher, which follows a few records behind the
	// committer, reads from memory unless it falls that far behind.
	defaultTailBytes = 64 << 20
	tailChunkSize    = 1 << 20
	tailSpareChunks  = 4
)

func newTailCache(limit int) *tailCache {
	if limit <= 0 {
		limit = defaultTailBytes
	}
	return &tailCache{limit: limit, chunk: max(1, min(tailChunkSize, limit/8))}
}

// add caches n records about to be committed, with consecutive IDs from first
// on; meta(i) and body(i) are the values of the i-th. The values are copied.
// They stay hidden until publish.
func (t *tailCache) add(first ID, n int, meta, body func(i int) []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n > 0 && first != t.first+ID(t.n) {
		// Not the next ID: start again rather than hold records under
		// the wrong IDs.
		t.resetLocked()
	}
	if t.n == 0 {
		t.first = first
	}
	for i := range n {
		m, b := meta(i), body(i)
		need := len(m) + len(b)
		if len(t.chunks) == 0 || cap(t.last().buf)-len(t.last().buf) < need {
			t.chunks = append(t.chunks, tailChunk{buf: t.newChunk(need)})
		}
		c := t.last()
		start := len(c.buf)
		c.buf = append(c.buf, m...)
		c.buf = append(c.buf, b...)
		c.last = first + ID(i)
		mid, end := start+len(m), len(c.buf)
		t.push(tailEntry{meta: c.buf[start:mid:mid], body: c.buf[mid:end:end]})
		t.size += need
	}
	// The newest chunk stays, however large, so that what was just added can
	// be read.
	for t.size > t.limit && len(t.chunks) > 1 {
		t.evictLocked()
	}
}

func (t *tailCache) last() *tailChunk { return &t.chunks[len(t.chunks)-1] }

// push adds e after the newest entry, doubling the ring when it is full.
func (t *tailCache) push(e tailEntry) {
	if t.n == len(t.ents) {
		grown := make([]tailEntry, max(64, 2*len(t.ents)))
		for i := range t.n {
			grown[i] = *t.at(i)
		}
		t.ents, t.head = grown, 0
	}
	t.ents[(t.head+t.n)%len(t.ents)] = e
	t.n++
}

// at is the i-th entry from the oldest.
func (t *tailCache) at(i int) *tailEntry { return &t.ents[(t.head+i)%len(t.ents)] }

// newChunk returns empty memory for at least need bytes, reusing an evicted
// chunk's when it is large enough.
func (t *tailCache) newChunk(need int) []byte {
	for i, s := range t.spare {
		if cap(s) >= need {
			t.spare = append(t.spare[:i], t.spare[i+1:]...)
			return s[:0]
		}
	}
	return make([]byte, 0, max(need, t.chunk))
}

// evictLocked drops the oldest chunk and the records in it.
func (t *tailCache) evictLocked() {
	c := t.chunks[0]
	t.chunks = append(t.chunks[:0], t.chunks[1:]...)
	k := int(c.last-t.first) + 1
	for i := range k {
		*t.at(i) = tailEntry{}
	}
	t.head = (t.head + k) % len(t.ents)
	t.n -= k
	t.first = c.last + 1
	t.size -= len(c.buf)
	// Readers copy what they read while holding mu, so nothing refers to the
	// chunk once mu is released; its memory can take new records. Chunks
	// grown for one large record are left to the garbage collector.
	if len(t.spare) < tailSpareChunks && cap(c.buf) == t.chunk {
		t.spare = append(t.spare, c.buf[:0])
	}
}

// publish makes the records up to last visible: their commit has finished.
func (t *tailCache) publish(last ID) {
	t.mu.Lock()
	t.visible = last
	t.mu.Unlock()
}

// reset forgets every record: a commit failed, and the records added for it
// must not be read. Reads go to the store until the next records are added.
func (t *tailCache) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.resetLocked()
}

func (t *tailCache) resetLocked() {
	clear(t.ents)
	t.head, t.n = 0, 0
	for _, c := range t.chunks {
		if len(t.spare) < tailSpareChunks && cap(c.buf) == t.chunk {
			t.spare = append(t.spare, c.buf[:0])
		}
	}
	clear(t.chunks)
	t.chunks = t.chunks[:0]
	t.size, t.first, t.visible = 0, 0, 0
}

// get fills rec (whose ID is set) from the cache; false when the record is not
// there or not yet published.
func (t *tailCache) get(rec *Record) (bool, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if !t.holdsLocked(rec.ID) {
		return false, nil
	}
	e := t.at(int(rec.ID - t.first))
	if e.meta == nil {
		return false, nil // dropped
	}
	if err := decodeMeta(rec, e.meta); err != nil {
		return true, err
	}
	return true, decodeBody(rec, e.body)
}

func (t *tailCache) holdsLocked(id ID) bool {
	return t.n > 0 && id >= t.first && id <= t.visible
}

// bounds returns the first and last IDs readers can find in the cache; ok is
// false when it holds none.
func (t *tailCache) bounds() (first, last ID, ok bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.n == 0 || t.visible < t.first {
		return 0, 0, false
	}
	return t.first, t.visible, true
}

// drop forgets the records ids, which retention removed: a read finds them
// in neither the cache nor the store. The IDs are in increasing order.
func (t *tailCache) drop(ids []ID) {
	if t == nil || len(ids) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, id := range ids {
		if t.n > 0 && id >= t.first && id < t.first+ID(t.n) {
			*t.at(int(id - t.first)) = tailEntry{}
		}
	}
}

// setMeta replaces the cached meta of record id, when it is held, with meta,
// which the cache keeps.
func (t *tailCache) setMeta(id ID, meta []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n > 0 && id >= t.first && id < t.first+ID(t.n) {
		if e := t.at(int(id - t.first)); e.meta != nil {
			e.meta = meta
		}
	}
}
