package file

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// anonymousFiles reports whether files can be written unnamed and linked into
// place: O_TMPFILE, and /proc/self/fd to name the open file to linkat, which
// otherwise needs a capability (AT_EMPTY_PATH). A file system without
// O_TMPFILE is found at the first delivery instead.
func anonymousFiles() bool {
	_, err := os.Stat("/proc/self/fd")
	return err == nil
}

// writeAnonymous writes body to an unnamed file in dir, gives it its mode,
// syncs it when asked, and links it in at path. The file has no name until it
// is whole, so a crash leaves nothing behind, and the directory is changed
// once, by the link, where a named temporary file changes it three times
// (create, rename away, and the rename's arrival). Concurrent deliveries into
// one directory queue on its lock for each of those changes; that, not the
// writing, was most of a delivery's CPU.
//
// It returns errNoAnonymous, having written nothing, when dir's file system
// cannot make unnamed files.
func (d *Destination) writeAnonymous(dir, path string, body []byte) (err error) {
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, uint32(d.mode.Perm()))
	if err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EISDIR) || errors.Is(err, unix.EINVAL) {
			return errNoAnonymous
		}
		return fmt.Errorf("create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "")
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close: %w", bare(cerr))
		}
	}()
	if _, err := f.Write(body); err != nil {
		return fmt.Errorf("write: %w", bare(err))
	}
	// The mode given at creation is narrowed by the umask: set it outright.
	if err := f.Chmod(d.mode); err != nil {
		return fmt.Errorf("chmod: %w", bare(err))
	}
	if d.fsync {
		if err := unix.Fdatasync(fd); err != nil {
			return fmt.Errorf("sync: %w", err)
		}
	}
	self := "/proc/self/fd/" + strconv.Itoa(fd)
	err = unix.Linkat(unix.AT_FDCWD, self, unix.AT_FDCWD, path, unix.AT_SYMLINK_FOLLOW)
	if !errors.Is(err, unix.EEXIST) {
		if err != nil {
			return fmt.Errorf("link into place: %w", err)
		}
		return nil
	}
	// A delivery sent again replaces the file it wrote before. A link does not
	// replace, a rename does: link under a temporary name, then rename.
	for try := 0; ; try++ {
		tmp := tempName(dir, try)
		err = unix.Linkat(unix.AT_FDCWD, self, unix.AT_FDCWD, tmp, unix.AT_SYMLINK_FOLLOW)
		if errors.Is(err, unix.EEXIST) && try < 100 {
			continue
		}
		if err != nil {
			return fmt.Errorf("link into place: %w", err)
		}
		if err := syscall.Rename(tmp, path); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("rename into place: %w", err)
		}
		return nil
	}
}

// tempName is the try-th name for a temporary link in dir: hidden (see
// tempPattern), and unlikely to be taken.
func tempName(dir string, try int) string {
	return filepath.Join(dir, fmt.Sprintf(".spinebridge-%d-%d.tmp", time.Now().UnixNano(), try))
}

// datasync fdatasyncs f: a closed f gives os.ErrClosed, never another file
// that took its descriptor.
func datasync(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	if cerr := rc.Control(func(fd uintptr) { err = unix.Fdatasync(int(fd)) }); cerr != nil {
		return cerr
	}
	return err
}
