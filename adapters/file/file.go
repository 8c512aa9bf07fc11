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
	"sync/atomic"
	"syscall"
	"text/template"
	"time"

	"github.com/spinebridge/spinebridge/routes"
)

// Destination writes each delivery to a file of its own in a directory. It is
// safe for concurrent use.
type Destination struct {
	name    string
	dir     string // absolute
	tmpl    *template.Template
	parts   []namePart // tmpl compiled, when it is simple enough (see name.go)
	mode    os.FileMode
	dirMode os.FileMode
	fsync   bool
	dirs    syncGroup[string] // with fsync: one directory sync for the renames of many deliveries
	// named is set once unnamed files (see writeAnonymous) are found not to
	// work here: every later delivery then uses a named temporary file.
	named atomic.Bool

	// append makes each delivery a line at the end of its file rather than a
	// file of its own (see append.go).
	append  bool
	appends appendFiles

	known sync.Map  // directories known to exist → struct{}
	bufs  sync.Pool // *bytes.Buffer for executing tmpl
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
	if d.append && bytes.IndexByte(del.Body, '\n') >= 0 {
		return routes.Permanent(fmt.Errorf("file: %s: %w", d.name, errLineFeed))
	}
	rel, err := d.fileName(del)
	if err != nil {
		return routes.Permanent(fmt.Errorf("file: %s: %w", d.name, err))
	}
	path := filepath.Join(d.dir, rel)
	dir := filepath.Dir(path)
	if err := d.ensureDir(dir); err != nil {
		return fmt.Errorf("file: %s: create directory: %w", d.name, bare(err))
	}
	write := d.write
	if d.append {
		write = d.appendRecord
	}
	if err := write(ctx, dir, path, del.Body); err != nil {
		if routes.IsPermanent(err) {
			return err
		}
		if errors.Is(err, syscall.ENAMETOOLONG) {
			return routes.Permanent(fmt.Errorf("file: %s: %w", d.name, err))
		}
		return fmt.Errorf("file: %s: %w", d.name, err)
	}
	return nil
}

// write writes body to path, unnamed until whole where the file system allows
// (writeAnonymous), else through a named temporary file (writeNamed), and
// waits for a sync of dir, shared with the other deliveries into it.
func (d *Destination) write(ctx context.Context, dir, path string, body []byte) error {
	err := errNoAnonymous
	if !d.named.Load() {
		err = d.writeAnonymous(dir, path, body)
	}
	if errors.Is(err, errNoAnonymous) {
		d.named.Store(true)
		err = d.writeNamed(dir, path, body)
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			// Removed behind our back: create it again next time.
			d.known.Delete(dir)
		}
		return err
	}
	if d.fsync {
		// The new name is an entry in the directory: sync it, or a crash may
		// undo it.
		if err := d.dirs.sync(ctx, dir); err != nil {
			return fmt.Errorf("sync directory: %w", bare(err))
		}
	}
	return nil
}

// errNoAnonymous says the file system cannot make unnamed files.
var errNoAnonymous = errors.New("unnamed files not supported")

// writeNamed writes body to a named temporary file in dir, syncs it when asked
// and renames it to path: for file systems without unnamed files.
func (d *Destination) writeNamed(dir, path string, body []byte) (err error) {
	f, err := os.CreateTemp(dir, tempPattern)
	if err != nil {
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
	if d.fsync {
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
	return nil
}

// ensureDir creates dir and its missing parents, syncing the parent of each
// one created when fsync is on, and remembers that it exists.
func (d *Destination) ensureDir(dir string) error {
	if _, ok := d.known.Load(dir); ok {
		return nil
	}
	var missing []string
	for p := dir; ; p = filepath.Dir(p) {
		_, err := os.Stat(p)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		missing = append(missing, p)
		if filepath.Dir(p) == p {
			break
		}
	}
	if err := os.MkdirAll(dir, d.dirMode); err != nil {
		return err
	}
	if d.fsync {
		for _, p := range missing {
			if err := syncDir(filepath.Dir(p)); err != nil {
				return err
			}
		}
	}
	d.known.Store(dir, struct{}{})
	return nil
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
	if err := d.ensureDir(d.dir); err != nil {
		return fmt.Errorf("file: %s: %w", d.name, err)
	}
	f, err := os.CreateTemp(d.dir, ".spinebridge-ready-*")
	if err != nil {
		d.known.Delete(d.dir)
		return fmt.Errorf("file: %s: directory not writable: %w", d.name, err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// Concurrency asks for enough deliveries in flight for their syncs to be
// shared; without fsync it leaves the dispatcher's default.
func (d *Destination) Concurrency() int {
	if d.fsync {
		return groupConcurrency
	}
	return 0
}

// groupConcurrency is the destination's concurrency with fsync on.
const groupConcurrency = 32

// Close waits for the syncs under way and closes the files open for
// appending.
func (d *Destination) Close() error {
	d.dirs.close()
	d.appends.close()
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
	buf, _ := d.bufs.Get().(*bytes.Buffer)
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	defer d.bufs.Put(buf)
	buf.Reset()
	if d.parts != nil {
		buf.Write(d.appendName(buf.AvailableBuffer(), del))
	} else if err := d.execute(buf, del); err != nil {
		return "", fmt.Errorf("name template: %w", err)
	}
	s := buf.String()
	switch {
	case s == "":
		return "", errors.New("the name template gave an empty name")
	case strings.IndexByte(s, 0) >= 0:
		return "", errors.New("the name template gave a name with a NUL byte")
	case !filepath.IsLocal(s):
		return "", errors.New("the name template gave a name outside the directory")
	}
	clean := filepath.Clean(s)
	if clean == "." || strings.HasPrefix(filepath.Base(clean), ".spinebridge-") {
		return "", errors.New("the name template gave the directory itself or a temporary file's name")
	}
	return clean, nil
}

// execute runs the name template itself for del, for the names compileName
// leaves to it.
func (d *Destination) execute(buf *bytes.Buffer, del *routes.Delivery) error {
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
		Ext:         extension(del.ContentType, d.append),
		Received:    del.Received.UTC(),
	}
	return d.tmpl.Execute(buf, &f)
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

// extension returns the file extension, without the dot, for a content type;
// JSON documents appended one per line make NDJSON.
func extension(contentType string, appended bool) string {
	mt, _, _ := strings.Cut(contentType, ";")
	switch strings.ToLower(strings.TrimSpace(mt)) {
	case routes.ContentTypeFHIR, "application/json":
		if appended {
			return "ndjson"
		}
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
