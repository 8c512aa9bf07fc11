package transforms

import (
	"testing"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
	"github.com/spinebridge/spinebridge/transforms/fhirmodel"
)

// benchInputs are the parser's two benchmark fixtures.
var benchInputs = []struct{ name, file string }{
	{"adt_a01", "bench/adt_a01.hl7"},
	{"oru_r01_50obx", "bench/oru_r01_50obx.hl7"},
}

// BenchmarkConvert is the whole hot path: parse, map, serialise the bundle,
// into buffers reused from message to message as a dispatcher worker does.
func BenchmarkConvert(b *testing.B) {
	set := loadDefault(b)
	for _, in := range benchInputs {
		b.Run(in.name, func(b *testing.B) {
			raw := fixture(b, in.file)
			c := set.NewConverter(Options{})
			var m hl7v2.Message
			var out []byte
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				if err := m.Parse(raw); err != nil {
					b.Fatal(err)
				}
				var err error
				if out, err = c.Convert(out[:0], &m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkJSONFormat marshals the same bundles with google/fhir/go's
// jsonformat, the baseline the engine's direct writer is measured against. It
// is serialisation alone: no parsing and no mapping.
func BenchmarkJSONFormat(b *testing.B) {
	set := loadDefault(b)
	for _, in := range benchInputs {
		b.Run(in.name, func(b *testing.B) {
			m, err := hl7v2.Parse(fixture(b, in.file))
			if err != nil {
				b.Fatal(err)
			}
			out, err := set.NewConverter(Options{}).Convert(nil, m)
			if err != nil {
				b.Fatal(err)
			}
			res, err := fhirmodel.Parse(out)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := fhirmodel.Marshal(res); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestConvertAllocationsBounded holds the hot path to a fixed allocation
// budget per message once the converter is warm, so that a mapping or engine
// change that allocates per value shows up here, not in production.
func TestConvertAllocationsBounded(t *testing.T) {
	set := loadDefault(t)
	for _, tc := range []struct {
		file  string
		limit float64
	}{
		// 2 and 2 when set: the query escaping of the Patient's conditional
		// request URL (net/url). Ids are hashed from one reused buffer, the
		// resources' lists of merged segments are reused from message to
		// message, expression strings live in an arena (Converter.keep), and
		// Language's answers are cached.
		{"bench/adt_a01.hl7", 10},
		{"bench/oru_r01_50obx.hl7", 10},
	} {
		raw := fixture(t, tc.file)
		c := set.NewConverter(Options{})
		var m hl7v2.Message
		var out []byte
		run := func() {
			if err := m.Parse(raw); err != nil {
				t.Fatal(err)
			}
			var err error
			if out, err = c.Convert(out[:0], &m); err != nil {
				t.Fatal(err)
			}
		}
		run()
		if n := testing.AllocsPerRun(20, run); n > tc.limit {
			t.Errorf("%s: %.0f allocations per message, budget %.0f", tc.file, n, tc.limit)
		}
	}
}
