package routes

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/vfs"
)

// The crash and lock tests run this test binary again as a child process that
// holds a journal; childEnv selects what the child does, childDirEnv where.
const (
	childEnv    = "SPINEBRIDGE_JOURNAL_TEST_CHILD"
	childDirEnv = "SPINEBRIDGE_JOURNAL_TEST_DIR"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(journalChild(mode, os.Getenv(childDirEnv)))
	}
	os.Exit(m.Run())
}

// journalChild is the child process. "append" appends from several goroutines
// and prints "ID CONTROLID" after each Append returns, until it is killed;
// "hold" opens the journal, prints "open" and waits for its standard input to
// close. Either gives up after a minute so that a lost parent leaves nothing
// running.
func journalChild(mode, dir string) int {
	j, err := OpenLocal(dir, LocalOptions{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	timeout := time.AfterFunc(time.Minute, func() { os.Exit(3) })
	defer timeout.Stop()
	switch mode {
	case "hold":
		os.Stdout.WriteString("open\n")
		io.Copy(io.Discard, os.Stdin)
	case "append":
		var out sync.Mutex
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				for i := 0; ; i++ {
					rec := testRecord(i)
					rec.ControlID = fmt.Sprintf("W%d-%d", w, i)
					if err := j.Append(context.Background(), rec); err != nil {
						fmt.Fprintln(os.Stderr, err)
						os.Exit(4)
					}
					out.Lock()
					// One write per line, so the parent never reads half an ID
					// that was acknowledged.
					os.Stdout.WriteString(rec.ID.String() + " " + rec.ControlID + "\n")
					out.Unlock()
				}
			})
		}
		wg.Wait()
	default:
		fmt.Fprintf(os.Stderr, "unknown child mode %q\n", mode)
		return 2
	}
	if err := j.Close(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func startChild(t *testing.T, mode, dir string) (*exec.Cmd, *bufio.Reader, io.WriteCloser) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode, childDirEnv+"="+dir)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd, bufio.NewReader(stdout), stdin
}

// TestCrashDurability kills a process with SIGKILL while it appends, and checks
// that every record whose Append had returned is in the journal, once.
func TestCrashDurability(t *testing.T) {
	dir := t.TempDir()
	cmd, out, _ := startChild(t, "append", dir)

	acked := map[ID]string{}
	read := func() error {
		line, err := out.ReadString('\n')
		if err != nil {
			return err // a line cut short by the kill is not an acknowledgement
		}
		idText, cid, ok := strings.Cut(strings.TrimSuffix(line, "\n"), " ")
		id, perr := ParseID(idText)
		if !ok || perr != nil {
			return fmt.Errorf("child printed %q", line)
		}
		if _, dup := acked[id]; dup {
			return fmt.Errorf("child was given ID %d twice", id)
		}
		acked[id] = cid
		return nil
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(acked) < 2000 {
		if err := read(); err != nil {
			t.Fatalf("after %d acknowledged appends: %v", len(acked), err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("child acknowledged only %d appends in 30s", len(acked))
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for {
		err := read()
		if errors.Is(err, io.EOF) || errors.Is(err, os.ErrClosed) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	cmd.Wait()

	ctx := context.Background()
	// Read-only first: the index may be behind the segment log (the store's
	// log is written without a sync, and the kill can land before it is),
	// and a reader that writes nothing must still find every record.
	ro, err := OpenLocal(dir, LocalOptions{ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only open after SIGKILL: %v", err)
	}
	for id, cid := range acked {
		if rec, err := ro.Get(ctx, id); err != nil || rec.ControlID != cid {
			t.Errorf("read-only Get %d = %v, %v; want %s", id, rec, err, cid)
		}
	}
	n := 0
	if err := ro.List(ctx, Query{}, func(*Record) bool { n++; return true }); err != nil || n < len(acked) {
		t.Errorf("read-only List found %d records (%v), want at least %d", n, err, len(acked))
	}
	if err := ro.Close(ctx); err != nil {
		t.Fatal(err)
	}

	j, err := OpenLocal(dir, LocalOptions{})
	if err != nil {
		t.Fatalf("reopen after SIGKILL: %v", err)
	}
	defer closeQuietly(t, j)
	stored := map[ID]int{}
	cids := map[string]int{}
	var last ID
	if err := j.List(ctx, Query{}, func(r *Record) bool {
		stored[r.ID]++
		cids[r.ControlID]++
		last = r.ID
		return true
	}); err != nil {
		t.Fatal(err)
	}
	for id, cid := range acked {
		if stored[id] != 1 {
			t.Errorf("acknowledged ID %d is stored %d times", id, stored[id])
			continue
		}
		if cids[cid] != 1 {
			t.Errorf("acknowledged record %s is stored %d times", cid, cids[cid])
		}
		rec, err := j.Get(ctx, id)
		if err != nil {
			t.Errorf("Get %d: %v", id, err)
		} else if rec.ControlID != cid {
			t.Errorf("ID %d holds %s, want %s", id, rec.ControlID, cid)
		}
	}
	// Numbering continues above everything recovered, acknowledged or not.
	if id := mustAppend(t, j, testRecord(0)); id <= last {
		t.Errorf("first ID after recovery is %d, want above %d", id, last)
	}
	t.Logf("%d appends acknowledged before SIGKILL, %d records recovered, %d of them indexed again from the segment log", len(acked), len(stored), j.reindexed)
}

// TestOpenLockedAcrossProcesses opens a journal another process holds.
func TestOpenLockedAcrossProcesses(t *testing.T) {
	dir := t.TempDir()
	_, out, stdin := startChild(t, "hold", dir)
	if line, err := out.ReadString('\n'); err != nil || line != "open\n" {
		t.Fatalf("child: %q, %v", line, err)
	}
	for _, ro := range []bool{false, true} {
		j, err := OpenLocal(dir, LocalOptions{ReadOnly: ro})
		if !errors.Is(err, ErrLocked) {
			if err == nil {
				closeQuietly(t, j)
			}
			t.Errorf("OpenLocal (read-only %v) of a journal another process holds = %v, want ErrLocked", ro, err)
		}
	}
	stdin.Close()
	if _, err := out.ReadString('\n'); !errors.Is(err, io.EOF) {
		t.Fatalf("child did not exit: %v", err)
	}
	// Released by the child, the journal opens.
	var j *Local
	var err error
	for range 100 {
		if j, err = OpenLocal(dir, LocalOptions{}); !errors.Is(err, ErrLocked) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("open after the child closed: %v", err)
	}
	closeQuietly(t, j)
}

// TestIndexRebuiltAfterMachineCrash cuts the power with the index synced only
// where the store flushed (the background sync never runs): every record must
// come back from the
// segment log, with the status set before the crash, the zones that time
// queries use, and numbering after it. A read-only open finds them without
// writing; the next open writes them, and the one after has nothing to do.
func TestIndexRebuiltAfterMachineCrash(t *testing.T) {
	mem := vfs.NewStrictMem()
	opts := LocalOptions{fs: mem, indexSync: time.Hour}
	j, err := OpenLocal("journal", opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var want []*Record
	for i := range 1500 { // past the first zone
		rec := testRecord(i)
		mustAppend(t, j, rec)
		c := *rec
		want = append(want, &c)
		if i == 3 {
			// Synced: this status change, and the index entries before it,
			// survive; everything after lives only in the segment log.
			if err := j.SetStatus(ctx, rec.ID, StatusError); err != nil {
				t.Fatal(err)
			}
			c.Status = StatusError
		}
	}
	mem.SetIgnoreSyncs(true)
	if err := j.Close(ctx); err != nil {
		t.Fatal(err)
	}
	mem.ResetToSyncedState()
	mem.SetIgnoreSyncs(false)

	check := func(j *Local) {
		t.Helper()
		sameRecords(t, listAll(t, j), want)
		n := 0
		if err := j.List(ctx, Query{Since: want[1400].Received}, func(*Record) bool { n++; return true }); err != nil || n != 100 {
			t.Errorf("time query after the crash found %d records (%v), want 100", n, err)
		}
		if err := j.List(ctx, Query{Status: StatusError}, func(r *Record) bool { n = int(r.ID); return true }); err != nil || n != 4 {
			t.Errorf("status query after the crash found record %d (%v), want 4", n, err)
		}
		if rec, err := j.FindControlID(ctx, want[1499].Sender, want[1499].ControlID, time.Time{}); err != nil || rec.ID != want[1499].ID {
			t.Errorf("FindControlID after the crash = %v, %v; want record %d", rec, err, want[1499].ID)
		}
	}

	ro, err := OpenLocal("journal", LocalOptions{fs: mem, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	// The store flushes its first, small memtables early, which syncs the
	// index up to there; the records after the last flush are only in the log.
	if ro.reindexed == 0 {
		t.Error("read-only open found no record only in the segment log; the test no longer loses the index")
	}
	check(ro)
	if err := ro.Close(ctx); err != nil {
		t.Fatal(err)
	}

	j, err = OpenLocal("journal", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d records indexed again from the segment log", j.reindexed)
	check(j)
	if id := mustAppend(t, j, testRecord(9999)); id != want[len(want)-1].ID+1 {
		t.Errorf("first ID after the crash is %d, want %d", id, want[len(want)-1].ID+1)
	}
	if err := j.Close(ctx); err != nil {
		t.Fatal(err)
	}
	j, err = OpenLocal("journal", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer closeQuietly(t, j)
	if j.reindexed != 0 {
		t.Errorf("second open after the crash indexed %d records again, want 0", j.reindexed)
	}
}

// TestSegmentTail opens journals whose last segment ends in what a crash can
// leave: a record cut short, garbage, a record failing its checksum (all torn:
// cut off at open, their IDs given out again), and whole records the index
// never saw (indexed at open). A .tmp file left by a truncation cut short goes.
func TestSegmentTail(t *testing.T) {
	extra := func(id ID) []byte {
		rec := testRecord(int(id) - 1)
		return appendSegmentRecord(nil, id, encodeMeta(nil, rec), encodeBody(nil, rec))
	}
	for _, tc := range []struct {
		name string
		tail func() []byte
		more int // whole records in the tail
	}{
		{"record cut short", func() []byte { r := extra(21); return r[:len(r)/2] }, 0},
		{"header cut short", func() []byte { return extra(21)[:5] }, 0},
		{"garbage", func() []byte { return bytes.Repeat([]byte{0xa5}, 100) }, 0},
		{"zeros", func() []byte { return make([]byte, 4096) }, 0},
		{"bad checksum", func() []byte { r := extra(21); r[len(r)-3] ^= 1; return r }, 0},
		{"index behind the log", func() []byte { return append(extra(21), extra(22)...) }, 2},
		{"index behind the log, then torn", func() []byte { r := append(extra(21), extra(22)...); return r[:len(r)-9] }, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j, dir := openTest(t)
			ctx := context.Background()
			for i := range 20 {
				mustAppend(t, j, testRecord(i))
			}
			if err := j.Close(ctx); err != nil {
				t.Fatal(err)
			}
			seg := filepath.Join(dir, segmentDirName, "000001.log")
			st, err := os.Stat(seg)
			if err != nil {
				t.Fatal(err)
			}
			good := st.Size()
			f, err := os.OpenFile(seg, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			tail := tc.tail()
			if _, err := f.Write(tail); err != nil {
				t.Fatal(err)
			}
			f.Close()
			if err := os.WriteFile(seg+".tmp", []byte("left over"), 0o600); err != nil {
				t.Fatal(err)
			}
			wantLen := 20 + tc.more
			list := func(j *Local) []*Record {
				t.Helper()
				got := listAll(t, j)
				if len(got) != wantLen {
					t.Fatalf("%d records, want %d", len(got), wantLen)
				}
				for i, r := range got {
					want := testRecord(i)
					want.ID = ID(i + 1)
					if d := sameRecord(r, want); d != "" {
						t.Fatalf("record %d: %s", i+1, d)
					}
				}
				return got
			}

			// Read-only: found, and nothing written.
			ro, err := OpenLocal(dir, LocalOptions{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			list(ro)
			if err := ro.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if st, err := os.Stat(seg); err != nil || st.Size() != good+int64(len(tail)) {
				t.Fatalf("read-only open changed the segment: %v", err)
			}

			j, err = OpenLocal(dir, LocalOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer closeQuietly(t, j)
			if j.reindexed != tc.more {
				t.Errorf("indexed %d records from the segment log, want %d", j.reindexed, tc.more)
			}
			list(j)
			st, err = os.Stat(seg)
			if err != nil {
				t.Fatal(err)
			}
			if whole := good + int64(len(extra(21)))*int64(tc.more); st.Size() != whole {
				t.Errorf("segment is %d bytes after open, want %d (the torn tail cut off)", st.Size(), whole)
			}
			if _, err := os.Stat(seg + ".tmp"); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("left-over copy still there: %v", err)
			}
			if id := mustAppend(t, j, testRecord(wantLen)); id != ID(wantLen+1) {
				t.Errorf("next ID %d, want %d", id, wantLen+1)
			}
			wantLen++
			j = reopen(t, j, dir)
			list(j)
		})
	}
}

// errInjected is the failure failingFS injects.
var errInjected = errors.New("injected failure")

// failingFS fails writes and syncs of the segment log's files while fail is
// set; a failed write writes half of what it was given, as a full disk might.
type failingFS struct {
	vfs.FS
	fail atomic.Bool
}

func (f *failingFS) Create(name string) (vfs.File, error) {
	file, err := f.FS.Create(name)
	if err != nil || !strings.Contains(name, segmentDirName) {
		return file, err
	}
	return &failingFile{File: file, fs: f}, nil
}

type failingFile struct {
	vfs.File
	fs *failingFS
}

func (f *failingFile) Write(p []byte) (int, error) {
	if f.fs.fail.Load() {
		n, _ := f.File.Write(p[:len(p)/2])
		return n, errInjected
	}
	return f.File.Write(p)
}

func (f *failingFile) SyncData() error {
	if f.fs.fail.Load() {
		return errInjected
	}
	return f.File.SyncData()
}

// TestSegmentWriteFails: once a write to the segment log fails, nothing more is
// appended (the file's tail is unknown), until the journal is opened again,
// which cuts the torn tail off and carries on.
func TestSegmentWriteFails(t *testing.T) {
	for _, op := range []string{"write", "sync"} {
		t.Run(op, func(t *testing.T) {
			fsys := &failingFS{FS: vfs.NewMem()}
			j, err := OpenLocal("journal", LocalOptions{fs: fsys})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			for i := range 5 {
				mustAppend(t, j, testRecord(i))
			}
			fsys.fail.Store(true)
			rec := testRecord(5)
			if op == "sync" {
				// A write that succeeds and a sync that fails: the record may
				// reach the file, but it was never acknowledged.
				j.seg.w = &syncFailing{File: j.seg.w.(*failingFile).File, fs: fsys}
			}
			if err := j.Append(ctx, rec); !errors.Is(err, errInjected) {
				t.Fatalf("Append while the segment log fails = %v, want the injected error", err)
			}
			fsys.fail.Store(false)
			if err := j.Append(ctx, testRecord(6)); !errors.Is(err, errInjected) {
				t.Errorf("Append after a failed write = %v, want the first failure again", err)
			}
			if got, err := j.Get(ctx, 5); err != nil || got.ControlID != testRecord(4).ControlID {
				t.Errorf("Get of a record appended before the failure = %v, %v", got, err)
			}
			if err := j.Close(ctx); err != nil {
				t.Fatal(err)
			}

			j, err = OpenLocal("journal", LocalOptions{fs: fsys})
			if err != nil {
				t.Fatal(err)
			}
			defer closeQuietly(t, j)
			id := mustAppend(t, j, testRecord(7))
			var ids []ID
			if err := j.List(ctx, Query{}, func(r *Record) bool { ids = append(ids, r.ID); return true }); err != nil {
				t.Fatal(err)
			}
			// The failed record may or may not be there (its bytes reached the
			// file when only the sync failed), as after a crash.
			if n := len(ids); n < 6 || n > 7 || ids[n-1] != id || id <= 5 {
				t.Errorf("records after reopening: %v (new one %d)", ids, id)
			}
		})
	}
}

// syncFailing writes but fails its syncs while fs.fail is set.
type syncFailing struct {
	vfs.File
	fs *failingFS
}

func (f *syncFailing) SyncData() error {
	if f.fs.fail.Load() {
		return errInjected
	}
	return f.File.SyncData()
}
