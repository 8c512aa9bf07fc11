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

// Reads that alternate field by field between segments must not make the field
// index grow faster than the fields split: each move to the end of the index at
// least doubles what the segment has split.
func TestAlternatingReadsStayLinear(t *testing.T) {
	const fields = 4000
	seg := make([]byte, 0, 3*fields)
	for range fields {
		seg = append(seg, "|x"...)
	}
	data := []byte("MSH|^~\\&|A|B|C|D|2026||ORU^R01|1|P|2.5\rOBX" + string(seg) + "\rNTE" + string(seg) + "\r")
	var m Message
	if err := m.Parse(data); err != nil {
		t.Fatal(err)
	}
	obx, nte := m.Segment(1), m.Segment(2)
	for n := 1; n <= fields; n++ {
		if obx.Field(n).String() != "x" || nte.Field(n).String() != "x" {
			t.Fatalf("field %d wrong", n)
		}
	}
	// Each segment's live entries plus what its moves left behind: at most
	// 2+4+...+fields per segment, so under 4x the fields of both.
	if n := len(m.fields); n > 4*2*fields {
		t.Errorf("field index holds %d entries for %d fields read", n, 2*fields)
	}
}
