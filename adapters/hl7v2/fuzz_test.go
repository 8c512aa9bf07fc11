package hl7v2_test

import (
	"bytes"
	"errors"
	"io/fs"
	"testing"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
	"github.com/spinebridge/spinebridge/fixtures"
)

// addFixtureSeeds seeds f with every HL7 v2 fixture.
func addFixtureSeeds(f *testing.F) {
	err := fs.WalkDir(fixtures.HL7v2, "hl7v2", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fixtures.HL7v2.ReadFile(path)
		f.Add(b)
		return err
	})
	if err != nil {
		f.Fatal(err)
	}
}

// FuzzParse checks the lazy index against refSplit, an obviously correct splitter
// that allocates freely, and checks that nothing panics on any input.
func FuzzParse(f *testing.F) {
	addFixtureSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		var m hl7v2.Message
		err := m.Parse(data)
		if err != nil {
			var pe *hl7v2.ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %T is not a *ParseError", err)
			}
			return
		}
		ref := refSplit(data, m.Delimiters().Field)
		if len(ref) != m.SegmentCount() {
			t.Fatalf("%d segments, reference has %d", m.SegmentCount(), len(ref))
		}
		// Read odd segments back to front first, so later reads extend fields of
		// segments split earlier.
		for i := 1; i < len(ref); i += 2 {
			m.Segment(i).Field(len(ref[i]))
		}
		for i, fields := range ref {
			checkSegment(t, &m, i, fields)
		}
		// Escaping any value and decoding it gives the value back.
		d := m.Delimiters()
		if d.HasEscape() && d.Component != d.Field && d.Repetition != d.Field && d.Subcomponent != d.Field {
			back, err := d.Unescape(nil, d.AppendEscaped(nil, data))
			if err != nil || !bytes.Equal(back, data) {
				t.Fatalf("escape round trip failed: %v", err)
			}
		}
	})
}

func checkSegment(t *testing.T, m *hl7v2.Message, i int, fields [][]byte) {
	t.Helper()
	s := m.Segment(i)
	if !bytes.Equal(s.ID(), fields[0]) {
		t.Fatalf("segment %d id %q, reference %q", i, s.ID(), fields[0])
	}
	header := s.Is("MSH") || s.Is("FHS") || s.Is("BHS")
	want := len(fields) - 1
	if header && want > 0 {
		want++
	}
	if got := s.FieldCount(); got != want {
		t.Fatalf("segment %d: %d fields, reference %d", i, got, want)
	}
	d := m.Delimiters()
	for n := 1; n <= want+1; n++ {
		v := s.Field(n)
		var ref []byte
		switch {
		case header && want == 0:
			// A bare header id has no fields, not even the separator.
		case header && n == 1:
			ref = []byte{d.Field}
		case header && n <= len(fields):
			ref = fields[n-1]
		case !header && n < len(fields):
			ref = fields[n]
		}
		if !bytes.Equal(v.Bytes(), ref) {
			t.Fatalf("segment %d field %d = %q, reference %q", i, n, v.Bytes(), ref)
		}
		if header && n <= 2 {
			continue
		}
		reps := refParts(ref, d.Repetition)
		if v.Reps() != len(reps) {
			t.Fatalf("segment %d field %d: %d reps, reference %d", i, n, v.Reps(), len(reps))
		}
		for r, rep := range reps {
			comps := refParts(rep, d.Component)
			rv := v.Rep(r + 1)
			if !bytes.Equal(rv.Bytes(), rep) || rv.Comps() != len(comps) {
				t.Fatalf("segment %d field %d rep %d differs", i, n, r+1)
			}
			for c, comp := range comps {
				cv := rv.Comp(c + 1)
				subs := refParts(comp, d.Subcomponent)
				if !bytes.Equal(cv.Bytes(), comp) || cv.Subs() != len(subs) {
					t.Fatalf("segment %d field %d rep %d comp %d differs", i, n, r+1, c+1)
				}
				for k, sub := range subs {
					if !bytes.Equal(cv.Sub(k+1).Bytes(), sub) {
						t.Fatalf("segment %d field %d rep %d comp %d sub %d differs", i, n, r+1, c+1, k+1)
					}
				}
			}
		}
	}
}

// refSplit splits a message the slow, obvious way: every CR or LF ends a segment,
// blank segments go, fields split on sep.
func refSplit(data []byte, sep byte) [][][]byte {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	var out [][][]byte
	for _, line := range bytes.FieldsFunc(data, func(r rune) bool { return r == '\r' || r == '\n' }) {
		if len(bytes.Trim(line, " \t\x00")) == 0 {
			continue
		}
		out = append(out, bytes.Split(line, []byte{sep}))
	}
	// Trailing blanks and NULs after the last segment are not part of it.
	if n := len(out); n > 0 {
		last := bytes.Join(out[n-1], []byte{sep})
		out[n-1] = bytes.Split(bytes.TrimRight(last, " \t\x00"), []byte{sep})
	}
	return out
}

func refParts(b []byte, sep byte) [][]byte {
	if len(b) == 0 {
		return nil
	}
	return bytes.Split(b, []byte{sep})
}
