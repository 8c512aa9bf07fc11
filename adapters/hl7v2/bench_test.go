package hl7v2

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// benchInputs are the two shared benchmark messages, by sub-benchmark name.
var benchInputs = []struct{ name, file string }{
	{"adt_a01", "adt_a01.hl7"},
	{"oru_r01_50obx", "oru_r01_50obx.hl7"},
}

func readBench(tb testing.TB, file string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "fixtures", "hl7v2", "bench", file))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

var (
	pathPID51  = MustParsePath("PID-5.1")
	pathPID311 = MustParsePath("PID-3[1].1")
)

// readWorkload is what BenchmarkParse measures after parsing: PID-5.1, PID-3[1].1 and
// OBX-5 of every OBX. It returns the bytes read so the work cannot be optimised away.
func readWorkload(m *Message) int {
	n := len(m.Get(pathPID51).Bytes()) + len(m.Get(pathPID311).Bytes())
	for s := range m.All("OBX") {
		n += len(s.Field(5).Bytes())
	}
	return n
}

func BenchmarkParse(b *testing.B) {
	for _, in := range benchInputs {
		data := readBench(b, in.file)
		b.Run(in.name, func(b *testing.B) {
			var m Message
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if err := m.Parse(data); err != nil {
					b.Fatal(err)
				}
				if readWorkload(&m) == 0 {
					b.Fatal("nothing read")
				}
			}
		})
	}
}

// BenchmarkScanFloor is the least work any parser must do over the same bytes: find
// every segment terminator, then every field separator inside each segment. The
// parser's target is half of this time.
func BenchmarkScanFloor(b *testing.B) {
	for _, in := range benchInputs {
		data := readBench(b, in.file)
		b.Run(in.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if scanFloor(data) == 0 {
					b.Fatal("no fields")
				}
			}
		})
	}
}

func scanFloor(data []byte) int {
	fields := 0
	for p := 0; p < len(data); {
		q := bytes.IndexByte(data[p:], '\r')
		if q < 0 {
			q = len(data) - p
		}
		seg := data[p : p+q]
		for {
			i := bytes.IndexByte(seg, '|')
			fields++
			if i < 0 {
				break
			}
			seg = seg[i+1:]
		}
		p += q + 1
	}
	return fields
}
