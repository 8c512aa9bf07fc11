package routes

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"
)

// The retention tests judge age by a clock of their own and run passes
// themselves (retentionEvery < 0), so nothing depends on how fast the machine
// is.

// retentionBase is when record 0 of retentionRecord was received; record i
// arrives i minutes later.
var retentionBase = time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)

func retentionRecord(i int) *Record {
	rec := testRecord(i)
	rec.Received = retentionBase.Add(time.Duration(i) * time.Minute)
	return rec
}

// fakeClock is the clock retention reads.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// at sets the clock to record i's receipt plus d.
func (c *fakeClock) at(i int, d time.Duration) {
	c.mu.Lock()
	c.t = retentionBase.Add(time.Duration(i)*time.Minute + d)
	c.mu.Unlock()
}

func retentionOptions(clk *fakeClock, fsys vfs.FS) LocalOptions {
	return LocalOptions{Retention: time.Hour, retentionEvery: -1, now: clk.now, fs: fsys}
}

func openWith(t *testing.T, dir string, opts LocalOptions) *Local {
	t.Helper()
	j, err := OpenLocal(dir, opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { closeQuietly(t, j) })
	return j
}

func reopenWith(t *testing.T, j *Local, dir string, opts LocalOptions) *Local {
	t.Helper()
	if err := j.Close(context.Background()); err != nil {
		t.Fatalf("close: %v", err)
	}
	return openWith(t, dir, opts)
}

// buildSegments appends records 1 to segs*perSeg (ID i is retentionRecord(i)),
// reopening after every perSeg so that each run of them has its own segment:
// segment k holds IDs (k-1)*perSeg+1 to k*perSeg.
func buildSegments(t *testing.T, dir string, opts LocalOptions, segs, perSeg int) *Local {
	t.Helper()
	j := openWith(t, dir, opts)
	id := 1
	for range segs {
		for range perSeg {
			if got := mustAppend(t, j, retentionRecord(id)); got != ID(id) {
				t.Fatalf("appended ID %d, want %d", got, id)
			}
			id++
		}
		j = reopenWith(t, j, dir, opts)
	}
	return j
}

// routeUpTo moves the cursor to next, with a routed event for each record
// from from on and the pending deliveries given.
func routeUpTo(t *testing.T, j *Local, from, next ID, pending ...PendingDelivery) {
	t.Helper()
	var evs []Event
	for id := from; id < next; id++ {
		evs = append(evs, Event{MessageID: id, Kind: EventRouted, Route: "r", Detail: "dest"})
	}
	if err := j.Routed(context.Background(), next, pending, evs); err != nil {
		t.Fatal(err)
	}
}

func delivery(id ID) PendingDelivery {
	return PendingDelivery{MessageID: id, Route: "r", Destination: "dest", Key: "k"}
}

func segmentExists(j *Local, num uint64) bool {
	_, err := j.fs.Stat(j.seg.path(num))
	return err == nil
}

func mustPurge(t *testing.T, j *Local) retentionStats {
	t.Helper()
	st, err := j.purge()
	if err != nil {
		t.Fatalf("retention pass: %v", err)
	}
	return st
}

// checkJournal checks that the store is consistent with itself and with the
// segment log: every index entry, journey event and delivery row belongs to a
// record that is there, every record has each index entry its meta names, and
// every record's body can be read. It returns the IDs of the records.
func checkJournal(t *testing.T, j *Local) []ID {
	t.Helper()
	it, err := j.db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	metas := map[ID]bool{}
	want := map[string]bool{} // index keys the metas name
	var ids []ID
	type ref struct {
		key []byte
		id  ID
	}
	var refs []ref
	for ok := it.First(); ok; ok = it.Next() {
		k := slices.Clone(it.Key())
		switch k[0] {
		case kindMeta:
			id, _ := keyID(k)
			metas[id] = true
			ids = append(ids, id)
			rec := Record{ID: id}
			if _, _, err := decodeStoredMeta(&rec, it.Value()); err != nil {
				t.Fatalf("record %d: %v", id, err)
			}
			want[string(appendID(indexPrefix(nil, kindStatus, string(rec.Status)), id))] = true
			if rec.ControlID != "" {
				want[string(appendID(indexPrefix(nil, kindControlID, rec.ControlID), id))] = true
				want[string(appendID(indexPrefix(nil, kindDedupe, rec.Sender, rec.ControlID), id))] = true
			}
			if rec.NHSNumber != "" {
				want[string(appendID(indexPrefix(nil, kindNHSNumber, rec.NHSNumber), id))] = true
			}
		case kindStatus, kindControlID, kindDedupe, kindNHSNumber:
			id, _ := keyID(k)
			refs = append(refs, ref{k, id})
		case kindEvent, kindPending, kindDeadLetter, kindReplay, kindBody:
			refs = append(refs, ref{k, ID(binary.BigEndian.Uint64(k[1:9]))})
		}
	}
	if err := it.Error(); err != nil {
		t.Fatal(err)
	}
	for _, r := range refs {
		if !metas[r.id] {
			t.Errorf("key %q names record %d, which is not there", r.key, r.id)
		}
		if strings.IndexByte("scdn", r.key[0]) >= 0 {
			if !want[string(r.key)] {
				t.Errorf("index key %q is not one its record's meta names", r.key)
			}
			delete(want, string(r.key))
		}
	}
	for k := range want {
		t.Errorf("index key %q is missing", k)
	}
	for _, id := range ids {
		if _, err := j.Get(context.Background(), id); err != nil {
			t.Errorf("record %d: %v", id, err)
		}
	}
	return ids
}

// keysOf lists every key of the store that belongs to record id.
func keysOf(t *testing.T, j *Local, id ID) []string {
	t.Helper()
	it, err := j.db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var keys []string
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		switch k[0] {
		case kindMeta, kindEvent, kindPending, kindDeadLetter, kindReplay, kindBody:
			if ID(binary.BigEndian.Uint64(k[1:9])) == id {
				keys = append(keys, fmt.Sprintf("%q", k))
			}
		case kindStatus, kindControlID, kindDedupe, kindNHSNumber:
			if got, _ := keyID(k); got == id {
				keys = append(keys, fmt.Sprintf("%q", k))
			}
		}
	}
	return keys
}

func idRange(from, to ID) []ID {
	var ids []ID
	for id := from; id <= to; id++ {
		ids = append(ids, id)
	}
	return ids
}

// TestRetentionRemovesWhatNothingNeeds builds four segments of ten records
// and checks each rule: old records that are routed and settled go, with every
// key and the segment files they emptied; records pending, dead-lettered,
// asked to be replayed, newer than the retention or not yet routed stay, and
// go once that ends.
func TestRetentionRemovesWhatNothingNeeds(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	clk := &fakeClock{}
	opts := retentionOptions(clk, nil)
	j := buildSegments(t, dir, opts, 4, 10) // segments 1-4: IDs 1-10, 11-20, 21-30, 31-40

	routeUpTo(t, j, 1, 39, delivery(12), delivery(25)) // 39 and 40 not routed yet
	dead := delivery(25)
	if err := j.Settle(ctx, &dead, DeadLettered, Event{Kind: EventAttempt, Outcome: DeadLettered}); err != nil {
		t.Fatal(err)
	}
	if err := j.RequestReplay(ctx, 33); err != nil {
		t.Fatal(err)
	}
	clk.at(35, time.Hour) // records 1 to 34 are older than the hour

	st := mustPurge(t, j)
	want := retentionStats{removed: 31, keptDeadLetters: 1, keptReplays: 1, keptPending: 1, segments: 1}
	if st.bytes <= 0 {
		t.Errorf("removing a segment reclaimed %d bytes", st.bytes)
	}
	st.bytes, st.longest = 0, 0
	if st != want {
		t.Errorf("pass: %+v, want %+v", st, want)
	}
	kept := append([]ID{12, 25, 33}, idRange(35, 40)...)
	if got := checkJournal(t, j); !slices.Equal(got, kept) {
		t.Errorf("records after the pass: %v, want %v", got, kept)
	}
	for _, id := range []ID{1, 10, 11, 24, 34} {
		if keys := keysOf(t, j, id); len(keys) > 0 {
			t.Errorf("record %d removed, but keys are left: %v", id, keys)
		}
		_, err := j.Get(ctx, id)
		if !errors.Is(err, ErrRemoved) || !errors.Is(err, ErrNotFound) {
			t.Errorf("Get of removed record %d = %v, want ErrRemoved", id, err)
		}
	}
	if _, err := j.Get(ctx, 41); !errors.Is(err, ErrNotFound) || errors.Is(err, ErrRemoved) {
		t.Errorf("Get of a record never written = %v, want ErrNotFound only", err)
	}
	if evs, err := j.Events(ctx, 12); err != nil || len(evs) != 1 {
		t.Errorf("journey of kept record 12: %v, %v", evs, err)
	}
	if err := j.RequestReplay(ctx, 3); !errors.Is(err, ErrRemoved) {
		t.Errorf("replay of a removed record = %v, want ErrRemoved", err)
	}
	for num, want := range map[uint64]bool{1: false, 2: true, 3: true, 4: true} {
		if segmentExists(j, num) != want {
			t.Errorf("segment %d there: %v, want %v", num, !want, want)
		}
	}
	// Every query finds the kept records and only them.
	for _, q := range []Query{{}, {Since: retentionBase}, {Status: StatusAccepted}, {NHSNumber: testRecord(12).NHSNumber},
		{ControlID: "MSG3"}, {ControlID: "MSG12"}, {Descending: true, Until: retentionBase.Add(time.Hour)}} {
		var got []ID
		if err := j.List(ctx, q, func(r *Record) bool { got = append(got, r.ID); return true }); err != nil {
			t.Fatal(err)
		}
		var wantIDs []ID
		for _, id := range kept {
			if rec := retentionRecord(int(id)); matches(rec, q) {
				wantIDs = append(wantIDs, id)
			}
		}
		if q.Descending {
			slices.Reverse(wantIDs)
		}
		if !slices.Equal(got, wantIDs) {
			t.Errorf("List %+v = %v, want %v", q, got, wantIDs)
		}
	}

	// Work ends: the delivery is made, the dead letter revived and made, the
	// replay done. Each record then goes, and the segments it held.
	pend := delivery(12)
	if err := j.Settle(ctx, &pend, Delivered, Event{Kind: EventAttempt, Outcome: Delivered}); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Revive(ctx, []DeadLetter{{PendingDelivery: dead}}, Event{Kind: EventRevived}); err != nil {
		t.Fatal(err)
	}
	if err := j.Replayed(ctx, 33, nil, nil); err != nil {
		t.Fatal(err)
	}
	st = mustPurge(t, j)
	if st.removed != 2 || st.keptPending != 1 || st.segments != 1 || !segmentExists(j, 3) || segmentExists(j, 2) {
		t.Errorf("after the delivery and the replay: %+v; segment 2 there %v, 3 %v", st, segmentExists(j, 2), segmentExists(j, 3))
	}
	if err := j.Settle(ctx, &dead, Delivered, Event{Kind: EventAttempt, Outcome: Delivered}); err != nil {
		t.Fatal(err)
	}
	if st = mustPurge(t, j); st.removed != 1 || st.segments != 1 || segmentExists(j, 3) {
		t.Errorf("after the revived dead letter's delivery: %+v", st)
	}

	// Later, 35 to 38 are old enough; 39 and 40 wait for routing.
	clk.at(40, 2*time.Hour)
	if st = mustPurge(t, j); st.removed != 4 {
		t.Errorf("with 39 and 40 not routed: %+v", st)
	}
	if got := checkJournal(t, j); !slices.Equal(got, []ID{39, 40}) {
		t.Errorf("records: %v, want 39 and 40", got)
	}
	routeUpTo(t, j, 39, 41)
	if st = mustPurge(t, j); st.removed != 2 || st.segments != 0 {
		t.Errorf("once routed: %+v (the newest record's segment stays)", st)
	}
	if got := checkJournal(t, j); len(got) != 0 {
		t.Errorf("records left: %v", got)
	}
	if !segmentExists(j, 4) {
		t.Error("segment 4, the newest record's, was removed")
	}

	// Reopened: nothing indexed again, IDs not given out again, and the
	// newest segment goes once a newer record is routed and old.
	j = reopenWith(t, j, dir, opts)
	if j.reindexed != 0 {
		t.Errorf("reopen indexed %d records again", j.reindexed)
	}
	if _, err := j.Get(ctx, 20); !errors.Is(err, ErrRemoved) {
		t.Errorf("Get after reopening = %v, want ErrRemoved", err)
	}
	if id := mustAppend(t, j, retentionRecord(41)); id != 41 {
		t.Errorf("first ID after removing everything: %d, want 41", id)
	}
	routeUpTo(t, j, 41, 42)
	clk.at(41, 2*time.Hour)
	if st = mustPurge(t, j); st.removed != 1 || segmentExists(j, 4) {
		t.Errorf("after a newer record: %+v, segment 4 there %v", st, segmentExists(j, 4))
	}
	nums, err := j.seg.list()
	if err != nil || len(nums) != 1 {
		t.Errorf("segments left: %v, %v; want only the newest", nums, err)
	}
}

// TestRetentionInBatches removes several thousand records, many batches'
// worth, with records kept here and there, and the zones of the blocks left
// empty.
func TestRetentionInBatches(t *testing.T) {
	clk := &fakeClock{}
	opts := retentionOptions(clk, vfs.NewMem())
	j := buildSegments(t, "journal", opts, 3, 1200)
	const n = 3600
	var pending []PendingDelivery
	for _, id := range []ID{700, 2500} {
		pending = append(pending, delivery(id))
	}
	routeUpTo(t, j, 1, n+1, pending...)
	clk.at(n, 2*time.Hour)
	st := mustPurge(t, j)
	t.Logf("%d records removed; the longest batch held the status locks %v", st.removed, st.longest)
	if st.removed != n-2 || st.keptPending != 2 || st.segments != 1 || segmentExists(j, 2) {
		t.Errorf("pass: %+v, want %d removed, 2 kept and segment 2 removed", st, n-2)
	}
	if got := checkJournal(t, j); !slices.Equal(got, []ID{700, 2500}) {
		t.Errorf("records: %v", got)
	}
	var blocks []uint64
	it, _ := j.db.NewIter(&pebble.IterOptions{LowerBound: []byte{kindZone}, UpperBound: []byte{kindZone + 1}})
	for ok := it.First(); ok; ok = it.Next() {
		blocks = append(blocks, binary.BigEndian.Uint64(it.Key()[1:]))
	}
	it.Close()
	// 700's and 2500's blocks, and the newest record's, which the committer
	// may still be widening.
	if !slices.Equal(blocks, []uint64{0, 2, 3}) {
		t.Errorf("zones left: %v, want 0, 2 and 3", blocks)
	}
	var got []ID
	if err := j.List(context.Background(), Query{Since: retentionBase}, func(r *Record) bool { got = append(got, r.ID); return true }); err != nil || !slices.Equal(got, []ID{700, 2500}) {
		t.Errorf("time query: %v, %v", got, err)
	}
}

// TestRetentionKeepsDuplicateDetection: a retention shorter than the duplicate
// window is refused, and after a pass a control id resent within the window
// is still found, also after reopening, while one older than the retention is
// not.
func TestRetentionKeepsDuplicateDetection(t *testing.T) {
	dir := t.TempDir()
	_, err := OpenLocal(dir, LocalOptions{Retention: time.Hour, DuplicateWindow: 2 * time.Hour})
	if err == nil || !strings.Contains(err.Error(), "retention 1h0m0s is shorter than the duplicate window 2h0m0s") {
		t.Errorf("retention shorter than the duplicate window: %v", err)
	}
	if _, err := OpenLocal(dir, LocalOptions{Retention: -time.Hour}); err == nil {
		t.Error("negative retention accepted")
	}

	ctx := context.Background()
	clk := &fakeClock{}
	opts := retentionOptions(clk, nil)
	opts.DuplicateWindow = time.Hour
	j := buildSegments(t, dir, opts, 2, 60) // IDs 1-120, a minute apart
	routeUpTo(t, j, 1, 121)
	clk.at(120, 0) // now is record 120's receipt: 1 to 59 are past the hour
	if st := mustPurge(t, j); st.removed != 59 {
		t.Errorf("removed %d, want 59", st.removed)
	}
	check := func(j *Local) {
		t.Helper()
		for _, i := range []int{60, 90, 120} {
			rec := retentionRecord(i)
			since := clk.now().Add(-opts.DuplicateWindow)
			got, err := j.FindControlID(ctx, rec.Sender, rec.ControlID, since)
			if err != nil || got.ID != ID(i) {
				t.Errorf("duplicate of record %d within the window: %v, %v", i, got, err)
			}
		}
		old := retentionRecord(30)
		if got, err := j.FindControlID(ctx, old.Sender, old.ControlID, time.Time{}); !errors.Is(err, ErrNotFound) {
			t.Errorf("control id of a removed record found: %v, %v", got, err)
		}
	}
	check(j)
	check(reopenWith(t, j, dir, opts))
}

// errCrash stops a retention pass where a crash would.
var errCrash = errors.New("crash")

// TestRetentionCrash cuts the power at each stage of a pass: after the index
// deletions are committed, once they are synced, after the first segment file
// is removed, and once the removals are synced. The journal must open (read-only, then to write) with every
// index entry pointing at a record whose segment is there, and the next pass
// must finish the work.
func TestRetentionCrash(t *testing.T) {
	for _, stage := range []string{"index", "synced", "removed", "segments"} {
		t.Run(stage, func(t *testing.T) {
			ctx := context.Background()
			mem := vfs.NewStrictMem()
			clk := &fakeClock{}
			opts := retentionOptions(clk, mem)
			opts.indexSync = time.Hour // only the pass's own sync makes the index durable
			j := buildSegments(t, "journal", opts, 4, 300)
			routeUpTo(t, j, 1, 1201, delivery(450))
			if err := j.SetStatus(ctx, 1, StatusAccepted); err != nil { // a synced write: everything so far is durable
				t.Fatal(err)
			}
			clk.at(1100, time.Hour) // 1 to 1099 are old
			j.onRetention = func(s string) error {
				if s != stage {
					return nil
				}
				mem.SetIgnoreSyncs(true)
				return errCrash
			}
			if _, err := j.purge(); !errors.Is(err, errCrash) {
				t.Fatalf("pass = %v, want the crash", err)
			}
			if err := j.Close(ctx); err != nil {
				t.Fatal(err)
			}
			mem.ResetToSyncedState()
			mem.SetIgnoreSyncs(false)

			ro, err := OpenLocal("journal", LocalOptions{fs: mem, ReadOnly: true})
			if err != nil {
				t.Fatalf("read-only open after the crash: %v", err)
			}
			for _, id := range []ID{450, 1150, 1200} {
				if _, err := ro.Get(ctx, id); err != nil {
					t.Errorf("read-only: record %d: %v", id, err)
				}
			}
			if err := ro.Close(ctx); err != nil {
				t.Fatal(err)
			}

			j, err = OpenLocal("journal", opts)
			if err != nil {
				t.Fatalf("open after the crash: %v", err)
			}
			defer closeQuietly(t, j)
			ids := checkJournal(t, j)
			t.Logf("crash at %q: %d records after it", stage, len(ids))
			for _, id := range []ID{450, 1100, 1150, 1200} {
				if !slices.Contains(ids, id) {
					t.Errorf("record %d, kept or too new, lost in the crash", id)
				}
			}
			mustPurge(t, j)
			ids = checkJournal(t, j)
			want := append([]ID{450}, idRange(1100, 1200)...)
			if !slices.Equal(ids, want) {
				t.Errorf("records after the next pass: %d of them, want 450 and 1100-1200", len(ids))
			}
			for num, want := range map[uint64]bool{1: false, 2: true, 3: false, 4: true} {
				if segmentExists(j, num) != want {
					t.Errorf("segment %d there: %v, want %v", num, !want, want)
				}
			}
			if id := mustAppend(t, j, retentionRecord(1201)); id != 1201 {
				t.Errorf("next ID %d, want 1201", id)
			}
		})
	}
}

// TestRetentionThenIndexLost removes segments, appends more, and cuts the
// power with those appends indexed only in the store's unsynced log. The open
// indexes them again from the segment log without bringing back a removed
// record or looking for a removed file.
func TestRetentionThenIndexLost(t *testing.T) {
	ctx := context.Background()
	mem := vfs.NewStrictMem()
	clk := &fakeClock{}
	opts := retentionOptions(clk, mem)
	opts.indexSync = time.Hour
	j := buildSegments(t, "journal", opts, 3, 100)
	routeUpTo(t, j, 1, 301)
	clk.at(250, time.Hour) // 1 to 249 are old
	if st := mustPurge(t, j); st.segments != 2 {
		t.Fatalf("pass removed %d segments, want 2", st.segments)
	}
	for i := 301; i <= 400; i++ {
		mustAppend(t, j, retentionRecord(i))
	}
	mem.SetIgnoreSyncs(true)
	if err := j.Close(ctx); err != nil {
		t.Fatal(err)
	}
	mem.ResetToSyncedState()
	mem.SetIgnoreSyncs(false)

	for _, ro := range []bool{true, false} {
		o := opts
		o.ReadOnly = ro
		j, err := OpenLocal("journal", o)
		if err != nil {
			t.Fatalf("open (read-only %v): %v", ro, err)
		}
		if j.reindexed != 100 {
			t.Errorf("read-only %v: indexed %d records again, want the 100 appended after the pass", ro, j.reindexed)
		}
		var got []ID
		if err := j.List(ctx, Query{}, func(r *Record) bool { got = append(got, r.ID); return true }); err != nil {
			t.Fatal(err)
		}
		if want := idRange(250, 400); !slices.Equal(got, want) {
			t.Errorf("read-only %v: %d records, want 250 to 400", ro, len(got))
		}
		if _, err := j.Get(ctx, 100); !errors.Is(err, ErrRemoved) {
			t.Errorf("read-only %v: Get of a removed record = %v", ro, err)
		}
		if !ro {
			checkJournal(t, j)
			if id := mustAppend(t, j, retentionRecord(401)); id != 401 {
				t.Errorf("next ID %d, want 401", id)
			}
		}
		if err := j.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRetentionClose closes the journal while a pass is under way: Close waits
// for the batch in hand, the pass stops, and the journal reopens whole; the
// next pass finishes.
func TestRetentionClose(t *testing.T) {
	ctx := context.Background()
	dir := "journal"
	clk := &fakeClock{}
	opts := retentionOptions(clk, vfs.NewMem())
	j := buildSegments(t, dir, opts, 2, 1500)
	routeUpTo(t, j, 1, 3001)
	clk.at(3000, 2*time.Hour)
	closed := make(chan error, 1)
	j.onRetention = func(stage string) error {
		if stage == "index" && !j.closing.Load() {
			go func() { closed <- j.Close(ctx) }()
			for !j.closing.Load() {
				time.Sleep(time.Millisecond)
			}
		}
		return nil
	}
	st, err := j.purge()
	if !errors.Is(err, ErrClosed) {
		t.Errorf("pass during Close = %v, want ErrClosed", err)
	}
	if st.removed != retentionBatch {
		t.Errorf("pass removed %d before stopping, want one batch (%d)", st.removed, retentionBatch)
	}
	if err := <-closed; err != nil {
		t.Fatalf("close: %v", err)
	}
	j = openWith(t, dir, opts)
	if ids := checkJournal(t, j); len(ids) != 3000-retentionBatch {
		t.Errorf("%d records after reopening, want %d", len(ids), 3000-retentionBatch)
	}
	if st := mustPurge(t, j); st.removed != 3000-retentionBatch {
		t.Errorf("next pass removed %d", st.removed)
	}

	// The background pass at open, and Close right after it.
	opts.retentionEvery = 0
	j = reopenWith(t, j, dir, opts)
	if err := j.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestRetentionTailCache removes records the tail cache still holds: reads
// must not find them there.
func TestRetentionTailCache(t *testing.T) {
	ctx := context.Background()
	clk := &fakeClock{}
	j := openWith(t, t.TempDir(), retentionOptions(clk, nil))
	for i := 1; i <= 10; i++ {
		mustAppend(t, j, retentionRecord(i))
	}
	routeUpTo(t, j, 1, 11)
	clk.at(8, time.Hour)
	if st := mustPurge(t, j); st.removed != 7 {
		t.Fatalf("removed %d, want 7", st.removed)
	}
	if _, err := j.Get(ctx, 3); !errors.Is(err, ErrRemoved) {
		t.Errorf("Get of a removed record in the tail cache = %v", err)
	}
	var got []ID
	if err := j.Read(ctx, 1, 100, func(r *Record) bool { got = append(got, r.ID); return true }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []ID{8, 9, 10}) {
		t.Errorf("Read from 1: %v, want 8, 9 and 10", got)
	}
	if err := j.SetStatus(ctx, 3, StatusError); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetStatus of a removed record = %v", err)
	}
}

// TestRetentionConcurrent runs passes while records are appended, routed,
// settled, replayed and have their status changed, then checks the store.
// Run with -race.
func TestRetentionConcurrent(t *testing.T) {
	ctx := context.Background()
	clk := &fakeClock{}
	clk.at(0, 0)
	opts := retentionOptions(clk, vfs.NewMem())
	opts.tailBytes = 64 << 10
	j := openWith(t, "journal", opts)
	var (
		wg      sync.WaitGroup
		stop    = make(chan struct{})
		mu      sync.Mutex
		last    ID
		settled = map[ID]bool{}
	)
	wg.Go(func() { // appends and routes, half of the records with a delivery
		defer close(stop)
		for i := 1; i <= 3000; i++ {
			rec := retentionRecord(i)
			if err := j.Append(ctx, rec); err != nil {
				t.Error(err)
				return
			}
			var p []PendingDelivery
			if i%2 == 0 {
				p = append(p, delivery(rec.ID))
			}
			ev := []Event{{MessageID: rec.ID, Kind: EventRouted, Route: "r"}}
			if err := j.Routed(ctx, rec.ID+1, p, ev); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			last = rec.ID
			mu.Unlock()
			clk.at(i, time.Hour)
		}
	})
	wg.Go(func() { // settles, asks for replays and changes statuses
		r := rand.New(rand.NewPCG(1, 2))
		for {
			select {
			case <-stop:
				return
			default:
			}
			mu.Lock()
			n := last
			mu.Unlock()
			if n == 0 {
				continue
			}
			id := ID(r.IntN(int(n))) + 1
			p := delivery(id)
			switch r.IntN(3) {
			case 0:
				// Settled once, as the dispatcher does: a delivery's last
				// event is stored with its settlement.
				if id%2 == 0 && !settled[id] {
					settled[id] = true
					if err := j.Settle(ctx, &p, Delivered, Event{Kind: EventAttempt, Outcome: Delivered}); err != nil {
						t.Error(err)
					}
				}
			case 1:
				if err := j.RequestReplay(ctx, id); err == nil {
					if err := j.Replayed(ctx, id, nil, nil); err != nil {
						t.Error(err)
					}
				} else if !errors.Is(err, ErrNotFound) {
					t.Error(err)
				}
			case 2:
				if err := j.SetStatus(ctx, id, StatusAccepted); err != nil && !errors.Is(err, ErrNotFound) {
					t.Error(err)
				}
			}
		}
	})
	passes := 0
	for done := false; !done; passes++ {
		select {
		case <-stop:
			done = true
		default:
		}
		mustPurge(t, j)
	}
	wg.Wait()
	ids := checkJournal(t, j)
	t.Logf("%d passes, %d records left", passes, len(ids))
	// Every record with a pending delivery is still there.
	if err := j.Pending(ctx, func(p PendingDelivery) bool {
		if !slices.Contains(ids, p.MessageID) {
			t.Errorf("record %d has a pending delivery but was removed", p.MessageID)
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
}

// The segment log's reader of a removed file is closed once no read uses it.
func TestSegmentRemoveWhileRead(t *testing.T) {
	s, err := openSegmentLog(vfs.NewMem(), "j", false)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.startWriting(); err != nil {
		t.Fatal(err)
	}
	rec := testRecord(1)
	at, err := s.append(appendSegmentRecord(nil, 1, encodeMeta(nil, rec), encodeBody(nil, rec)))
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.acquire(at.seg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.remove(at.seg); err != nil {
		t.Fatal(err)
	}
	if !r.removed || len(s.readers) != 0 {
		t.Errorf("reader in use: removed %v, readers %d", r.removed, len(s.readers))
	}
	s.release(r)
	if _, err := s.acquire(at.seg); err == nil {
		t.Error("a removed segment opened again")
	}
	if n := s.diskBytes(); n != 0 {
		t.Errorf("diskBytes %d after removing the only segment", n)
	}
	s.close()
}

// TestRetentionLayout1 removes records written before the segment log, with
// their bodies in the store, beside records in the log.
func TestRetentionLayout1(t *testing.T) {
	dir := t.TempDir() + "/journal"
	writeLayout1(t, dir, 20)
	clk := &fakeClock{}
	opts := retentionOptions(clk, nil)
	j := openWith(t, dir, opts)
	for i := range 10 {
		rec := testRecord(20 + i)
		mustAppend(t, j, rec)
	}
	j = reopenWith(t, j, dir, opts)
	mustAppend(t, j, testRecord(30))
	routeUpTo(t, j, 1, 32, delivery(5)) // 1-20 in the store, 21-30 in segment 1, 31 in segment 2
	clk.mu.Lock()
	clk.t = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	clk.mu.Unlock()
	st := mustPurge(t, j)
	if st.removed != 30 || st.keptPending != 1 || st.segments != 1 {
		t.Errorf("pass: %+v, want 30 removed, 1 kept and the first segment removed", st)
	}
	if got := checkJournal(t, j); !slices.Equal(got, []ID{5}) {
		t.Errorf("records: %v, want 5", got)
	}
	it, err := j.db.NewIter(&pebble.IterOptions{LowerBound: []byte{kindBody}, UpperBound: []byte{kindBody + 1}})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	it.Close()
	if n != 1 {
		t.Errorf("%d bodies left in the store, want record 5's", n)
	}
}

// Passes run often enough that a record outlives its retention by about a
// tenth of it, but never more than every second or less than every five
// minutes.
func TestPassInterval(t *testing.T) {
	for r, want := range map[time.Duration]time.Duration{
		7 * 24 * time.Hour: 5 * time.Minute,
		30 * time.Minute:   3 * time.Minute,
		30 * time.Second:   3 * time.Second,
		3 * time.Second:    time.Second,
	} {
		if got := passInterval(r); got != want {
			t.Errorf("passInterval(%v) = %v, want %v", r, got, want)
		}
	}
}

// A dead letter keeps its message past the retention until an operator
// discards it; then the message goes at the next pass, journey and all.
func TestRetentionDiscardedDeadLetter(t *testing.T) {
	ctx := context.Background()
	clk := &fakeClock{}
	j := openWith(t, t.TempDir(), retentionOptions(clk, nil))
	for i := 1; i <= 3; i++ {
		mustAppend(t, j, retentionRecord(i))
	}
	var letters []PendingDelivery
	for _, id := range []ID{1, 2} {
		p := delivery(id)
		p.Destination = fmt.Sprintf("dest%d", id)
		letters = append(letters, p)
	}
	routeUpTo(t, j, 1, 4, letters...)
	for i := range letters {
		if err := j.Settle(ctx, &letters[i], DeadLettered, Event{Kind: EventAttempt, Outcome: DeadLettered}); err != nil {
			t.Fatal(err)
		}
	}
	clk.at(3, 2*time.Hour)
	if st := mustPurge(t, j); st.removed != 1 || st.keptDeadLetters != 2 {
		t.Fatalf("pass: %+v, want 3 removed and 1 and 2 kept for their dead letters", st)
	}
	if n, err := j.DiscardDeadLetters(ctx, "dest1"); n != 1 || err != nil {
		t.Fatalf("discard: %d, %v", n, err)
	}
	evs, err := j.Events(ctx, 1)
	if err != nil || evs[len(evs)-1].Kind != EventDiscarded || evs[len(evs)-1].Destination != "dest1" {
		t.Errorf("journey of 1 after the discard: %+v, %v", evs, err)
	}
	if st := mustPurge(t, j); st.removed != 1 || st.keptDeadLetters != 1 {
		t.Errorf("pass after the discard: %+v, want 1 removed and 2 kept", st)
	}
	if got := checkJournal(t, j); !slices.Equal(got, []ID{2}) {
		t.Errorf("records: %v, want 2", got)
	}
	if n, err := j.DiscardDeadLetters(ctx, ""); n != 1 || err != nil {
		t.Errorf("discard of all: %d, %v", n, err)
	}
	if n, err := j.DiscardDeadLetters(ctx, ""); n != 0 || err != nil {
		t.Errorf("discard with none left: %d, %v", n, err)
	}
}
