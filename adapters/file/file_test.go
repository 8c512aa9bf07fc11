package file

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/spinebridge/spinebridge/routes"
)

func node(t testing.TB, src string) *yaml.Node {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Content[0]
}

func newDest(t testing.TB, src string) *Destination {
	t.Helper()
	d, err := Factory("archive", node(t, src))
	if err != nil {
		t.Fatalf("Factory:\n%v", err)
	}
	return d.(*Destination)
}

// eachWay runs fn with each way of writing a file: unnamed and linked into
// place where the system allows it, else named and renamed.
func eachWay(t *testing.T, fn func(t *testing.T, way func(*Destination) *Destination)) {
	for _, named := range []bool{false, true} {
		if !named && !anonymousFiles() {
			continue
		}
		t.Run(fmt.Sprint("named=", named), func(t *testing.T) {
			fn(t, func(d *Destination) *Destination {
				d.named.Store(named)
				return d
			})
		})
	}
}

func delivery(body string) *routes.Delivery {
	return &routes.Delivery{
		ID: "42.adt-to-pds.archive", MessageID: 42, Route: "adt-to-pds", Destination: "archive",
		Attempt: 1, Key: "9000000009", ContentType: routes.ContentTypeFHIR, Body: []byte(body),
		Type: "ADT", Trigger: "A01", Version: "2.5.1", ControlID: "MSG00001", Sender: "PAS|RX1",
		NHSNumber: "9000000009", Received: time.Date(2026, 11, 21, 23, 30, 15, 0, time.FixedZone("BST", 3600)),
	}
}

// files lists the files below dir, relative to it, temporary ones included.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		if !e.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	slices.Sort(out)
	return out
}

func TestDeliver(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	d := newDest(t, "dir: "+dir)
	if err := d.Deliver(context.Background(), delivery(`{"resourceType":"Bundle"}`)); err != nil {
		t.Fatal(err)
	}
	// Received is taken in UTC: 23:30 BST is 22:30 on the same day.
	want := "20261121/42-adt-to-pds.json"
	if got := files(t, dir); !slices.Equal(got, []string{want}) {
		t.Fatalf("files %q, want %q", got, want)
	}
	b, err := os.ReadFile(filepath.Join(dir, want))
	if err != nil || string(b) != `{"resourceType":"Bundle"}` {
		t.Errorf("content %q, %v", b, err)
	}
	fi, _ := os.Stat(filepath.Join(dir, want))
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", fi.Mode().Perm())
	}
	di, _ := os.Stat(filepath.Join(dir, "20261121"))
	if di.Mode().Perm() != 0o750 {
		t.Errorf("directory mode %v, want 0750", di.Mode().Perm())
	}
}

// A delivery sent again overwrites its file, and leaves nothing else behind.
func TestRedeliveryOverwrites(t *testing.T) {
	eachWay(t, testRedeliveryOverwrites)
}

func testRedeliveryOverwrites(t *testing.T, way func(*Destination) *Destination) {
	for _, fsync := range []bool{true, false} {
		t.Run(fmt.Sprint("fsync=", fsync), func(t *testing.T) {
			dir := t.TempDir()
			d := way(newDest(t, fmt.Sprintf("dir: %s\nfsync: %v\nmode: \"0600\"", dir, fsync)))
			del := delivery("first")
			if err := d.Deliver(context.Background(), del); err != nil {
				t.Fatal(err)
			}
			del.Attempt, del.Body = 2, []byte("second")
			if err := d.Deliver(context.Background(), del); err != nil {
				t.Fatal(err)
			}
			got := files(t, dir)
			if len(got) != 1 {
				t.Fatalf("files %q, want one", got)
			}
			b, _ := os.ReadFile(filepath.Join(dir, got[0]))
			fi, _ := os.Stat(filepath.Join(dir, got[0]))
			if string(b) != "second" || fi.Mode().Perm() != 0o600 {
				t.Errorf("content %q mode %v, want the second delivery's with 0600", b, fi.Mode().Perm())
			}
		})
	}
}

func TestNameTemplate(t *testing.T) {
	dir := t.TempDir()
	d := newDest(t, "dir: "+dir+"\nname: '{{.Destination}}/{{.Type}}_{{.Trigger}}/{{.Sender}}-{{.ControlID}}-{{.Version}}.{{.Ext}}'")
	for _, tt := range []struct{ contentType, ext string }{
		{routes.ContentTypeFHIR, "json"},
		{routes.ContentTypeHL7v2, "hl7"},
		{routes.ContentTypeXML + "; charset=utf-8", "xml"},
		{routes.ContentTypeNDJSON, "ndjson"},
		{"application/octet-stream", "bin"},
	} {
		del := delivery("x")
		del.ContentType = tt.contentType
		if err := d.Deliver(context.Background(), del); err != nil {
			t.Fatal(err)
		}
		want := filepath.Join(dir, "archive/ADT_A01/PAS|RX1-MSG00001-2.5.1."+tt.ext)
		if _, err := os.Stat(want); err != nil {
			t.Errorf("%s: %v", tt.contentType, err)
		}
	}
}

// No value from a message can make a path that leaves the directory.
func TestNameValuesCannotTraverse(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "out")
	d := newDest(t, "dir: "+dir+"\nname: '{{.Key}}/{{.ControlID}}.{{.Ext}}'")
	for _, v := range []string{"..", "../../escape", "/etc/passwd", `..\..\x`, "a\x00b", "line\nbreak", "...", "."} {
		del := delivery("x")
		del.Key, del.ControlID = v, v
		err := d.Deliver(context.Background(), del)
		if err != nil && !routes.IsPermanent(err) {
			t.Errorf("%q: err = %v", v, err)
		}
		if err != nil && strings.Contains(err.Error(), v) {
			t.Errorf("%q: error %q quotes the value", v, err)
		}
	}
	entries, _ := os.ReadDir(root)
	if len(entries) != 1 || entries[0].Name() != "out" {
		t.Errorf("something was written beside the directory: %v", entries)
	}
	for _, f := range files(t, dir) {
		for _, part := range strings.Split(f, string(filepath.Separator)) {
			if part == ".." || part == "." || strings.ContainsAny(part, "\x00\n\\") {
				t.Errorf("file %q", f)
			}
		}
	}
	if got := files(t, dir); !slices.Contains(got, "__/__.json") || !slices.Contains(got, "______escape/______escape.json") {
		t.Errorf("files %q", got)
	}
}

// A name the template cannot make fails the delivery for good.
func TestNameRefusedAtDelivery(t *testing.T) {
	dir := t.TempDir()
	d := newDest(t, "dir: "+dir+"\nname: '{{.NHSNumber}}'")
	del := delivery("x")
	del.NHSNumber = ""
	if err := d.Deliver(context.Background(), del); !routes.IsPermanent(err) {
		t.Errorf("empty name: err = %v, want permanent", err)
	}
	if got := files(t, dir); len(got) != 0 {
		t.Errorf("files %q", got)
	}
}

func TestFactoryErrors(t *testing.T) {
	for _, tt := range []struct{ src, want string }{
		{"name: x", "1:1: dir: required"},
		{"dir: /tmp/x\nmode: rw-r-----", `2:7: mode: "rw-r-----": want permissions in octal, such as 0640`},
		{"dir: /tmp/x\nmode: 01777", `2:7: mode: "01777": want permissions in octal`},
		{"dir: /tmp/x\nname: '{{.Received.Format \"2006\"}/x'", "2:7: name: template: name:1: unexpected \"}\" in operand"},
		{"dir: /tmp/x\nname: '{{.Patient}}.json'", `2:7: name: name template: template: name:1:2: executing "name" at <.Patient>: can't evaluate field Patient`},
		{"dir: /tmp/x\nname: '/var/{{.ID}}'", "2:7: name: the name template gave a name outside the directory"},
		{"dir: /tmp/x\nname: '../{{.ID}}'", "2:7: name: the name template gave a name outside the directory"},
		{"dir: /tmp/x\nname: 'a/..'", "2:7: name: the name template gave the directory itself"},
		{"dir: /tmp/x\nfsync: maybe", "2:8: fsync: cannot unmarshal"},
		{"dir: /tmp/x\nappend: always", "2:9: append: cannot unmarshal"},
		{"dir: /tmp/x\npath: y", `2:1: unknown key "path"`},
	} {
		_, err := Factory("archive", node(t, tt.src))
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("%q: err = %v, want %q", tt.src, err, tt.want)
		}
	}
	_, err := Factory("archive", node(t, "mode: '9'\nname: '{{'"))
	if err == nil || strings.Count(err.Error(), "\n") != 2 {
		t.Errorf("every problem at once: %v", err)
	}
	if _, err := New("archive", Config{}); err == nil || err.Error() != "file destination archive: dir: required" {
		t.Errorf("New: %v", err)
	}
}

// Factory touches nothing; Ready creates the directory and checks it.
func TestReady(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "a", "b")
	d := newDest(t, "dir: "+dir)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("Factory made the directory: %v", err)
	}
	if err := d.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := files(t, root); len(got) != 0 {
		t.Errorf("Ready left %q", got)
	}

	blocked := filepath.Join(root, "blocked")
	if err := os.WriteFile(blocked, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	d = newDest(t, "dir: "+blocked)
	if err := d.Ready(context.Background()); err == nil {
		t.Error("Ready: nil where a file stands in the directory's place")
	}
	if err := d.Deliver(context.Background(), delivery("x")); err == nil || routes.IsPermanent(err) {
		t.Errorf("Deliver: err = %v, want a retryable error", err)
	}
}

// A directory removed while deliveries go on is made again.
func TestDirectoryRemoved(t *testing.T) {
	eachWay(t, testDirectoryRemoved)
}

func testDirectoryRemoved(t *testing.T, way func(*Destination) *Destination) {
	dir := filepath.Join(t.TempDir(), "out")
	d := way(newDest(t, "dir: "+dir))
	if err := d.Deliver(context.Background(), delivery("x")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	err := d.Deliver(context.Background(), delivery("x"))
	if err == nil || routes.IsPermanent(err) {
		t.Fatalf("err = %v, want a retryable error", err)
	}
	if strings.Contains(err.Error(), "42-adt-to-pds") {
		t.Errorf("error %q names the file", err)
	}
	if err := d.Deliver(context.Background(), delivery("x")); err != nil {
		t.Fatalf("next attempt: %v", err)
	}
}

func TestConcurrentDeliveries(t *testing.T) {
	eachWay(t, testConcurrentDeliveries)
}

// testConcurrentDeliveries sends each delivery twice at once, from different
// goroutines, as a retry racing its first attempt may: one whole file each.
func testConcurrentDeliveries(t *testing.T, way func(*Destination) *Destination) {
	dir := t.TempDir()
	d := way(newDest(t, "dir: "+dir+"\nfsync: false"))
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 50 {
				del := delivery("x")
				del.MessageID = routes.ID(w%2*1000 + i + 1)
				if err := d.Deliver(context.Background(), del); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	got := files(t, dir)
	if len(got) != 100 {
		t.Errorf("%d files, want 100: %q", len(got), got)
	}
	for _, f := range got {
		if b, err := os.ReadFile(filepath.Join(dir, f)); err != nil || string(b) != "x" {
			t.Errorf("%s: %q, %v", f, b, err)
		}
	}
}

func TestSafe(t *testing.T) {
	for in, want := range map[string]string{
		"":                  "",
		"MSG00001":          "MSG00001",
		"PAS|RX1":           "PAS|RX1",
		"a/b":               "a_b",
		"..":                "__",
		"a..b":              "a__b",
		"...":               "__.",
		`c:\x`:              "c:_x",
		"tab\there\x00\x7f": "tab_here__",
	} {
		if got := safe(in); got != want {
			t.Errorf("safe(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestSharedDirectorySync delivers from many goroutines at once with fsync
// on, into two directories: every delivery returns after a sync of its own
// directory begun after its rename, the syncs shared between deliveries.
func TestSharedDirectorySync(t *testing.T) {
	dir := t.TempDir()
	d := newDest(t, "dir: "+dir+"\nname: '{{.Key}}/{{.MessageID}}.{{.Ext}}'")
	if d.Concurrency() != groupConcurrency {
		t.Errorf("Concurrency() = %d with fsync, want %d", d.Concurrency(), groupConcurrency)
	}
	const n = 400
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			del := delivery(fmt.Sprint("body ", i))
			del.MessageID = routes.ID(i + 1)
			del.Key = []string{"a", "b"}[i%2]
			errs <- d.Deliver(context.Background(), del)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, sub := range []string{"a", "b"} {
		if got := len(files(t, filepath.Join(dir, sub))); got != n/2 {
			t.Errorf("%d files in %s, want %d", got, sub, n/2)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "b", "2.json"))
	if err != nil || string(b) != "body 1" {
		t.Errorf("b/2.json = %q, %v", b, err)
	}

	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Deliver(context.Background(), delivery("late")); err == nil {
		t.Error("a delivery after Close succeeded without its directory sync")
	}
	if nd := newDest(t, "dir: "+dir+"\nfsync: false"); nd.Concurrency() != 0 {
		t.Errorf("Concurrency() = %d without fsync, want 0 (the dispatcher's default)", nd.Concurrency())
	}
}
