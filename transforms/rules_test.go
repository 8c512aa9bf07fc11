package transforms

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// The embedded mapping set, rule by rule: each case converts a small message
// and asserts the values the rules under test write, named by the IG rows they
// implement.

// at returns every value at the dotted path below each resource of type typ,
// in bundle order: strings as they are, numbers and booleans as written, and a
// Reference as "->Type" of the resource it resolves to.
func (b *bundle) at(typ, path string) []string {
	var out []string
	var walk func(v any, steps []string)
	walk = func(v any, steps []string) {
		switch x := v.(type) {
		case []any:
			for _, item := range x {
				walk(item, steps)
			}
			return
		case map[string]any:
			if len(steps) == 0 {
				if ref, ok := x["reference"].(string); ok {
					out = append(out, "->"+b.typeOf(ref))
				}
				return
			}
			walk(x[steps[0]], steps[1:])
			return
		case nil:
			return
		}
		if len(steps) == 0 {
			out = append(out, fmt.Sprint(v))
		}
	}
	for _, r := range b.all(typ) {
		walk(r, strings.Split(path, "."))
	}
	return out
}

// typeOf is the resource type a reference inside the bundle names, or "?".
func (b *bundle) typeOf(ref string) string {
	for _, e := range b.Entry {
		if e.FullURL == ref {
			return e.Resource["resourceType"].(string)
		}
	}
	return "?"
}

// expect reports each of wants that b does not hold.
func (b *bundle) expect(t *testing.T, wants []want) {
	t.Helper()
	for _, w := range wants {
		if got := b.at(w.typ, w.path); !slices.Equal(got, w.values) {
			t.Errorf("%s.%s = %q, want %q", w.typ, w.path, got, w.values)
		}
	}
}

// want is one assertion: the values at Path below every Type resource, in
// bundle order.
type want struct {
	typ, path string
	values    []string
}

// message joins segments into a message after a standard MSH of the given type.
func message(typ string, segments ...string) []byte {
	msh := "MSH|^~\\&|APP|FAC|RAPP|RFAC|20260101120000||" + typ + "|MSG1|P|2.5.1"
	return []byte(strings.Join(append([]string{msh}, segments...), "\r"))
}

// segment writes segment id with the fields given by number, the ones between
// them empty: segment("RXA", map[int]string{27: "CLINIC"}) is RXA-27 and the 26
// empty fields before it.
func segment(id string, fields map[int]string) string {
	parts := []string{id}
	for n, v := range fields {
		for len(parts) <= n {
			parts = append(parts, "")
		}
		parts[n] = v
	}
	return strings.Join(parts, "|")
}

func checkRules(t *testing.T, raw []byte, wants []want) {
	t.Helper()
	b, _, out := convertMessage(t, raw, Options{Bundle: Collection})
	b.expect(t, wants)
	if t.Failed() {
		t.Logf("bundle: %s", out)
	}
}

func TestRulesDatatypes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		raw   []byte
		wants []want
	}{
		{
			"XAD.1 is a SAD: street, street name and dwelling number, then XAD.2 and XAD.19",
			message("ADT^A04", "PID|1||123^^^^MR||DOE^JANE||19700101|F|||1000&Hospital Lane&Flat 2^Ste. 123^Ann Arbor^MI^99999^USA^^^County&Washtenaw^^^^^^^^^^Near Highway"),
			[]want{
				{"Patient", "address.line", []string{"1000", "Hospital Lane", "Flat 2", "Ste. 123", "Near Highway"}},
				{"Patient", "address.city", []string{"Ann Arbor"}},
				{"Patient", "address.district", []string{"Washtenaw"}},
			},
		},
		{
			"XTN value: XTN.4 for Internet, XTN.12 before XTN.1, assembled XTN.5-8, XTN.1 as the last resort",
			message("ADT^A04", "PID|1||123^^^^MR||DOE^JANE||19700101|F|||||"+
				"78788788^^CP^5555^^^1111^^^^^2222~"+
				"^NET^Internet^jane@example.org~"+
				"^WPN^PH^^44^20^7946000^12~"+
				"01234567~"+
				"89898989^WPN^Internet"),
			[]want{
				{"Patient", "telecom.value", []string{"2222", "jane@example.org", "+44 20 7946000 X12", "01234567", "89898989"}},
				{"Patient", "telecom.system", []string{"phone", "email", "phone", "email"}},
			},
		},
		{
			"OBX-5 NM sent with a comparator: the comparator is valueQuantity's, the rest its value",
			message("ORU^R01", "PID|1||123^^^^MR||DOE^JANE", "OBR|1|PL-1||58410-2^Full blood count^LN",
				"OBX|1|NM|6690-2^WBC^LN||<0.5|10*9/L^^UCUM|||||F",
				"OBX|2|NM|2823-3^Potassium^LN||>= 7|mmol/L^^UCUM|||||F",
				"OBX|3|NM|2951-2^Sodium^LN||140|mmol/L^^UCUM|||||F",
				"OBX|4|NM|777-3^Platelets^LN||>clumped|10*9/L^^UCUM|||||F",
				"OBX|5|NM|2160-0^Creatinine^LN||<=.5|umol/L^^UCUM|||||F"),
			[]want{
				{"Observation", "valueQuantity.comparator", []string{"<", ">=", "<="}},
				{"Observation", "valueQuantity.value", []string{"0.5", "7", "140", "0.5"}},
			},
		},
		{
			"OBX-5 ED and RP are the Observation's valueAttachment: base64 kept without its line breaks, text and hex encoded",
			message("ORU^R01", "PID|1||123^^^^MR||DOE^JANE", "OBR|1|PL-1||18842-5^Discharge summary^LN",
				"OBX|1|ED|18842-5^Discharge summary^LN||^AP^PDF^Base64^JVBERi0x\\X0D\\\\X0A\\LjQK||||||F",
				"OBX|2|ED|11488-4^Consult note^LN||^TEXT^plain^A^Seen in clinic||||||F",
				"OBX|3|ED|11488-4^Consult note^LN||^AP^Octet-stream^Hex^48690A||||||F",
				"OBX|4|RP|18748-4^Imaging report^LN||https://pacs.example.nhs.uk/study/1^^IM^JPEG||||||F"),
			[]want{
				{"Observation", "extension.url", []string{
					"http://hl7.org/fhir/5.0/StructureDefinition/extension-Observation.valueAttachment",
					"http://hl7.org/fhir/5.0/StructureDefinition/extension-Observation.valueAttachment",
					"http://hl7.org/fhir/5.0/StructureDefinition/extension-Observation.valueAttachment",
					"http://hl7.org/fhir/5.0/StructureDefinition/extension-Observation.valueAttachment",
				}},
				{"Observation", "extension.valueAttachment.contentType", []string{"application/pdf", "text/plain", "application/octet-stream", "image/jpeg"}},
				{"Observation", "extension.valueAttachment.data", []string{"JVBERi0xLjQK", "U2VlbiBpbiBjbGluaWM=", "SGkK"}},
				{"Observation", "extension.valueAttachment.url", []string{"https://pacs.example.nhs.uk/study/1"}},
			},
		},
		{
			"XPN.10 is the name's period when XPN.12 and XPN.13 are empty",
			message("ADT^A04", "PID|1||123^^^^MR||DOE^JANE^^^^^L^^^20200101&20251231~ROE^JO^^^^^L^^^20200101&20251231^^20210101"),
			[]want{
				{"Patient", "name.period.start", []string{"2020-01-01", "2021-01-01"}},
				{"Patient", "name.period.end", []string{"2025-12-31"}},
			},
		},
		{
			"XPN.15, the name the person is called by, is a second name with use nickname",
			message("ADT^A04", "PID|1||123^^^^MR||DOE^JANE"+strings.Repeat("^", 13)+"Janey||19700101|F"),
			[]want{
				{"Patient", "name.given", []string{"JANE", "Janey"}},
				{"Patient", "name.use", []string{"nickname"}},
			},
		},
		{
			"PID-15 and NK1-20 through PrimaryLanguage: ISO 639 codes become BCP-47 tags, other codes stay as sent",
			message("ADT^A04",
				"PID|1||123^^^^MR||DOE^JANE||19700101|F|||||||ARA^^HL70296^en_GB^English UK^ISO639",
				"NK1|1|DOE^JOHN|SPO"+strings.Repeat("|", 17)+"wel^Welsh^HL70296",
				"NK1|2|ROE^JO|FND"+strings.Repeat("|", 17)+"X1^Makaton^L"),
			[]want{
				{"Patient", "communication.language.coding.code", []string{"ar", "en-GB"}},
				{"Patient", "communication.language.coding.system", []string{"urn:ietf:bcp:47", "urn:ietf:bcp:47"}},
				{"Patient", "communication.language.coding.display", []string{"Arabic", "English (Great Britain)"}},
				{"RelatedPerson", "communication.language.coding.code", []string{"cy", "X1"}},
				{"RelatedPerson", "communication.language.coding.display", []string{"Welsh", "Makaton"}},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) { checkRules(t, tc.raw, tc.wants) })
	}
}

func TestRulesSegments(t *testing.T) {
	for _, tc := range []struct {
		name  string
		raw   []byte
		wants []want
	}{
		{
			"DG1-21 D (delete) marks the diagnosis entered-in-error, A does not; DG1-22 is the parent diagnosis it is due to",
			message("ADT^A08", "PID|1||123^^^^MR||DOE^JANE", "PV1|1|I",
				"DG1|1||I21^Acute MI^I10"+strings.Repeat("|", 17)+"DG-2|D|DG-1",
				"DG1|2||E11^Diabetes^I10"+strings.Repeat("|", 17)+"DG-3|A"),
			[]want{
				{"Condition", "verificationStatus.coding.code", []string{"entered-in-error"}},
				{"Condition", "verificationStatus.coding.system", []string{"http://terminology.hl7.org/CodeSystem/condition-ver-status"}},
				{"Condition", "extension.valueReference.identifier.value", []string{"DG-1"}},
			},
		},
		{
			"ACC is the injury incident Observation: ACC-1 when, ACC-8 what, ACC-7 who reported it, ACC-11 and ACC-3 the place, the indicators components",
			message("ADT^A01", "PID|1||123^^^^MR||DOE^JANE", "PV1|1|E",
				"ACC|202603051430|AA^Auto accident^HL70050|M4 junction 10||Y|N|4321^Hart^Ellen|Rear-end collision|Ambulance crew|Y|1 Station Road^^Reading^^RG1 1AA||ACC-77"),
			[]want{
				{"Observation", "code.coding.code", []string{"11374-6"}},
				{"Observation", "code.coding.system", []string{"http://loinc.org"}},
				{"Observation", "status", []string{"final"}},
				{"Observation", "subject", []string{"->Patient"}},
				{"Observation", "encounter", []string{"->Encounter"}},
				{"Observation", "identifier.value", []string{"ACC-77"}},
				{"Observation", "effectiveDateTime", []string{"2026-03-05T14:30:00+00:00"}},
				{"Observation", "valueString", []string{"Rear-end collision"}},
				{"Observation", "performer", []string{"->Practitioner"}},
				{"Practitioner", "name.family", []string{"Hart"}},
				{"Observation", "extension.url", []string{"http://hl7.org/fhir/StructureDefinition/event-location"}},
				{"Observation", "extension.valueReference", []string{"->Location"}},
				{"Location", "name", []string{"M4 junction 10"}},
				{"Location", "address.line", []string{"1 Station Road"}},
				{"Location", "address.postalCode", []string{"RG1 1AA"}},
				{"Observation", "component.code.text", []string{"Accident code", "Accident job related", "Accident death", "Brought in by", "Police notified"}},
				{"Observation", "component.valueCodeableConcept.coding.code", []string{"AA", "Y", "N", "Y"}},
				{"Observation", "component.valueCodeableConcept.coding.system", []string{"http://terminology.hl7.org/CodeSystem/v2-0050", "http://terminology.hl7.org/CodeSystem/v2-0136", "http://terminology.hl7.org/CodeSystem/v2-0136", "http://terminology.hl7.org/CodeSystem/v2-0136"}},
				{"Observation", "component.valueString", []string{"Ambulance crew"}},
			},
		},
		{
			"an ACC with its place described only by ACC-3 names a Location without an address; an indicator outside table 0136 is left out; an ACC with no date, code, place or description is no Observation",
			message("ADT^A01", "PID|1||123^^^^MR||DOE^JANE", "PV1|1|E",
				"ACC|20260305||Car park|||X", "ACC|||||Y"),
			[]want{
				{"Observation", "code.coding.code", []string{"11374-6"}},
				{"Observation", "effectiveDateTime", []string{"2026-03-05"}},
				{"Location", "name", []string{"Car park"}},
				{"Location", "address.line", nil},
				{"Observation", "component.code.text", nil},
			},
		},
		{
			"PDA: the first PDA-1 is the cause of death, a Condition; PDA-3..5 the death certification; PDA-6 and PDA-9 the autopsy and coroner indicators",
			message("ADT^A03", "PID|1||123^^^^MR||DOE^JANE", "PV1|1|I",
				"PDA|C34.9^Lung cancer^I10~J18.9^Pneumonia^I10|ICU^1^2|Y|202605011015|5555^Moss^Ada|N|||Y"),
			[]want{
				{"Condition", "code.coding.code", []string{"C34.9"}},
				{"Condition", "category.text", []string{"Cause of death"}},
				{"Condition", "subject", []string{"->Patient"}},
				{"Procedure", "code.coding.code", []string{"308646001"}},
				{"Procedure", "code.coding.system", []string{"http://snomed.info/sct"}},
				{"Procedure", "status", []string{"completed"}},
				{"Procedure", "performedDateTime", []string{"2026-05-01T10:15:00+01:00"}},
				{"Procedure", "performer.actor", []string{"->Practitioner"}},
				{"Practitioner", "name.family", []string{"Moss"}},
				{"Observation", "code.coding.code", []string{"85699-7", "74497-9"}},
				{"Observation", "valueCodeableConcept.coding.code", []string{"N", "Y"}},
				{"Observation", "subject", []string{"->Patient", "->Patient"}},
			},
		},
		{
			"PDA-7 and PDA-8 are the autopsy Procedure, PDA-6 its status; a death not certified (PDA-3 N) is a certification not done",
			message("ADT^A03", "PID|1||123^^^^MR||DOE^JANE", "PV1|1|I",
				"PDA|||N|||Y|202605021000^202605021130|6666^Stone^Tom"),
			[]want{
				{"Procedure", "code.coding.code", []string{"308646001", "29240004"}},
				{"Procedure", "status", []string{"not-done", "completed"}},
				{"Procedure", "performedPeriod.start", []string{"2026-05-02T10:00:00+01:00"}},
				{"Procedure", "performedPeriod.end", []string{"2026-05-02T11:30:00+01:00"}},
				{"Procedure", "performer.actor", []string{"->Practitioner"}},
				{"Practitioner", "name.family", []string{"Stone"}},
				{"Observation", "code.coding.code", []string{"85699-7"}},
				{"Observation", "valueCodeableConcept.coding.code", []string{"Y"}},
				{"Condition", "code.coding.code", nil},
			},
		},
		{
			"each location of the visit has the status its IG row gives: PV1-3 planned when PV1-2 is P, PV1-6 completed, PV1-11 active, PV1-42 reserved, PV1-43 completed, PV2-1 planned",
			message("ADT^A05", "PID|1||123^^^^MR||DOE^JANE",
				"PV1|1|P|WARD1^^^^^^^^Now|||WARD2^^^^^^^^Before|||||WARD3^^^^^^^^Temporary"+strings.Repeat("|", 31)+"WARD4^^^^^^^^Pending|WARD5^^^^^^^^Earlier temporary",
				"PV2|WARD6^^^^^^^^Prior pending"),
			[]want{
				{"Encounter", "location.status", []string{"planned", "completed", "active", "reserved", "completed", "planned"}},
				{"Encounter", "location.location", []string{"->Location", "->Location", "->Location", "->Location", "->Location", "->Location"}},
				{"Location", "description", []string{"Now", "Before", "Temporary", "Pending", "Earlier temporary", "Prior pending"}},
			},
		},
		{
			"PV1-3 of a patient who is not pre-admitted is active; a location not sent has no status",
			message("ADT^A01", "PID|1||123^^^^MR||DOE^JANE", "PV1|1|I|WARD1^BAY2^BED3"),
			[]want{
				{"Encounter", "location.status", []string{"active"}},
				{"Location", "name", []string{"BED3", "BAY2", "WARD1"}},
			},
		},
		{
			"one place is one Location: a bay and ward named above two beds and the ward named alone are the same resources; the ward of another facility is another",
			message("ADT^A01", "PID|1||123^^^^MR||DOE^JANE",
				"PV1|1|I|WARD1^BAY2^BED3|||WARD1^BAY2^BED4|||||WARD1"+strings.Repeat("|", 31)+"WARD1^^^RX2"),
			[]want{
				{"Location", "name", []string{"BED3", "BAY2", "WARD1", "BED4", "WARD1", "RX2"}},
				{"Location", "partOf", []string{"->Location", "->Location", "->Location", "->Location"}},
			},
		},
		{
			"one clinician is one Practitioner, by XCN ID, authority and family name: a prefix more is the same one; a shared placeholder ID with another family name, or a name without an ID, is another",
			message("ADT^A01", "PID|1||123^^^^MR||DOE^JANE",
				"PV1|1|I|||||C234^NAKAMURA^KENJI^^^DR^^^NHS|C234^NAKAMURA^KENJI^^^^^^NHS|C9999998^JONES~C9999998^SMITH~^BROWN^ANN~^BROWN^ANNE"),
			[]want{
				{"Practitioner", "name.family", []string{"NAKAMURA", "JONES", "SMITH", "BROWN", "BROWN"}},
				{"Practitioner", "name.given", []string{"KENJI", "ANN", "ANNE"}},
				{"Practitioner", "name.prefix", []string{"DR"}},
				{"Encounter", "participant.individual", []string{"->Practitioner", "->Practitioner", "->Practitioner", "->Practitioner", "->Practitioner", "->Practitioner"}},
			},
		},
		{
			"two PLs that name no level, only a PL.9 description, are two Locations, not one for want of anything to tell them apart",
			message("ADT^A02", "PID|1||123^^^^MR||DOE^JANE", "PV1|1|I|^^^^^^^^Ward A|||^^^^^^^^Ward B"),
			[]want{
				{"Location", "description", []string{"Ward A", "Ward B"}},
				{"Encounter", "location.location", []string{"->Location", "->Location"}},
			},
		},
		{
			"PL.10 is the comprehensive identifier of the Location the PL names, PL.11 its assigner; PL.11 without PL.10 writes nothing",
			message("ADT^A01", "PID|1||123^^^^MR||DOE^JANE", "PV1|1|I|WARD1^BAY2^BED3^^^^^^^LOC-99&&1.2.3&ISO^RX1|||WARD4^^^^^^^^^^RX1"),
			[]want{
				{"Location", "name", []string{"BED3", "BAY2", "WARD1", "WARD4"}},
				{"Location", "identifier.value", []string{"LOC-99"}},
				{"Location", "identifier.system", []string{"urn:oid:1.2.3"}},
				{"Location", "identifier.assigner", []string{"->Organization"}},
			},
		},
		{
			"PV1-37 is the discharge destination, a Location of DLD.1's type; PV2-11 the length of stay in days; PV2-38 the mode of arrival",
			message("ADT^A03", "PID|1||123^^^^MR||DOE^JANE", "PV1|1|I"+strings.Repeat("|", 35)+"NH&Nursing home&L",
				"PV2"+strings.Repeat("|", 11)+"4"+strings.Repeat("|", 27)+"A^Ambulance^L"),
			[]want{
				{"Encounter", "hospitalization.destination", []string{"->Location"}},
				{"Location", "type.coding.code", []string{"NH"}},
				{"Location", "type.coding.display", []string{"Nursing home"}},
				{"Encounter", "length.value", []string{"4"}},
				{"Encounter", "length.code", []string{"d"}},
				{"Encounter", "length.system", []string{"http://unitsofmeasure.org"}},
				{"Encounter", "extension.valueCoding.code", []string{"A"}},
			},
		},
		{
			"PV2-8 and PV2-9, the expected admission and discharge, are the R5 planned dates, not the period PV1-44 starts",
			message("ADT^A05", "PID|1||123^^^^MR||DOE^JANE", "PV1|1|P"+strings.Repeat("|", 42)+"202703010900",
				segment("PV2", map[int]string{8: "202703020800", 9: "20270305"})),
			[]want{
				{"Encounter", "period.start", []string{"2027-03-01T09:00:00+00:00"}},
				{"Encounter", "period.end", nil},
				{"Encounter", "extension.url", []string{
					"http://hl7.org/fhir/5.0/StructureDefinition/extension-Encounter.plannedStartDate",
					"http://hl7.org/fhir/5.0/StructureDefinition/extension-Encounter.plannedEndDate",
				}},
				{"Encounter", "extension.valueDateTime", []string{"2027-03-02T08:00:00+00:00", "2027-03-05"}},
			},
		},
		{
			"PID-28 nationality, PID-39 citizenship and PD1-14 place of worship are the Patient extensions the rows name; MSH-19 the message's language",
			[]byte(strings.Replace(string(message("ADT^A04", "PID|1||123^^^^MR||DOE^JANE"+strings.Repeat("|", 23)+"GB^United Kingdom^ISO3166_1"+strings.Repeat("|", 11)+"IE^Ireland^ISO3166_1",
				"PD1"+strings.Repeat("|", 14)+"St Mary's Church")), "|2.5.1", "|2.5.1"+strings.Repeat("|", 7)+"en-GB", 1)),
			[]want{
				{"Patient", "extension.url", []string{"http://hl7.org/fhir/StructureDefinition/patient-nationality", "http://hl7.org/fhir/StructureDefinition/patient-citizenship", "http://hl7.org/fhir/StructureDefinition/patient-congregation"}},
				{"Patient", "extension.extension.valueCodeableConcept.coding.code", []string{"GB", "IE"}},
				{"Patient", "extension.valueString", []string{"St Mary's Church"}},
				{"MessageHeader", "language", []string{"en-GB"}},
			},
		},
		{
			"PID-21 is the mother, a RelatedPerson of the patient (CX[RelatedPerson-Mother])",
			message("ADT^A04", "PID|1||123^^^^MR||DOE^JANE||19700101|F|||||||||||||1212121^^^NTH&rt23&HCD^AND^^20200101"),
			[]want{
				{"RelatedPerson", "identifier.value", []string{"1212121"}},
				{"RelatedPerson", "identifier.type.coding.code", []string{"AND"}},
				{"RelatedPerson", "identifier.period.start", []string{"2020-01-01"}},
				{"RelatedPerson", "identifier.assigner", []string{"->Organization"}},
				{"RelatedPerson", "relationship.coding.code", []string{"MTH"}},
				{"RelatedPerson", "relationship.coding.system", []string{"http://terminology.hl7.org/CodeSystem/v3-RoleCode"}},
				{"RelatedPerson", "patient", []string{"->Patient"}},
			},
		},
		{
			"EVN is a Provenance of the message: EVN-5 the agent, EVN-7 the location, EVN-2 recorded",
			message("ADT^A04", "EVN|A04|202601011200+0000||01^Patient request^HL70062|C08^Woolfson^Kathleen^^^Dr^^^DRNBR&1.2.3&ISO^L^^^ANON|20260101115500+0000|Cona_Health^1.3.6.1.4.1.44750.1.4^ISO",
				"PID|1||123^^^^MR||DOE^JANE||19700101|F"),
			// The first Provenance is the message's source (MSH-7, MSH-4).
			[]want{
				{"Provenance", "recorded", []string{"2026-01-01T12:00:00+00:00", "2026-01-01T12:00:00+00:00"}},
				{"Provenance", "occurredDateTime", []string{"2026-01-01T12:00:00+00:00", "2026-01-01T11:55:00+00:00"}},
				{"Provenance", "target", []string{"->MessageHeader", "->MessageHeader"}},
				{"Provenance", "agent.who", []string{"->Organization", "->Practitioner"}},
				{"Provenance", "activity.coding.display", []string{"message - ADT^A04", "event - :ADT^A04"}},
				{"Provenance", "location", []string{"->Location"}},
				{"Provenance", "reason.coding.code", []string{"01"}},
				{"Practitioner", "identifier.value", []string{"C08"}},
				{"Practitioner", "identifier.type.coding.code", []string{"ANON"}},
				{"Location", "identifier.value", []string{"urn:oid:1.3.6.1.4.1.44750.1.4"}},
				{"Location", "physicalType.coding.code", []string{"si"}},
			},
		},
		{
			"EVN without EVN-5: the sending facility (MSH-4) is the agent, as it is of the message's source",
			message("ADT^A04", "EVN|A04|202601011200", "PID|1||123^^^^MR||DOE^JANE||19700101|F"),
			[]want{{"Provenance", "agent.who", []string{"->Organization", "->Organization"}}},
		},
		{
			"EVN-2 to the day is not an instant: no Provenance",
			message("ADT^A04", "EVN|A04|20260101|||C08^Woolfson", "PID|1||123^^^^MR||DOE^JANE||19700101|F"),
			[]want{
				{"Provenance", "activity.coding.display", []string{"message - ADT^A04"}},
				{"Practitioner", "identifier.value", nil},
			},
		},
		{
			"MSH is a Provenance of the message's source: MSH-22 the agent over MSH-4, MSH-3 the source Device when MSH-24 is valued",
			[]byte("MSH|^~\\&|LABAPP^2.16.840.1.1^ISO|FAC|RAPP|RFAC|202601011200+0000||ORU^R01^ORU_R01|MSG1|P|2.8" +
				"||||||||||Trust^L^^^^NHS&2.16.840.1.113883.2.1.4.3&ISO^XX^^^RXH||lab.example.nhs.uk\r" +
				"PID|1||123^^^^MR||DOE^JANE||19700101|F"),
			[]want{
				{"Provenance", "recorded", []string{"2026-01-01T12:00:00+00:00"}},
				{"Provenance", "activity.coding.display", []string{"message - ORU^R01^ORU_R01"}},
				{"Provenance", "agent.who", []string{"->Organization"}},
				{"Provenance", "agent.type.coding.code", []string{"author"}},
				{"Provenance", "entity.what", []string{"->Device"}},
				{"Provenance", "entity.role", []string{"source"}},
				{"Provenance", "target", []string{"->MessageHeader"}},
				{"Device", "identifier.value", []string{"LABAPP", "urn:oid:2.16.840.1.1"}},
				{"Organization", "name", []string{"FAC", "RFAC", "Trust", "NHS"}}, // NHS: XON.6, the assigner
			},
		},
		{
			"MSH without MSH-24: the source Provenance names no Device; without MSH-4 or MSH-22, no Provenance",
			[]byte("MSH|^~\\&|APP||RAPP||202601011200+0000||ORU^R01|MSG1|P|2.5.1\rPID|1||123^^^^MR||DOE^JANE||19700101|F"),
			[]want{{"Provenance", "recorded", nil}, {"Device", "identifier.value", nil}},
		},
		{
			"ADT OBX-23..25: the performing organisation and its medical director perform the observation",
			message("ADT^A08", "PID|1||123^^^^MR||DOE^JANE||19700101|F",
				"OBX|1|NM|8867-4^Heart rate^LN||60|/min|||||F||||||||||||FairOaks Hospital|Research Park^^Fairfax^VA^22031|MD-25^Atchinson^Christopher"),
			[]want{
				{"Observation", "performer", []string{"->PractitionerRole"}},
				{"PractitionerRole", "code.coding.code", []string{"MDIR"}},
				{"PractitionerRole", "organization", []string{"->Organization"}},
				{"Practitioner", "name.family", []string{"Atchinson"}},
				{"Organization", "name", []string{"FAC", "RFAC", "FairOaks Hospital"}},
				{"Organization", "address.city", []string{"Fairfax"}},
			},
		},
		{
			"IN1-5 is the address of the payor named in IN1-4 (or IN1-3), each IN1 its own; IN1-3, 6 and 7 its id, contact and telephone",
			message("ADT^A08", "PID|1||123^^^^MR||DOE^JANE||19700101|F",
				"IN1|1|BAV^Blue Advantage|IC-1.31^^^^NIIP|Blue Cross|1979 MILKY WAY^^VERONA^WI^53593|Roth^Rony^A^III^Dr.~Other^Olive|(555)555-5555^WPN^PH",
				"IN1|2|GOLD^Gold Plan|IC-2^^^^NIIP||2 High St^^LEEDS^^LS1 1AA|Grey^Gail|0113 496 0000^WPN^PH"),
			[]want{
				{"Coverage", "payor", []string{"->Organization", "->Organization"}},
				{"Organization", "address.city", []string{"VERONA", "LEEDS"}},
				{"Organization", "identifier.value", []string{"FAC", "RFAC", "IC-1.31", "IC-2"}},
				{"Organization", "identifier.type.coding.code", []string{"NIIP", "NIIP"}},
				// Organization.contact.name is 0..1: the first contact person.
				{"Organization", "contact.name.family", []string{"Roth", "Grey"}},
				{"Organization", "telecom.value", []string{"(555)555-5555", "0113 496 0000"}},
			},
		},
		{
			"MSH-22, the sending responsible organisation, is the message's responsible",
			[]byte("MSH|^~\\&|APP|FAC|RAPP|RFAC|20260101120000||ADT^A04|MSG1|P|2.5.1|||||GBR||en|||GHH Inc.^^^^^^XX^^^22\rPID|1||123^^^^MR||DOE^JANE"),
			[]want{
				{"MessageHeader", "responsible", []string{"->Organization"}},
				{"Organization", "identifier.value", []string{"FAC", "RFAC", "22"}},
				{"Organization", "identifier.type.coding.code", []string{"XX"}},
			},
		},
		{
			"NK1-3 through the Relationship concept map, the v2 coding kept beside it; an unmapped code stays as sent",
			message("ADT^A04", "PID|1||123^^^^MR||DOE^JANE||19700101|F",
				"NK1|1|DOE^JOHN|EMC^Emergency^HL70063^CHD^Child^HL70063",
				"NK1|2|ROE^RAY|ZZZ^Local^L"),
			[]want{
				{"RelatedPerson", "relationship.coding.code", []string{"C", "EMC", "CHILD", "CHD", "ZZZ"}},
				{"RelatedPerson", "relationship.coding.system", []string{
					"http://terminology.hl7.org/CodeSystem/v2-0131", "http://terminology.hl7.org/CodeSystem/v2-0063",
					"http://terminology.hl7.org/CodeSystem/v3-RoleCode", "http://terminology.hl7.org/CodeSystem/v2-0063"}},
				{"Patient", "contact.relationship.coding.code", []string{"C", "EMC", "CHILD", "CHD", "ZZZ"}},
			},
		},
		{
			"ORU NK1 is a RelatedPerson and a contact of the patient",
			message("ORU^R01", "PID|1||123^^^^MR||DOE^JANE||19700101|F", "NK1|1|DOE^JOHN|SPO^Spouse^HL70063|1 High St^^LEEDS"),
			[]want{
				{"RelatedPerson", "relationship.coding.code", []string{"SPS", "SPO"}},
				{"Patient", "contact.name.family", []string{"DOE"}},
				{"Patient", "contact.address.city", []string{"LEEDS"}},
			},
		},
		{
			"IN1-36, the policy number, is an identifier of its own beside IN1-2",
			message("ADT^A08", "PID|1||123^^^^MR||DOE^JANE||19700101|F",
				"IN1|1|BAV^Blue Advantage|IC-1|Blue Cross"+strings.Repeat("|", 32)+"PN-145"),
			[]want{{"Coverage", "identifier.value", []string{"BAV", "PN-145"}}},
		},
		{
			"XON.7 is the identifier's type even when the organisation has no id number",
			message("ADT^A08", "PID|1||123^^^^MR||DOE^JANE||19700101|F",
				"ROL|1|AD|PP^Primary Care Provider^HL70443|12377H87^Smith^John||||||||||Good Health Hospital^L^^^^CMS^XX^^A"),
			[]want{
				{"Organization", "name", []string{"FAC", "RFAC", "Good Health Hospital"}},
				{"Organization", "identifier.type.coding.code", []string{"XX"}},
			},
		},
		{
			"ORU NTE in a result's group is a note on that result, its author a Practitioner (NTE[Observation])",
			message("ORU^R01", "PID|1||123^^^^MR||DOE^JANE||19700101|F", "OBR|1|||24725-4^CT Head^LN",
				"NTE|1||ignored: the order's NTE has no row in ORU_R01",
				"OBX|1|ST|8867-4^Heart rate^LN||60||||||F", "NTE|1||No antibodies detected||MLEE^ATTEND^AARON^A|202010101500+0000"),
			[]want{
				{"Observation", "note.text", []string{"No antibodies detected"}},
				{"Observation", "note.authorReference", []string{"->Practitioner"}},
				{"Observation", "note.time", []string{"2020-10-10T15:00:00+00:00"}},
				{"ServiceRequest", "note.text", nil},
				{"Practitioner", "name.family", []string{"ATTEND"}},
			},
		},
		{
			"OML NTE after the OBR is a note on the order (NTE[ServiceRequest]); without NTE-3 there is no note",
			message("OML^O21", "PID|1||123^^^^MR||DOE^JANE||19700101|F", "ORC|NW|1101", "OBR|1|1101||24725-4^CT Head^LN",
				"NTE|1||Fasting sample", "NTE|2||||MLEE^ATTEND"),
			[]want{
				{"ServiceRequest", "note.text", []string{"Fasting sample"}},
				{"Practitioner", "name.family", nil},
			},
		},
		{
			"ADT PRT in the patient's group: PP is the general practitioner, AD a CareTeam; after PV1 it has no row",
			message("BAR^P01", "PID|1||123^^^^MR||DOE^JANE||19700101|F", "PD1|S",
				"PRT|1|AD||AD^Admitting Provider^HL70912|10535^van Beethoven^Ludwig||1^Hospital^HL70406|Good Health Hospital",
				"PRT|2|AD||PP^Primary Care Provider^HL70912|2222^Jones^Ann",
				"PV1|1|I", "PRT|3|AD||AD^Admitting Provider^HL70912|3333^Ignored^Ian"),
			[]want{
				{"CareTeam", "subject", []string{"->Patient", "->Patient"}},
				{"CareTeam", "participant.role.coding.code", []string{"AD", "PP"}},
				{"CareTeam", "participant.member", []string{"->Practitioner", "->Practitioner"}},
				{"CareTeam", "participant.onBehalfOf", []string{"->Organization"}},
				{"Patient", "generalPractitioner", []string{"->Practitioner"}},
				{"Practitioner", "name.family", []string{"van Beethoven", "Jones"}},
			},
		},
		{
			"NK1-40 and NK1-41 are telecoms of the RelatedPerson",
			message("ADT^A04", "PID|1||123^^^^MR||DOE^JANE||19700101|F",
				"NK1|1|DOE^JOHN|SPO^Spouse^HL70063"+strings.Repeat("|", 37)+"777^WPN^PH|444444^PRN^PH"),
			[]want{{"RelatedPerson", "telecom.value", []string{"777", "444444"}}},
		},
		{
			"PR1: a procedure's status is unknown when the message does not make it clear (PR1 row 0)",
			message("ADT^A01", "PID|1||123^^^^MR||DOE^JANE||19700101|F", "PV1|1|I",
				"PR1|1||76164006^Biopsy of colon^SCT||200501251140+0100"),
			[]want{
				{"Procedure", "status", []string{"unknown"}},
				{"Procedure", "code.coding.code", []string{"76164006"}},
				{"Procedure", "subject", []string{"->Patient"}},
			},
		},
		{
			"a repeating OBX-5 is one component per repetition, however many, each with the OBX-3 code, OBX-6 unit and OBX-7 range",
			message("ORU^R01", "PID|1||123^^^^MR||DOE^JANE", "OBR|1|P1|F1|BP^Obs^L",
				"OBX|1|NM|8462-4^Diastolic BP^LN||71~73~75~77~79~81|mm[Hg]^mmHg^UCUM|60-90|||F"),
			[]want{
				{"Observation", "component.valueQuantity.value", []string{"71", "73", "75", "77", "79", "81"}},
				{"Observation", "component.code.coding.code", []string{"8462-4", "8462-4", "8462-4", "8462-4", "8462-4", "8462-4"}},
				{"Observation", "component.valueQuantity.code", []string{"mm[Hg]", "mm[Hg]", "mm[Hg]", "mm[Hg]", "mm[Hg]", "mm[Hg]"}},
				{"Observation", "component.referenceRange.text", []string{"60-90", "60-90", "60-90", "60-90", "60-90", "60-90"}},
				{"Observation", "valueQuantity.value", nil},
			},
		},
		{
			"a repeating OBX-5 without OBX-3: each component still has a code (it is 1..1) and its own value",
			message("ORU^R01", "PID|1||123^^^^MR||DOE^JANE", "OBR|1|P1|F1|BP^Obs^L",
				"OBX|1|ST|||first~second||||||F"),
			[]want{
				{"Observation", "component.valueString", []string{"first", "second"}},
				{"Observation", "component.code.text", []string{"Unknown observation", "Unknown observation"}},
			},
		},
		{
			"PV1-2 outside E, I, O and P is its own v2-0004 code (PatientClass[EncounterClass])",
			message("ADT^A01", "PID|1||123^^^^MR||DOE^JANE", "PV1|1|R"),
			[]want{
				{"Encounter", "class.code", []string{"R"}},
				{"Encounter", "class.system", []string{"http://terminology.hl7.org/CodeSystem/v2-0004"}},
				{"Encounter", "class.display", []string{"Recurring patient"}},
				{"Encounter", "status", []string{"in-progress"}},
			},
		},
		{
			"a local PV1-2 outside table 0004 leaves class unknown, not empty: it is 1..1",
			message("ADT^A01", "PID|1||123^^^^MR||DOE^JANE", "PV1|1|D"),
			[]want{
				{"Encounter", "class.code", []string{"UNK"}},
				{"Encounter", "class.system", []string{"http://terminology.hl7.org/CodeSystem/v3-NullFlavor"}},
				{"Encounter", "status", []string{"unknown"}},
			},
		},
		{
			"PV1-19 whose CX.5 already says VN has that one coding, not two",
			message("ADT^A03", "PID|1||123^^^^MR||DOE^JANE||19700101|F",
				"PV1|1|I"+strings.Repeat("|", 17)+"RX1V00045678^^^RX1^VN"),
			[]want{
				{"Encounter", "identifier.value", []string{"RX1V00045678"}},
				{"Encounter", "identifier.type.coding.code", []string{"VN"}},
				{"Encounter", "identifier.type.coding.system", []string{"http://terminology.hl7.org/CodeSystem/v2-0203"}},
			},
		},
		{
			"PV1-19 is a visit number (VN) beside its CX.5 type; PV2-25 through the EncounterPriority concept map",
			message("ADT^A04", "PID|1||123^^^^MR||DOE^JANE||19700101|F",
				"PV1|1|I"+strings.Repeat("|", 17)+"40007716^^^AccMng^AM",
				"PV2"+strings.Repeat("|", 25)+"2^Urgent^HL70217^3^^^V1.2"),
			[]want{
				{"Encounter", "identifier.type.coding.code", []string{"AM", "VN"}},
				{"Encounter", "priority.coding.code", []string{"UR", "2", "EL", "3"}},
				{"Encounter", "priority.coding.system", []string{"http://terminology.hl7.org/CodeSystem/v3-ActPriority",
					"http://terminology.hl7.org/CodeSystem/v2-0217", "http://terminology.hl7.org/CodeSystem/v3-ActPriority"}},
			},
		},
		{
			"Encounter.status: PV1-45 finished, else PV1-2 through PatientClass[EncounterStatus]",
			message("ADT^A08", "PID|1||123^^^^MR||DOE^JANE||19700101|F", "PV1|1|E"+strings.Repeat("|", 43)+"202601021200"),
			[]want{{"Encounter", "status", []string{"finished"}}},
		},
		{
			"Encounter.status: an emergency visit in progress",
			message("ADT^A04", "PID|1||123^^^^MR||DOE^JANE||19700101|F", "PV1|1|E"),
			[]want{{"Encounter", "status", []string{"in-progress"}}},
		},
		{
			"Encounter.status: a preadmission is planned",
			message("ADT^A05", "PID|1||123^^^^MR||DOE^JANE||19700101|F", "PV1|1|P"),
			[]want{{"Encounter", "status", []string{"planned"}}},
		},
		{
			"Encounter.status: ADT_A11 cancels the admission (MSH[Encounter], Event[EncounterStatus])",
			message("ADT^A11", "PID|1||123^^^^MR||DOE^JANE||19700101|F", "PV1|1|I"),
			[]want{{"Encounter", "status", []string{"cancelled"}}},
		},
		{
			"ORM IN1: the insured who is not the patient is the Coverage's subscriber, a RelatedPerson (IN1-16, IN1-17)",
			message("ORM^O01", "PID|1||123^^^^MR||DOE^JANE||19700101|F",
				"IN1|1|BAV^Blue Advantage|IC-1|Blue Cross"+strings.Repeat("|", 12)+"DOE^JOHN|SPO^Spouse^HL70063|19750228"),
			[]want{
				{"Coverage", "subscriber", []string{"->RelatedPerson"}},
				{"Coverage", "beneficiary", []string{"->Patient"}},
				{"RelatedPerson", "name.family", []string{"DOE"}},
				{"RelatedPerson", "birthDate", []string{"1975-02-28"}},
				{"RelatedPerson", "relationship.coding.code", []string{"SPS", "SPO"}},
			},
		},
		{
			"FT1-24, who entered the charge, is its enterer; FT1-20 who performed it",
			message("DFT^P03", "PID|1||123^^^^MR||DOE^JANE||19700101|F", "PV1|1|O",
				"FT1|1|12345||20191122|20191122|CG|71045^Xray exam chest^C4|||2"+strings.Repeat("|", 10)+
					"9941339108^Smith^Adam||||9941339116^Mellie^John"),
			[]want{
				{"ChargeItem", "performer.actor", []string{"->Practitioner"}},
				{"ChargeItem", "enterer", []string{"->Practitioner"}},
				{"Practitioner", "name.family", []string{"Smith", "Mellie"}},
			},
		},
		{
			"FT1-25, the procedure charged for, is a Procedure of the patient that the charge's service names",
			message("DFT^P03", "PID|1||123^^^^MR||DOE^JANE||19700101|F", "PV1|1|O",
				"FT1|1|12345||20191122|20191122|CG|71045^Xray exam chest^C4"+strings.Repeat("|", 18)+"71045^Xray exam chest^C4",
				"FT1|2|12346||20191122|20191122|CG|99011^Visit^C4"),
			[]want{
				{"ChargeItem", "service", []string{"->Procedure"}},
				{"Procedure", "code.coding.code", []string{"71045"}},
				{"Procedure", "status", []string{"unknown"}},
				{"Procedure", "subject", []string{"->Patient"}},
				{"Procedure", "encounter", []string{"->Encounter"}},
			},
		},
		{
			"FT1-13 the department charged, FT1-32/33 the performing and ordering facilities, FT1-34/35 the device charged for",
			message("DFT^P03", "PID|1||123^^^^MR||DOE^JANE||19700101|F", "PV1|1|O",
				"FT1|1|12345||20191122|20191122|CG|71045^Xray exam chest^C4||||||RAD-1^Radiology^L"+strings.Repeat("|", 19)+
					"Good Health Hospital^L^4544|GOOD HEALTH HOSPITAL^^^^^^^^^123456789|Item-12345^^L|Model-12345"),
			[]want{
				{"ChargeItem", "costCenter", []string{"->Organization"}},
				{"ChargeItem", "performingOrganization", []string{"->Organization"}},
				{"ChargeItem", "requestingOrganization", []string{"->Organization"}},
				{"ChargeItem", "productReference", []string{"->Device"}},
				{"Organization", "name", []string{"FAC", "RFAC", "Radiology", "Good Health Hospital", "GOOD HEALTH HOSPITAL"}},
				{"Organization", "identifier.value", []string{"FAC", "RFAC", "RAD-1", "4544", "123456789"}},
				{"Device", "identifier.value", []string{"Item-12345"}},
				{"Device", "modelNumber", []string{"Model-12345"}},
			},
		},
		{
			"IN1-3 alone names the payor, with its contact (IN1-6) and telephone (IN1-7); IN1-37 the deductible",
			message("ADT^A08", "PID|1||123^^^^MR||DOE^JANE||19700101|F",
				"IN1|1|BAV^Blue Advantage|IC-9||1 Main St^^YORK|Roth^Rony|(555)555-5555^WPN^PH"+strings.Repeat("|", 30)+"150&GBP^DC"),
			[]want{
				{"Coverage", "payor", []string{"->Organization"}},
				{"Organization", "identifier.value", []string{"FAC", "RFAC", "IC-9"}},
				{"Organization", "address.city", []string{"YORK"}},
				{"Organization", "contact.name.family", []string{"Roth"}},
				{"Organization", "telecom.value", []string{"(555)555-5555"}},
				{"Coverage", "costToBeneficiary.valueMoney.value", []string{"150"}},
				{"Coverage", "costToBeneficiary.valueMoney.currency", []string{"GBP"}},
				{"Coverage", "costToBeneficiary.type.coding.code", []string{"deductible"}},
			},
		},
		{
			"ROL-9, the provider type, is the role's specialty",
			message("ADT^A08", "PID|1||123^^^^MR||DOE^JANE||19700101|F",
				"ROL|1|AD|PP^Primary Care Provider^HL70443|111^Gp^Gill|||||408443003^General practice^SCT"),
			[]want{{"PractitionerRole", "specialty.coding.code", []string{"408443003"}}},
		},
		{
			"PID-6, 17, 23 and 26 as the IG's Patient extensions; PID-12 as a district, on the address or an address of its own",
			message("ADT^A08", "PID|1||123^^^^MR||DOE^JANE||19700101|F|||1 Main St^^YORK|NYK"+strings.Repeat("|", 5)+"C^Christian^HL70006",
				"PID|2||456^^^^MR||ROE^RAY|SMITH^ANN|19700101|M|||1 Main St^^YORK^^^^^^&West Yorkshire|NYK"+strings.Repeat("|", 11)+"Leeds General"+strings.Repeat("|", 3)+"GBR^United Kingdom^ISO3166_1"),
			[]want{
				{"Patient", "address.district", []string{"NYK", "West Yorkshire", "NYK"}},
				{"Patient", "address.city", []string{"YORK", "YORK"}},
				{"Patient", "extension.url", []string{
					"http://hl7.org/fhir/StructureDefinition/patient-religion",
					"http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName",
					"http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
					"http://hl7.org/fhir/StructureDefinition/patient-citizenship"}},
				{"Patient", "extension.valueCodeableConcept.coding.code", []string{"C"}},
				{"Patient", "extension.valueString", []string{"SMITH"}},
				{"Patient", "extension.valueAddress.text", []string{"Leeds General"}},
				{"Patient", "extension.extension.url", []string{"code"}},
				{"Patient", "extension.extension.valueCodeableConcept.coding.code", []string{"GBR"}},
			},
		},
		{
			"REF PRD: each provider's role (PRD-1), place, organisation and period; the referred-to role performs the referral",
			message("REF^I12", "RF1|P^Pending^HL70283|R^Routine^HL70280|Med^Medical^HL70281||O^Outpatient^HL70284|226839^EPIC|20220125",
				"PRD|RP^Referring Provider^HL70286|POWELL^ROBERT|||||PLN1001^SL|20200112|20240112|GOOD HEALTH HOSPITAL",
				"PRD|RT^Referred to Provider^HL70286|McWILLIAMS^PAUL||^^^GI FACILITY",
				"PID|1||123^^^^MR||DOE^JANE||19700101|F"),
			[]want{
				{"PractitionerRole", "code.coding.code", []string{"RP", "RT"}},
				{"PractitionerRole", "practitioner", []string{"->Practitioner", "->Practitioner"}},
				{"PractitionerRole", "period.start", []string{"2020-01-12"}},
				{"PractitionerRole", "period.end", []string{"2024-01-12"}},
				{"PractitionerRole", "organization", []string{"->Organization"}},
				{"PractitionerRole", "location", []string{"->Location"}},
				{"ServiceRequest", "requester", []string{"->Practitioner"}},
				{"ServiceRequest", "performer", []string{"->Practitioner", "->PractitionerRole"}},
			},
		},
		{
			"OBX-21, the observation instance identifier, is typed FILL",
			message("ORU^R01", "PID|1||123^^^^MR||DOE^JANE||19700101|F", "OBR|1|||24725-4^CT Head^LN",
				"OBX|1|ST|8867-4^Heart rate^LN||60||||||F"+strings.Repeat("|", 10)+"EI21^OII"),
			[]want{
				{"Observation", "identifier.value", []string{"EI21"}},
				{"Observation", "identifier.type.coding.code", []string{"FILL"}},
			},
		},
		{
			"SPM-2: the placer's specimen id is typed PGN, the filler's FGN (EIP[Identifier-PlacerAssignedIdentifier], -FillerAssignedIdentifier)",
			message("ORU^R01", "PID|1||123^^^^MR||DOE^JANE||19700101|F", "OBR|1|||24725-4^CT Head^LN",
				"SPM|1|PL-1&LAB^FL-2&LAB||BLD^Blood^HL70487"),
			[]want{
				{"Specimen", "identifier.value", []string{"PL-1", "FL-2"}},
				{"Specimen", "identifier.type.coding.code", []string{"PGN", "FGN"}},
			},
		},
		{
			"ORU OBR[Specimen]: the OBR's specimen fields are one Specimen, of its report and of every result of that OBR (ORU_R01 4.2.2)",
			message("ORU^R01", "PID|1||123^^^^MR||DOE^JANE||19700101|F",
				"OBR|1|PL-1||2951-2^Sodium^LN|||202601010900|202601010930|5^mL&millilitre&UCUM|C1^Collector^Carl||||202601011000|"+
					"BLD&Blood&HL70487^EDTA&EDTA&HL70371^Venous draw^LA&Left arm&HL70163^^F&Frozen&HL70493"+strings.Repeat("|", 24)+
					"Hemolyzed~HEM^Hemolyzed^L",
				"OBX|1|NM|2951-2^Sodium^LN||140||||||F", "NTE|1||Repeated", "OBX|2|NM|2823-3^Potassium^LN||4.1||||||F"),
			[]want{
				{"Specimen", "collection.collectedPeriod.start", []string{"2026-01-01T09:00:00+00:00"}},
				{"Specimen", "collection.collectedPeriod.end", []string{"2026-01-01T09:30:00+00:00"}},
				{"Specimen", "collection.collectedDateTime", nil},
				{"Specimen", "collection.quantity.value", []string{"5"}},
				{"Specimen", "collection.quantity.code", []string{"mL"}},
				{"Specimen", "collection.collector", []string{"->Practitioner"}},
				{"Specimen", "receivedTime", []string{"2026-01-01T10:00:00+00:00"}},
				{"Specimen", "type.coding.code", []string{"BLD"}},
				{"Specimen", "container.additiveCodeableConcept.coding.code", []string{"EDTA"}},
				{"Specimen", "collection.bodySite.coding.code", []string{"LA"}},
				{"Specimen", "condition.coding.code", []string{"F"}},
				// SPS.3, then each OBR-39 comment whole (CWE[Annotation]).
				{"Specimen", "note.text", []string{"Venous draw", "Hemolyzed", "HEM^Hemolyzed^L"}},
				{"Specimen", "subject", []string{"->Patient"}},
				// No SPM-30 says the placer number is an accession number.
				{"Specimen", "accessionIdentifier.value", nil},
				{"Practitioner", "name.family", []string{"Collector"}},
				{"DiagnosticReport", "specimen", []string{"->Specimen"}},
				{"Observation", "specimen", []string{"->Specimen", "->Specimen"}},
			},
		},
		{
			"ORU OBR[Specimen]: an OBR without specimen fields is no Specimen; OBR-2 is the accession when SPM-30 gives it; the report also lists the SPM",
			message("ORU^R01", "PID|1||123^^^^MR||DOE^JANE||19700101|F",
				"OBR|1|PL-1||2951-2^Sodium^LN", "OBX|1|NM|2951-2^Sodium^LN||140||||||F",
				"OBR|2|PL-2||2823-3^Potassium^LN", "OBX|1|NM|2823-3^Potassium^LN||4.1||||||F",
				"SPM|1|S1||BLD^Blood^HL70487"+strings.Repeat("|", 26)+"PL-2", "OBX|1|NM|8310-5^Body temperature^LN||37||||||F"),
			[]want{
				// The OBR's, then the SPM's.
				{"Specimen", "accessionIdentifier.value", []string{"PL-2", "PL-2"}},
				{"Specimen", "identifier.value", []string{"S1"}},
				{"DiagnosticReport", "specimen", []string{"->Specimen", "->Specimen"}},
				// Only the second OBR's result: not the first OBR's, whose OBR
				// built none, nor the OBX of the SPM's group.
				{"Observation", "specimen", []string{"->Specimen"}},
			},
		},
		{
			"IN1-10, the insured's group employer ID, identifies the employer IN1-11 names, the policy holder",
			message("ADT^A08", "PID|1||123^^^^MR||DOE^JANE||19700101|F",
				"IN1|1|BAV^Blue Advantage|IC-1|Blue Cross||||||EMP-77^^^^EN|Acme Ltd^L^^^^^XX^^^A1"+strings.Repeat("|", 33)+"2000 MILKY WAY^^VERONA^WI^53593",
				"IN1|2|GOLD^Gold Plan|IC-2|Gold Insurer||||||EMP-99^^^^EN"),
			[]want{
				{"Coverage", "policyHolder", []string{"->Organization"}},
				{"Organization", "name", []string{"FAC", "RFAC", "Blue Cross", "Acme Ltd", "Gold Insurer"}},
				// FAC and RFAC (MSH), the first payor's IN1-3, then the employer's
				// own XON.10 and IN1-10; the second IN1 names no employer for
				// EMP-99 to identify.
				{"Organization", "identifier.value", []string{"FAC", "RFAC", "IC-1", "A1", "EMP-77", "IC-2"}},
				{"Organization", "identifier.type.coding.code", []string{"XX", "EN"}},
				// IN1-44, the insured's employer's address, is the employer's.
				{"Organization", "address.line", []string{"2000 MILKY WAY"}},
			},
		},
		{
			"IN2-34, the insured's primary language, is the subscriber's language",
			message("ADT^A08", "PID|1||123^^^^MR||DOE^JANE||19700101|F",
				"IN1|1|BAV^Blue Advantage|IC-1|Blue Cross"+strings.Repeat("|", 12)+"DOE^JOHN|SPO^Spouse",
				"IN2|1"+strings.Repeat("|", 33)+"ara^Arabic"),
			[]want{
				{"RelatedPerson", "communication.language.coding.code", []string{"ar"}},
				{"Patient", "communication.language.coding.code", nil},
			},
		},
		{
			"PR1-25: the parent procedure, known by its identifier, is the procedure's partOf; one Procedure per parent",
			message("ADT^A08", "PID|1||123^^^^MR||DOE^JANE||19700101|F", "PV1|1|I",
				"PR1|1||76164006^Biopsy of colon^SCT"+strings.Repeat("|", 22)+"PR-PARENT",
				"PR1|2||73761001^Colonoscopy^SCT"+strings.Repeat("|", 22)+"PR-PARENT",
				"PR1|3||80146002^Appendectomy^SCT"),
			[]want{
				{"Procedure", "identifier.value", []string{"PR-PARENT"}},
				{"Procedure", "partOf", []string{"->Procedure", "->Procedure"}},
				{"Procedure", "status", []string{"unknown", "unknown", "unknown", "unknown"}},
				{"Procedure", "subject", []string{"->Patient", "->Patient", "->Patient", "->Patient"}},
			},
		},
		{
			"several DG1: each is a diagnosis item of the encounter holding its condition, use and rank (DG1[Encounter])",
			message("ADT^A01", "PID|1||123^^^^MR||DOE^JANE||19700101|F", "PV1|1|I",
				"DG1|1||I21^Infarction^I10|||A"+strings.Repeat("|", 9)+"1",
				"DG1|2||E11^Diabetes^I10|||W"+strings.Repeat("|", 9)+"2"),
			[]want{
				{"Encounter", "diagnosis.condition", []string{"->Condition", "->Condition"}},
				{"Encounter", "diagnosis.use.coding.code", []string{"AD"}},
				{"Encounter", "diagnosis.rank", []string{"1", "2"}},
			},
		},
		{
			"ADT ROL by group: the patient's PP is the GP, the visit's ROL a participant typed by ROL-3, a procedure's ROL its role alone",
			message("ADT^A01", "PID|1||123^^^^MR||DOE^JANE||19700101|F",
				"ROL|1|AD|PP^Primary Care Provider^HL70443|111^Gp^Gill",
				"PV1|1|I", "ROL|2|AD|PP^Primary Care Provider^HL70443|222^Visit^Vic|20220101",
				"PR1|1||76164006^Biopsy^SCT", "ROL|3|AD|PP^Primary Care Provider^HL70443|333^Proc^Pat"),
			[]want{
				{"Patient", "generalPractitioner", []string{"->PractitionerRole"}},
				{"Encounter", "participant.individual", []string{"->PractitionerRole"}},
				{"Encounter", "participant.type.coding.code", []string{"PP"}},
				{"Encounter", "participant.period.start", []string{"2022-01-01"}},
				{"PractitionerRole", "code.coding.code", []string{"PP", "PP", "PP"}},
				{"Practitioner", "name.family", []string{"Gp", "Visit", "Proc"}},
			},
		},
		{
			"VXU ORC is the immunisation and the order that led to it (VXU_V04 row 12.1)",
			message("VXU^V04", "PID|1||123^^^^MR||DOE^JANE||19700101|F", "ORC|RE|4422^SIIS|13696^SIIS",
				"RXA|0|1|20260101||08^HepB^CVX|999"),
			[]want{
				{"ServiceRequest", "identifier.value", []string{"4422", "13696"}},
				{"ServiceRequest", "subject", []string{"->Patient"}},
				{"Immunization", "patient", []string{"->Patient"}},
			},
		},
		{
			"ORC-21..23: the ordering facility, with its address and telephone, is the requester's organisation",
			message("ORM^O01", "PID|1||123^^^^MR||DOE^JANE||19700101|F",
				"ORC|NW|1101||||||||||3850^ORDPROVIDER^JONES"+strings.Repeat("|", 9)+
					"Good Health Hospital^L^716|1000 Hospital Lane^^Ann Arbor^MI^99999|^WPN^PH^^^626^5551234"),
			[]want{
				{"ServiceRequest", "requester", []string{"->PractitionerRole"}},
				{"PractitionerRole", "organization", []string{"->Organization"}},
				{"Organization", "name", []string{"FAC", "RFAC", "Good Health Hospital"}},
				{"Organization", "address.city", []string{"Ann Arbor"}},
				{"Organization", "telecom.value", []string{"626 5551234"}},
			},
		},
		{
			"a role built from an XCN carries its code: OP for the ordering provider, responsibleObserver for OBX-16",
			message("ORU^R01", "PID|1||123^^^^MR||DOE^JANE||19700101|F", "ORC|RE|1101||||||||||3850^ORDPROVIDER^JONES",
				"OBR|1|1101||24725-4^CT Head^LN", "OBX|1|ST|8867-4^Heart rate^LN||60||||||F|||||1134^Aly^Zafar"),
			[]want{
				{"PractitionerRole", "code.coding.code", []string{"OP", "responsibleObserver"}},
				{"ServiceRequest", "requester", []string{"->PractitionerRole"}},
				{"Observation", "performer", []string{"->PractitionerRole"}},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) { checkRules(t, tc.raw, tc.wants) })
	}
}

// TestRulesSeparatorsOnlyAreAbsent: a field sent as its separators alone
// ("^^^") names nothing, so it builds no resource and counts as not valued.
func TestRulesSeparatorsOnlyAreAbsent(t *testing.T) {
	checkRules(t, message("ADT^A01", "PID|1||123^^^^MR||DOE^JANE||19700101|F", "PV1|1|I|||||^^^|0210^ATTEND^AARON"),
		[]want{
			{"Encounter", "participant.individual", []string{"->Practitioner"}},
			{"Encounter", "participant.type.coding.code", []string{"REF"}},
			{"Practitioner", "name.family", []string{"ATTEND"}},
		})
}

// TestRulesPrimitivesReadTheFirstPart: a field or component written into a
// FHIR primitive other than a string gives only its first part, as HL7 v2
// tells a receiver to ignore the parts it does not expect. A v2.4 TS keeps its
// degree of precision in a second component; PAS and lab systems send codes
// with a trailing separator.
func TestRulesPrimitivesReadTheFirstPart(t *testing.T) {
	checkRules(t, message("ADT^A01",
		"EVN|A01|20260101120000^S|||C08^WOOLFSON",
		"PID|1||123^^^^MR||DOE^JANE||19700101^D|F^",
		"PV1|1|I^|W1^B2"),
		[]want{
			{"Patient", "birthDate", []string{"1970-01-01"}},
			{"Patient", "gender", []string{"female"}},
			{"Provenance", "recorded", []string{"2026-01-01T12:00:00+00:00", "2026-01-01T12:00:00+00:00"}},
			{"Encounter", "class.code", []string{"IMP"}},
			// A string keeps the whole value.
			{"Patient", "name.family", []string{"DOE"}},
		})
}
