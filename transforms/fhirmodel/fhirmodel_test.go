package fhirmodel

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
)

// steps renders a Lookup chain as "name:Type" per step, "[]" marking a
// repeated element and "!" a required one.
func steps(chain []Element) []string {
	out := make([]string, len(chain))
	for i, el := range chain {
		s := el.Name + ":" + el.Type
		if el.Repeated {
			s += "[]"
		}
		if el.Required {
			s += "!"
		}
		out[i] = s
	}
	return out
}

func TestLookup(t *testing.T) {
	tests := []struct {
		root, path string
		want       []string
	}{
		{"Patient", "identifier.value", []string{"identifier:Identifier[]", "value:string"}},
		{"Patient", "name.given", []string{"name:HumanName[]", "given:string[]"}},
		{"Patient", "birthDate", []string{"birthDate:date"}},
		{"Patient", "gender", []string{"gender:code"}},
		{"Patient", "deceasedBoolean", []string{"deceasedBoolean:boolean"}},
		{"Patient", "deceasedDateTime", []string{"deceasedDateTime:dateTime"}},
		{"Patient", "multipleBirthInteger", []string{"multipleBirthInteger:integer"}},
		{"Patient", "contact.name.family", []string{"contact:BackboneElement[]", "name:HumanName", "family:string"}},
		{"Patient", "generalPractitioner", []string{"generalPractitioner:Reference[]"}},
		{"Patient", "extension.url", []string{"extension:Extension[]", "url:uri!"}},
		{"Patient", "extension.valueCodeableConcept.coding.code", []string{"extension:Extension[]", "valueCodeableConcept:CodeableConcept", "coding:Coding[]", "code:code"}},
		{"Patient", "id", []string{"id:id"}},
		{"Patient", "contained", []string{"contained:Resource[]"}},
		{"Patient", "meta.lastUpdated", []string{"meta:Meta", "lastUpdated:instant"}},
		{"Patient", "text.div", []string{"text:Narrative", "div:xhtml!"}},
		{"Patient", "birthDate.extension.valueCode", []string{"birthDate:date", "extension:Extension[]", "valueCode:code"}},
		{"Patient", "contact.id", []string{"contact:BackboneElement[]", "id:string"}},
		{"Observation", "valueQuantity.value", []string{"valueQuantity:Quantity", "value:decimal"}},
		{"Observation", "valueString", []string{"valueString:string"}},
		{"Observation", "valueCodeableConcept.text", []string{"valueCodeableConcept:CodeableConcept", "text:string"}},
		{"Observation", "effectiveDateTime", []string{"effectiveDateTime:dateTime"}},
		{"Observation", "effectivePeriod.end", []string{"effectivePeriod:Period", "end:dateTime"}},
		{"Observation", "referenceRange.low.value", []string{"referenceRange:BackboneElement[]", "low:Quantity", "value:decimal"}},
		{"Observation", "code.coding.system", []string{"code:CodeableConcept!", "coding:Coding[]", "system:uri"}},
		{"Observation", "component.valueQuantity.unit", []string{"component:BackboneElement[]", "valueQuantity:Quantity", "unit:string"}},
		{"Observation", "component.referenceRange.high", []string{"component:BackboneElement[]", "referenceRange:BackboneElement[]", "high:Quantity"}},
		{"Encounter", "class.code", []string{"class:Coding!", "code:code"}},
		{"Encounter", "period.start", []string{"period:Period", "start:dateTime"}},
		{"Encounter", "hospitalization.admitSource", []string{"hospitalization:BackboneElement", "admitSource:CodeableConcept"}},
		{"Encounter", "location.location", []string{"location:BackboneElement[]", "location:Reference!"}},
		{"Encounter", "participant.individual.reference", []string{"participant:BackboneElement[]", "individual:Reference", "reference:string"}},
		{"DiagnosticReport", "result", []string{"result:Reference[]"}},
		{"DiagnosticReport", "status", []string{"status:code!"}},
		{"ServiceRequest", "subject.reference", []string{"subject:Reference!", "reference:string"}},
		{"ServiceRequest", "occurrenceDateTime", []string{"occurrenceDateTime:dateTime"}},
		{"ServiceRequest", "requisition.value", []string{"requisition:Identifier", "value:string"}},
		{"ServiceRequest", "intent", []string{"intent:code!"}},
		{"Bundle", "entry.resource", []string{"entry:BackboneElement[]", "resource:Resource"}},
		{"Bundle", "entry.request.method", []string{"entry:BackboneElement[]", "request:BackboneElement", "method:code!"}},
		{"Bundle", "entry.fullUrl", []string{"entry:BackboneElement[]", "fullUrl:uri"}},
		{"Bundle", "entry.response.outcome", []string{"entry:BackboneElement[]", "response:BackboneElement", "outcome:Resource"}},
		{"MedicationRequest", "medicationReference", []string{"medicationReference:Reference"}},
		{"MedicationRequest", "dosageInstruction.timing.repeat.boundsPeriod", []string{"dosageInstruction:Dosage[]", "timing:Timing", "repeat:Element", "boundsPeriod:Period"}},
		{"HumanName", "family", []string{"family:string"}},
		{"Reference", "identifier.system", []string{"identifier:Identifier", "system:uri"}},
	}
	for _, tt := range tests {
		t.Run(tt.root+"."+tt.path, func(t *testing.T) {
			chain, err := Lookup(tt.root, tt.path)
			if err != nil {
				t.Fatalf("Lookup: %v", err)
			}
			if got := steps(chain); !slices.Equal(got, tt.want) {
				t.Errorf("Lookup = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestLookupErrors(t *testing.T) {
	tests := []struct {
		root, path  string
		wantPath    string // PathError.Path
		wantReason  string
		suggestions []string
	}{
		{"Patient", "birthdate", "birthdate", `Patient has no element "birthdate"; did you mean "birthDate"?`, []string{"birthDate"}},
		{"Patient", "deceased", "deceased", `"deceased" is a choice; name one of deceasedBoolean, deceasedDateTime`, []string{"deceasedBoolean", "deceasedDateTime"}},
		{"Patient", "deceasd", "deceasd", `Patient has no element "deceasd"; did you mean one of "deceasedBoolean", "deceasedDateTime"?`, []string{"deceasedBoolean", "deceasedDateTime"}},
		{"Patient", "name.famly", "name.famly", `HumanName has no element "famly"; did you mean "family"?`, []string{"family"}},
		{"Patient", "contact.nme", "contact.nme", `Patient.contact has no element "nme"; did you mean "name"?`, []string{"name"}},
		{"Patient", "birth", "birth", `Patient has no element "birth"; did you mean "birthDate"?`, []string{"birthDate"}},
		{"Patient", "xyzzy", "xyzzy", `Patient has no element "xyzzy"`, nil},
		{"Patient", "birthDate.year", "birthDate.year", `"birthDate" is a primitive date; only id and extension lie below it`, nil},
		{"Patient", "name..given", "name.", `path "name..given" has an empty step`, nil},
		{"Patient", "", "", "empty element path in Patient", nil},
		{"Observation", "effective", "effective", `"effective" is a choice; name one of effectiveDateTime, effectivePeriod, effectiveTiming, effectiveInstant`, []string{"effectiveDateTime", "effectivePeriod", "effectiveTiming", "effectiveInstant"}},
		{"Observation", "valueQuantity.valeu", "valueQuantity.valeu", `Quantity has no element "valeu"; did you mean "value"?`, []string{"value"}},
		{"Encounter", "class_value", "class_value", `Encounter has no element "class_value"`, nil},
		{"Encounter", "classValue", "classValue", `Encounter has no element "classValue"`, nil},
		{"Bundle", "entry.resource.id", "entry.resource.id", `"resource" may hold any resource, so it has no element "id"; look the element up from the resource type`, nil},
		{"Reference", "patientId", "patientId", `Reference has no element "patientId"`, nil},
		{"Patiant", "name", "", `no R4 resource or data type is named "Patiant"; did you mean "Patient"?`, []string{"Patient"}},
	}
	for _, tt := range tests {
		t.Run(tt.root+"."+tt.path, func(t *testing.T) {
			chain, err := Lookup(tt.root, tt.path)
			if err == nil {
				t.Fatalf("Lookup = %v, want an error", steps(chain))
			}
			var pe *PathError
			if !errors.As(err, &pe) {
				t.Fatalf("Lookup error %v is a %T, want *PathError", err, err)
			}
			if pe.Root != tt.root || pe.Path != tt.wantPath || pe.Reason != tt.wantReason || !slices.Equal(pe.Suggestions, tt.suggestions) {
				t.Errorf("Lookup error = %+v\nwant Root %q Path %q Reason %q Suggestions %q", pe, tt.root, tt.wantPath, tt.wantReason, tt.suggestions)
			}
			if !strings.HasPrefix(err.Error(), "fhirmodel: ") || !strings.Contains(err.Error(), tt.wantReason) {
				t.Errorf("Error() = %q, want the package prefix and the reason", err)
			}
			if tt.wantPath != "" && !strings.Contains(err.Error(), tt.root+"."+tt.wantPath+": ") {
				t.Errorf("Error() = %q, want it to name %s.%s", err, tt.root, tt.wantPath)
			}
		})
	}
}

func TestElement(t *testing.T) {
	tests := []struct {
		typ, name string
		want      Element
		wantChild string // the returned Type's name, "" for nil
	}{
		{"Patient", "identifier", Element{Name: "identifier", Type: "Identifier", Repeated: true}, "Identifier"},
		{"Patient", "gender", Element{Name: "gender", Type: "code", Codes: []string{"male", "female", "other", "unknown"}}, ""},
		{"Patient", "generalPractitioner", Element{Name: "generalPractitioner", Type: "Reference", Repeated: true, Targets: []string{"Organization", "Practitioner", "PractitionerRole"}}, "Reference"},
		{"Patient", "contact", Element{Name: "contact", Type: "BackboneElement", Repeated: true}, "Patient.contact"},
		{"Patient", "modifierExtension", Element{Name: "modifierExtension", Type: "Extension", Repeated: true}, "Extension"},
		{"Observation", "status", Element{Name: "status", Type: "code", Required: true, Codes: []string{"registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error", "unknown"}}, ""},
		{"Observation", "code", Element{Name: "code", Type: "CodeableConcept", Required: true}, "CodeableConcept"},
		{"Observation", "subject", Element{Name: "subject", Type: "Reference", Targets: []string{"Patient", "Group", "Device", "Location"}}, "Reference"},
		{"Observation", "focus", Element{Name: "focus", Type: "Reference", Repeated: true}, "Reference"},
		{"Observation", "referenceRange", Element{Name: "referenceRange", Type: "BackboneElement", Repeated: true}, "Observation.referenceRange"},
		{"Observation", "valueQuantity", Element{Name: "valueQuantity", Type: "Quantity"}, "Quantity"},
		{"Encounter", "class", Element{Name: "class", Type: "Coding", Required: true}, "Coding"},
		{"Encounter", "subject", Element{Name: "subject", Type: "Reference", Targets: []string{"Patient", "Group"}}, "Reference"},
		{"DiagnosticReport", "result", Element{Name: "result", Type: "Reference", Repeated: true, Targets: []string{"Observation"}}, "Reference"},
		{"MedicationRequest", "medicationReference", Element{Name: "medicationReference", Type: "Reference", Targets: []string{"Medication"}}, "Reference"},
		{"Bundle", "type", Element{Name: "type", Type: "code", Required: true, Codes: []string{"document", "message", "transaction", "transaction-response", "batch", "batch-response", "history", "searchset", "collection"}}, ""},
		{"Bundle.entry.request", "method", Element{Name: "method", Type: "code", Required: true, Codes: []string{"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"}}, ""},
		{"Quantity", "comparator", Element{Name: "comparator", Type: "code", Codes: []string{"<", "<=", ">=", ">"}}, ""},
		{"Coding", "code", Element{Name: "code", Type: "code"}, ""},
		{"Extension", "url", Element{Name: "url", Type: "uri", Required: true}, ""},
		{"Extension", "valueString", Element{Name: "valueString", Type: "string"}, ""},
		{"Reference", "reference", Element{Name: "reference", Type: "string"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.typ+"."+tt.name, func(t *testing.T) {
			typ := typeNamed(t, tt.typ)
			el, child, ok := typ.Element(tt.name)
			if !ok {
				t.Fatalf("%s.Element(%q) not found", tt.typ, tt.name)
			}
			if el.Name != tt.want.Name || el.Type != tt.want.Type || el.Repeated != tt.want.Repeated || el.Required != tt.want.Required ||
				!slices.Equal(el.Codes, tt.want.Codes) || !slices.Equal(el.Targets, tt.want.Targets) {
				t.Errorf("Element = %+v\nwant      %+v", el, tt.want)
			}
			var childName string
			if child != nil {
				childName = child.Name()
			}
			if childName != tt.wantChild {
				t.Errorf("Element type = %q, want %q", childName, tt.wantChild)
			}
		})
	}
}

// typeNamed finds a resource, data type or, by walking from its root, a
// component such as "Bundle.entry.request".
func typeNamed(t *testing.T, name string) *Type {
	t.Helper()
	root, rest, _ := strings.Cut(name, ".")
	typ, ok := Resource(root)
	if !ok {
		typ, ok = Datatype(root)
	}
	if !ok {
		t.Fatalf("no type %q", root)
	}
	if rest == "" {
		return typ
	}
	for _, step := range strings.Split(rest, ".") {
		_, next, ok := typ.Element(step)
		if !ok || next == nil {
			t.Fatalf("%s has no complex element %q", typ.Name(), step)
		}
		typ = next
	}
	if typ.Name() != name {
		t.Fatalf("walked to %q, want %q", typ.Name(), name)
	}
	return typ
}

func TestResources(t *testing.T) {
	// The resources the HL7 v2 mappings write or refer to.
	for _, name := range []string{
		"Patient", "Encounter", "Observation", "ServiceRequest", "DiagnosticReport", "AllergyIntolerance",
		"RelatedPerson", "Coverage", "Condition", "Procedure", "Immunization", "MedicationRequest", "Medication",
		"DocumentReference", "Appointment", "MessageHeader", "Provenance", "Specimen", "Organization",
		"Practitioner", "PractitionerRole", "Location", "Account", "Bundle",
	} {
		typ, ok := Resource(name)
		if !ok {
			t.Errorf("Resource(%q) not found", name)
			continue
		}
		if typ.Name() != name {
			t.Errorf("Resource(%q).Name() = %q", name, typ.Name())
		}
		if el, _, ok := typ.Element("id"); !ok || el.Type != "id" {
			t.Errorf("%s.id = %+v, %v; want an element of type id", name, el, ok)
		}
	}
	if n := len(loadModel().resources); n != 146 {
		t.Errorf("%d resources, want R4's 146", n)
	}
	for _, name := range []string{"Patient", "Observation"} {
		if _, ok := Datatype(name); ok {
			t.Errorf("Datatype(%q) found a resource", name)
		}
	}
	for _, name := range []string{"Identifier", "HumanName", "CodeableConcept", "Coding", "Reference", "Period", "Quantity", "SimpleQuantity", "Address", "ContactPoint", "Extension", "Meta", "Narrative", "Dosage", "Timing"} {
		typ, ok := Datatype(name)
		if !ok || typ.Name() != name {
			t.Errorf("Datatype(%q) = %v, %v", name, typ, ok)
		}
		if _, ok := Resource(name); ok {
			t.Errorf("Resource(%q) found a data type", name)
		}
	}
	for _, name := range []string{"Patient.contact", "Foo", "string", "CodingWithFixedCode", "ContainedResource", ""} {
		if _, ok := Resource(name); ok {
			t.Errorf("Resource(%q) found", name)
		}
		if _, ok := Datatype(name); ok {
			t.Errorf("Datatype(%q) found", name)
		}
	}
}

var primitiveTypes = []string{
	"base64Binary", "boolean", "canonical", "code", "date", "dateTime", "decimal", "id", "instant", "integer",
	"markdown", "oid", "positiveInt", "string", "time", "unsignedInt", "uri", "url", "uuid", "xhtml",
}

// TestEveryType walks every type reachable from the resources and data
// types and checks what the mapping engine relies on: elements sorted and
// unique, found by name, a Type below exactly the complex elements, codes
// only on code elements and targets only on references.
func TestEveryType(t *testing.T) {
	m := loadModel()
	seen := make(map[*Type]bool)
	var queue []*Type
	for _, typ := range m.resources {
		queue = append(queue, typ)
	}
	for _, typ := range m.datatypes {
		queue = append(queue, typ)
	}
	for len(queue) > 0 {
		typ := queue[0]
		queue = queue[1:]
		if seen[typ] {
			continue
		}
		seen[typ] = true
		elements := typ.Elements()
		if len(elements) == 0 {
			t.Errorf("%s has no elements", typ.Name())
		}
		if !slices.IsSortedFunc(elements, func(a, b Element) int { return strings.Compare(a.Name, b.Name) }) {
			t.Errorf("%s.Elements() is not sorted", typ.Name())
		}
		for i, el := range elements {
			if i > 0 && elements[i-1].Name == el.Name {
				t.Errorf("%s has two elements named %q", typ.Name(), el.Name)
			}
			got, child, ok := typ.Element(el.Name)
			if !ok || got.Name != el.Name {
				t.Errorf("%s.Element(%q) = %+v, %v", typ.Name(), el.Name, got, ok)
			}
			primitive := slices.Contains(primitiveTypes, el.Type)
			switch {
			case el.Type == "":
				t.Errorf("%s.%s has no type", typ.Name(), el.Name)
			case primitive || el.Type == "Resource":
				if child != nil {
					t.Errorf("%s.%s is a %s but has a Type %s", typ.Name(), el.Name, el.Type, child.Name())
				}
			case child == nil:
				t.Errorf("%s.%s is a %s but has no Type", typ.Name(), el.Name, el.Type)
			default:
				queue = append(queue, child)
			}
			if el.Codes != nil && el.Type != "code" {
				t.Errorf("%s.%s is a %s with codes", typ.Name(), el.Name, el.Type)
			}
			if el.Targets != nil && el.Type != "Reference" {
				t.Errorf("%s.%s is a %s with targets", typ.Name(), el.Name, el.Type)
			}
		}
	}
	if len(seen) < 600 {
		t.Errorf("walked %d types; R4's resources, data types and components are more than 600", len(seen))
	}
}

// TestConcurrentUse runs look-ups and validations from many goroutines at
// once; with -race it proves the shared model and codecs are read-only.
func TestConcurrentUse(t *testing.T) {
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				if _, err := Lookup("Observation", "referenceRange.low.value"); err != nil {
					errs <- err
					return
				}
				if _, err := Lookup("Patient", "birthdate"); err == nil {
					errs <- errors.New("Lookup(Patient, birthdate) succeeded")
					return
				}
				typ, _ := Resource("Encounter")
				if _, _, ok := typ.Element("class"); !ok {
					errs <- errors.New("Encounter.class not found")
					return
				}
				if err := Validate([]byte(validPatient)); err != nil {
					errs <- fmt.Errorf("Validate: %w", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
