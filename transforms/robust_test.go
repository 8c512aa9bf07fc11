package transforms

import (
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
	"github.com/spinebridge/spinebridge/fixtures"
	"github.com/spinebridge/spinebridge/transforms/fhirmodel"
)

// robustSample is 1 in how many variants TestConvertStaysValidWhenAFieldIsOdd
// converts and validates: every one normally, a sample under the race
// detector (race_test.go), which `make test` uses and which would otherwise
// take five minutes over them.
var robustSample = 1

// fieldChanges are the ways TestConvertStaysValidWhenAFieldIsOdd changes one
// field: each is something real senders do. first is the field's first
// component, rest what follows its first separator.
var fieldChanges = []struct {
	name   string
	change func(field, first, rest string) string
}{
	{"empty", func(string, string, string) string { return "" }},
	// A PAS's local patient class, a lab's own result status.
	{"local code", func(_, _, rest string) string { return "QQ^" + rest }},
	{"null", func(string, string, string) string { return `""` }},
	{"repeated", func(field, _, _ string) string { return field + "~" + field }},
	// A TS with its degree of precision, a code with a trailing separator.
	{"first part only", func(_, first, _ string) string { return first }},
	{"subcomponents", func(_, first, rest string) string { return first + "&A&B^" + rest }},
	{"escapes", func(_, first, rest string) string { return first + `\T\x\S\y\F\^` + rest }},
	{"padded", func(_, first, rest string) string { return "  " + first + "  ^" + rest }},
	{"shifted", func(field, _, _ string) string { return "^" + field }},
	{"overlong number", func(_, _, rest string) string { return "99999999999999999999999^" + rest }},
}

// TestConvertStaysValidWhenAFieldIsOdd takes the UK messages under
// fixtures/hl7v2/convert and the two benchmark messages, and converts a variant
// of each with one field changed in one of the fieldChanges ways at a time.
// Every variant must still convert to valid R4: a required element the maps
// fill from a table or a field (Encounter.class, Observation.status,
// Provenance.recorded) needs a fallback or a condition for when the field says
// nothing usable, and a primitive read from a field must not take in parts it
// does not expect.
func TestConvertStaysValidWhenAFieldIsOdd(t *testing.T) {
	c := loadDefault(t).NewConverter(Options{})
	var m hl7v2.Message
	variants := 0
	msgs := robustMessages(t)
	for _, path := range slices.Sorted(maps.Keys(msgs)) {
		segs := msgs[path]
		// One variant per segment kind, field and change in each message:
		// the 50 OBX of the benchmark ORU would otherwise each be tried alike.
		tried := map[string]bool{}
		for si, seg := range segs {
			fields := strings.Split(seg, "|")
			for fi := 1; fi < len(fields); fi++ {
				// fields[1] of the MSH is MSH-2, the encoding characters, and
				// fields[8] MSH-9, which picks the structure.
				if fields[fi] == "" || fields[0] == "MSH" && (fi == 1 || fi == 8) {
					continue
				}
				first, rest, _ := strings.Cut(fields[fi], "^")
				for _, ch := range fieldChanges {
					key := fmt.Sprintf("%s-%d %s", fields[0], fi, ch.name)
					if fields[0] == "MSH" {
						key = fmt.Sprintf("MSH-%d %s", fi+1, ch.name)
					}
					if tried[key] {
						continue
					}
					tried[key] = true
					if len(tried)%robustSample != 0 {
						continue
					}
					changed := append([]string(nil), fields...)
					changed[fi] = ch.change(fields[fi], first, rest)
					variant := append([]string(nil), segs...)
					variant[si] = strings.Join(changed, "|")
					checkVariant(t, c, &m, variant, fmt.Sprintf("%s with %s (%q)", path, key, variant[si]))
					variants++
				}
			}
		}
	}
	t.Logf("%d variants of %d messages", variants, len(msgs))
}

// checkVariant converts the message segs make and validates its bundle; what
// names the variant in a failure.
func checkVariant(t *testing.T, c *Converter, m *hl7v2.Message, segs []string, what string) {
	t.Helper()
	if err := m.Parse([]byte(strings.Join(segs, "\r"))); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	out, err := c.Convert(nil, m)
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return
	}
	if err := fhirmodel.Validate(out); err != nil {
		t.Errorf("%s: %v", what, err)
	}
}

// robustMessages returns the UK messages under fixtures/hl7v2/convert and the
// two benchmark messages, each as its segments, by path.
func robustMessages(t *testing.T) map[string][]string {
	t.Helper()
	msgs := map[string][]string{}
	if err := fs.WalkDir(fixtures.HL7v2, "hl7v2", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasPrefix(path, "hl7v2/convert/") && !strings.HasPrefix(path, "hl7v2/bench/") {
			return err
		}
		raw, err := fs.ReadFile(fixtures.HL7v2, path)
		msgs[path] = strings.Split(strings.TrimRight(string(raw), "\r\n"), "\r")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(msgs) < 7 {
		t.Fatalf("found %d fixtures under hl7v2/convert and hl7v2/bench, want at least 7", len(msgs))
	}
	return msgs
}

// segmentChanges are the ways TestConvertStaysValidWhenASegmentIsOdd changes
// the segment at i of segs (the MSH is never changed).
var segmentChanges = []struct {
	name   string
	change func(segs []string, i int) []string
}{
	// An ORU or OML without its optional PID, an RDE without its ORC.
	{"left out", func(segs []string, i int) []string { return slices.Delete(slices.Clone(segs), i, i+1) }},
	{"sent twice", func(segs []string, i int) []string { return slices.Insert(slices.Clone(segs), i, segs[i]) }},
	{"after the next", func(segs []string, i int) []string {
		out := slices.Clone(segs)
		if i+1 < len(out) {
			out[i], out[i+1] = out[i+1], out[i]
		}
		return out
	}},
	{"first after the MSH", func(segs []string, i int) []string {
		return slices.Insert(slices.Delete(slices.Clone(segs), i, i+1), 1, segs[i])
	}},
	{"with no fields", func(segs []string, i int) []string {
		out := slices.Clone(segs)
		out[i] = out[i][:3]
		return out
	}},
}

// TestConvertStaysValidWhenASegmentIsOdd converts the same messages with one
// segment left out, repeated, moved or emptied at a time. Resources the maps
// cannot make whole (a ServiceRequest with no PID to be its subject, an
// Immunization begun by a stray RXR) must be left out with an issue, never
// written invalid.
func TestConvertStaysValidWhenASegmentIsOdd(t *testing.T) {
	c := loadDefault(t).NewConverter(Options{})
	var m hl7v2.Message
	variants := 0
	msgs := robustMessages(t)
	for _, path := range slices.Sorted(maps.Keys(msgs)) {
		segs := msgs[path]
		tried := map[string]bool{}
		for i := 1; i < len(segs); i++ {
			for _, ch := range segmentChanges {
				key := segs[i][:3] + " " + ch.name
				if tried[key] {
					continue
				}
				tried[key] = true
				checkVariant(t, c, &m, ch.change(segs, i), path+" with "+key)
				variants++
			}
		}
	}
	t.Logf("%d variants of %d messages", variants, len(msgs))
}
