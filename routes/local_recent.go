package routes

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/cockroachdb/pebble"
)

// recentControlIDs answers most duplicate checks without touching the store.
// Nearly every message's control id is new, and proving that from the 'd' index
// costs a seek into every level of the LSM tree: at 20,000 messages/s that was a
// third of the engine's CPU. This keeps, in memory, a hash of the 'd' prefix
// (sender and control id) of every record received at or after horizon, with
// the latest Received per hash. A hash that is absent, or only older than the
// caller's bound, proves there is no such record; a hash that is present may be
// a collision, so the store is still asked. It is a filter with no false
// negatives, not a second index.
//
// Memory is bounded: entries leave in insertion order once there are more than
// limit, or once older than retention, and horizon moves past every entry that
// left. A lookup reaching back before horizon goes to the store.
type recentControlIDs struct {
	seed      maphash.Seed
	limit     int
	retention time.Duration // 0: only limit bounds the entries

	mu      sync.Mutex
	latest  map[uint64]int64 // hash -> greatest Received (Unix ns)
	fifo    []recentEntry    // ring, in insertion order
	head, n int
	horizon int64 // every record received at or after this is in latest
}

type recentEntry struct {
	hash     uint64
	received int64
}

// defaultRecentLimit holds about an hour of a busy trust's traffic, or the last
// 50 seconds at the 20,000 messages/s the listener is sized for, in about 48 MiB.
const defaultRecentLimit = 1 << 20

func newRecentControlIDs(limit int, retention time.Duration) *recentControlIDs {
	if limit <= 0 {
		limit = defaultRecentLimit
	}
	return &recentControlIDs{
		seed:      maphash.MakeSeed(),
		limit:     limit,
		retention: retention,
		latest:    make(map[uint64]int64),
		fifo:      make([]recentEntry, limit),
		horizon:   math.MinInt64,
	}
}

// hash is the filter's key for a 'd' index prefix.
func (r *recentControlIDs) hash(dedupePrefix []byte) uint64 {
	return maphash.Bytes(r.seed, dedupePrefix)
}

// mayHave reports whether a record with this hash received at or after from
// might exist. false is certain.
func (r *recentControlIDs) mayHave(h uint64, from int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if from < r.horizon {
		return true
	}
	recv, ok := r.latest[h]
	return ok && recv >= from
}

// add records committed appends. It runs before their Appends return, so a
// duplicate check that follows an Append always sees it.
func (r *recentControlIDs) add(now time.Time, group []*appendReq) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, q := range group {
		if q.controlID != "" {
			r.push(recentEntry{q.dedupeHash, q.received})
		}
	}
	if r.retention > 0 {
		// The slack keeps the horizon behind the bounds callers compute from
		// times taken a little before this commit; without it every check made
		// while one was in flight would fall through to the store.
		cutoff := now.Add(-r.retention - retentionSlack).UnixNano()
		for r.n > 0 && r.fifo[r.head].received < cutoff {
			r.pop()
		}
		r.horizon = max(r.horizon, cutoff)
	}
}

// push adds e, evicting the oldest entry when the ring is full.
func (r *recentControlIDs) push(e recentEntry) {
	if r.n == r.limit {
		r.pop()
	}
	r.fifo[(r.head+r.n)%r.limit] = e
	r.n++
	if recv, ok := r.latest[e.hash]; !ok || e.received > recv {
		r.latest[e.hash] = e.received
	}
}

// pop evicts the oldest entry and moves horizon past it.
func (r *recentControlIDs) pop() {
	e := r.fifo[r.head]
	r.head = (r.head + 1) % r.limit
	r.n--
	if r.latest[e.hash] == e.received {
		delete(r.latest, e.hash)
	}
	if e.received != math.MaxInt64 {
		r.horizon = max(r.horizon, e.received+1)
	}
}

const retentionSlack = time.Minute

// loadRecentControlIDs builds the filter from the 'd' index: every entry
// received within retention of now, newest last, at most limit of them.
func loadRecentControlIDs(db *pebble.DB, limit int, retention time.Duration, now time.Time) (*recentControlIDs, error) {
	r := newRecentControlIDs(limit, retention)
	cutoff := int64(math.MinInt64)
	if retention > 0 {
		cutoff = now.Add(-retention - retentionSlack).UnixNano()
		r.horizon = cutoff
	}
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{kindDedupe}, UpperBound: []byte{kindDedupe + 1}})
	if err != nil {
		return nil, fmt.Errorf("scan control ids: %w", err)
	}
	var found []recentEntry
	for ok := it.First(); ok; ok = it.Next() {
		k, v := it.Key(), it.Value()
		if len(k) < 9 || len(v) != 8 {
			continue
		}
		recv := int64(binary.BigEndian.Uint64(v))
		if recv < cutoff {
			continue
		}
		found = append(found, recentEntry{r.hash(k[:len(k)-8]), recv})
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("scan control ids: %w", err)
	}
	// Oldest first, so that the ring evicts the oldest when there are more
	// than it holds and horizon ends just past the newest evicted.
	slices.SortStableFunc(found, func(a, b recentEntry) int { return cmp.Compare(a.received, b.received) })
	for _, e := range found {
		r.push(e)
	}
	return r, nil
}
