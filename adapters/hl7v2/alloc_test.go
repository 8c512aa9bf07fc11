package hl7v2

import "testing"

// The promise of the package: once a Message is warm, parsing and the usual reads
// allocate nothing. A benchmark would only show it; this test enforces it.
func TestParseAllocatesNothing(t *testing.T) {
	for _, in := range benchInputs {
		data := readBench(t, in.file)
		t.Run(in.name, func(t *testing.T) {
			var m Message
			buf := make([]byte, 0, 256)
			work := func() {
				if err := m.Parse(data); err != nil {
					t.Fatal(err)
				}
				if readWorkload(&m) == 0 {
					t.Fatal("nothing read")
				}
				v, err := m.Lookup("PID-11[1].3")
				if err != nil || v.IsEmpty() {
					t.Fatal("PID-11.3 missing")
				}
				for s := range m.All("NTE") {
					if buf, _ = s.Field(3).Unescape(buf); len(buf) == 0 {
						t.Fatal("empty NTE-3")
					}
				}
				for s := range m.All("AL1") {
					if buf, _ = s.Field(5).Unescape(buf); len(buf) == 0 {
						t.Fatal("empty AL1-5")
					}
				}
				_ = m.Segment(0).FieldCount()
			}
			work()
			if n := testing.AllocsPerRun(100, work); n != 0 {
				t.Errorf("%v allocations per parse, want 0", n)
			}
		})
	}
}
