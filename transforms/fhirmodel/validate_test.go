package fhirmodel

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	dpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	bpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
)

const validPatient = `{"resourceType":"Patient","id":"p1",
	"identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9990000018"}],
	"name":[{"family":"Thompson","given":["Eleanor"]}],
	"gender":"female","birthDate":"1948-03-12","deceasedBoolean":false}`

// bundle is a transaction like the one the engine writes for an ADT^A01
// with allergies, diagnoses and next of kin: twelve resources that refer to
// each other by urn:uuid.
const bundle = `{"resourceType":"Bundle","type":"transaction","timestamp":"2026-11-21T09:30:15Z","entry":[
{"fullUrl":"urn:uuid:0b5e2c4e-0000-4000-8000-000000000001","resource":{"resourceType":"Patient",
 "identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9990000018"},{"system":"urn:oid:2.16.840.1.113883.2.1.4.1","value":"RX1A123456","type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}]}}],
 "name":[{"use":"official","family":"Thompson","given":["Eleanor","May"],"prefix":["Mrs"]}],
 "telecom":[{"system":"phone","value":"01632 960001","use":"home"}],
 "gender":"female","birthDate":"1948-03-12",
 "address":[{"line":["1 Station Road"],"city":"Leeds","postalCode":"LS1 4AP"}],
 "generalPractitioner":[{"reference":"urn:uuid:0b5e2c4e-0000-4000-8000-000000000004"}]},
 "request":{"method":"PUT","url":"Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9990000018"}},
{"fullUrl":"urn:uuid:0b5e2c4e-0000-4000-8000-000000000002","resource":{"resourceType":"Encounter","status":"in-progress",
 "class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"IMP"},
 "subject":{"reference":"urn:uuid:0b5e2c4e-0000-4000-8000-000000000001"},
 "period":{"start":"2026-11-21T09:30:15+00:00"},
 "hospitalization":{"admitSource":{"coding":[{"system":"https://fhir.nhs.uk/CodeSystem/admission-source","code":"19"}]}},
 "location":[{"location":{"reference":"urn:uuid:0b5e2c4e-0000-4000-8000-000000000005"}}],
 "serviceProvider":{"reference":"urn:uuid:0b5e2c4e-0000-4000-8000-000000000003"}},
 "request":{"method":"POST","url":"Encounter"}},
{"fullUrl":"urn:uuid:0b5e2c4e-0000-4000-8000-000000000003","resource":{"resourceType":"Organization","identifier":[{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"RX1"}],"name":"Nottingham University Hospitals"},
 "request":{"method":"PUT","url":"Organization?identifier=https://fhir.nhs.uk/Id/ods-organization-code|RX1"}},
{"fullUrl":"urn:uuid:0b5e2c4e-0000-4000-8000-000000000004","resource":{"resourceType":"Practitioner","identifier":[{"system":"https://fhir.hl7.org.uk/Id/gmc-number","value":"C1234567"}],"name":[{"family":"Okafor","given":["Ada"],"prefix":["Dr"]}]},
 "request":{"method":"PUT","url":"Practitioner?identifier=https://fhir.hl7.org.uk/Id/gmc-number|C1234567"}},
{"fullUrl":"urn:uuid:0b5e2c4e-0000-4000-8000-000000000005","resource":{"resourceType":"Location","name":"Ward 12, Bay 3, Bed 4","status":"active","managingOrganization":{"reference":"urn:uuid:0b5e2c4e-0000-4000-8000-000000000003"}},
 "request":{"method":"POST","url":"Location"}},
{"fullUrl":"urn:uuid:0b5e2c4e-0000-4000-8000-000000000006","resource":{"resourceType":"Observation","status":"final",
 "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],
 "code":{"coding":[{"system":"http://loinc.org","code":"29463-7","display":"Body weight"}]},
 "subject":{"reference":"urn:uuid:0b5e2c4e-0000-4000-8000-000000000001"},
 "effectiveDateTime":"2026-11-21T09:45:00+00:00",
 "valueQuantity":{"value":61.5,"unit":"kg","system":"http://unitsofmeasure.org","code":"kg"}},
 "request":{"method":"POST","url":"Observation"}},
{"fullUrl":"urn:uuid:0b5e2c4e-0000-4000-8000-000000000007","resource":{"resourceType":"Observation","status":"final",
 "code":{"coding":[{"system":"http://loinc.org","code":"8302-2","display":"Body height"}]},
 "subject":{"reference":"urn:uuid:0b5e2c4e-0000-4000-8000-000000000001"},
 "effectiveDateTime":"2026-11-21T09:45:00+00:00",
 "valueQuantity":{"value":162,"unit":"cm","system":"http://unitsofmeasure.org","code":"cm"},
 "referenceRange":[{"low":{"value":100,"unit":"cm"},"high":{"value":220,"unit":"cm"}}]},
 "request":{"method":"POST","url":"Observation"}},
{"fullUrl":"urn:uuid:0b5e2c4e-0000-4000-8000-000000000008","resource":{"resourceType":"AllergyIntolerance",
 "clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical","code":"active"}]},
 "code":{"coding":[{"system":"http://snomed.info/sct","code":"91936005","display":"Allergy to penicillin"}]},
 "patient":{"reference":"urn:uuid:0b5e2c4e-0000-4000-8000-000000000001"},"criticality":"high"},
 "request":{"method":"POST","url":"AllergyIntolerance"}},
{"fullUrl":"urn:uuid:0b5e2c4e-0000-4000-8000-000000000009","resource":{"resourceType":"Condition",
 "code":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10","code":"J18.9"}]},
 "subject":{"reference":"urn:uuid:0b5e2c4e-0000-4000-8000-000000000001"},
 "encounter":{"reference":"urn:uuid:0b5e2c4e-0000-4000-8000-000000000002"},"recordedDate":"2026-11-21"},
 "request":{"method":"POST","url":"Condition"}},
{"fullUrl":"urn:uuid:0b5e2c4e-0000-4000-8000-00000000000a","resource":{"resourceType":"RelatedPerson",
 "patient":{"reference":"urn:uuid:0b5e2c4e-0000-4000-8000-000000000001"},
 "relationship":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-RoleCode","code":"DAU"}]}],
 "name":[{"family":"Thompson","given":["Ruth"]}],"telecom":[{"system":"phone","value":"07700 900123"}]},
 "request":{"method":"POST","url":"RelatedPerson"}},
{"fullUrl":"urn:uuid:0b5e2c4e-0000-4000-8000-00000000000b","resource":{"resourceType":"Coverage","status":"active",
 "beneficiary":{"reference":"urn:uuid:0b5e2c4e-0000-4000-8000-000000000001"},
 "payor":[{"reference":"urn:uuid:0b5e2c4e-0000-4000-8000-000000000003"}]},
 "request":{"method":"POST","url":"Coverage"}},
{"fullUrl":"urn:uuid:0b5e2c4e-0000-4000-8000-00000000000c","resource":{"resourceType":"Account","status":"active",
 "identifier":[{"system":"urn:oid:2.16.840.1.113883.2.1.4.2","value":"V0001"}],
 "subject":[{"reference":"urn:uuid:0b5e2c4e-0000-4000-8000-000000000001"}]},
 "request":{"method":"POST","url":"Account"}}
]}`

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		json string
		want []string // each problem's Error(), sorted by path; nil for valid
	}{
		{"valid patient", validPatient, nil},
		{"valid bundle", bundle, nil},
		{"bundle with two entries", `{"resourceType":"Bundle","type":"collection","entry":[
			{"fullUrl":"urn:uuid:1","resource":` + validPatient + `},
			{"fullUrl":"urn:uuid:2","resource":{"resourceType":"Observation","status":"final","code":{"text":"weight"},"subject":{"reference":"Patient/p1"}}}]}`, nil},
		{"primitive given only as extensions", `{"resourceType":"Patient","_birthDate":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/data-absent-reason","valueCode":"unknown"}]}}`, nil},
		{"invalid code", `{"resourceType":"Patient","gender":"mal"}`,
			[]string{"fhirmodel: Patient.gender: code type mismatch"}},
		{"missing required elements", `{"resourceType":"Observation","subject":{"reference":"Patient/p1"}}`,
			[]string{`fhirmodel: Observation: missing required field "code"`, `fhirmodel: Observation: missing required field "status"`}},
		{"bad date", `{"resourceType":"Patient","birthDate":"2021-13-01"}`,
			[]string{"fhirmodel: Patient.birthDate: expected date"}},
		{"empty string", `{"resourceType":"Patient","name":[{"family":""}]}`,
			[]string{"fhirmodel: Patient.name[0].family: empty value; R4 allows no empty strings, so leave the element out"}},
		{"empty required-binding code", `{"resourceType":"Patient","gender":""}`,
			[]string{"fhirmodel: Patient.gender: empty value; R4 allows no empty strings, so leave the element out"}},
		{"empty code in a choice", `{"resourceType":"Patient","extension":[{"url":"http://example.org/x","valueCode":""}]}`,
			[]string{"fhirmodel: Patient.extension[0].valueCode: invalid Code format"}},
		{"second entry invalid", `{"resourceType":"Bundle","type":"collection","entry":[
			{"resource":` + validPatient + `},
			{"resource":{"resourceType":"Observation","code":{"text":"weight"},"valueString":""}}]}`,
			[]string{
				`fhirmodel: Bundle.entry[1].resource.Observation: missing required field "status"`,
				"fhirmodel: Bundle.entry[1].resource.Observation.valueString: empty value; R4 allows no empty strings, so leave the element out",
			}},
		{"parse problems in two entries", `{"resourceType":"Bundle","type":"collection","entry":[
			{"resource":{"resourceType":"Patient","birthDate":"1948-02-30x"}},
			{"resource":{"resourceType":"Observation","status":"done","code":{"text":"weight"}}}]}`,
			[]string{
				"fhirmodel: Bundle.entry[0].resource.Patient.birthDate: expected date",
				"fhirmodel: Bundle.entry[1].resource.Observation.status: code type mismatch",
			}},
		{"reference to the wrong type", `{"resourceType":"Observation","status":"final","code":{"text":"weight"},"subject":{"reference":"Encounter/e1"}}`,
			[]string{"fhirmodel: Observation.subject: invalid reference to a Encounter resource, want Patient, Group, Device, Location"}},
		{"unknown element", `{"resourceType":"Patient","birthdate":"1948-03-12"}`,
			[]string{"fhirmodel: Patient.birthdate: unknown element"}},
		{"two alternatives of a choice", `{"resourceType":"Patient","deceasedBoolean":true,"deceasedDateTime":"2020-01-01"}`,
			[]string{"fhirmodel: Patient: cannot accept multiple values for deceased field"}},
		{"single value where an array belongs", `{"resourceType":"Patient","name":{"family":"Thompson"}}`,
			[]string{"fhirmodel: Patient.name: expected array"}},
		{"bad decimal in a choice", `{"resourceType":"Observation","status":"final","code":{"text":"weight"},"valueQuantity":{"value":"heavy"}}`,
			[]string{"fhirmodel: Observation.valueQuantity.value: expected decimal"}},
		{"unknown resource type", `{"resourceType":"Patiant"}`,
			[]string{"fhirmodel: Patiant: unknown resource type"}},
		// What Validate's comment says jsonformat leaves unchecked.
		{"required element missing inside contained", `{"resourceType":"Patient","contained":[{"resourceType":"Observation","id":"o1"}]}`, nil},
		{"urn:uuid reference to nothing in the bundle", `{"resourceType":"Observation","status":"final","code":{"text":"weight"},"subject":{"reference":"urn:uuid:0b5e2c4e-0000-4000-8000-0000000000ff"}}`, nil},
		{"bad code inside contained", `{"resourceType":"Patient","contained":[{"resourceType":"Observation","status":"done"}]}`,
			[]string{"fhirmodel: Patient.contained[0].Observation.status: code type mismatch"}},
		{"truncated JSON", `{"resourceType":"Patient","name":[{"family":"Thomp`,
			[]string{"fhirmodel: invalid JSON at byte 50"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate([]byte(tt.json))
			got := problemTexts(t, err)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Validate problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			for _, value := range []string{"mal", "2021-13-01", "heavy", "Thomp", "done", "30x"} {
				if err != nil && strings.Contains(tt.json, value) && strings.Contains(err.Error(), value) {
					t.Errorf("Validate error %q repeats the value %q", err, value)
				}
			}
		})
	}
}

// TestValidateEmpty covers the checks Validate adds to jsonformat's: R4's
// JSON has no empty strings, objects or arrays.
func TestValidateEmpty(t *testing.T) {
	const givenEmpty = `{"resourceType":"Patient","name":[{"family":"Thompson","given":[ ]}]}`
	const twoEmpty = `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","identifier":[]}},{"link":[] }]}`
	tests := []struct {
		name string
		json string
		want []string
	}{
		{"resource with nothing but its type", `{"resourceType":"Patient"}`, nil},
		{"brackets and quotes inside strings", `{"resourceType":"Patient","name":[{"family":"a [] {} \"[]\" b"}]}`, nil},
		{"empty string", `{"resourceType":"Patient","name":[{"family":"Thompson","given":[""]}]}`,
			[]string{"fhirmodel: Patient.name[0].given[0]: " + emptyString}},
		{"empty object", `{"resourceType":"Patient","name":[{}]}`,
			[]string{"fhirmodel: Patient.name[0]: " + emptyObject}},
		{"empty object in a choice", `{"resourceType":"Observation","status":"final","code":{"text":"weight"},"valueQuantity":{}}`,
			[]string{"fhirmodel: Observation.valueQuantity: " + emptyObject}},
		{"empty bundle entry", `{"resourceType":"Bundle","type":"collection","entry":[{}]}`,
			[]string{"fhirmodel: Bundle.entry[0]: " + emptyObject}},
		{"empty object missing required elements, said once", `{"resourceType":"Patient","text":{}}`,
			[]string{`fhirmodel: Patient.text: missing required field "div"`, `fhirmodel: Patient.text: missing required field "status"`}},
		{"empty array", givenEmpty,
			[]string{fmt.Sprintf(`fhirmodel: "given" empty array at byte %d; R4 allows no empty arrays, so leave the element out`, strings.Index(givenEmpty, "[ ]"))}},
		{"two empty arrays", twoEmpty, []string{
			fmt.Sprintf(`fhirmodel: "identifier" empty array at byte %d; R4 allows no empty arrays, so leave the element out`, strings.Index(twoEmpty, "[]")),
			fmt.Sprintf(`fhirmodel: "link" empty array at byte %d; R4 allows no empty arrays, so leave the element out`, strings.LastIndex(twoEmpty, "[]")),
			"fhirmodel: Bundle.entry[1]: " + emptyObject,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := problemTexts(t, Validate([]byte(tt.json)))
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Validate problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestNormalisePath(t *testing.T) {
	tests := []struct{ in, want string }{
		// jsonformat's second pass: choices split, nested resources lower-cased.
		{"Observation.value.quantity.value", "Observation.valueQuantity.value"},
		{"Patient.extension[2].value.code", "Patient.extension[2].valueCode"},
		{"Bundle.entry[1].resource.observation.code.coding[0].code", "Bundle.entry[1].resource.Observation.code.coding[0].code"},
		{"Bundle.entry[0].response.outcome.operationOutcome.issue[0]", "Bundle.entry[0].response.outcome.OperationOutcome.issue[0]"},
		// Its first pass is already in that form.
		{"Bundle.entry[0].resource.Patient.gender", "Bundle.entry[0].resource.Patient.gender"},
		{"Patient.contained[0].Observation.status", "Patient.contained[0].Observation.status"},
		{"Patient.birthDate.extension[0].url", "Patient.birthDate.extension[0].url"},
		// Anything outside the model is kept as written.
		{"Patient.birthDate.year", "Patient.birthDate.year"},
		{"Patient.foo.bar", "Patient.foo.bar"},
		{"Bundle.entry[0].resource.unknownThing.x", "Bundle.entry[0].resource.unknownThing.x"},
		{"Patiant.gender", "Patiant.gender"},
		{"", ""},
	}
	m := loadModel()
	for _, tt := range tests {
		if got := m.normalisePath(tt.in); got != tt.want {
			t.Errorf("normalisePath(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// problemTexts unpacks Validate's joined error, checking every part is a
// *ValidationError.
func problemTexts(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	parts := []error{err}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		parts = joined.Unwrap()
	}
	texts := make([]string, len(parts))
	for i, part := range parts {
		var ve *ValidationError
		if !errors.As(part, &ve) {
			t.Errorf("problem %v is a %T, want *ValidationError", part, part)
		}
		texts[i] = part.Error()
	}
	return texts
}

// TestParseMarshal round-trips the bundle through jsonformat: what Marshal
// writes must be valid and mean the same JSON.
func TestParseMarshal(t *testing.T) {
	msg, err := Parse([]byte(bundle))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	cr, ok := msg.(*bpb.ContainedResource)
	if !ok {
		t.Fatalf("Parse returned a %T, want *ContainedResource", msg)
	}
	if n := len(cr.GetBundle().GetEntry()); n != 12 {
		t.Fatalf("Parse: %d entries, want 12", n)
	}
	out, err := Marshal(msg)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	if err := Validate(out); err != nil {
		t.Errorf("Validate(Marshal(Parse(bundle))): %v", err)
	}
	var want, got any
	if err := json.Unmarshal([]byte(bundle), &want); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("Marshal wrote invalid JSON: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Marshal(Parse(bundle)) means other JSON:\n%s", out)
	}

	// One resource's own message marshals as well as a ContainedResource.
	patient, err := Marshal(cr.GetBundle().GetEntry()[0].GetResource().GetPatient())
	if err != nil {
		t.Fatalf("Marshal(Patient): %v", err)
	}
	if !strings.HasPrefix(string(patient), "{") || !strings.Contains(string(patient), `"resourceType":"Patient"`) {
		t.Errorf("Marshal(Patient) = %s", patient)
	}
}

func TestParseErrors(t *testing.T) {
	// Parse leaves required elements to Validate.
	if _, err := Parse([]byte(`{"resourceType":"Observation"}`)); err != nil {
		t.Errorf("Parse(Observation without status): %v", err)
	}
	_, err := Parse([]byte(`{"resourceType":"Patient","birthDate":"2021-13-01"}`))
	if got, want := problemTexts(t, err), []string{"fhirmodel: Patient.birthDate: expected date"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Parse(bad date) = %q, want %q", got, want)
	}
}

func TestMarshalErrors(t *testing.T) {
	if _, err := Marshal(nil); err == nil {
		t.Error("Marshal(nil) succeeded")
	}
	_, err := Marshal(&dpb.HumanName{})
	if err == nil || !strings.Contains(err.Error(), "google.fhir.r4.core.HumanName is not an R4 resource") {
		t.Errorf("Marshal(HumanName) = %v, want it refused as not a resource", err)
	}
	if _, err := Marshal(&bpb.ContainedResource{}); err == nil {
		t.Error("Marshal(empty ContainedResource) succeeded")
	}
}

func BenchmarkValidate(b *testing.B) {
	data := []byte(bundle)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if err := Validate(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	data := []byte(bundle)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMarshal(b *testing.B) {
	msg, err := Parse([]byte(bundle))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(bundle)))
	for b.Loop() {
		if _, err := Marshal(msg); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzValidate feeds Validate arbitrary JSON. It must not panic, and what
// it accepts must survive jsonformat's round trip still valid.
func FuzzValidate(f *testing.F) {
	for _, seed := range []string{
		validPatient, bundle,
		`{"resourceType":"Patient","gender":"mal","birthDate":"2021-13-01","name":[{"family":""}]}`,
		`{"resourceType":"Observation","valueQuantity":{"value":1e400},"effectivePeriod":{"start":"2021"}}`,
		`{"resourceType":"Patient","contained":[{"resourceType":"Observation"}],"_gender":{"id":"g"}}`,
		`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Bundle","entry":[{}]}}]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if Validate(data) != nil {
			return
		}
		msg, err := Parse(data)
		if err != nil {
			t.Fatalf("Validate accepted what Parse refuses: %v", err)
		}
		out, err := Marshal(msg)
		if err != nil {
			t.Fatalf("Marshal of a valid resource: %v", err)
		}
		if err := Validate(out); err != nil {
			t.Fatalf("Validate refuses what Marshal wrote: %v\n%s", err, out)
		}
	})
}
