package file

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spinebridge/spinebridge/routes"
)

// Destination writes each delivery to a file of its own in a directory. It is
// safe for concurrent use.
type Destination struct {
	name    string
	dir     string // absolute
	tmpl    *template.Template
	mode    os.FileMode
	dirMode os.FileMode
	fsync   bool
	group   *groupSync // with fsync: one syncfs for the files of many deliveries

	dirs sync.Map  // directories known to exist → whether they are on dir's file system
	bufs sync.Pool // *bytes.Buffer for executing tmpl
}

var (
	_ routes.Destination = (*Destination)(nil)
	_ routes.Concurrent  = (*Destination)(nil)
)

// tempPattern names files being written; the leading dot hides them from
// readers that skip dot files.
const tempPattern = ".spinebridge-*.tmp"

// Deliver writes del's body to its file, atomically: see the package comment.
// A name the template cannot make is a permanent failure; a failure to write
// is retried. Errors never name the file, whose name may hold field values.
func (d *Destination) Deliver(ctx context.Context, del *routes.Delivery) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	rel, err := d.fileName(del)
	if err != nil {
		return routes.Permanent(fmt.Errorf("file: %s: %w", d.name, err))
	}
	path := filepath.Join(d.dir, rel)
	dir := filepath.Dir(path)
	sameFS, err := d.ensureDir(dir)
	if err != nil {
		return fmt.Errorf("file: %s: create directory: %w", d.name, bare(err))
	}
	if err := d.write(ctx, dir, path, del.Body, sameFS); err != nil {
		if errors.Is(err, syscall.ENAMETOOLONG) {
			return routes.Permanent(fmt.Errorf("file: %s: %w", d.name, err))
		}
		return fmt.Errorf("file: %s: %w", d.name, err)
	}
	return nil
}

// write writes body to a temporary file in dir and renames it to path. With
// fsync, a file in a directory on the destination directory's file system is
// made durable by the group sync; elsewhere (a subdirectory another file
// system is mounted on) by syncing the file and its directory.
func (d *Destination) write(ctx context.Context, dir, path string, body []byte, sameFS bool) (err error) {
	grouped := d.fsync && sameFS
	f, err := os.CreateTemp(dir, tempPattern)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			// Removed behind our back: create it again next time.
			d.dirs.Delete(dir)
		}
		return fmt.Errorf("create: %w", bare(err))
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(body); err != nil {
		return fmt.Errorf("write: %w", bare(err))
	}
	// CreateTemp makes the file 0600, and a umask would narrow any mode given
	// at creation: set it outright.
	if err := f.Chmod(d.mode); err != nil {
		return fmt.Errorf("chmod: %w", bare(err))
	}
	if d.fsync && !grouped {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("sync: %w", bare(err))
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close: %w", bare(err))
	}
	// syscall.Rename, not os.Rename, which first stats the new name to refuse
	// a directory there, a system call that costs a tenth of a delivery; the
	// rename itself refuses to replace a directory with a file.
	if err := syscall.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename into place: %w", err)
	}
	switch {
	case grouped:
		// One syncfs writes the file's data and the rename's directory entry.
		if err := d.group.sync(ctx); err != nil {
			return fmt.Errorf("sync: %w", err)
		}
	case d.fsync:
		// The rename is an entry in the directory: sync it, or a crash may undo
		// it.
		if err := syncDir(dir); err != nil {
			return fmt.Errorf("sync directory: %w", bare(err))
		}
	}
	return nil
}

// ensureDir creates dir and its missing parents, syncing the parent of each
// one created when fsync is on, and remembers that it exists. It reports
// whether dir is on the same file system as the destination's directory.
func (d *Destination) ensureDir(dir string) (sameFS bool, err error) {
	if v, ok := d.dirs.Load(dir); ok {
		return v.(bool), nil
	}
	var missing []string
	for p := dir; ; p = filepath.Dir(p) {
		_, err := os.Stat(p)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return false, err
		}
		missing = append(missing, p)
		if filepath.Dir(p) == p {
			break
		}
	}
	if err := os.MkdirAll(dir, d.dirMode); err != nil {
		return false, err
	}
	if d.fsync {
		for _, p := range missing {
			if err := syncDir(filepath.Dir(p)); err != nil {
				return false, err
			}
		}
	}
	sameFS, err = d.onDirFS(dir)
	if err != nil {
		return false, err
	}
	d.dirs.Store(dir, sameFS)
	return sameFS, nil
}

// onDirFS reports whether dir is on the file system of the destination's
// directory, which must exist.
func (d *Destination) onDirFS(dir string) (bool, error) {
	if dir == d.dir {
		return true, nil
	}
	var st, root unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return false, err
	}
	if err := unix.Stat(d.dir, &root); err != nil {
		return false, err
	}
	return st.Dev == root.Dev, nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// bare drops the path a *fs.PathError or *os.LinkError quotes.
func bare(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return fmt.Errorf("%s: %w", le.Op, le.Err)
	}
	return err
}

// Ready creates the directory if it is missing and checks that a file can be
// created in it.
func (d *Destination) Ready(ctx context.Context) error {
	if _, err := d.ensureDir(d.dir); err != nil {
		return fmt.Errorf("file: %s: %w", d.name, err)
	}
	f, err := os.CreateTemp(d.dir, ".spinebridge-ready-*")
	if err != nil {
		d.dirs.Delete(d.dir)
		return fmt.Errorf("file: %s: directory not writable: %w", d.name, err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// Concurrency asks for enough deliveries in flight for the group sync to
// share its syncs; without fsync it leaves the dispatcher's default.
func (d *Destination) Concurrency() int {
	if d.fsync {
		return groupConcurrency
	}
	return 0
}

// groupConcurrency is the destination's concurrency with fsync on.
const groupConcurrency = 32

// Close releases the directory the group sync holds open.
func (d *Destination) Close() error {
	if d.group != nil {
		return d.group.close()
	}
	return nil
}

// nameFields is what a name template sees; the package comment describes
// each field.
type nameFields struct {
	ID, MessageID, Route, Destination, Key                    string
	Type, Trigger, Version, ControlID, Sender, NHSNumber, Ext string
	Received                                                  time.Time
}

// fileName executes the name template for del and checks that the result is
// a path inside the directory. Its errors never quote the name.
func (d *Destination) fileName(del *routes.Delivery) (string, error) {
	f := nameFields{
		ID:          safe(del.ID),
		MessageID:   del.MessageID.String(),
		Route:       safe(del.Route),
		Destination: safe(del.Destination),
		Key:         safe(del.Key),
		Type:        safe(del.Type),
		Trigger:     safe(del.Trigger),
		Version:     safe(del.Version),
		ControlID:   safe(del.ControlID),
		Sender:      safe(del.Sender),
		NHSNumber:   safe(del.NHSNumber),
		Ext:         extension(del.ContentType),
		Received:    del.Received.UTC(),
	}
	buf, _ := d.bufs.Get().(*bytes.Buffer)
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	defer d.bufs.Put(buf)
	buf.Reset()
	if err := d.tmpl.Execute(buf, &f); err != nil {
		return "", fmt.Errorf("name template: %w", err)
	}
	name := buf.Bytes()
	switch {
	case len(name) == 0:
		return "", errors.New("the name template gave an empty name")
	case bytes.IndexByte(name, 0) >= 0:
		return "", errors.New("the name template gave a name with a NUL byte")
	case !filepath.IsLocal(string(name)):
		return "", errors.New("the name template gave a name outside the directory")
	}
	clean := filepath.Clean(string(name))
	if clean == "." || strings.HasPrefix(filepath.Base(clean), ".spinebridge-") {
		return "", errors.New("the name template gave the directory itself or a temporary file's name")
	}
	return clean, nil
}

// safe returns s with every byte that could make a path leave its directory,
// or hide in a listing, replaced: "/", "\", NUL and control characters become
// "_" and ".." becomes "__".
func safe(s string) string {
	ok := !strings.Contains(s, "..")
	for i := 0; ok && i < len(s); i++ {
		ok = !unsafeByte(s[i])
	}
	if ok {
		return s
	}
	b := []byte(s)
	for i, c := range b {
		if unsafeByte(c) {
			b[i] = '_'
		}
	}
	return strings.ReplaceAll(string(b), "..", "__")
}

func unsafeByte(c byte) bool { return c == '/' || c == '\\' || c < ' ' || c == 0x7f }

// extension returns the file extension, without the dot, for a content type.
func extension(contentType string) string {
	mt, _, _ := strings.Cut(contentType, ";")
	switch strings.ToLower(strings.TrimSpace(mt)) {
	case routes.ContentTypeFHIR, "application/json":
		return "json"
	case routes.ContentTypeHL7v2, "application/hl7-v2":
		return "hl7"
	case routes.ContentTypeXML, "text/xml", "application/cda+xml":
		return "xml"
	case routes.ContentTypeNDJSON, "application/fhir+ndjson":
		return "ndjson"
	}
	return "bin"
}
