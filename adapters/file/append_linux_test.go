package file

import (
	"context"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/spinebridge/spinebridge/routes"
)

// TestAppendFailedWriteTakenBack: a write the file system cuts short (here by
// a file-size limit: part of the line is written, then EFBIG) is cut back off
// the end of the file, so that the file holds whole lines only while the
// delivery waits for its retry; also after a consumer truncated the file in
// place, when the file's end is no longer where the destination last saw it.
func TestAppendFailedWriteTakenBack(t *testing.T) {
	signal.Ignore(syscall.SIGXFSZ)
	defer signal.Reset(syscall.SIGXFSZ)
	var was syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &was); err != nil {
		t.Fatal(err)
	}
	limit := func(n uint64) {
		t.Helper()
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: min(n, was.Max), Max: was.Max}); err != nil {
			t.Fatal(err)
		}
	}
	defer limit(was.Cur)

	dir := t.TempDir()
	d := newDest(t, "dir: "+dir+"\nappend: true\nname: feed.txt")
	defer d.Close()
	path := filepath.Join(dir, "feed.txt")
	deliver := func(body string) error { return d.Deliver(context.Background(), delivery(body)) }
	holds := func(want string) {
		t.Helper()
		if b, err := os.ReadFile(path); err != nil || string(b) != want {
			t.Fatalf("the file holds %q (%v), want %q", b, err, want)
		}
	}
	for _, body := range []string{"one", "two"} {
		if err := deliver(body); err != nil {
			t.Fatal(err)
		}
	}

	limit(12) // room for "thre" of "three-and-more\n"
	if err := deliver("three-and-more"); err == nil || routes.IsPermanent(err) {
		t.Fatalf("err = %v, want a failure to retry", err)
	}
	holds("one\ntwo\n")

	limit(was.Cur)
	if err := os.Truncate(path, 0); err != nil { // a consumer's copy and truncate
		t.Fatal(err)
	}
	limit(5) // room for "four-" of "four-and-more\n"; the last end seen was 8
	if err := deliver("four-and-more"); err == nil || routes.IsPermanent(err) {
		t.Fatalf("err = %v, want a failure to retry", err)
	}
	holds("")

	limit(was.Cur)
	for _, body := range []string{"four-and-more", "five"} {
		if err := deliver(body); err != nil {
			t.Fatal(err)
		}
	}
	holds("four-and-more\nfive\n")
}
