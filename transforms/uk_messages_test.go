package transforms

import (
	"slices"
	"strings"
	"testing"
)

// Defects found by converting UK messages (fixtures/hl7v2/convert) of the
// types the first fixtures did not cover, each case the smallest message
// showing it.

// ukPID is a PID as an NHS trust's PAS sends it: the NHS number (CX.4 NHS,
// CX.5 NH) with its verification status in PID-32, and the hospital number.
const ukPID = "PID|1||9990000034^^^NHS^NH~RX1A200311^^^RX1^MR||O'BRIEN^PATRICK^JOSEPH^^MR||19470822|M" +
	"|||||||||||||||||||||||NSTS01"

// TestSIUEveryResourceIsAParticipant: an outpatient clinic booked with a
// consultant and a specialist nurse has both as participants (AIP[Appointment]
// for each RESOURCES group of SIU_S12), and the patient stays the actor of
// its own participant whatever resources follow the PID.
func TestSIUEveryResourceIsAParticipant(t *testing.T) {
	checkRules(t, message("SIU^S12^SIU_S12",
		"SCH|RX1APPT-1^PAS|RX1BK-1^PAS|||||||20|MIN|^^^20270615143000^20270615145000||||||||||||||Booked",
		ukPID,
		"RGS|1|A",
		"AIG|1|A|CARDFU1^Cardiology follow-up clinic^RX1CLN|CLINIC^Clinic^L",
		"AIG|2|A|ECHO1^Echo room^RX1CLN|EQUIP^Equipment^L",
		"AIL|1|A|RX1CARDOPD^ROOM 4^^RX1|CLINIC^Clinic room^HL70305",
		"AIL|2|A|RX1CARDOPD^ROOM 5^^RX1|CLINIC^Clinic room^HL70305",
		"AIP|1|A|C1234567^JONES^HELEN^^^DR^^^GMC|CONS^Consultant^L",
		"AIP|2|A|N7788123^KOWALSKI^ANNA^^^MS^^^NMC|NURSE^Specialist nurse^L"),
		[]want{
			{"Appointment", "participant.actor", []string{"->Patient", "->Location", "->Location", "->Practitioner", "->Practitioner"}},
			{"Appointment", "participant.type.coding.code", []string{"SBJ", "CLINIC", "EQUIP", "CONS", "NURSE"}},
			{"Practitioner", "name.family", []string{"JONES", "KOWALSKI"}},
			{"Location", "name", []string{"ROOM 4", "RX1CARDOPD", "RX1", "ROOM 5"}},
			// AIL-4 is the type of the room AIL-3 names, not of the clinic or site it is in.
			{"Location", "type.coding.code", []string{"CLINIC", "CLINIC"}},
		})
}

// TestSIUResourceTimes: each resource of a booking holds its own span: its
// start plus its duration in its units (AIL-6 + AIL-9 in AIL-10, and the same
// fields of AIG and AIP), minutes when no units are sent, as v2's duration
// units default; a resource with no start of its own starts its offset (AIP-7
// in AIP-8 units) after the appointment's start (TQ1-7). A duration in a unit
// of no fixed length is reported and left out, the start kept.
func TestSIUResourceTimes(t *testing.T) {
	raw := message("SIU^S12^SIU_S12",
		segment("SCH", map[int]string{1: "RX1APPT-2^PAS", 2: "RX1BK-2^PAS", 25: "Booked"}),
		"TQ1|||||||202706151400|202706151600",
		ukPID,
		"RGS|1|A",
		"AIG|1|A|ECHO1^Echo room^RX1CLN|EQUIP^Equipment^L||||202706151400|||45",
		"AIL|1|A|RX1CARDOPD^ROOM 4^^RX1|CLINIC^Clinic room^HL70305||202706151400+0100|||1.5|h^hour^UCUM",
		"AIP|1|A|C1234567^JONES^HELEN^^^DR^^^GMC|CONS^Consultant^L|||30|min^minute^UCUM|60|min^minute^UCUM",
		"AIP|2|A|N7788123^KOWALSKI^ANNA^^^MS^^^NMC|NURSE^Specialist nurse^L||202706151500|||2|mo^month^UCUM")
	checkRules(t, raw, []want{
		{"Appointment", "participant.type.coding.code", []string{"SBJ", "EQUIP", "CONS", "NURSE"}},
		{"Appointment", "participant.period.start", []string{
			"2027-06-15T14:00:00+01:00", "2027-06-15T14:00:00+01:00", "2027-06-15T14:30:00+01:00", "2027-06-15T15:00:00+01:00"}},
		// The consultant's start comes from an offset, so the row gives it no end.
		{"Appointment", "participant.period.end", []string{"2027-06-15T14:45:00+01:00", "2027-06-15T15:30:00+01:00"}},
	})
	_, issues, _ := convertMessage(t, raw, Options{})
	if len(issues) != 1 || issues[0].Kind != IssueValue || !strings.Contains(issues[0].Message, `"2 mo" left out: not a unit of time of fixed length`) {
		t.Errorf("issues %v, want one value issue for AIP-9 in months", issues)
	}
}

// TestSIUNotes: an NTE after the SCH (past its TQ1) or after an AIS is a note
// on the appointment, with its author and time (NTE[Appointment-Comment]), as
// R5's Appointment.note in the cross-version extension the row names; an NTE
// after an AIL, AIG or AIP is about that resource and has no row.
func TestSIUNotes(t *testing.T) {
	checkRules(t, message("SIU^S12^SIU_S12",
		segment("SCH", map[int]string{1: "RX1APPT-3^PAS", 2: "RX1BK-3^PAS", 25: "Booked"}),
		"TQ1|||||||202706151400|202706151430",
		"NTE|1||Interpreter needed: Polish||C1234567^JONES^HELEN^^^DR^^^GMC|202706011015",
		ukPID,
		"RGS|1|A",
		"AIS|1|A|CARDFU^Cardiology follow-up^RX1SVC|202706151400",
		"NTE|1||Bring current medication",
		"AIL|1|A|RX1CARDOPD^ROOM 4^^RX1|CLINIC^Clinic room^HL70305",
		"NTE|1||Room has a hoist"),
		[]want{
			{"Appointment", "extension.url", []string{
				"http://hl7.org/fhir/5.0/StructureDefinition/extension-Appointment.note",
				"http://hl7.org/fhir/5.0/StructureDefinition/extension-Appointment.note"}},
			{"Appointment", "extension.valueAnnotation.text", []string{"Interpreter needed: Polish", "Bring current medication"}},
			{"Appointment", "extension.valueAnnotation.authorReference", []string{"->Practitioner"}},
			{"Appointment", "extension.valueAnnotation.time", []string{"2027-06-01T10:15:00+01:00"}},
			{"Practitioner", "name.family", []string{"JONES"}},
		})
}

// TestSIUBookedOrder: a booking that names its order (SCH-26 placer, SCH-27
// filler order numbers) is based on that order, which is the patient's and
// carries the numbers as ORC-2 and ORC-3 do, the service booked (AIS-3) and
// its time (AIS-4 plus AIS-7 minutes), and a request status for the
// booking's (SCH-25: SCH[ServiceRequest]); a booking without order numbers
// builds no order.
func TestSIUBookedOrder(t *testing.T) {
	sch := func(status string) string {
		return segment("SCH", map[int]string{1: "RX1APPT-4^PAS", 2: "RX1BK-4^PAS", 25: status,
			26: "ORD-881^ICE~ORD-882^ICE", 27: "LAB-77^WINPATH"})
	}
	checkRules(t, message("SIU^S12^SIU_S12",
		sch("Booked"),
		ukPID,
		"RGS|1|A",
		"AIS|1|A|73761001^Colonoscopy^SCT|202706151400+0100|||40|min",
		"AIS|2|A|76164006^Biopsy of colon^SCT|202706151440+0100|||20|min"),
		[]want{
			{"Appointment", "basedOn", []string{"->ServiceRequest"}},
			{"ServiceRequest", "identifier.value", []string{"ORD-881", "ORD-882", "LAB-77"}},
			{"ServiceRequest", "identifier.type.coding.code", []string{"PLAC", "PLAC", "FILL"}},
			{"ServiceRequest", "status", []string{"active"}},
			{"ServiceRequest", "intent", []string{"order"}},
			{"ServiceRequest", "subject", []string{"->Patient"}},
			{"ServiceRequest", "code.coding.code", []string{"73761001"}},
			{"ServiceRequest", "occurrencePeriod.start", []string{"2027-06-15T14:00:00+01:00"}},
			{"ServiceRequest", "occurrencePeriod.end", []string{"2027-06-15T14:40:00+01:00"}},
		})
	checkRules(t, message("SIU^S15^SIU_S12", sch("Cancelled"), ukPID),
		[]want{{"ServiceRequest", "status", []string{"revoked"}}})
	checkRules(t, message("SIU^S12^SIU_S12", segment("SCH", map[int]string{1: "RX1APPT-5^PAS", 2: "RX1BK-5^PAS", 25: "Booked"}), ukPID,
		"RGS|1|A", "AIS|1|A|73761001^Colonoscopy^SCT|202706151400+0100|||40|min"),
		[]want{{"ServiceRequest", "intent", nil}, {"Appointment", "basedOn", nil}})
}

// TestPharmacyUnitsSentAsUCUMAreCoded: a ward prescription's dose, dose
// range, rate and dispense units sent as UCUM (RXE-5, RXE-11, RXE-24, as
// RXO-4 and RXO-12) are the quantities' code and system, as RXO[MedicationRequest]
// maps a coded unit (CWE[Code]); a unit of a local table stays text only,
// since a code needs its system (qty-3).
func TestPharmacyUnitsSentAsUCUMAreCoded(t *testing.T) {
	checkRules(t, message("RDE^O11^RDE_O11", ukPID,
		"ORC|NW|EPMA-1^EPMA",
		"RXE||39732311000001104^Amoxicillin 500mg capsules^DMD|500||mg^milligram^UCUM|||||15|{capsule}^capsule^UCUM",
		"ORC|NW|EPMA-2^EPMA",
		"RXE||42109611000001109^Paracetamol 500mg tablets^DMD|500|1000|mg^milligram^UCUM||||||||||||||||||125|mL/h^millilitre per hour^UCUM",
		"ORC|NW|EPMA-3^EPMA",
		"RXE||42109611000001109^Paracetamol 500mg tablets^DMD|1||TAB^tablet^LOCAL|||||28|TAB^tablet^LOCAL"),
		[]want{
			{"MedicationRequest", "dosageInstruction.doseAndRate.doseQuantity.code", []string{"mg"}},
			{"MedicationRequest", "dosageInstruction.doseAndRate.doseQuantity.system", []string{"http://unitsofmeasure.org"}},
			{"MedicationRequest", "dosageInstruction.doseAndRate.doseQuantity.unit", []string{"milligram", "tablet"}},
			{"MedicationRequest", "dosageInstruction.doseAndRate.doseRange.low.code", []string{"mg"}},
			{"MedicationRequest", "dosageInstruction.doseAndRate.doseRange.high.code", []string{"mg"}},
			{"MedicationRequest", "dosageInstruction.doseAndRate.doseRange.high.system", []string{"http://unitsofmeasure.org"}},
			{"MedicationRequest", "dosageInstruction.doseAndRate.rateQuantity.code", []string{"mL/h"}},
			{"MedicationRequest", "dispenseRequest.quantity.code", []string{"{capsule}"}},
			{"MedicationRequest", "dispenseRequest.quantity.system", []string{"http://unitsofmeasure.org"}},
			{"MedicationRequest", "dispenseRequest.quantity.unit", []string{"capsule", "tablet"}},
		})
	checkRules(t, message("RDE^O11^RDE_O11", ukPID, "ORC|NW|EPMA-4^EPMA",
		"RXO|39732311000001104^Amoxicillin 500mg capsules^DMD|250|500|mg^milligram^UCUM|||||||15|{capsule}^capsule^UCUM"),
		[]want{
			{"MedicationRequest", "dosageInstruction.doseAndRate.doseRange.low.code", []string{"mg"}},
			{"MedicationRequest", "dosageInstruction.doseAndRate.doseRange.high.system", []string{"http://unitsofmeasure.org"}},
			{"MedicationRequest", "dispenseRequest.quantity.code", []string{"{capsule}"}},
		})
}

// TestUKProfessionalRegistersAreIdentifierSystems: a consultant's GMC code,
// a GP's GMP code and a nurse's NMC PIN, as XCN.9 or PRD-7's PLN.2 name their
// register, are identifiers of the UK Core naming systems (XCN[Practitioner]
// XCN.9 "If system"), not identifiers assigned by an Organization called GMC
// or typed with a code v2-0203 does not have. Another XCN.9 (the NHS a PAS
// sends for its local consultant codes) stays the assigner.
func TestUKProfessionalRegistersAreIdentifierSystems(t *testing.T) {
	checkRules(t, message("REF^I12^REF_I12",
		"RF1|P^Pending^HL70283|R^Routine^HL70280|MED^Medical^HL70281||O^Outpatient^HL70284|000198765432^ERS|20261121",
		"PRD|RP^Referring provider^HL70286|PATEL^RAJ^^^DR|||||G8123456^GMP",
		"PRD|RT^Referred to provider^HL70286|ACHARYA^PRIYA^^^DR|||||C7654321^GMC",
		ukPID),
		[]want{
			{"Practitioner", "identifier.value", []string{"G8123456", "C7654321"}},
			{"Practitioner", "identifier.system", []string{"https://fhir.hl7.org.uk/Id/gmp-number", "https://fhir.hl7.org.uk/Id/gmc-number"}},
			{"Practitioner", "identifier.type.coding.code", nil},
		})
	checkRules(t, message("ADT^A01", ukPID,
		"PV1|1|I|RX1W12^BAY 3^BED 4^RX1||||C1234567^JONES^HELEN^^^DR^^^GMC|N7788123^KOWALSKI^ANNA^^^MS^^^NMC|G1234567^PATEL^RAJ^^^DR^^^GMP||||||||C7654321^ACHARYA^PRIYA^^^DR^^^NHS"),
		[]want{
			{"Practitioner", "identifier.value", []string{"C1234567", "N7788123", "G1234567", "C7654321"}},
			{"Practitioner", "identifier.system", []string{"https://fhir.hl7.org.uk/Id/gmc-number", "https://fhir.hl7.org.uk/Id/nmc-number", "https://fhir.hl7.org.uk/Id/gmp-number"}},
			{"Practitioner", "identifier.assigner", []string{"->Organization"}},
		})
}

// TestUnitsOfALocalTableAreNoCodeWithoutSystem: a laboratory's or a GP
// system's own units (99LAB, LOCAL, or no coding system at all) are the
// quantity's unit only. A code without its system breaks R4's qty-3, which
// neither validator checks; CWE[Quantity] makes CWE.1 the code only beside
// a CWE.3, which must then be a system the quantity can name (UCUM).
func TestUnitsOfALocalTableAreNoCodeWithoutSystem(t *testing.T) {
	for _, tc := range []struct {
		name  string
		raw   []byte
		wants []want
	}{
		{
			"OBX-6 (CWE[Quantity])",
			message("ORU^R01^ORU_R01", ukPID, "OBR|1|ORD1^ICE|LAB1^WINPATH|UE^U and E^WINPATH",
				"OBX|1|NM|K^Potassium^WINPATH||4.1|mmol/L^millimoles per litre^99LAB|3.5-5.3||||F",
				"OBX|2|NM|NA^Sodium^WINPATH||139|mmol/L^millimoles per litre^UCUM|133-146||||F"),
			[]want{
				{"Observation", "valueQuantity.unit", []string{"millimoles per litre", "millimoles per litre"}},
				{"Observation", "valueQuantity.code", []string{"mmol/L"}},
				{"Observation", "valueQuantity.system", []string{"http://unitsofmeasure.org"}},
			},
		},
		{
			"RXA-7 (CWE[Quantity])",
			message("VXU^V04^VXU_V04", ukPID, "ORC|RE|IMM-1^SYSTMONE",
				"RXA|0|1|20261120103000+0000||39115611000001103^Comirnaty^SCT|0.3|mL"),
			[]want{
				{"Immunization", "doseQuantity.unit", []string{"mL"}},
				{"Immunization", "doseQuantity.code", nil},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, _, out := convertMessage(t, tc.raw, Options{Bundle: Collection})
			b.expect(t, tc.wants)
			if t.Failed() {
				t.Logf("bundle: %s", out)
			}
		})
	}
}

// TestMobileWithoutUseCodeIsMobile: a mobile number sent with its equipment
// type CP and no use code is a mobile (TelecommunicationEquipmentType maps CP
// to contact-point-use mobile); a use code that is sent still wins.
func TestMobileWithoutUseCodeIsMobile(t *testing.T) {
	checkRules(t, message("ADT^A31^ADT_A05",
		"PID|1||9990000069^^^NHS^NH||BRENNAN^SIOBHAN^^^MISS||20010919|F|||||07700 900456^^CP~0113 496 0123^PRN^PH~07700 900789^WPN^CP"),
		[]want{
			{"Patient", "telecom.value", []string{"07700 900456", "0113 496 0123", "07700 900789"}},
			{"Patient", "telecom.system", []string{"phone", "phone", "phone"}},
			{"Patient", "telecom.use", []string{"mobile", "home", "work"}},
		})
}

// TestDietAndSupplyOrders: a ward's order message carries, beside a test
// order, a diet order (ODS: a diet, a supplement and the patient's
// preferences, with a note) and a requisition for stock (RQD, RQ1). The diet
// order is the patient's NutritionOrder, the requisition a SupplyRequest;
// neither is also a ServiceRequest, and the test order still is one.
func TestDietAndSupplyOrders(t *testing.T) {
	raw := message("ORM^O01^ORM_O01", ukPID,
		"PV1|1|I|RX1W12^BAY 3^BED 4^RX1",
		"ORC|NW|LAB-1^ICE||||SC||||||C1234567^JONES^HELEN^^^DR^^^GMC",
		"OBR|1|LAB-1^ICE||58410-2^Full blood count^LN",
		"ORC|NW|DIET-1^EPR|CAT-77^CATERING||IP||||20270301081500+0000|||C1234567^JONES^HELEN^^^DR^^^GMC",
		"ODS|D|B^Breakfast^L~L^Lunch^L|1191000175106^Diabetic diet^SCT|Small portions",
		"ODS|S||SUP01^High protein drink^L|One with each meal",
		"ODS|P||VEG^Vegetarian^L~NOPORK^No pork^L|Halal where possible",
		"NTE|1||Check blood glucose before meals",
		"ORC|NW|REQ-9^STORES|||||||20270301090000+0000|||C1234567^JONES^HELEN^^^DR^^^GMC",
		"RQD|1|PUMP-01^Infusion pump^L|||2|EA^each^L|||W12^Ward 12 store^L|20270302",
		"RQ1||||VEN-4^Medical Supplies Ltd^L")
	checkRules(t, raw, []want{
		{"ServiceRequest", "identifier.value", []string{"LAB-1"}},
		{"NutritionOrder", "identifier.value", []string{"DIET-1", "CAT-77"}},
		{"NutritionOrder", "status", []string{"active"}},
		{"NutritionOrder", "intent", []string{"order"}},
		{"NutritionOrder", "dateTime", []string{"2027-03-01T08:15:00+00:00"}},
		{"NutritionOrder", "patient", []string{"->Patient"}},
		{"NutritionOrder", "encounter", []string{"->Encounter"}},
		{"NutritionOrder", "orderer", []string{"->PractitionerRole"}},
		{"NutritionOrder", "oralDiet.type.coding.code", []string{"1191000175106"}},
		{"NutritionOrder", "oralDiet.type.coding.system", []string{"http://snomed.info/sct"}},
		{"NutritionOrder", "oralDiet.instruction", []string{"Small portions"}},
		{"NutritionOrder", "oralDiet.schedule.code.coding.code", []string{"B", "L"}},
		{"NutritionOrder", "supplement.type.coding.code", []string{"SUP01"}},
		{"NutritionOrder", "supplement.instruction", []string{"One with each meal"}},
		{"NutritionOrder", "foodPreferenceModifier.coding.code", []string{"VEG", "NOPORK"}},
		{"NutritionOrder", "note.text", []string{"Halal where possible", "Check blood glucose before meals"}},
		{"SupplyRequest", "identifier.value", []string{"REQ-9"}},
		{"SupplyRequest", "status", []string{"active"}},
		{"SupplyRequest", "authoredOn", []string{"2027-03-01T09:00:00+00:00"}},
		{"SupplyRequest", "requester", []string{"->PractitionerRole"}},
		{"SupplyRequest", "itemCodeableConcept.coding.code", []string{"PUMP-01"}},
		{"SupplyRequest", "quantity.value", []string{"2"}},
		{"SupplyRequest", "quantity.unit", []string{"each"}},
		{"SupplyRequest", "deliverTo", []string{"->Organization"}},
		{"SupplyRequest", "occurrenceDateTime", []string{"2027-03-02"}},
		{"SupplyRequest", "supplier", []string{"->Organization"}},
	})
}

// TestDietOrderDateFallsBackToTheMessage: NutritionOrder.dateTime is 1..1; an
// ORC without its transaction time (ORC-9) takes the message's (MSH-7), so the
// order is kept rather than left out.
func TestDietOrderDateFallsBackToTheMessage(t *testing.T) {
	checkRules(t, message("ORM^O01^ORM_O01", ukPID,
		"ORC|NW|DIET-2^EPR",
		"ODS|D||1191000175106^Diabetic diet^SCT"),
		[]want{{"NutritionOrder", "dateTime", []string{"2026-01-01T12:00:00+00:00"}}})
}

// TestPatientClassChangeKeepsOnePatient: an A06 (outpatient to inpatient)
// whose MRG carries only the prior account number (MRG-3) merges no patient
// record, so it makes no second, empty, inactive Patient; the prior account is
// an Account of the patient with status unknown (MRG[Account], ADT_A06 row 15),
// and an MRG-3 that repeats PID-18 is no prior account.
func TestPatientClassChangeKeepsOnePatient(t *testing.T) {
	pid := "PID|1||9990000034^^^NHS^NH||O'BRIEN^PATRICK||19470822|M||||||||||RX1ACC-2^^^RX1^AN" // PID-18
	raw := message("ADT^A06^ADT_A06", pid, "MRG|||RX1ACC-1^^^RX1^AN", "PV1|1|I|RX1W12^BAY 3^BED 4^RX1")
	b, _, out := convertMessage(t, raw, Options{Bundle: Collection})
	if n := len(b.all("Patient")); n != 1 {
		t.Fatalf("%d Patients, want 1:\n%s", n, out)
	}
	b.expect(t, []want{
		{"Account", "identifier.value", []string{"RX1ACC-2", "RX1ACC-1"}},
		{"Account", "status", []string{"active", "unknown"}},
		{"Account", "subject", []string{"->Patient", "->Patient"}},
	})
	same := message("ADT^A06^ADT_A06", pid, "MRG|||RX1ACC-2^^^RX1^AN", "PV1|1|I|RX1W12^BAY 3^BED 4^RX1")
	b, _, _ = convertMessage(t, same, Options{Bundle: Collection})
	b.expect(t, []want{{"Account", "identifier.value", []string{"RX1ACC-2"}}})
}

// TestBlankFieldsSayNothing: many senders pad a segment's last field with a
// space (EVN-7 here, the event facility) or send a field as blanks; a blank
// value is absent, as an empty one is, so it builds no Location that names
// nothing (it used to make a facility with only its physical type).
func TestBlankFieldsSayNothing(t *testing.T) {
	raw := message("ADT^A01^ADT_A01",
		"EVN|A01|20260101115500+0000|||||  ",
		ukPID,
		"PV1|1|I| ^ ")
	b, _, out := convertMessage(t, raw, Options{Bundle: Collection})
	if locs := b.all("Location"); len(locs) != 0 {
		t.Errorf("%d Locations from blank fields, want none:\n%s", len(locs), out)
	}
}

// TestOrderProvenance: an order's ORC says who entered, verified and placed it
// and when; that is a Provenance of the order (ORC[Provenance], ORM_O01 row
// 4.1), one agent per person with its type, beside the message's own. Without
// ORC-9 there is no time to record (recorded is 1..1), so no such Provenance.
func TestOrderProvenance(t *testing.T) {
	checkRules(t, message("ORM^O01^ORM_O01", ukPID,
		"ORC|NW|LAB-1^ICE|||SC||||20270301081500+0000|W111^CLERK^WARD|C2222222^SMITH^ANNE^^^DR|C1234567^JONES^HELEN^^^DR^^^GMC",
		"OBR|1|LAB-1^ICE||58410-2^Full blood count^LN"),
		[]want{
			{"Provenance", "target", []string{"->MessageHeader", "->ServiceRequest"}},
			{"Provenance", "activity.coding.code", []string{"CREATE"}},
			{"Provenance", "recorded", []string{"2026-01-01T12:00:00+00:00", "2027-03-01T08:15:00+00:00"}},
			{"Provenance", "agent.type.coding.code", []string{"author", "enterer", "verifier", "author"}},
			{"Provenance", "agent.who", []string{"->Organization", "->Practitioner", "->Practitioner", "->Practitioner"}},
		})
	checkRules(t, message("ORM^O01^ORM_O01", ukPID,
		"ORC|NW|LAB-2^ICE||||||||||C1234567^JONES^HELEN^^^DR^^^GMC",
		"OBR|1|LAB-2^ICE||58410-2^Full blood count^LN"),
		[]want{{"Provenance", "target", []string{"->MessageHeader"}}})
}

// TestADTA60Allergies: an ADT^A60 from an e-prescribing system updates the
// patient's allergies (IAM[AllergyIntolerance]). Each IAM is one allergy,
// updated in place on its own identifier (IAM-7); its coded allergen and the
// clinician's coding of it (IAM-27) are one code; each IAR after it is a
// reaction, and its NTE a note. Who reported it (IAM-14, IAM-15) is the
// asserter: a relative, or the patient when IAM-15 says self; who first
// recorded it (IAM-23, IAM-24) the recorder. IAM-17 (table 0438) gives the
// verification status, and makes the clinical status inactive for I.
func TestADTA60Allergies(t *testing.T) {
	raw := fixture(t, "convert/adt_a60_allergy_update.hl7")
	checkRules(t, raw, []want{
		{"AllergyIntolerance", "identifier.value", []string{"RX1ALG-000781", "RX1ALG-000512"}},
		{"AllergyIntolerance", "category", []string{"medication", "food"}},
		{"AllergyIntolerance", "type", []string{"allergy", "allergy"}},
		{"AllergyIntolerance", "code.coding.code", []string{"372687004", "294505008", "256349002"}},
		{"AllergyIntolerance", "criticality", []string{"high", "low"}},
		// IAM-5 is the first reaction, IAR-1 each further one; the peanut allergy has neither.
		{"AllergyIntolerance", "reaction.manifestation.text", []string{"Anaphylaxis"}},
		{"AllergyIntolerance", "reaction.manifestation.coding.code", []string{"39579001", "271807003"}},
		{"AllergyIntolerance", "reaction.severity", []string{"severe", "severe", "moderate"}},
		{"AllergyIntolerance", "reaction.note.text", []string{"Adrenaline given IM"}},
		{"AllergyIntolerance", "note.text", []string{"Anaphylaxis in 2015 needed adrenaline; avoid all penicillins."}},
		{"AllergyIntolerance", "note.authorReference", []string{"->Practitioner"}},
		{"AllergyIntolerance", "onsetDateTime", []string{"2015-03-10"}},
		{"AllergyIntolerance", "onsetString", []string{"Childhood"}},
		// IAM-24 when sent, else IAM-13.
		{"AllergyIntolerance", "recordedDate", []string{"2026-11-21T11:08:00+00:00", "2026-11-21T11:06:00+00:00"}},
		{"AllergyIntolerance", "recorder", []string{"->Practitioner"}},
		{"AllergyIntolerance", "asserter", []string{"->RelatedPerson", "->Patient"}},
		{"AllergyIntolerance", "verificationStatus.coding.code", []string{"confirmed", "confirmed"}},
		{"AllergyIntolerance", "clinicalStatus.coding.code", []string{"active", "inactive"}},
		{"AllergyIntolerance", "patient", []string{"->Patient", "->Patient"}},
		{"AllergyIntolerance", "encounter", []string{"->Encounter", "->Encounter"}},
		{"RelatedPerson", "name.family", []string{"BRENNAN"}},
		{"RelatedPerson", "relationship.coding.code", []string{"MTH", "MTH"}},
		{"Practitioner", "name.family", []string{"KOWALSKI", "JONES"}},
	})
	b, _, _ := convertMessage(t, raw, Options{})
	var urls []string
	for _, e := range b.Entry {
		if e.Resource["resourceType"] == "AllergyIntolerance" {
			urls = append(urls, e.Request.URL)
		}
	}
	want := []string{
		"AllergyIntolerance?identifier=https%3A%2F%2Ffhir.example.org%2Frx1%2FId%2Fallergy%7CRX1ALG-000781",
		"AllergyIntolerance?identifier=https%3A%2F%2Ffhir.example.org%2Frx1%2FId%2Fallergy%7CRX1ALG-000512",
	}
	if !slices.Equal(urls, want) {
		t.Errorf("allergy requests %q, want %q", urls, want)
	}
}

// TestADTA60AllergyInError: an allergy sent as erroneous (IAM-17 E), and one
// deleted (IAM-6 D) whatever its IAM-17 says, are entered-in-error with no
// clinical status (ait-2), so an update leaves neither active. A reporter with
// no relationship (IAM-14 alone) is a clinician, known by name. An IAR with no
// reaction code adds no reaction, which would lack its manifestation.
func TestADTA60AllergyInError(t *testing.T) {
	checkRules(t, message("ADT^A60^ADT_A60", ukPID,
		segment("IAM", map[int]string{1: "1", 2: "DA", 3: "387458008^Aspirin^SCT", 14: "PATEL^RAJ^^^DR", 17: "E^Erroneous^HL70438"}),
		"IAR||MI^Mild^HL70128",
		segment("IAM", map[int]string{1: "2", 2: "FA", 3: "256349002^Peanut^SCT", 6: "D^Delete^HL70206", 17: "C^Confirmed or verified^HL70438"})),
		[]want{
			{"AllergyIntolerance", "code.coding.code", []string{"387458008", "256349002"}},
			{"AllergyIntolerance", "verificationStatus.coding.code", []string{"entered-in-error", "entered-in-error"}},
			{"AllergyIntolerance", "clinicalStatus.coding.code", nil},
			{"AllergyIntolerance", "reaction.severity", nil},
			{"AllergyIntolerance", "asserter", []string{"->Practitioner"}},
			{"Practitioner", "name.family", []string{"PATEL"}},
			{"RelatedPerson", "name.family", nil},
		})
}

// TestSFTSoftwareDevices: each SFT is a Device (SFT[Device]) and an entity of
// the message's source Provenance (ADT_A01 row 3): the first, right after the
// MSH, the sending system's software ("source"), a later one software that
// passed the message on ("derivation"). A message with no source Provenance
// (no sender) keeps the Devices and gains no Provenance of the roles alone.
func TestSFTSoftwareDevices(t *testing.T) {
	sfts := []string{
		"SFT|Cerner^L|2024.1|Millennium|MIL-2024|PAS build for RX1",
		"SFT|Rhapsody Health|7.2.1|Rhapsody|RH-721",
	}
	raw := message("ADT^A01^ADT_A01", append(sfts, "EVN|A01|20260101115900", ukPID, "PV1|1|I")...)
	checkRules(t, raw, []want{
		{"Device", "manufacturer", []string{"Cerner", "Rhapsody Health"}},
		{"Device", "version.value", []string{"2024.1", "7.2.1"}},
		{"Device", "deviceName.name", []string{"Millennium", "Rhapsody"}},
		{"Device", "deviceName.type", []string{"manufacturer-name", "manufacturer-name"}},
		{"Device", "modelNumber", []string{"MIL-2024", "RH-721"}},
		{"Device", "note.text", []string{"PAS build for RX1"}},
		{"Provenance", "entity.what", []string{"->Device", "->Device"}},
		{"Provenance", "entity.role", []string{"source", "derivation"}},
	})
	noSender := []byte(strings.Replace(string(raw), "|APP|FAC|", "|APP||", 1))
	checkRules(t, noSender, []want{
		{"Device", "deviceName.name", []string{"Millennium", "Rhapsody"}},
		{"Provenance", "entity.role", nil},
	})
}
