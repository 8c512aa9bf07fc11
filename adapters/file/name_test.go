package file

import (
	"bytes"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/spinebridge/spinebridge/routes"
)

// TestCompiledNameMatchesTemplate holds the compiled names to what
// text/template makes of the same template, for every field a template sees,
// values that must be made safe, and both modes.
func TestCompiledNameMatchesTemplate(t *testing.T) {
	simple := []string{
		DefaultName,
		DefaultAppendName,
		`{{.Received.Format "2006/01/02T15:04:05.000Z07:00"}}-x`,
		"fixed-name.txt",
		"{{.Type}}_{{.Trigger}}-{{.Version}}/{{.Sender}}/{{.ControlID}}.{{.Ext}}",
	}
	for _, f := range reflect.VisibleFields(reflect.TypeFor[nameFields]()) {
		if f.Type.Kind() == reflect.String {
			simple = append(simple, "n/{{."+f.Name+"}}")
		}
	}
	general := []string{
		`{{.Route | printf "%s"}}/{{.MessageID}}`,
		`{{if .NHSNumber}}{{.NHSNumber}}{{else}}none{{end}}/{{.MessageID}}`,
		`{{$r := .Route}}{{$r}}-{{.MessageID}}`,
		`{{.Received.Year}}/{{.MessageID}}`,
	}
	dels := []*routes.Delivery{delivery("")}
	odd := delivery("")
	odd.ID, odd.Route, odd.Key, odd.Sender = "7.a/b.c", "../up", `back\slash`, "APP|\x01FAC"
	odd.ContentType, odd.MessageID = routes.ContentTypeHL7v2, 18446744073709551615
	odd.Received = time.Date(2026, 3, 29, 0, 59, 59, 999, time.FixedZone("", -5*3600))
	dels = append(dels, odd)
	for _, appended := range []bool{false, true} {
		for _, src := range append(simple, general...) {
			cfg := "dir: " + t.TempDir() + "\nname: '" + src + "'"
			if appended {
				cfg += "\nappend: true"
			}
			d := newDest(t, cfg)
			if compiled := d.parts != nil; compiled != !slices.Contains(general, src) {
				t.Errorf("%s: compiled %v, want %v", src, compiled, !compiled)
			}
			for _, del := range dels {
				got, err := d.fileName(del)
				if err != nil {
					t.Errorf("%s: %v", src, err)
					continue
				}
				parts := d.parts
				d.parts = nil
				want, err := d.fileName(del)
				d.parts = parts
				if err != nil || got != want {
					t.Errorf("%s, append %v: compiled %q, template %q (%v)", src, appended, got, want, err)
				}
			}
		}
	}
}

// TestCompiledNameAllocs: making a compiled name allocates nothing. (fileName
// adds the name's string; its buffer comes from a sync.Pool, which the race
// detector empties at random, so BenchmarkFileName reports that instead.)
func TestCompiledNameAllocs(t *testing.T) {
	d := newDest(t, "dir: "+t.TempDir()+"\nappend: true")
	del := delivery("")
	var buf bytes.Buffer
	if n := testing.AllocsPerRun(100, func() {
		buf.Reset()
		buf.Write(d.appendName(buf.AvailableBuffer(), del))
	}); n != 0 {
		t.Errorf("appendName: %v allocations, want 0", n)
	}
}
