package transforms

import (
	"io/fs"
	"testing"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
	"github.com/spinebridge/spinebridge/fixtures"
	"github.com/spinebridge/spinebridge/transforms/fhirmodel"
)

// FuzzConvert: whatever a sender puts in a message the parser accepts, the
// converter gives either an error or a bundle that is valid R4, and never
// panics. The converter is reused from input to input, as a worker's is, so a
// message that leaves its state inconsistent shows up in the next. Seeded
// with every HL7 v2 fixture; `go test` runs the seeds, `go test -fuzz
// FuzzConvert` explores from them.
func FuzzConvert(f *testing.F) {
	if err := fs.WalkDir(fixtures.HL7v2, "hl7v2", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fixtures.HL7v2.ReadFile(path)
		f.Add(b)
		return err
	}); err != nil {
		f.Fatal(err)
	}
	c := loadDefault(f).NewConverter(Options{})
	var m hl7v2.Message
	f.Fuzz(func(t *testing.T, data []byte) {
		if m.Parse(data) != nil {
			return
		}
		out, err := c.Convert(nil, &m)
		if err != nil {
			return
		}
		if err := fhirmodel.Validate(out); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	})
}
