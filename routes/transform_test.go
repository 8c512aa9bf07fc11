package routes

import (
	"bytes"
	"testing"

	"github.com/spinebridge/spinebridge/fixtures"
	"github.com/spinebridge/spinebridge/transforms"
)

func TestMappingTransformers(t *testing.T) {
	set, err := transforms.Default("")
	if err != nil {
		t.Fatal(err)
	}
	ts := MappingTransformers(set, transforms.Options{})
	for _, name := range []string{"fhir", "adt", "oru_r01"} {
		if ts[name] == nil {
			t.Fatalf("no transformer %q among %d", name, len(ts))
		}
	}
	raw, err := fixtures.HL7v2.ReadFile("hl7v2/adt_a01.hl7")
	if err != nil {
		t.Fatal(err)
	}
	out, ctype, err := ts["fhir"].Transform(nil, &Record{Raw: raw})
	if err != nil || ctype != ContentTypeFHIR {
		t.Fatalf("transform: %q, %v", ctype, err)
	}
	if !bytes.HasPrefix(out, []byte(`{"resourceType":"Bundle"`)) || !bytes.Contains(out, []byte(`"resourceType":"Patient"`)) {
		t.Errorf("not a bundle with a patient: %.200s", out)
	}
	if _, _, err := ts["fhir"].Transform(nil, &Record{Format: FormatCDA, Raw: []byte("<ClinicalDocument/>")}); err == nil {
		t.Error("a CDA document went through the v2 mappings")
	}
}
