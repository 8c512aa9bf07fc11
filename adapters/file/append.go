package file

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// appendFile is a file deliveries append to, open while deliveries use it.
// Its lock keeps each record one write at the end, and lets a failed write be
// taken back.
type appendFile struct {
	path     string
	dev, ino uint64 // the file opened, to tell whether path still names it

	mu     sync.Mutex
	f      *os.File
	line   []byte // the record being written, reused
	broken bool   // a failed write could not be taken back: open it afresh

	refs    int  // deliveries using it; under appendFiles.mu
	retired bool // out of the table; closed when the last user is done
}

// appendFiles are the files a destination in append mode has open, by path.
type appendFiles struct {
	mu    sync.Mutex
	open  map[string]*appendFile
	syncs syncGroup[*appendFile] // with fsync: one fdatasync for many records
}

// maxAppendOpen is how many files an append destination keeps open when idle.
// A name template usually makes one file a day per route; a template naming a
// file per patient would otherwise keep a descriptor per patient.
const maxAppendOpen = 16

// errLineFeed is why a body is refused in append mode.
var errLineFeed = errors.New("append: the body holds a line feed, and an appended file holds one record per line: " +
	"send such messages to a destination that writes a file each")

// appendRecord appends body and a line feed to the file at path as one
// write, and with fsync waits for an fdatasync of the file begun after it,
// shared with the other deliveries appending to it. Deliver has refused a body
// holding a line feed.
func (d *Destination) appendRecord(ctx context.Context, dir, path string, body []byte) error {
	af, err := d.acquire(dir, path)
	if err != nil {
		return err
	}
	defer d.release(af)
	if err := af.write(body); err != nil {
		return err
	}
	if d.fsync {
		if err := d.appends.syncs.sync(ctx, af); err != nil {
			return fmt.Errorf("sync: %w", bare(err))
		}
	}
	return nil
}

// write appends body and a line feed as one write. A write that fails is
// taken back by cutting off the n bytes it wrote at the end of the file, so
// that no torn record stays in the middle of it; where even that fails, the
// file is marked broken and opened afresh, its tail repaired, by the next
// delivery. The end is the file's own, not a count kept here: a consumer may
// have truncated the file in place since it was opened, and O_APPEND writes
// at the new end.
//
// The write holds the file's lock (flock), as cutting back a torn record
// does: another destination, or another Spinebridge, opening the same file
// must not take a record still being written for a torn one and cut it off.
// A write of many pages grows the file a page at a time, so a stat in the
// middle of it sees a file that does not end with a line feed.
func (af *appendFile) write(body []byte) error {
	af.mu.Lock()
	defer af.mu.Unlock()
	if af.broken {
		return errors.New("write: an earlier failed write could not be taken back")
	}
	err := locked(af.f, func() error { return af.appendLine(body) })
	if errors.Is(err, errUnlock) {
		af.broken = true // held, the lock would stop every other appender: open afresh
	}
	return err
}

// appendLine is write's work under the locks.
func (af *appendFile) appendLine(body []byte) error {
	af.line = append(append(af.line[:0], body...), '\n')
	n, err := af.f.Write(af.line)
	if err == nil {
		return nil
	}
	if n > 0 {
		fi, serr := af.f.Stat()
		if serr != nil || fi.Size() < int64(n) || af.f.Truncate(fi.Size()-int64(n)) != nil {
			af.broken = true
		}
	}
	return fmt.Errorf("write: %w", bare(err))
}

// datasync is the sync a syncGroup makes of an appended file: its data and
// its size, without its times where the system allows (fdatasync).
func (af *appendFile) datasync() error {
	return datasync(af.f)
}

// acquire returns the open file at path, opening it (and creating it and dir's
// entry for it) when it is not, with one more user.
//
// A file that path no longer names (a consumer removed it, or moved it away
// to take it) is not written to again: appending to it would write lines no
// one will read. A stat of path per delivery finds that out.
//
// The stat is made before taking the table's lock, which the common case (the
// file is the one open) then holds only for a look-up. A stat that does not
// match is made again under the lock before the file is retired: the first
// could predate the file another delivery has just created, and retiring the
// file in use for it would open a second of the same file beside it.
func (d *Destination) acquire(dir, path string) (*appendFile, error) {
	var st syscall.Stat_t
	statted := syscall.Stat(path, &st) == nil
	a := &d.appends
	a.mu.Lock()
	defer a.mu.Unlock()
	if af := a.open[path]; af != nil {
		if !statted || !af.named(&st) {
			statted = syscall.Stat(path, &st) == nil
		}
		if statted && af.named(&st) && !af.brokenNow() {
			af.refs++
			return af, nil
		}
		a.retire(af)
	}
	if len(a.open) >= maxAppendOpen {
		for _, idle := range a.open {
			if idle.refs == 0 {
				a.retire(idle)
			}
		}
	}
	af, err := d.openAppend(dir, path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			d.known.Delete(dir) // removed behind our back: create it again next time
		}
		return nil, err
	}
	if a.open == nil {
		a.open = map[string]*appendFile{}
	}
	a.open[path] = af
	af.refs = 1
	return af, nil
}

// named reports whether st, a stat of af's path, is of af's file.
func (af *appendFile) named(st *syscall.Stat_t) bool {
	return uint64(st.Dev) == af.dev && st.Ino == af.ino
}

func (af *appendFile) brokenNow() bool {
	af.mu.Lock()
	defer af.mu.Unlock()
	return af.broken
}

// release gives back a file acquire returned.
func (d *Destination) release(af *appendFile) {
	d.appends.mu.Lock()
	defer d.appends.mu.Unlock()
	af.refs--
	if af.retired && af.refs == 0 {
		af.f.Close()
	}
}

// retire takes af out of the table, closing it once no delivery uses it.
// Called with a.mu held.
func (a *appendFiles) retire(af *appendFile) {
	delete(a.open, af.path)
	af.retired = true
	if af.refs == 0 {
		af.f.Close()
	}
}

// openAppend opens the file at path for appending, creating it with the
// destination's mode (and, with fsync, syncing dir so that its name survives)
// when it is missing. A file that does not end with a line feed ends with a
// record torn by a crash in the middle of its write, whose delivery was never
// counted as done and will be made again: it is cut back to its last whole
// record.
func (d *Destination) openAppend(dir, path string) (*appendFile, error) {
	created := true
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND|syscall.O_CLOEXEC, d.mode)
	if errors.Is(err, os.ErrExist) {
		created = false
		f, err = os.OpenFile(path, os.O_RDWR|os.O_APPEND|syscall.O_CLOEXEC, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("open: %w", bare(err))
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat: %w", bare(err))
	}
	st := fi.Sys().(*syscall.Stat_t)
	af := &appendFile{path: path, f: f, dev: uint64(st.Dev), ino: st.Ino}
	if err := af.prepare(created, fi, d.mode); err != nil {
		f.Close()
		return nil, err
	}
	if created && d.fsync {
		if err := syncDir(dir); err != nil {
			f.Close()
			return nil, fmt.Errorf("sync directory: %w", bare(err))
		}
	}
	return af, nil
}

// prepare gives a new file its mode, which the umask narrowed at creation, and
// cuts an existing one, of which fi is a stat taken on opening, back to its
// last whole record. The cut is made under the file's lock, with the size
// read again under it: a record another appender is writing is not torn.
func (af *appendFile) prepare(created bool, fi os.FileInfo, mode os.FileMode) error {
	if created {
		if err := af.f.Chmod(mode); err != nil {
			return fmt.Errorf("chmod: %w", bare(err))
		}
		return nil
	}
	if !fi.Mode().IsRegular() { // O_RDWR refused a directory already
		return errors.New("open: not a regular file")
	}
	return locked(af.f, func() error {
		fi, err := af.f.Stat()
		if err != nil {
			return fmt.Errorf("stat: %w", bare(err))
		}
		whole, err := lastWholeRecord(af.f, fi.Size())
		if err != nil {
			return fmt.Errorf("read: %w", bare(err))
		}
		if whole < fi.Size() {
			if err := af.f.Truncate(whole); err != nil {
				return fmt.Errorf("cut back a torn record: %w", bare(err))
			}
		}
		return nil
	})
}

// errUnlock is wrapped by the error of locked when the lock could not be given
// back.
var errUnlock = errors.New("unlock")

// locked runs fn holding f's advisory lock (flock), which every appender of
// Spinebridge's takes around a write and around cutting back a torn record.
// An error giving the lock back is joined to fn's, wrapping errUnlock.
func locked(f *os.File, fn func() error) error {
	if err := flock(f, unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	err := fn()
	if uerr := flock(f, unix.LOCK_UN); uerr != nil {
		err = errors.Join(err, fmt.Errorf("%w: %w", errUnlock, uerr))
	}
	return err
}

// flock applies how (unix.LOCK_EX or unix.LOCK_UN) to f's advisory lock,
// waiting for it to be free.
func flock(f *os.File, how int) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if cerr := rc.Control(func(fd uintptr) {
		for {
			if ferr = unix.Flock(int(fd), how); ferr != unix.EINTR {
				return
			}
		}
	}); cerr != nil {
		return cerr
	}
	return ferr
}

// lastWholeRecord returns the length of f up to and including its last line
// feed, reading back from size.
func lastWholeRecord(f *os.File, size int64) (int64, error) {
	buf := make([]byte, 4096)
	for end := size; end > 0; {
		n := min(int64(len(buf)), end)
		if _, err := f.ReadAt(buf[:n], end-n); err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			return end - n + int64(i) + 1, nil
		}
		end -= n
	}
	return 0, nil
}

// close closes every file, after the syncs under way.
func (a *appendFiles) close() {
	a.syncs.close()
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, af := range a.open {
		a.retire(af)
	}
}
