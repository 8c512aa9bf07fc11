package transforms

import (
	"fmt"
	"io/fs"
	"strings"
	"testing"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
	"github.com/spinebridge/spinebridge/fixtures"
	"github.com/spinebridge/spinebridge/transforms/fhirmodel"
)

// TestConvertStaysValidWhenAFieldIsMissingOrLocal takes the UK messages under
// fixtures/hl7v2/convert and the two benchmark messages, and converts each
// variant with one field emptied, or with its first component replaced by a
// code no table knows (a PAS's local patient class, a lab's own result
// status). Every variant must still convert to valid R4: a required element
// the maps fill from a table or a field (Encounter.class, Observation.status,
// component.code) needs a fallback for when the field says nothing useful.
func TestConvertStaysValidWhenAFieldIsMissingOrLocal(t *testing.T) {
	set := loadDefault(t)
	c := set.NewConverter(Options{})
	var paths []string
	if err := fs.WalkDir(fixtures.HL7v2, "hl7v2", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasPrefix(path, "hl7v2/convert/") || strings.HasPrefix(path, "hl7v2/bench/")) {
			paths = append(paths, path)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(paths) < 7 {
		t.Fatalf("found %d fixtures under hl7v2/convert and hl7v2/bench, want at least 7", len(paths))
	}
	var m hl7v2.Message
	variants := 0
	for _, path := range paths {
		raw, err := fs.ReadFile(fixtures.HL7v2, path)
		if err != nil {
			t.Fatal(err)
		}
		segs := strings.Split(strings.TrimRight(string(raw), "\r\n"), "\r")
		// One variant per segment kind, field and change in each message:
		// the 50 OBX of the benchmark ORU would otherwise each be tried alike.
		tried := map[string]bool{}
		for si, seg := range segs {
			fields := strings.Split(seg, "|")
			if fields[0] == "MSH" {
				continue // MSH-1 and MSH-2 are the delimiters; MSH-9 picks the structure
			}
			for fi := 1; fi < len(fields); fi++ {
				first, _, _ := strings.Cut(fields[fi], "^")
				if first == "" {
					continue
				}
				for _, change := range []string{"empty", "local"} {
					key := fmt.Sprintf("%s-%d %s", fields[0], fi, change)
					if tried[key] {
						continue
					}
					tried[key] = true
					changed := append([]string(nil), fields...)
					if change == "empty" {
						changed[fi] = ""
					} else {
						changed[fi] = "QQ" + strings.TrimPrefix(fields[fi], first)
					}
					variant := append([]string(nil), segs...)
					variant[si] = strings.Join(changed, "|")
					if err := m.Parse([]byte(strings.Join(variant, "\r"))); err != nil {
						t.Fatalf("%s, %s: %v", path, key, err)
					}
					out, err := c.Convert(nil, &m)
					if err != nil {
						t.Errorf("%s, %s: %v", path, key, err)
						continue
					}
					variants++
					if err := fhirmodel.Validate(out); err != nil {
						t.Errorf("%s with %s (%q): %v", path, key, variant[si], err)
					}
				}
			}
		}
	}
	t.Logf("%d variants of %d messages", variants, len(paths))
}
