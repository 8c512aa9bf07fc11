package routes

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"
)

// openTest opens a journal in a new temporary directory and closes it when the
// test ends.
func openTest(tb testing.TB) (*Local, string) {
	tb.Helper()
	dir := filepath.Join(tb.TempDir(), "journal")
	j, err := OpenLocal(dir, LocalOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { closeQuietly(tb, j) })
	return j, dir
}

// closeQuietly closes j, accepting a journal the test closed itself.
func closeQuietly(tb testing.TB, j *Local) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := j.Close(ctx); err != nil && !errors.Is(err, ErrClosed) {
		tb.Errorf("close: %v", err)
	}
}

func reopen(tb testing.TB, j *Local, dir string) *Local {
	tb.Helper()
	if err := j.Close(context.Background()); err != nil {
		tb.Fatalf("close: %v", err)
	}
	j2, err := OpenLocal(dir, LocalOptions{})
	if err != nil {
		tb.Fatalf("reopen: %v", err)
	}
	tb.Cleanup(func() { closeQuietly(tb, j2) })
	return j2
}

// hl7Message builds an ADT^A01 of exactly size bytes (at least ~200), padded
// with an NTE segment.
func hl7Message(controlID, nhs string, size int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "MSH|^~\\&|PAS|RX1|SPINEBRIDGE|NHS|20261121093015+0000||ADT^A01^ADT_A01|%s|P|2.5.1\r", controlID)
	fmt.Fprintf(&b, "PID|1||%s^^^NHS^NH~RX1A123456^^^RX1^MR||THOMPSON^ELEANOR^^^MRS\r", nhs)
	b.WriteString("PV1|1|I|RX1W12^BAY 3^BED 4\rNTE|1||")
	for b.Len() < size-1 {
		b.WriteByte('x')
	}
	b.WriteByte('\r')
	return b.Bytes()
}

func testRecord(i int) *Record {
	cid := "MSG" + strconv.Itoa(i)
	nhs := strconv.Itoa(9990000000 + i%7)
	return &Record{
		Received:  time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second),
		Listener:  "mllp",
		Peer:      "127.0.0.1:40000",
		Sender:    "PAS|RX1",
		ControlID: cid,
		Type:      "ADT",
		Trigger:   "A01",
		Version:   "2.5.1",
		NHSNumber: nhs,
		Status:    StatusAccepted,
		AckCode:   "AA",
		Ack:       []byte("MSH|^~\\&|SPINEBRIDGE|NHS|PAS|RX1|20261121093015+0000||ACK^A01^ACK|SB1|P|2.5.1\rMSA|AA|" + cid + "\r"),
		Raw:       hl7Message(cid, nhs, 400),
	}
}

func mustAppend(tb testing.TB, j Journal, rec *Record) ID {
	tb.Helper()
	if err := j.Append(context.Background(), rec); err != nil {
		tb.Fatalf("append: %v", err)
	}
	return rec.ID
}

// listAll returns every record of j, in ID order.
func listAll(tb testing.TB, j *Local) []*Record {
	tb.Helper()
	var got []*Record
	if err := j.List(context.Background(), Query{}, func(r *Record) bool { got = append(got, r); return true }); err != nil {
		tb.Fatal(err)
	}
	return got
}

// sameRecords fails tb at the first difference between got and want.
func sameRecords(tb testing.TB, got, want []*Record) {
	tb.Helper()
	if len(got) != len(want) {
		tb.Fatalf("%d records, want %d", len(got), len(want))
	}
	for i := range got {
		if d := sameRecord(got[i], want[i]); d != "" {
			tb.Fatalf("record %d: %s", i, d)
		}
	}
}

// sameRecord reports the first difference between two records, or "".
func sameRecord(got, want *Record) string {
	switch {
	case got.ID != want.ID:
		return fmt.Sprintf("ID %d, want %d", got.ID, want.ID)
	case !got.Received.Equal(want.Received):
		return fmt.Sprintf("Received %v, want %v", got.Received, want.Received)
	case got.Received.Location() != time.UTC:
		return fmt.Sprintf("Received in %v, want UTC", got.Received.Location())
	case got.Listener != want.Listener || got.Peer != want.Peer || got.Sender != want.Sender:
		return fmt.Sprintf("origin %q %q %q, want %q %q %q", got.Listener, got.Peer, got.Sender, want.Listener, want.Peer, want.Sender)
	case got.ControlID != want.ControlID || got.Type != want.Type || got.Trigger != want.Trigger || got.Version != want.Version:
		return fmt.Sprintf("header %q %q %q %q, want %q %q %q %q", got.ControlID, got.Type, got.Trigger, got.Version,
			want.ControlID, want.Type, want.Trigger, want.Version)
	case got.NHSNumber != want.NHSNumber:
		return fmt.Sprintf("NHSNumber %q, want %q", got.NHSNumber, want.NHSNumber)
	case got.Status != want.Status || got.AckCode != want.AckCode:
		return fmt.Sprintf("status %q %q, want %q %q", got.Status, got.AckCode, want.Status, want.AckCode)
	case !bytes.Equal(got.Ack, want.Ack):
		return fmt.Sprintf("Ack %q, want %q", got.Ack, want.Ack)
	case !bytes.Equal(got.Raw, want.Raw):
		return fmt.Sprintf("Raw differs (%d bytes, want %d)", len(got.Raw), len(want.Raw))
	}
	return ""
}

func TestParseID(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ID
		ok   bool
	}{
		{"1", 1, true},
		{"42", 42, true},
		{"18446744073709551615", 18446744073709551615, true},
		{"0", 0, false},
		{"", 0, false},
		{"-1", 0, false},
		{"+1", 0, false},
		{" 1", 0, false},
		{"1 ", 0, false},
		{"0x10", 0, false},
		{"18446744073709551616", 0, false},
	} {
		got, err := ParseID(tc.in)
		if tc.ok && (err != nil || got != tc.want) {
			t.Errorf("ParseID(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
		if !tc.ok && !errors.Is(err, ErrBadID) {
			t.Errorf("ParseID(%q) = %d, %v; want ErrBadID", tc.in, got, err)
		}
		if tc.ok && got.String() != tc.in {
			t.Errorf("ID(%d).String() = %q, want %q", got, got.String(), tc.in)
		}
	}
}

func TestAppendGetRoundTrip(t *testing.T) {
	j, _ := openTest(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		rec  *Record
	}{
		{"every field", testRecord(1)},
		{"nanoseconds kept", &Record{Received: time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC), ControlID: "N1", Status: StatusAccepted, Raw: []byte("MSH|x")}},
		{"received in another zone", &Record{Received: time.Date(2026, 6, 1, 12, 0, 0, 0, time.FixedZone("BST", 3600)), Raw: []byte("MSH|y")}},
		{"empty raw and ack", &Record{Received: time.Unix(1, 0), Status: StatusError}},
		{"binary bytes", &Record{Received: time.Unix(2, 0), ControlID: "a\x00b", Sender: "\xff|\x00", NHSNumber: "\x00", Raw: []byte{0, 1, 0xff, '\r'}, Ack: []byte{0}}},
		{"large message", &Record{Received: time.Unix(3, 0), Raw: hl7Message("BIG", "9990000018", 3<<20)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := *tc.rec
			want.Raw = bytes.Clone(tc.rec.Raw)
			want.Ack = bytes.Clone(tc.rec.Ack)
			if err := j.Append(ctx, tc.rec); err != nil {
				t.Fatal(err)
			}
			if tc.rec.ID == 0 {
				t.Fatal("Append left ID zero")
			}
			want.ID = tc.rec.ID
			if want.Status == "" {
				want.Status = StatusReceived
			}
			// The caller may reuse its buffers once Append returns.
			for i := range tc.rec.Raw {
				tc.rec.Raw[i] = '#'
			}
			got, err := j.Get(ctx, want.ID)
			if err != nil {
				t.Fatal(err)
			}
			if d := sameRecord(got, &want); d != "" {
				t.Error(d)
			}
		})
	}
}

func TestAppendDefaults(t *testing.T) {
	j, _ := openTest(t)
	before := time.Now()
	rec := &Record{ControlID: "X", Raw: []byte("MSH|")}
	mustAppend(t, j, rec)
	if rec.Received.Before(before.Add(-time.Second)) || rec.Received.After(time.Now()) || rec.Received.Location() != time.UTC {
		t.Errorf("Received = %v, want now in UTC", rec.Received)
	}
	if rec.Status != StatusReceived {
		t.Errorf("Status = %q, want %q", rec.Status, StatusReceived)
	}
	got, err := j.Get(context.Background(), rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Received.Equal(rec.Received) || got.Status != StatusReceived {
		t.Errorf("stored %v %q, want %v %q", got.Received, got.Status, rec.Received, StatusReceived)
	}
	if _, err := j.Get(context.Background(), rec.ID+1); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of a missing id: %v, want ErrNotFound", err)
	}
	if err := j.Append(context.Background(), &Record{Received: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)}); err == nil {
		t.Error("Append accepted a time it cannot store")
	}
}

func TestConcurrentAppendIDs(t *testing.T) {
	j, _ := openTest(t)
	const writers, each = 64, 40
	ids := make([][]ID, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				rec := testRecord(w*each + i)
				if err := j.Append(context.Background(), rec); err != nil {
					t.Error(err)
					return
				}
				ids[w] = append(ids[w], rec.ID)
			}
		})
	}
	wg.Wait()
	seen := map[ID]bool{}
	for w, list := range ids {
		if len(list) != each {
			t.Fatalf("writer %d appended %d records, want %d", w, len(list), each)
		}
		// One writer's appends are ordered, so its IDs must increase.
		if !slices.IsSorted(list) {
			t.Errorf("writer %d got IDs out of order: %v", w, list)
		}
		for _, id := range list {
			if seen[id] {
				t.Errorf("ID %d assigned twice", id)
			}
			seen[id] = true
		}
	}
	var listed []ID
	if err := j.List(context.Background(), Query{}, func(r *Record) bool {
		listed = append(listed, r.ID)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if len(listed) != writers*each || !slices.IsSorted(listed) {
		t.Fatalf("List gave %d records (sorted %v), want %d in order", len(listed), slices.IsSorted(listed), writers*each)
	}
	for _, id := range listed {
		if !seen[id] {
			t.Errorf("List gave ID %d, which no Append returned", id)
		}
	}
}

// listFixture appends n records whose times mostly follow their IDs, with some
// far out of order, across several zones, and returns them as appended.
func listFixture(t *testing.T, j *Local, n int) []*Record {
	t.Helper()
	base := time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	statuses := []Status{StatusAccepted, StatusAccepted, StatusAccepted, StatusRejected, StatusError, StatusDuplicate}
	recs := make([]*Record, 0, n)
	for i := range n {
		rec := testRecord(i)
		rec.Received = base.Add(time.Duration(i) * time.Second)
		switch {
		case i%500 == 7:
			rec.Received = base.Add(-72 * time.Hour) // a replay of an old message
		case i%700 == 11:
			rec.Received = base.Add(72 * time.Hour) // a sender's clock far ahead
		}
		rec.Status = statuses[i%len(statuses)]
		rec.ControlID = "C" + strconv.Itoa(i%250)
		rec.NHSNumber = ""
		if i%3 == 0 {
			rec.NHSNumber = "999000" + strconv.Itoa(1000+i%13)
		}
		want := *rec
		mustAppend(t, j, rec)
		want.ID = rec.ID
		recs = append(recs, &want)
	}
	return recs
}

func TestList(t *testing.T) {
	j, _ := openTest(t)
	recs := listFixture(t, j, 2600) // three zones
	base := recs[0].Received
	at := func(s int) time.Time { return base.Add(time.Duration(s) * time.Second) }

	for _, tc := range []struct {
		name string
		q    Query
	}{
		{"all", Query{}},
		{"all newest first", Query{Descending: true}},
		{"limit", Query{Limit: 10}},
		{"limit newest first", Query{Limit: 10, Descending: true}},
		{"control id", Query{ControlID: "C42"}},
		{"control id newest first", Query{ControlID: "C42", Descending: true}},
		{"control id and status", Query{ControlID: "C42", Status: StatusRejected}},
		{"unknown control id", Query{ControlID: "nope"}},
		{"nhs number", Query{NHSNumber: "9990001005"}},
		{"nhs number limit", Query{NHSNumber: "9990001005", Limit: 3, Descending: true}},
		{"status", Query{Status: StatusError}},
		{"status newest first limit", Query{Status: StatusDuplicate, Limit: 7, Descending: true}},
		{"since", Query{Since: at(2000)}},
		{"since newest first", Query{Since: at(2000), Descending: true}},
		{"until", Query{Until: at(100)}},
		{"until newest first", Query{Until: at(100), Descending: true}},
		{"window across zones", Query{Since: at(1000), Until: at(1100)}},
		{"window newest first limit", Query{Since: at(1000), Until: at(2100), Limit: 25, Descending: true}},
		{"window and status", Query{Since: at(500), Until: at(1500), Status: StatusRejected}},
		{"window and status newest first", Query{Since: at(500), Until: at(1500), Status: StatusRejected, Descending: true}},
		{"old replays only", Query{Until: base.Add(-time.Hour)}},
		{"future clocks only", Query{Since: base.Add(time.Hour * 24)}},
		{"future clocks newest first", Query{Since: base.Add(time.Hour * 24), Descending: true}},
		{"window and nhs number", Query{Since: at(300), Until: at(900), NHSNumber: "9990001005"}},
		{"empty window", Query{Since: at(10), Until: at(10)}},
		{"inverted window", Query{Since: at(20), Until: at(10)}},
		{"before all", Query{Until: base.Add(-100 * time.Hour)}},
		{"after all", Query{Since: base.Add(100 * time.Hour)}},
		{"far past since", Query{Since: time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC), Limit: 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var want []*Record
			for _, r := range recs {
				if matches(r, tc.q) {
					want = append(want, r)
				}
			}
			if tc.q.Descending {
				slices.Reverse(want)
			}
			if tc.q.Limit > 0 && len(want) > tc.q.Limit {
				want = want[:tc.q.Limit]
			}
			var got []*Record
			if err := j.List(context.Background(), tc.q, func(r *Record) bool {
				got = append(got, r)
				return true
			}); err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("List gave %d records, want %d", len(got), len(want))
			}
			for i := range got {
				if d := sameRecord(got[i], want[i]); d != "" {
					t.Fatalf("record %d: %s", i, d)
				}
			}
		})
	}

	t.Run("fn stops", func(t *testing.T) {
		n := 0
		if err := j.List(context.Background(), Query{}, func(*Record) bool { n++; return n < 3 }); err != nil {
			t.Fatal(err)
		}
		if n != 3 {
			t.Errorf("fn called %d times after returning false, want 3", n)
		}
	})
	t.Run("context ends", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		err := j.List(ctx, Query{}, func(*Record) bool { cancel(); return true })
		if !errors.Is(err, context.Canceled) {
			t.Errorf("List = %v, want context.Canceled", err)
		}
	})
	t.Run("negative limit", func(t *testing.T) {
		if err := j.List(context.Background(), Query{Limit: -1}, func(*Record) bool { return true }); err == nil {
			t.Error("List accepted a negative limit")
		}
	})
}

// matches is Query's meaning, written plainly.
func matches(r *Record, q Query) bool {
	return (q.ControlID == "" || r.ControlID == q.ControlID) &&
		(q.NHSNumber == "" || r.NHSNumber == q.NHSNumber) &&
		(q.Status == "" || r.Status == q.Status) &&
		(q.Since.IsZero() || !r.Received.Before(q.Since)) &&
		(q.Until.IsZero() || r.Received.Before(q.Until))
}

// TestFindControlID runs one table against every way the in-memory filter of
// recent control ids can stand: holding everything, rebuilt from the store at
// open, too small to hold the records, and rebuilt with a window that leaves
// them all behind its horizon. The answers must not change.
func TestFindControlID(t *testing.T) {
	base := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Second)
	type fixture struct{ resend, other, late ID }
	fill := func(t *testing.T, j *Local) fixture {
		add := func(sender, cid string, offset time.Duration) ID {
			return mustAppend(t, j, &Record{Received: base.Add(offset), Sender: sender, ControlID: cid, Status: StatusAccepted, AckCode: "AA", Raw: []byte("MSH|")})
		}
		var f fixture
		add("PAS|RX1", "M1", 0)
		f.resend = add("PAS|RX1", "M1", 10*time.Minute)
		f.other = add("LAB|RX1", "M1", 20*time.Minute)
		add("PAS|RX1", "M2", 30*time.Minute)
		// A late record with an earlier time: the newest ID wins, not the newest time.
		f.late = add("PAS|RX1", "M3", 5*time.Minute)
		add("PAS|RX1", "M3", 0)
		return f
	}
	open := func(t *testing.T, dir string, opts LocalOptions) *Local {
		j, err := OpenLocal(dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { closeQuietly(t, j) })
		return j
	}
	setups := map[string]func(t *testing.T) (*Local, fixture){
		"filter holds all": func(t *testing.T) (*Local, fixture) {
			j, _ := openTest(t)
			return j, fill(t, j)
		},
		"filter rebuilt at open": func(t *testing.T) (*Local, fixture) {
			j, dir := openTest(t)
			f := fill(t, j)
			return reopen(t, j, dir), f
		},
		"filter smaller than the records": func(t *testing.T) (*Local, fixture) {
			j := open(t, filepath.Join(t.TempDir(), "j"), LocalOptions{RecentControlIDs: 2})
			return j, fill(t, j)
		},
		"filter rebuilt small": func(t *testing.T) (*Local, fixture) {
			dir := filepath.Join(t.TempDir(), "j")
			j := open(t, dir, LocalOptions{})
			f := fill(t, j)
			if err := j.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			return open(t, dir, LocalOptions{RecentControlIDs: 3}), f
		},
		"window ends before the records": func(t *testing.T) (*Local, fixture) {
			dir := filepath.Join(t.TempDir(), "j")
			j := open(t, dir, LocalOptions{DuplicateWindow: time.Minute})
			f := fill(t, j)
			if err := j.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			return open(t, dir, LocalOptions{DuplicateWindow: time.Minute}), f
		},
	}
	for name, setup := range setups {
		t.Run(name, func(t *testing.T) {
			j, f := setup(t)
			for _, tc := range []struct {
				name        string
				sender, cid string
				since       time.Time
				want        ID // 0: ErrNotFound
			}{
				{"latest of two", "PAS|RX1", "M1", time.Time{}, f.resend},
				{"window holds both", "PAS|RX1", "M1", base.Add(-time.Hour), f.resend},
				{"window at the resend", "PAS|RX1", "M1", base.Add(10 * time.Minute), f.resend},
				{"window after both", "PAS|RX1", "M1", base.Add(10*time.Minute + 1), 0},
				{"other sender", "LAB|RX1", "M1", base, f.other},
				{"sender is part of the key", "PAS|RX2", "M1", time.Time{}, 0},
				{"unknown control id", "PAS|RX1", "M9", time.Time{}, 0},
				{"unknown control id, recent window", "PAS|RX1", "M9", time.Now().Add(-time.Second), 0},
				{"empty control id", "PAS|RX1", "", time.Time{}, 0},
				{"latest id whatever its time", "PAS|RX1", "M3", time.Time{}, f.late + 1},
				{"older time skipped, earlier id found", "PAS|RX1", "M3", base.Add(time.Minute), f.late},
			} {
				got, err := j.FindControlID(context.Background(), tc.sender, tc.cid, tc.since)
				if tc.want == 0 {
					if !errors.Is(err, ErrNotFound) {
						t.Errorf("%s: FindControlID = %v, %v; want ErrNotFound", tc.name, got, err)
					}
					continue
				}
				if err != nil {
					t.Errorf("%s: %v", tc.name, err)
					continue
				}
				if got.ID != tc.want || got.ControlID != tc.cid || got.Sender != tc.sender {
					t.Errorf("%s: FindControlID = %d (%q %q), want %d", tc.name, got.ID, got.Sender, got.ControlID, tc.want)
				}
			}
		})
	}
}

// TestRecentControlIDsBounded checks the filter's own promises: it never holds
// more than its limit, what it evicts moves the horizon past it, and a hash it
// holds answers by time.
func TestRecentControlIDsBounded(t *testing.T) {
	r := newRecentControlIDs(3, 0)
	req := func(h uint64, recv int64) *appendReq {
		return &appendReq{indexFields: indexFields{controlID: "x", received: recv}, dedupeHash: h}
	}
	r.add(time.Now(), []*appendReq{req(1, 10), req(2, 20), req(1, 30), {indexFields: indexFields{received: 35}}, req(3, 40)})
	if r.n != 3 || len(r.latest) != 3 {
		t.Fatalf("holds %d entries, %d hashes; want 3 and 3", r.n, len(r.latest))
	}
	if r.horizon != 11 {
		t.Errorf("horizon = %d, want 11 (past the evicted entry)", r.horizon)
	}
	for _, tc := range []struct {
		h    uint64
		from int64
		want bool
	}{
		{1, 30, true},  // the resend is held
		{1, 31, false}, // held, but older than asked
		{2, 11, true},
		{4, 11, false}, // never seen, inside the horizon: certain
		{4, 5, true},   // before the horizon: only the store knows
	} {
		if got := r.mayHave(tc.h, tc.from); got != tc.want {
			t.Errorf("mayHave(%d, %d) = %v, want %v", tc.h, tc.from, got, tc.want)
		}
	}

	aged := newRecentControlIDs(10, time.Minute)
	now := time.Now()
	aged.add(now, []*appendReq{req(1, now.Add(-time.Minute-retentionSlack-1).UnixNano()), req(2, now.UnixNano())})
	if aged.n != 1 || aged.mayHave(1, now.Add(-time.Minute).UnixNano()) {
		t.Errorf("an entry older than the retention is still held")
	}
	// A bound computed a moment before the commit is still answered from memory.
	if aged.mayHave(3, now.Add(-time.Minute-time.Second).UnixNano()) {
		t.Errorf("a bound just before the commit fell through to the store")
	}
}

func TestSetStatus(t *testing.T) {
	j, dir := openTest(t)
	ctx := context.Background()
	rec := testRecord(1)
	id := mustAppend(t, j, rec)
	other := mustAppend(t, j, testRecord(2))

	if err := j.SetStatus(ctx, id, StatusError); err != nil {
		t.Fatal(err)
	}
	if err := j.SetStatus(ctx, id, StatusError); err != nil {
		t.Fatalf("setting the same status again: %v", err)
	}
	if err := j.SetStatus(ctx, other+100, StatusError); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetStatus of a missing id = %v, want ErrNotFound", err)
	}
	if err := j.SetStatus(ctx, id, ""); err == nil {
		t.Error("SetStatus accepted an empty status")
	}

	j = reopen(t, j, dir)
	got, err := j.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	want := *rec
	want.Status = StatusError
	if d := sameRecord(got, &want); d != "" {
		t.Error(d)
	}
	byStatus := func(s Status) []ID {
		var ids []ID
		if err := j.List(ctx, Query{Status: s}, func(r *Record) bool { ids = append(ids, r.ID); return true }); err != nil {
			t.Fatal(err)
		}
		return ids
	}
	if ids := byStatus(StatusError); !slices.Equal(ids, []ID{id}) {
		t.Errorf("List status error = %v, want [%d]", ids, id)
	}
	if ids := byStatus(StatusAccepted); !slices.Equal(ids, []ID{other}) {
		t.Errorf("List status accepted = %v, want [%d]", ids, other)
	}
}

func TestReopen(t *testing.T) {
	j, dir := openTest(t)
	var want []*Record
	for i := range 1500 { // past the first zone
		rec := testRecord(i)
		mustAppend(t, j, rec)
		c := *rec
		want = append(want, &c)
	}
	j = reopen(t, j, dir)
	var got []*Record
	if err := j.List(context.Background(), Query{}, func(r *Record) bool { got = append(got, r); return true }); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d records after reopening, want %d", len(got), len(want))
	}
	for i := range got {
		if d := sameRecord(got[i], want[i]); d != "" {
			t.Fatalf("record %d: %s", i, d)
		}
	}
	rec := testRecord(9999)
	if id := mustAppend(t, j, rec); id <= want[len(want)-1].ID {
		t.Errorf("first ID after reopening is %d, want above %d", id, want[len(want)-1].ID)
	}
	// The zones carried over: a time query finds both old and new records.
	n := 0
	if err := j.List(context.Background(), Query{Since: want[1400].Received}, func(*Record) bool { n++; return true }); err != nil {
		t.Fatal(err)
	}
	if n != 101 {
		t.Errorf("time query after reopening found %d records, want 101", n)
	}
}

func TestClose(t *testing.T) {
	j, dir := openTest(t)
	ctx := context.Background()
	id := mustAppend(t, j, testRecord(1))
	if err := j.Close(ctx); err != nil {
		t.Fatalf("first Close: %v", err)
	}
	for name, err := range map[string]error{
		"Close":         j.Close(ctx),
		"Append":        j.Append(ctx, testRecord(2)),
		"SetStatus":     j.SetStatus(ctx, id, StatusError),
		"List":          j.List(ctx, Query{}, func(*Record) bool { return true }),
		"Get":           func() error { _, err := j.Get(ctx, id); return err }(),
		"FindControlID": func() error { _, err := j.FindControlID(ctx, "PAS|RX1", "MSG1", time.Time{}); return err }(),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
	// The directory is free again.
	j2, err := OpenLocal(dir, LocalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	closeQuietly(t, j2)
}

// Appends racing Close either land and are kept, or fail with ErrClosed.
func TestCloseDuringAppends(t *testing.T) {
	j, dir := openTest(t)
	var (
		mu    sync.Mutex
		acked []ID
		wg    sync.WaitGroup
	)
	for w := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				rec := testRecord(w*100000 + i)
				err := j.Append(context.Background(), rec)
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acked = append(acked, rec.ID)
				mu.Unlock()
			}
		})
	}
	// Let the appenders run, then close under them; a List in progress must end too.
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 200 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	listDone := make(chan error, 1)
	listing := make(chan struct{})
	go func() {
		var once sync.Once
		listDone <- j.List(context.Background(), Query{}, func(*Record) bool {
			once.Do(func() { close(listing) })
			time.Sleep(time.Millisecond)
			return true
		})
	}()
	<-listing
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := j.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wg.Wait()
	if err := <-listDone; err != nil && !errors.Is(err, ErrClosed) {
		t.Errorf("List during Close = %v, want nil or ErrClosed", err)
	}

	j2, err := OpenLocal(dir, LocalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer closeQuietly(t, j2)
	for _, id := range acked {
		if _, err := j2.Get(context.Background(), id); err != nil {
			t.Errorf("acknowledged record %d: %v", id, err)
		}
	}
}

// A Close whose context ends before the operations under way returns the
// context's error, and the journal still finishes closing once they end.
func TestCloseContext(t *testing.T) {
	j, dir := openTest(t)
	for i := range 10 {
		mustAppend(t, j, testRecord(i))
	}
	inFn := make(chan struct{})
	release := make(chan struct{})
	listed := make(chan error, 1)
	go func() {
		listed <- j.List(context.Background(), Query{}, func(*Record) bool {
			close(inFn)
			<-release // a slow consumer: Close cannot stop it inside fn
			return false
		})
	}()
	<-inFn
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := j.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close = %v, want context.DeadlineExceeded", err)
	}
	close(release)
	if err := <-listed; err != nil {
		t.Errorf("List = %v", err)
	}
	// Once the List has ended the store closes and the directory can be opened.
	deadline := time.Now().Add(10 * time.Second)
	for {
		j2, err := OpenLocal(dir, LocalOptions{})
		if err == nil {
			closeQuietly(t, j2)
			break
		}
		if !errors.Is(err, ErrLocked) || time.Now().After(deadline) {
			t.Fatalf("reopen after a timed-out Close: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestOpenLockedInProcess(t *testing.T) {
	_, dir := openTest(t)
	for _, ro := range []bool{false, true} {
		if j, err := OpenLocal(dir, LocalOptions{ReadOnly: ro}); !errors.Is(err, ErrLocked) {
			if err == nil {
				closeQuietly(t, j)
			}
			t.Errorf("second OpenLocal (read-only %v) = %v, want ErrLocked", ro, err)
		}
	}
}

func TestReadOnly(t *testing.T) {
	j, dir := openTest(t)
	rec := testRecord(1)
	id := mustAppend(t, j, rec)
	if err := j.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	ro, err := OpenLocal(dir, LocalOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer closeQuietly(t, ro)
	ctx := context.Background()
	if got, err := ro.Get(ctx, id); err != nil || got.ControlID != rec.ControlID {
		t.Errorf("Get read-only = %v, %v", got, err)
	}
	if err := ro.Append(ctx, testRecord(2)); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Append read-only = %v, want ErrReadOnly", err)
	}
	if err := ro.SetStatus(ctx, id, StatusError); !errors.Is(err, ErrReadOnly) {
		t.Errorf("SetStatus read-only = %v, want ErrReadOnly", err)
	}
	if _, err := OpenLocal(filepath.Join(t.TempDir(), "missing"), LocalOptions{ReadOnly: true}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("read-only open of a missing journal = %v, want fs.ErrNotExist", err)
	}
	if _, err := OpenLocal(t.TempDir(), LocalOptions{ReadOnly: true}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("read-only open of an empty directory = %v, want fs.ErrNotExist", err)
	}
}

func TestAppendContext(t *testing.T) {
	j, _ := openTest(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rec := testRecord(1)
	if err := j.Append(ctx, rec); !errors.Is(err, context.Canceled) {
		t.Errorf("Append with an ended context = %v, want context.Canceled", err)
	}
	if rec.ID != 0 {
		t.Errorf("Append that failed set ID %d", rec.ID)
	}
}

func TestCodecCorrupt(t *testing.T) {
	meta := encodeMeta(nil, testRecord(1))
	body := encodeBody(nil, testRecord(1))
	for _, tc := range []struct {
		name string
		dec  func([]byte) error
		in   []byte
	}{
		{"meta empty", metaDecoder, nil},
		{"meta version", metaDecoder, append([]byte{9}, meta[1:]...)},
		{"meta truncated", metaDecoder, meta[:len(meta)-2]}, // into MSA-1, before the format
		{"body empty", bodyDecoder, nil},
		{"body version", bodyDecoder, append([]byte{9}, body[1:]...)},
		{"body ack longer than value", bodyDecoder, []byte{encodingVersion, 0x7f, 'x'}},
		{"located meta without its place", storedMetaDecoder, []byte{metaLocated, 1}},
		{"located meta shorter than a record header", storedMetaDecoder, append([]byte{metaLocated, 1, 0, 3}, meta...)},
		{"located meta truncated", storedMetaDecoder, encodeLocatedMeta(nil, segLoc{segPos{1, 0}, 500}, meta[:len(meta)-2])},
	} {
		if err := tc.dec(tc.in); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", tc.name, err)
		}
	}
}

func metaDecoder(b []byte) error { return decodeMeta(&Record{}, b) }
func bodyDecoder(b []byte) error { return decodeBody(&Record{}, b) }
func storedMetaDecoder(b []byte) error {
	_, _, err := decodeStoredMeta(&Record{}, b)
	return err
}

// FuzzSegmentRecord feeds bytes to the segment log's record parser: it must
// refuse what it cannot read, as torn or corrupt, rather than panic, and what it
// reads must encode back to a record that reads the same.
func FuzzSegmentRecord(f *testing.F) {
	rec := testRecord(1)
	good := appendSegmentRecord(nil, 1, encodeMeta(nil, rec), encodeBody(nil, rec))
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(make([]byte, segmentHeader+9))
	f.Add(appendSegmentRecord(nil, 2, nil, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		id, meta, body, err := parseSegmentRecord(b)
		if err != nil {
			if !errors.Is(err, errTorn) && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is neither torn nor corrupt", err)
			}
			return
		}
		id2, meta2, body2, err := parseSegmentRecord(appendSegmentRecord(nil, id, meta, body))
		if err != nil || id2 != id || !bytes.Equal(meta2, meta) || !bytes.Equal(body2, body) {
			t.Fatalf("record %d does not round-trip: %v", id, err)
		}
	})
}

// FuzzDecodeRecord feeds stored values to the decoders: they must refuse what
// they cannot read rather than panic, and what they read must encode back the
// same.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(encodeMeta(nil, testRecord(1)), encodeBody(nil, testRecord(1)))
	f.Add([]byte{encodingVersion}, []byte{encodingVersion, 0})
	f.Add(encodeLocatedMeta(nil, segLoc{segPos{3, 4096}, 700}, encodeMeta(nil, testRecord(1))), []byte(nil))
	f.Fuzz(func(t *testing.T, meta, body []byte) {
		var s Record
		if loc, located, err := decodeStoredMeta(&s, meta); err == nil && located {
			again := encodeLocatedMeta(nil, loc, encodeMeta(nil, &s))
			var s2 Record
			loc2, located2, err := decodeStoredMeta(&s2, again)
			if err != nil || !located2 || loc2 != loc || sameRecord(&s, &s2) != "" {
				t.Fatalf("located meta does not round-trip: %v %v %s", err, loc2, sameRecord(&s, &s2))
			}
		}
		var r Record
		if err := decodeMeta(&r, meta); err == nil {
			again := encodeMeta(nil, &r)
			var r2 Record
			if err := decodeMeta(&r2, again); err != nil || sameRecord(&r, &r2) != "" {
				t.Fatalf("meta does not round-trip: %v %s", err, sameRecord(&r, &r2))
			}
		}
		if err := decodeBody(&r, body); err == nil {
			again := encodeBody(nil, &r)
			r2 := r
			if err := decodeBody(&r2, again); err != nil || !bytes.Equal(r.Raw, r2.Raw) || !bytes.Equal(r.Ack, r2.Ack) {
				t.Fatalf("body does not round-trip: %v", err)
			}
		}
	})
}

// TestDurableAtMachineCrash runs the journal on a file system that keeps only
// what was synced, as a disk does when the machine loses power. Appends and
// status changes that returned before the power went must be there after it.
func TestDurableAtMachineCrash(t *testing.T) {
	mem := vfs.NewStrictMem()
	j, err := OpenLocal("journal", LocalOptions{fs: mem})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex
		off     bool
		acked   = map[ID]string{}
		errored = map[ID]bool{}
		wg      sync.WaitGroup
	)
	for w := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				rec := testRecord(w*100000 + i)
				if err := j.Append(context.Background(), rec); err != nil {
					if !errors.Is(err, ErrClosed) {
						t.Error(err)
					}
					return
				}
				mu.Lock()
				if off {
					mu.Unlock()
					continue
				}
				acked[rec.ID] = rec.ControlID
				mu.Unlock()
				if i%5 == 0 {
					err := j.SetStatus(context.Background(), rec.ID, StatusError)
					mu.Lock()
					if err == nil && !off {
						errored[rec.ID] = true
					}
					mu.Unlock()
				}
			}
		})
	}
	for {
		mu.Lock()
		n := len(acked)
		if n >= 1000 {
			// The power goes: from here nothing more reaches the disk.
			mem.SetIgnoreSyncs(true)
			off = true
		}
		mu.Unlock()
		if n >= 1000 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err := j.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	mem.ResetToSyncedState()
	mem.SetIgnoreSyncs(false)

	j, err = OpenLocal("journal", LocalOptions{fs: mem})
	if err != nil {
		t.Fatal(err)
	}
	defer closeQuietly(t, j)
	for id, cid := range acked {
		rec, err := j.Get(context.Background(), id)
		if err != nil {
			t.Errorf("acknowledged record %d lost: %v", id, err)
			continue
		}
		if rec.ControlID != cid {
			t.Errorf("record %d holds %s, want %s", id, rec.ControlID, cid)
		}
		if errored[id] && rec.Status != StatusError {
			t.Errorf("record %d: status %q, want the %q set before the crash", id, rec.Status, StatusError)
		}
	}
	t.Logf("%d appends and %d status changes acknowledged before the power went", len(acked), len(errored))
}

// TestRead reads records back as the dispatcher does, from every starting
// point and in batches of several sizes, with the tail cache holding all of the
// records, a few, or none of them (a reopened journal), and checks each against
// List, which reads the store. Statuses changed after the append must show.
func TestRead(t *testing.T) {
	for _, tc := range []struct {
		name      string
		tailBytes int
		reopen    bool
	}{
		{"all cached", 0, false},
		{"a few cached", 3 * tailChunkSize / 1024, false},
		{"reopened", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "journal")
			j, err := OpenLocal(dir, LocalOptions{tailBytes: tc.tailBytes})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { closeQuietly(t, j) })
			ctx := context.Background()
			for i := range 300 {
				rec := testRecord(i)
				rec.Raw = hl7Message(rec.ControlID, rec.NHSNumber, 200+i*7)
				mustAppend(t, j, rec)
				if i%7 == 3 {
					if err := j.SetStatus(ctx, rec.ID, StatusError); err != nil {
						t.Fatal(err)
					}
				}
			}
			if tc.reopen {
				j = reopen(t, j, dir)
				mustAppend(t, j, testRecord(300))
			}
			want := listAll(t, j)
			for _, limit := range []int{1, 7, 256, 1000} {
				for start := range len(want) + 2 {
					from := ID(start + 1)
					var got []*Record
					if err := j.Read(ctx, from, limit, func(r *Record) bool { got = append(got, r); return true }); err != nil {
						t.Fatal(err)
					}
					exp := want[min(start, len(want)):]
					exp = exp[:min(limit, len(exp))]
					if len(got) != len(exp) {
						t.Fatalf("Read(%d, %d) returned %d records, want %d", from, limit, len(got), len(exp))
					}
					for i := range got {
						if d := sameRecord(got[i], exp[i]); d != "" {
							t.Fatalf("Read(%d, %d) record %d: %s", from, limit, i, d)
						}
					}
				}
			}
			// fn's false stops the read.
			n := 0
			if err := j.Read(ctx, 1, 100, func(*Record) bool { n++; return n < 3 }); err != nil || n != 3 {
				t.Errorf("Read stopped by fn after %d records (%v), want 3", n, err)
			}
			// A status changed now shows in Read and Get at once.
			last := want[len(want)-1].ID
			if err := j.SetStatus(ctx, last, StatusDuplicate); err != nil {
				t.Fatal(err)
			}
			if rec, err := j.Get(ctx, last); err != nil {
				t.Error(err)
			} else if rec.Status != StatusDuplicate {
				t.Errorf("Get after SetStatus: status %q, want %q", rec.Status, StatusDuplicate)
			}
			if err := j.Read(ctx, last, 1, func(r *Record) bool {
				if r.Status != StatusDuplicate {
					t.Errorf("Read after SetStatus: status %q, want %q", r.Status, StatusDuplicate)
				}
				return true
			}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestTailCacheAddAllocatesNothing: once its chunks are allocated, the tail
// cache takes a steady stream of records into evicted chunks' memory.
func TestTailCacheAddAllocatesNothing(t *testing.T) {
	c := newTailCache(4 * tailChunkSize)
	meta := encodeMeta(nil, testRecord(1))
	body := encodeBody(nil, testRecord(1))
	val := func(b []byte) func(int) []byte { return func(int) []byte { return b } }
	metaOf, bodyOf := val(meta), val(body)
	next := ID(1)
	add := func() {
		c.add(next, 16, metaOf, bodyOf)
		next += 16
		c.publish(next - 1)
	}
	for range 10 * tailChunkSize / (16 * (len(meta) + len(body))) {
		add()
	}
	if n := testing.AllocsPerRun(1000, add); n != 0 {
		t.Errorf("add allocates %.1f times per group, want 0", n)
	}
	first, last, ok := c.bounds()
	if !ok || last != next-1 || first <= 1 {
		t.Errorf("bounds = %d, %d, %v; want the oldest evicted and the last %d", first, last, ok, next-1)
	}
}

// writeLayout1 writes a journal as builds before the segment log did (layout
// version 1): meta and body of each record in the store, under 'm' and 'b', with
// the same index entries, zones and high-water ID. It returns the records.
func writeLayout1(t *testing.T, dir string, n int) []*Record {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{FormatMajorVersion: pebble.FormatNewest})
	if err != nil {
		t.Fatal(err)
	}
	b := db.NewBatch()
	var (
		recs []*Record
		z    zone
	)
	for i := range n {
		rec := testRecord(i)
		rec.ID = ID(i + 1)
		if i%5 == 0 {
			rec.Status = StatusError
		}
		recs = append(recs, rec)
		b.Set(idKey(nil, kindMeta, rec.ID), encodeMeta(nil, rec), nil)
		b.Set(idKey(nil, kindBody, rec.ID), encodeBody(nil, rec), nil)
		b.Set(appendID(indexPrefix(nil, kindStatus, string(rec.Status)), rec.ID), nil, nil)
		b.Set(appendID(indexPrefix(nil, kindControlID, rec.ControlID), rec.ID), nil, nil)
		recv := rec.Received.UnixNano()
		b.Set(appendID(indexPrefix(nil, kindDedupe, rec.Sender, rec.ControlID), rec.ID), binary.BigEndian.AppendUint64(nil, uint64(recv)), nil)
		b.Set(appendID(indexPrefix(nil, kindNHSNumber, rec.NHSNumber), rec.ID), nil, nil)
		if blk := uint64(rec.ID) >> zoneShift; i == 0 || blk != z.block {
			if i > 0 {
				b.Set(z.key(), z.value(), nil)
			}
			z = zone{block: blk, min: recv, max: recv, prefixMax: max(recv, z.prefixMax)}
		} else {
			z.add(recv)
		}
	}
	b.Set(z.key(), z.value(), nil)
	b.Set(keyHighWater, binary.BigEndian.AppendUint64(nil, uint64(n)), nil)
	b.Set(keyLayout, []byte{layoutBeforeSegment}, nil)
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return recs
}

// TestOpenLayout1 opens a journal written before the segment log: read-only it
// reads as it stands; opened to write, it takes new records into the log and
// reads old and new alike, by every path, status changes included.
func TestOpenLayout1(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "journal")
	want := writeLayout1(t, dir, 1100) // two zones
	ctx := context.Background()
	check := func(j *Local) {
		t.Helper()
		sameRecords(t, listAll(t, j), want)
		var read []*Record
		if err := j.Read(ctx, 1, len(want)+1, func(r *Record) bool { read = append(read, r); return true }); err != nil {
			t.Fatal(err)
		}
		for i := range read {
			if d := sameRecord(read[i], want[i]); d != "" {
				t.Fatalf("Read record %d: %s", i+1, d)
			}
		}
		for _, r := range []*Record{want[0], want[len(want)-1]} {
			got, err := j.Get(ctx, r.ID)
			if err != nil {
				t.Fatal(err)
			}
			if d := sameRecord(got, r); d != "" {
				t.Errorf("Get %d: %s", r.ID, d)
			}
		}
		n := 0
		if err := j.List(ctx, Query{Status: StatusError, Since: want[1000].Received}, func(*Record) bool { n++; return true }); err != nil {
			t.Fatal(err)
		}
		if wantN := countMatches(want, Query{Status: StatusError, Since: want[1000].Received}); n != wantN {
			t.Errorf("status and time query found %d records, want %d", n, wantN)
		}
	}

	ro, err := OpenLocal(dir, LocalOptions{ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only open of a layout 1 journal: %v", err)
	}
	check(ro)
	if err := ro.Close(ctx); err != nil {
		t.Fatal(err)
	}

	j, err := OpenLocal(dir, LocalOptions{})
	if err != nil {
		t.Fatalf("open of a layout 1 journal: %v", err)
	}
	t.Cleanup(func() { closeQuietly(t, j) })
	check(j)
	for i := range 10 {
		rec := testRecord(2000 + i)
		mustAppend(t, j, rec)
		c := *rec
		want = append(want, &c)
	}
	for _, r := range []*Record{want[1], want[len(want)-1]} { // one old, one new
		if err := j.SetStatus(ctx, r.ID, StatusDuplicate); err != nil {
			t.Fatal(err)
		}
		r.Status = StatusDuplicate
	}
	check(j)
	j = reopen(t, j, dir)
	check(j)
	if _, err := os.Stat(filepath.Join(dir, segmentDirName, "000001.log")); err != nil {
		t.Errorf("new records not in the segment log: %v", err)
	}
	if err := j.Close(ctx); err != nil {
		t.Fatal(err)
	}
	db, err := pebble.Open(dir, &pebble.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if v, closer, err := db.Get(keyLayout); err != nil || !bytes.Equal(v, []byte{layoutVersion}) {
		t.Errorf("layout version after writing = %v, %v; want %d", v, err, layoutVersion)
	} else {
		closer.Close()
	}
}

// TestOpenUnknownLayout: a journal of a layout this build does not know is
// refused with a message naming the directory and the versions.
func TestOpenUnknownLayout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "journal")
	writeLayout1(t, dir, 1)
	db, err := pebble.Open(dir, &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Set(keyLayout, []byte{9}, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	db.Close()
	for _, ro := range []bool{false, true} {
		_, err := OpenLocal(dir, LocalOptions{ReadOnly: ro})
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "layout version [9]") {
			t.Errorf("open (read-only %v) of layout 9 = %v, want ErrCorrupt naming %s and the version", ro, err, dir)
		}
	}
}

// countMatches counts the records q matches, read plainly.
func countMatches(recs []*Record, q Query) int {
	n := 0
	for _, r := range recs {
		if matches(r, q) {
			n++
		}
	}
	return n
}
