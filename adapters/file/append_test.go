package file

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/spinebridge/spinebridge/routes"
)

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		t.Errorf("%s does not end with a line feed: %q", path, b)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// TestAppend appends deliveries of two routes: a line each, in the order
// delivered, in a file a day per route, with the destination's mode; the
// default name gives JSON the ndjson extension and HL7 v2 its own.
func TestAppend(t *testing.T) {
	for _, fsync := range []bool{true, false} {
		t.Run(fmt.Sprint("fsync=", fsync), func(t *testing.T) {
			dir := t.TempDir()
			d := newDest(t, fmt.Sprintf("dir: %s\nappend: true\nmode: '0604'\nfsync: %v", dir, fsync))
			defer d.Close()
			for i, route := range []string{"a", "b", "a", "a", "b"} {
				del := delivery(fmt.Sprintf(`{"n":%d}`, i))
				del.Route, del.MessageID = route, routes.ID(i+1)
				if err := d.Deliver(context.Background(), del); err != nil {
					t.Fatal(err)
				}
			}
			hl7 := delivery("MSH|^~\\&|PAS\rPID|||9000000009\r")
			hl7.ContentType = routes.ContentTypeHL7v2
			if err := d.Deliver(context.Background(), hl7); err != nil {
				t.Fatal(err)
			}
			want := []string{"20261121/a.ndjson", "20261121/adt-to-pds.hl7", "20261121/b.ndjson"}
			if got := files(t, dir); !slices.Equal(got, want) {
				t.Fatalf("files %q, want %q", got, want)
			}
			if got, want := readLines(t, filepath.Join(dir, "20261121/a.ndjson")), []string{`{"n":0}`, `{"n":2}`, `{"n":3}`}; !slices.Equal(got, want) {
				t.Errorf("a.ndjson %q, want %q", got, want)
			}
			if got, want := readLines(t, filepath.Join(dir, "20261121/b.ndjson")), []string{`{"n":1}`, `{"n":4}`}; !slices.Equal(got, want) {
				t.Errorf("b.ndjson %q, want %q", got, want)
			}
			if got := readLines(t, filepath.Join(dir, "20261121/adt-to-pds.hl7")); len(got) != 1 || got[0] != string(hl7.Body) {
				t.Errorf("adt-to-pds.hl7 %q", got)
			}
			fi, err := os.Stat(filepath.Join(dir, "20261121/a.ndjson"))
			if err != nil || fi.Mode().Perm() != 0o604 {
				t.Errorf("mode %v, %v; want 0604", fi.Mode().Perm(), err)
			}
		})
	}
}

// TestAppendConcurrent appends from many goroutines at once into one file,
// with fsync on: every delivery is one whole line, none torn or interleaved,
// and the file is synced, each sync serving the deliveries waiting for it.
func TestAppendConcurrent(t *testing.T) {
	dir := t.TempDir()
	d := newDest(t, "dir: "+dir+"\nappend: true\nname: all.txt")
	defer d.Close()
	var syncs atomic.Int64
	d.appends.syncs.do = func(af *appendFile) error {
		syncs.Add(1)
		return af.datasync()
	}
	const n = 400
	body := func(i int) string { return fmt.Sprintf("%d:%s", i, strings.Repeat("x", i*37%9000)) }
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			del := delivery(body(i))
			del.MessageID = routes.ID(i + 1)
			if err := d.Deliver(context.Background(), del); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if syncs.Load() == 0 || syncs.Load() > n {
		t.Errorf("%d syncs for %d deliveries", syncs.Load(), n)
	}
	t.Logf("%d deliveries, %d syncs of the file", n, syncs.Load())
	lines := readLines(t, filepath.Join(dir, "all.txt"))
	if len(lines) != n {
		t.Fatalf("%d lines, want %d", len(lines), n)
	}
	want := make([]string, n)
	for i := range n {
		want[i] = body(i)
	}
	slices.Sort(lines)
	slices.Sort(want)
	if !slices.Equal(lines, want) {
		t.Error("the lines are not the bodies delivered, each once")
	}
}

// TestAppendSharedFile appends to one file from two destinations at once,
// as two routes naming the same file do, the second opened again and again:
// each opening looks for a torn record to cut back, and must not take one
// the other destination is in the middle of writing (a record of many pages
// grows the file a page at a time) for one.
func TestAppendSharedFile(t *testing.T) {
	dir := t.TempDir()
	cfg := "dir: " + dir + "\nappend: true\nname: shared.txt"
	long := newDest(t, cfg)
	defer long.Close()
	const writers, each, reopens = 4, 50, 100
	body := func(who, i int) string { return fmt.Sprintf("%d.%d:%s", who, i, strings.Repeat("y", 12000+i)) }
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if err := long.Deliver(context.Background(), delivery(body(w, i))); err != nil {
					t.Error(err)
				}
			}
		})
	}
	var want []string
	for w := range writers {
		for i := range each {
			want = append(want, body(w, i))
		}
	}
	wg.Go(func() {
		for i := range reopens {
			short := newDest(t, cfg)
			if err := short.Deliver(context.Background(), delivery(fmt.Sprintf("short %d", i))); err != nil {
				t.Error(err)
			}
			short.Close()
		}
	})
	for i := range reopens {
		want = append(want, fmt.Sprintf("short %d", i))
	}
	wg.Wait()
	lines := readLines(t, filepath.Join(dir, "shared.txt"))
	slices.Sort(lines)
	slices.Sort(want)
	if !slices.Equal(lines, want) {
		t.Errorf("%d lines, want the %d delivered, each once", len(lines), len(want))
	}
}

// TestAppendCutsTornRecord starts on files a crash left with a torn last
// record: it is cut off before the first append, whole records stay.
func TestAppendCutsTornRecord(t *testing.T) {
	for name, c := range map[string]struct{ before, after string }{
		"torn after whole":   {"one\ntwo\nthr", "one\ntwo\nnew\n"},
		"only torn":          {"tor", "new\n"},
		"whole":              {"one\n", "one\nnew\n"},
		"empty":              {"", "new\n"},
		"torn over a buffer": {"one\n" + strings.Repeat("z", 10000), "one\nnew\n"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "f.txt")
			if err := os.WriteFile(path, []byte(c.before), 0o600); err != nil {
				t.Fatal(err)
			}
			d := newDest(t, "dir: "+dir+"\nappend: true\nname: f.txt")
			defer d.Close()
			if err := d.Deliver(context.Background(), delivery("new")); err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(path); string(b) != c.after {
				t.Errorf("file %q, want %q", b, c.after)
			}
		})
	}
}

// TestAppendRefusesLineFeed: a body holding a line feed would read as two
// records; it fails for good, and nothing is written, not even its directory.
func TestAppendRefusesLineFeed(t *testing.T) {
	dir := t.TempDir()
	d := newDest(t, "dir: "+dir+"\nappend: true\nname: day/f.txt")
	defer d.Close()
	err := d.Deliver(context.Background(), delivery("{\n}"))
	if !routes.IsPermanent(err) || !errors.Is(err, errLineFeed) {
		t.Fatalf("err = %v, want a permanent errLineFeed", err)
	}
	if got, err := os.ReadDir(dir); err != nil || len(got) != 0 {
		t.Errorf("the directory holds %v (%v) after a refused delivery", got, err)
	}
}

// TestAppendManyFiles appends to more files than are kept open, twice over:
// idle files are closed and opened again, and every line is where it belongs.
func TestAppendManyFiles(t *testing.T) {
	dir := t.TempDir()
	d := newDest(t, "dir: "+dir+"\nappend: true\nname: '{{.Key}}.txt'\nfsync: false")
	const keys = maxAppendOpen*2 + 3
	for round := range 2 {
		for k := range keys {
			del := delivery(fmt.Sprint("round ", round))
			del.Key = fmt.Sprint("k", k)
			if err := d.Deliver(context.Background(), del); err != nil {
				t.Fatal(err)
			}
		}
	}
	if open := len(d.appends.open); open > maxAppendOpen {
		t.Errorf("%d files open, want at most %d", open, maxAppendOpen)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if len(d.appends.open) != 0 {
		t.Errorf("%d files open after Close", len(d.appends.open))
	}
	for k := range keys {
		if got, want := readLines(t, filepath.Join(dir, fmt.Sprint("k", k, ".txt"))), []string{"round 0", "round 1"}; !slices.Equal(got, want) {
			t.Errorf("k%d: %q, want %q", k, got, want)
		}
	}
}

// TestAppendFileTaken: a file removed or moved away between deliveries (by a
// consumer taking it) is created again, never appended to unseen; a removed
// directory fails the delivery, and its retry creates it again.
func TestAppendFileTaken(t *testing.T) {
	dir := t.TempDir()
	d := newDest(t, "dir: "+dir+"\nappend: true\nname: 'day/{{.Route}}.txt'")
	defer d.Close()
	path := filepath.Join(dir, "day", "adt-to-pds.txt")
	deliver := func(body string) error { return d.Deliver(context.Background(), delivery(body)) }
	if err := deliver("one"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, path+".taken"); err != nil {
		t.Fatal(err)
	}
	if err := deliver("two"); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := deliver("three"); err != nil {
		t.Fatal(err)
	}
	if got := readLines(t, path+".taken"); !slices.Equal(got, []string{"one"}) {
		t.Errorf("taken file %q", got)
	}
	if got := readLines(t, path); !slices.Equal(got, []string{"three"}) {
		t.Errorf("file %q", got)
	}

	if err := os.RemoveAll(filepath.Join(dir, "day")); err != nil {
		t.Fatal(err)
	}
	if err := deliver("four"); err == nil || routes.IsPermanent(err) {
		t.Fatalf("err = %v, want a failure to retry for the removed directory", err)
	}
	if err := deliver("five"); err != nil {
		t.Fatalf("the retry failed: %v", err)
	}
	if got := readLines(t, path); !slices.Equal(got, []string{"five"}) {
		t.Errorf("file %q", got)
	}
}
