package transforms

import (
	"encoding/base64"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestRulesSegmentGroups covers segments mapped in more message structures
// than the IG's message tables name: the insurance, guarantor and financial
// segments of the patient group, and the timing and route of a pharmacy order.
func TestRulesSegmentGroups(t *testing.T) {
	const pid = "PID|1||123^^^^MR||DOE^JANE||19700101|F||||||||||4000776^^^^VN"
	for _, tc := range []struct {
		name  string
		raw   []byte
		wants []want
	}{
		{
			"RDE: the RXE's TQ1 and RXR are the order's timing and route (TQ1[MedicationRequest], RXR[MedicationRequest])",
			message("RDE^O11", pid, "ORC|NW|1163422591^EPC", "TQ1|1||TID",
				"RXO|00047040230^Ampicillin^NDC|2", "RXR|IV^IV Infusion",
				"RXE||0143963401^NICARDIPINE^NDC|5||mg", "TQ1|1||P&Post (after)&HL70335^^^^180^min||||20191104103000+0000|20191104113000+0000|S|Condition text|Text instruction|||2",
				"RXR|IV^Intravenous|HAND^HAND||IVP^IV PUSH"),
			[]want{
				{"MedicationRequest", "dosageInstruction.timing.code.coding.code", []string{"P"}},
				{"MedicationRequest", "dosageInstruction.timing.repeat.period", []string{"180"}},
				{"MedicationRequest", "dosageInstruction.timing.repeat.periodUnit", []string{"min"}},
				{"MedicationRequest", "dosageInstruction.timing.repeat.count", []string{"2"}},
				{"MedicationRequest", "dosageInstruction.timing.repeat.boundsPeriod.start", []string{"2019-11-04T10:30:00+00:00"}},
				{"MedicationRequest", "dosageInstruction.route.coding.code", []string{"IV"}},
				{"MedicationRequest", "dosageInstruction.route.coding.display", []string{"Intravenous"}},
				{"MedicationRequest", "dosageInstruction.site.coding.code", []string{"HAND"}},
				{"MedicationRequest", "dosageInstruction.method.coding.code", []string{"IVP"}},
				{"MedicationRequest", "dosageInstruction.text", []string{"Text instruction"}},
				{"MedicationRequest", "priority", []string{"stat"}},
			},
		},
		{
			"RDE: an order reads its own RXE (>RXE), not the message's first: the second order, with no medication, has the required elements",
			message("RDE^O11", pid, "ORC|NW|P1", "RXE|1|AMOX^Amoxicillin^L|500||mg", "ORC|NW|P2", "ORC|NW|P3", "RXE"),
			[]want{
				{"MedicationRequest", "identifier.value", []string{"P1", "P2", "P3"}},
				{"MedicationRequest", "medicationReference", []string{"->Medication"}},
				{"MedicationRequest", "medicationCodeableConcept.text", []string{"Medication not recorded", "Medication not recorded"}},
				{"MedicationRequest", "intent", []string{"filler-order", "order", "order"}},
			},
		},
		{
			"ORM: an OBR compares its placer and filler numbers with its own order's ORC (<ORC), so none is written twice",
			message("ORM^O01", pid, "ORC|NW|P1|F1", "OBR|1|P1|F1|CBC^Blood count^L", "ORC|NW|P2|F2", "OBR|2|P2|F2|LFT^Liver function^L"),
			[]want{
				{"ServiceRequest", "identifier.value", []string{"P1", "F1", "P2", "F2"}},
			},
		},
		{
			"ORM: the alternate placer number (OBR-53, ORC-33) is one more PLAC identifier, whatever CX.5 says, written once when both name it; OBR-29 the parent order the OBR is based on, known by its placer (PGN) and filler (FGN) numbers, unless OBR-50 makes it a parent result",
			message("ORM^O01", pid,
				segment("ORC", map[int]string{1: "NW", 2: "P1", 33: "ALT-1^^^RX1^MR"}),
				segment("OBR", map[int]string{1: "1", 2: "P1", 4: "CBC^Blood count^L", 29: "PARENT-P^PARENT-F", 53: "ALT-1^^^RX1^MR"}),
				segment("ORC", map[int]string{1: "NW", 2: "P2"}),
				segment("OBR", map[int]string{1: "2", 2: "P2", 4: "LFT^Liver function^L", 29: "PARENT-P2", 50: "1234-5^Parent test^LN", 53: "ALT-2"})),
			[]want{
				{"ServiceRequest", "identifier.value", []string{"P1", "ALT-1", "P2", "ALT-2"}},
				{"ServiceRequest", "identifier.type.coding.code", []string{"PLAC", "PLAC", "PLAC", "PLAC"}},
				{"ServiceRequest", "basedOn.identifier.value", []string{"PARENT-P", "PARENT-F"}},
				{"ServiceRequest", "basedOn.identifier.type.coding.code", []string{"PGN", "FGN"}},
				{"ServiceRequest", "basedOn.type", []string{"ServiceRequest", "ServiceRequest"}},
			},
		},
		{
			"ADT: the employer IN1-11 names has the telephone (IN2-64) and contact person (IN2-49, IN2-50) of the IN2 after that IN1 (>IN2); an IN1 without one has none",
			message("ADT^A01", pid, "PV1|1|I",
				"IN1|1|BAV^Blue Advantage|IC-1|Blue Cross"+strings.Repeat("|", 7)+"Acme Ltd",
				"IN2"+strings.Repeat("|", 49)+"Richards^Paula|0113 496 0001^WPN^PH"+strings.Repeat("|", 14)+"0113 496 0002^WPN^PH",
				"IN1|2|GOLD^Gold Plan|IC-2|Gold Cross"+strings.Repeat("|", 7)+"Widget plc"),
			[]want{
				{"Organization", "name", []string{"FAC", "RFAC", "Blue Cross", "Acme Ltd", "Gold Cross", "Widget plc"}},
				{"Organization", "telecom.value", []string{"0113 496 0002"}},
				{"Organization", "contact.name.family", []string{"Richards"}},
				{"Organization", "contact.telecom.value", []string{"0113 496 0001"}},
			},
		},
		{
			"ORU: a PRT in a result's group with a location (PRT-9) or an address (PRT-14) is the result's event-location; one in the order's group is not",
			message("ORU^R01", pid, "ORC|RE|1101", "OBR|1|1101||24325-3^Hepatic panel^LN",
				"PRT"+strings.Repeat("|", 9)+"Clinic 3^^^Order Hospital",
				"OBX|1|NM|1742-6^ALT^LN||42|U/L|||||F", "PRT"+strings.Repeat("|", 9)+"Ward 7^Bay 2^^Royal Infirmary",
				"PRT"+strings.Repeat("|", 14)+"1 Park Square^^Leeds^^LS1 3EX", "NTE|1||Repeat in a week",
				"OBX|2|NM|1920-8^AST^LN||38|U/L|||||F"),
			[]want{
				{"Observation", "extension.url", []string{"http://hl7.org/fhir/StructureDefinition/event-location", "http://hl7.org/fhir/StructureDefinition/event-location"}},
				{"Observation", "extension.valueReference", []string{"->Location", "->Location"}},
				{"Observation", "note.text", []string{"Repeat in a week"}},
				{"Location", "name", []string{"Bay 2", "Ward 7", "Royal Infirmary"}},
				{"Location", "address.postalCode", []string{"LS1 3EX"}},
			},
		},
		{
			"MDM: the order's TQ1 is its occurrenceTiming, and the OBR-6 after it is left out (MDM_T02 row 7.2.1)",
			message("MDM^T02", pid, "PV1|1|O", "TXA|1|CN||20260101|||||||||DOC1||||||AU",
				"ORC|SC|00012345", "TQ1|1|54^&lbs|P&Post (after)&HL70335^^^^12^min^^PC||||202110091600-0800|202111091600-0800|A||||2^hr|5",
				"OBR|1|00012345||02585^Echo^PCV4||20060131155500"),
			[]want{
				{"ServiceRequest", "occurrenceTiming.code.coding.code", []string{"P"}},
				{"ServiceRequest", "occurrenceTiming.repeat.period", []string{"12"}},
				{"ServiceRequest", "occurrenceTiming.repeat.periodUnit", []string{"min"}},
				{"ServiceRequest", "occurrenceTiming.repeat.when", []string{"PC"}},
				{"ServiceRequest", "occurrenceTiming.repeat.boundsPeriod.start", []string{"2021-10-09T16:00:00-08:00"}},
				{"ServiceRequest", "occurrenceTiming.repeat.boundsPeriod.end", []string{"2021-11-09T16:00:00-08:00"}},
				{"ServiceRequest", "occurrenceTiming.repeat.count", []string{"5"}},
				{"ServiceRequest", "occurrenceDateTime", nil},
				{"ServiceRequest", "priority", []string{"asap"}},
				{"ServiceRequest", "occurrenceTiming.repeat.duration", nil},
				{"ServiceRequest", "occurrenceTiming.repeat.durationUnit", nil},
			},
		},
		{
			"TQ1-6 without a start or end (TQ1-7, TQ1-8) is the timing's boundsDuration and TQ1-13 its duration, each only in a UCUM unit of time",
			message("ORM^O01", pid, "ORC|NW|P1", "TQ1|1||Q4H|||3^d&day&UCUM|||||||15^min&minute&UCUM", "OBR|1|P1||CBC^Blood count^L",
				"ORC|NW|P2", "TQ1|1||Q4H|||4^d|20260101|||||||2^hr", "OBR|2|P2||LFT^Liver function^L",
				"ORC|NW|P3", "TQ1|1||Q4H|||150^&kg", "OBR|3|P3||U^Urine^L",
				"ORC|NW|P4", "TQ1|1||Q4H|||abc^d", "OBR|4|P4||X^Other^L"),
			[]want{
				{"ServiceRequest", "occurrenceTiming.repeat.boundsDuration.value", []string{"3"}},
				{"ServiceRequest", "occurrenceTiming.repeat.boundsDuration.code", []string{"d"}},
				{"ServiceRequest", "occurrenceTiming.repeat.boundsDuration.system", []string{"http://unitsofmeasure.org"}},
				{"ServiceRequest", "occurrenceTiming.code.coding.code", []string{"Q4H", "Q4H", "Q4H", "Q4H"}},
				{"ServiceRequest", "occurrenceTiming.repeat.duration", []string{"15"}},
				{"ServiceRequest", "occurrenceTiming.repeat.durationUnit", []string{"min"}},
			},
		},
		{
			"a pharmacy order's TQ1-6 is not written (its rows name ServiceRequest's occurrenceTiming); its TQ1-13 is the dosage timing's duration",
			message("RDE^O11", pid, "ORC|NW|P1", "RXE|1|AMOX^Amoxicillin^L|500||mg", "TQ1|1||TID|||2^d|||||||30^min"),
			[]want{
				{"MedicationRequest", "dosageInstruction.timing.repeat.duration", []string{"30"}},
				{"MedicationRequest", "dosageInstruction.timing.repeat.durationUnit", []string{"min"}},
				{"MedicationRequest", "dosageInstruction.timing.repeat.boundsDuration", nil},
			},
		},
		{
			"ORU ORDER_DOCUMENT: the TXA is a DocumentReference related to its order, its OBX a result with the attachment; no other OBX is its content",
			message("ORU^R01", pid, "ORC|RE|1101", "OBX|1|ED|11488-4^Consult note^LN||^AP^PDF^Base64^JVBERi0xLjQK||||||F",
				"TXA|1|CN|AP|20260101"+strings.Repeat("|", 8)+"DOC1"+strings.Repeat("|", 5)+"AU|R|AV", "OBR|1|1101||2951-2^Sodium^LN||20260101090000",
				"OBX|1|TX|2951-2^Sodium^LN||Haemolysed sample||||||F"),
			[]want{
				{"DocumentReference", "masterIdentifier.value", []string{"DOC1"}},
				{"DocumentReference", "context.related", []string{"->ServiceRequest"}},
				{"DocumentReference", "subject", []string{"->Patient"}},
				{"DocumentReference", "securityLabel.coding.code", []string{"R"}},
				{"DocumentReference", "securityLabel.coding.system", []string{"http://terminology.hl7.org/CodeSystem/v2-0272"}},
				{"DocumentReference", "content.attachment.data", nil},
				{"DocumentReference", "content.attachment.title", []string{"CN"}},
				{"Observation", "extension.valueAttachment.data", []string{"JVBERi0xLjQK"}},
				{"Observation", "valueString", []string{"Haemolysed sample"}},
			},
		},
		{
			"MDM: TXA-18 is the document's security label; a code outside table 0272 is left out",
			message("MDM^T02", pid, "TXA|1|CN|TX|20260101"+strings.Repeat("|", 8)+"DOC1"+strings.Repeat("|", 5)+"AU|V|AV", "OBX|1|TX|||Seen in clinic",
				"TXA|2|CN|TX|20260101"+strings.Repeat("|", 8)+"DOC2"+strings.Repeat("|", 5)+"AU|X|AV"),
			[]want{
				{"DocumentReference", "securityLabel.coding.code", []string{"V"}},
				{"DocumentReference", "securityLabel.coding.system", []string{"http://terminology.hl7.org/CodeSystem/v2-0272"}},
				{"DocumentReference", "content.attachment.data", []string{"U2VlbiBpbiBjbGluaWM=", "U2VlbiBpbiBjbGluaWM="}},
			},
		},
		{
			"MDM: TXA-13, the parent document, is what a replacement (T09) replaces",
			message("MDM^T09", pid, "TXA|1|CN|TX|20260101"+strings.Repeat("|", 8)+"DOC2|DOC1^EPR"+strings.Repeat("|", 4)+"AU", "OBX|1|TX|||Corrected letter"),
			[]want{
				{"DocumentReference", "relatesTo.code", []string{"replaces"}},
				{"DocumentReference", "relatesTo.target.identifier.value", []string{"DOC1"}},
				{"DocumentReference", "relatesTo.target.type", []string{"DocumentReference"}},
			},
		},
		{
			"MDM: in an original document (T02) TXA-13 says no relation FHIR can name",
			message("MDM^T02", pid, "TXA|1|CN|TX|20260101"+strings.Repeat("|", 8)+"DOC2|DOC1^EPR"+strings.Repeat("|", 4)+"AU", "OBX|1|TX|||Letter"),
			[]want{
				{"DocumentReference", "relatesTo.target.type", nil},
				{"DocumentReference", "masterIdentifier.value", []string{"DOC2"}},
			},
		},
		{
			"PV1-54 is the visit's EpisodeOfCare in every structure with a visit (PV1[Encounter] PV1-53, PV1-54); none without it",
			message("ORU^R01", pid, "PV1|1|O"+strings.Repeat("|", 51)+"Diabetes follow-up|EOC124^^^EPR^MR", "ORC|RE|1101",
				"OBR|1|1101||2951-2^Sodium^LN", "OBX|1|NM|2951-2^Sodium^LN||140||||||F"),
			[]want{
				{"EpisodeOfCare", "identifier.value", []string{"EOC124"}},
				{"EpisodeOfCare", "patient", []string{"->Patient"}},
				{"EpisodeOfCare", "extension.valueString", []string{"Diabetes follow-up"}},
				{"Encounter", "episodeOfCare", []string{"->EpisodeOfCare"}},
			},
		},
		{
			"PV1-53 alone names no episode",
			message("VXU^V04", pid, "PV1|1|O"+strings.Repeat("|", 51)+"Diabetes follow-up"),
			[]want{
				{"EpisodeOfCare", "status", nil},
				{"Encounter", "episodeOfCare", nil},
			},
		},
		{
			"ORU: a TQ1 after its OBR replaces OBR-6; an order without timing keeps OBR-6",
			message("ORU^R01", pid, "ORC|RE|1101", "OBR|1|1101||2951-2^Sodium^LN||20260101090000",
				"TQ1|1||||||20260101100000", "OBX|1|NM|2951-2^Sodium^LN||140||||||F",
				"ORC|RE|1102", "OBR|2|1102||2823-3^Potassium^LN||20260102090000", "OBX|1|NM|2823-3^Potassium^LN||4.1||||||F"),
			[]want{
				{"ServiceRequest", "occurrenceTiming.repeat.boundsPeriod.start", []string{"2026-01-01T10:00:00+00:00"}},
				{"ServiceRequest", "occurrenceDateTime", []string{"2026-01-02T09:00:00+00:00"}},
			},
		},
		{
			"ORM: ORC-7 and OBR-27 (TQ[ServiceRequest]) are the order's timing, preferred to OBR-6",
			message("ORM^O01", pid, "ORC|NW|1101|||||12&lb^BID&12:30:05^S50^20020315^20030315^^^Annotation text^^^^21",
				"OBR|1|1101||24725-4^CT Head^LN||20260101090000",
				"ORC|NW|1102", "OBR|2|1102||24590-2^MR Brain^LN||20260102090000"+strings.Repeat("|", 21)+"1^^^202601021000",
				"ORC|NW|1103|||||1&lb", "OBR|3|1103||24590-2^MR Brain^LN||20260103090000"),
			[]want{
				{"ServiceRequest", "occurrenceTiming.code.coding.code", []string{"BID"}},
				{"ServiceRequest", "occurrenceTiming.repeat.boundsPeriod.start", []string{"2002-03-15", "2026-01-02T10:00:00+00:00"}},
				{"ServiceRequest", "occurrenceTiming.repeat.boundsPeriod.end", []string{"2003-03-15"}},
				{"ServiceRequest", "occurrenceTiming.repeat.count", []string{"21"}},
				// The third order's ORC-7 holds a quantity and no timing.
				{"ServiceRequest", "occurrenceDateTime", []string{"2026-01-03T09:00:00+00:00"}},
			},
		},
		{
			"an order without an RXE takes the ORC's TQ1 and the RXO's RXR",
			message("RDE^O11", pid, "ORC|NW|1163422591^EPC", "TQ1|1||TID", "RXO|00047040230^Ampicillin^NDC|2", "RXR|PO^Oral"),
			[]want{
				{"MedicationRequest", "dosageInstruction.timing.code.coding.code", []string{"TID"}},
				{"MedicationRequest", "dosageInstruction.route.coding.code", []string{"PO"}},
			},
		},
		{
			"IN2 adds the coverage's Medicare, Medicaid and member numbers to the Coverage of its IN1",
			message("ADT^A08", pid,
				"IN1|1|BAV^Blue Advantage|IC-1.31|Blue Cross",
				"IN2|1117^^^^EI|425-57-9745||||Medicare-12345||MCN-008"+strings.Repeat("|", 53)+"PNM1234^^^^MB",
				"IN1|2|GOLD^Gold Plan|IC-2|Gold Insurer"),
			[]want{
				{"Coverage", "identifier.value", []string{"BAV", "Medicare-12345", "MCN-008", "PNM1234", "GOLD"}},
				{"Coverage", "identifier.type.coding.code", []string{"MC", "MA", "MB"}},
			},
		},
		{
			"ORM: the account (PID-18), its guarantor (GT1), a charge (FT1) and the episode of care (PV1-54)",
			message("ORM^O01", pid, "PV1|1|I"+strings.Repeat("|", 52)+"EOC124^^^^MR",
				"GT1|1|1516^^^^MR|RADIANT^LUCY||||||||BRO|||20010410|20010415",
				"ORC|NW|1101", "OBR|1|1101||24725-4^CT Head^LN",
				"FT1|1|12345||20191122|20191122|CG|71045^Xray exam chest^C4"),
			[]want{
				{"Account", "identifier.value", []string{"4000776"}},
				{"Account", "subject", []string{"->Patient"}},
				{"Account", "guarantor.party", []string{"->RelatedPerson"}},
				{"RelatedPerson", "name.family", []string{"RADIANT"}},
				{"RelatedPerson", "relationship.coding.code", []string{"BRO", "BRO"}},
				{"Encounter", "account", []string{"->Account"}},
				{"Encounter", "episodeOfCare", []string{"->EpisodeOfCare"}},
				{"EpisodeOfCare", "identifier.value", []string{"EOC124"}},
				{"ChargeItem", "code.coding.code", []string{"71045"}},
				{"ChargeItem", "account", []string{"->Account"}},
				{"ChargeItem", "subject", []string{"->Patient"}},
			},
		},
		{
			"ADT: the insurance group's RF1 is the referral, and a DB1 for the patient (DB1-2 PT) identifies the patient",
			message("ADT^A01", pid, "PV1|1|I",
				"DB1|1|PT|DB123^^^^MR|Y", "DB1|2|GT|DB999^^^^MR|Y",
				"IN1|1|BAV^Blue Advantage|IC-1.31|Blue Cross",
				"RF1|A^Accepted^HL70283|A^ASAP^HL70280|EXTERNAL|||123-1^name|20260101|||R-1^Back pain^L|123-2^other|||Spinal fracture"+
					"|||||Spine Clinic^L^4.4|114^Beverly^Crusher||||Urgent review"),
			[]want{
				{"Patient", "identifier.value", []string{"123", "DB123"}},
				{"ServiceRequest", "identifier.value", []string{"123-1", "123-2"}},
				// RF1-19 and RF1-20, the authorized provider and health
				// professional, are who is to carry the referral out.
				{"ServiceRequest", "performer", []string{"->Organization", "->Practitioner"}},
				{"ServiceRequest", "reasonCode.coding.code", []string{"R-1"}},
				{"ServiceRequest", "reasonCode.text", []string{"Spinal fracture"}},
				{"ServiceRequest", "note.text", []string{"Urgent review"}},
				{"Practitioner", "name.family", []string{"Beverly"}},
				{"ServiceRequest", "status", []string{"active"}},
				{"ServiceRequest", "subject", []string{"->Patient"}},
				{"ServiceRequest", "encounter", []string{"->Encounter"}},
			},
		},
		{
			"ORU: FT1 is a charge on the patient's account",
			message("ORU^R01", pid, "PV1|1|I", "OBR|1|1101||24725-4^CT Head^LN", "FT1|1|12345||20191122|20191122|CG|71045^Xray exam chest^C4"),
			[]want{
				{"ChargeItem", "code.coding.code", []string{"71045"}},
				{"ChargeItem", "account", []string{"->Account"}},
				{"Encounter", "account", []string{"->Account"}},
			},
		},
		{
			"GT1-12 and GT1-19 identify the guarantor, GT1-36 is the guarantor's language",
			message("ADT^A08", pid, "GT1|1|1516^^^^MR|RADIANT^LUCY||||||||BRO|G-SSN-12|||||||55121^^^^FI"+strings.Repeat("|", 17)+"ger^German^ISO639"),
			[]want{
				{"RelatedPerson", "identifier.value", []string{"1516", "G-SSN-12", "55121"}},
				{"RelatedPerson", "identifier.type.coding.code", []string{"MR", "SB", "FI"}},
				{"RelatedPerson", "communication.language.coding.code", []string{"de"}},
			},
		},
		{
			"SIU: the patient's account (PID[Account])",
			message("SIU^S12", "SCH|12345|36996", pid),
			[]want{{"Account", "identifier.value", []string{"4000776"}}, {"Account", "subject", []string{"->Patient"}}},
		},
		{
			"IN2-1, IN2-2 and IN2-63 are the insured's, added to the subscriber of their own IN1 only",
			message("ADT^A08", pid,
				"IN1|1|BAV^Blue Advantage|IC-1.31|Blue Cross"+strings.Repeat("|", 12)+"DOE^JOHN|SPO",
				"IN2|1117^^^^EI|425-57-9745"+strings.Repeat("|", 61)+"0005245^PRN^PH",
				"IN1|2|GOLD^Gold Plan|IC-2|Gold Insurer"+strings.Repeat("|", 12)+"DOE^JANE|SEL",
				"IN2|2227^^^^EI|999-99-9999"),
			[]want{
				{"RelatedPerson", "name.family", []string{"DOE"}},
				{"RelatedPerson", "identifier.value", []string{"1117", "425-57-9745"}},
				{"RelatedPerson", "identifier.type.coding.code", []string{"EI", "SB"}},
				{"RelatedPerson", "telecom.value", []string{"0005245"}},
				{"Coverage", "subscriber", []string{"->RelatedPerson", "->Patient"}},
			},
		},
		{
			"DFT: the charges' ORC and OBR are their order, a PRT of a charge its PractitionerRole",
			message("DFT^P03", "EVN|P03", pid, "PV1|1|I", "ORC|RE|PLACER|FILLER||CM", "OBR|1|||57698-3^Lipid panel^LN",
				"FT1|1|12345||20191122|20191122|CG|71045^Xray exam chest^C4", "PRT||AD||AD|005454^LAB^ROBIN"),
			[]want{
				{"ServiceRequest", "identifier.value", []string{"PLACER", "FILLER"}},
				{"ServiceRequest", "code.coding.code", []string{"57698-3"}},
				{"ServiceRequest", "subject", []string{"->Patient"}},
				{"PractitionerRole", "code.coding.code", []string{"AD"}},
				{"Practitioner", "name.family", []string{"LAB"}},
			},
		},
		{
			"NK1-30..32 are the contact person of the organisation NK1-13 names (NK1[Patient])",
			message("ADT^A08", pid, "NK1|1||||||||||||TestOrg^^O12|"+strings.Repeat("|", 16)+"Green^John^A|898989898^^FX|Street1&Palkstreet"),
			[]want{
				{"Patient", "contact.organization", []string{"->Organization"}},
				{"Organization", "name", []string{"FAC", "RFAC", "TestOrg"}},
				{"Organization", "contact.name.family", []string{"Green"}},
				{"Organization", "contact.telecom.value", []string{"898989898"}},
				{"Organization", "contact.address.line", []string{"Street1", "Palkstreet"}},
			},
		},
		{
			"OML_O21 OBR[Specimen] (6.4.1): the order's first specimen, ahead of its SPM",
			message("OML^O21", pid, "ORC|NW|1101", "OBR|1|1101||2951-2^Sodium^LN|||202601010900", "SPM|1|S1||BLD^Blood^HL70487"),
			[]want{
				{"ServiceRequest", "specimen", []string{"->Specimen", "->Specimen"}},
				{"Specimen", "collection.collectedDateTime", []string{"2026-01-01T09:00:00+00:00"}},
				{"Specimen", "identifier.value", []string{"S1"}},
				{"Specimen", "subject", []string{"->Patient", "->Patient"}},
			},
		},
		{
			"ORM_O01 has no OBR[Specimen] row: the same OBR is no Specimen",
			message("ORM^O01", pid, "ORC|NW|1101", "OBR|1|1101||2951-2^Sodium^LN|||202601010900"),
			[]want{
				{"ServiceRequest", "specimen", nil},
				{"Specimen", "collection.collectedDateTime", nil},
			},
		},
		{
			"OBR-32, OBR-34 and OBR-35 are PractitionerRoles (NDL[PractitionerRole]) with their period",
			message("ORU^R01", pid, "OBR|1|1101||24725-4^CT Head^LN"+strings.Repeat("|", 28)+
				"32&Interp&Ian^20021111^20021112||34&Tech&Tom|35&Samuel&Sam"),
			[]want{
				{"DiagnosticReport", "resultsInterpreter", []string{"->PractitionerRole"}},
				{"DiagnosticReport", "performer", []string{"->PractitionerRole", "->PractitionerRole"}},
				{"Practitioner", "name.family", []string{"Interp", "Tech", "Samuel"}},
				{"PractitionerRole", "period.start", []string{"2002-11-11"}},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) { checkRules(t, tc.raw, tc.wants) })
	}
}

// TestOBRSpecimenOfItsOwnResults: with several OBRs, each result refers to
// the Specimen its own OBR built, never to another OBR's (ORU_R01 4.2.2).
func TestOBRSpecimenOfItsOwnResults(t *testing.T) {
	b, _, _ := convertMessage(t, message("ORU^R01", "PID|1||123^^^^MR||DOE^JANE||19700101|F",
		"OBR|1|PL-1||2951-2^Sodium^LN|||202601010900", "OBX|1|NM|2951-2^Sodium^LN||140||||||F",
		"OBX|2|NM|2823-3^Potassium^LN||4.1||||||F",
		"OBR|2|PL-2||718-7^Hemoglobin^LN|||202601011000", "NTE|1||Order note", "OBX|1|NM|718-7^Hemoglobin^LN||13||||||F"),
		Options{Bundle: Collection})
	want := map[string]string{
		"2951-2": "2026-01-01T09:00:00+00:00",
		"2823-3": "2026-01-01T09:00:00+00:00",
		"718-7":  "2026-01-01T10:00:00+00:00",
	}
	results := b.all("Observation")
	if len(results) != len(want) {
		t.Fatalf("%d Observations, want %d", len(results), len(want))
	}
	for _, obs := range results {
		code := obs["code"].(map[string]any)["coding"].([]any)[0].(map[string]any)["code"].(string)
		ref, ok := obs["specimen"]
		if !ok {
			t.Errorf("result %s refers to no Specimen", code)
			continue
		}
		got := b.byRef(t, ref)["collection"].(map[string]any)["collectedDateTime"]
		if got != want[code] {
			t.Errorf("result %s refers to the Specimen collected %v, want its OBR's, collected %s", code, got, want[code])
		}
	}
	for _, r := range b.all("DiagnosticReport") {
		if specimens, _ := r["specimen"].([]any); len(specimens) != 1 {
			t.Errorf("report has %d specimens, want its OBR's alone", len(specimens))
		}
	}
}

// PID-16, OBX-8 and MSH-11 go through the IG's concept maps: each code in the
// target system with the target's display, a local code kept as sent.
func TestConceptMappedCodes(t *testing.T) {
	checkRules(t, message("ADT^A01", "PID|1||123^^^X^MR||DOE^JO|||||||||||S^Single^HL70002"), []want{
		{"Patient", "maritalStatus.coding.system", []string{"http://terminology.hl7.org/CodeSystem/v3-MaritalStatus"}},
		{"Patient", "maritalStatus.coding.code", []string{"S"}},
		{"Patient", "maritalStatus.coding.display", []string{"Never Married"}},
		{"MessageHeader", "meta.tag.system", []string{"http://terminology.hl7.org/CodeSystem/v2-0103"}},
		{"MessageHeader", "meta.tag.code", []string{"P"}},
		{"MessageHeader", "meta.tag.display", []string{"Production"}},
	})
	checkRules(t, message("ADT^A01", "PID|1||123^^^X^MR||DOE^JO|||||||||||T"), []want{
		{"Patient", "maritalStatus.coding.system", []string{"http://terminology.hl7.org/CodeSystem/v3-NullFlavor"}},
		{"Patient", "maritalStatus.coding.code", []string{"NAVU"}},
	})
	checkRules(t, message("ADT^A01", "PID|1||123^^^X^MR||DOE^JO|||||||||||2^Married^L"), []want{
		{"Patient", "maritalStatus.coding.system", nil},
		{"Patient", "maritalStatus.coding.code", []string{"2"}},
		{"Patient", "maritalStatus.coding.display", []string{"Married"}},
	})
	raw := []byte(strings.Join([]string{
		"MSH|^~\\&|APP|FAC|RAPP|RFAC|20260101120000||ORU^R01|MSG1|T^I|2.5.1",
		"PID|1||123^^^X^MR||DOE^JO",
		"OBR|1|PL-1||2951-2^Sodium^LN",
		"OBX|1|NM|2951-2^Sodium^LN||150|mmol/L||HH^Panic high^HL70078|||F",
	}, "\r"))
	checkRules(t, raw, []want{
		{"Observation", "interpretation.coding.code", []string{"HH"}},
		{"Observation", "interpretation.coding.display", []string{"Critical high"}},
		{"MessageHeader", "meta.tag.code", []string{"T", "I"}},
		{"MessageHeader", "meta.tag.system", []string{"http://terminology.hl7.org/CodeSystem/v2-0103", "http://terminology.hl7.org/CodeSystem/v2-0207"}},
	})
}

// TestProcedureMinutes: PR1-7 (procedure minutes) makes a procedure timed to
// the minute a period ending that long after PR1-5, counted in absolute time
// (across the change to summer time here), as PR1[Procedure] PR1-5 and PR1-7
// ask; a date alone, or no PR1-7, stays performedDateTime.
func TestProcedureMinutes(t *testing.T) {
	raw := message("ADT^A01", "PID|1||123^^^^MR||DOE^JANE",
		"PR1|1||80146002^Appendicectomy^SCT||20260329003000||90",
		"PR1|2||80146002^Appendicectomy^SCT||202607011200+0200||45",
		"PR1|3||80146002^Appendicectomy^SCT||20260701||30",
		"PR1|4||80146002^Appendicectomy^SCT||202607011200")
	checkRules(t, raw, []want{
		{"Procedure", "performedPeriod.start", []string{"2026-03-29T00:30:00+00:00", "2026-07-01T12:00:00+02:00"}},
		{"Procedure", "performedPeriod.end", []string{"2026-03-29T03:00:00+01:00", "2026-07-01T12:45:00+02:00"}},
		{"Procedure", "performedDateTime", []string{"2026-07-01", "2026-07-01T12:00:00+01:00"}},
	})

	_, issues, _ := convertMessage(t, message("ADT^A01", "PID|1||123^^^^MR||DOE^JANE",
		"PR1|1||80146002^Appendicectomy^SCT||202607011200||ninety"), Options{})
	if len(issues) != 1 || issues[0].Kind != IssueValue || !strings.Contains(issues[0].Message, `"ninety" left out: not a length of time`) {
		t.Errorf("issues %v, want one value issue for PR1-7", issues)
	}
}

// TestBedStatus: PV1-40 is the operational status of the bed (or room) PV1-3
// names, and of no other Location: not the ward or hospital above it, nor the
// prior location (PV1-6).
func TestBedStatus(t *testing.T) {
	pv1 := func(assigned, prior, status string) string {
		return segment("PV1", map[int]string{1: "1", 2: "I", 3: assigned, 6: prior, 40: status})
	}
	checkRules(t, message("ADT^A02", "PID|1||123^^^^MR||DOE^JANE", pv1("W1^R2^B3^HOSP", "W9^R8^B7^HOSP", "O")), []want{
		{"Location", "operationalStatus.code", []string{"O"}},
		{"Location", "operationalStatus.system", []string{"http://terminology.hl7.org/CodeSystem/v2-0116"}},
		{"Location", "operationalStatus.display", []string{"Occupied"}},
	})
	checkRules(t, message("ADT^A02", "PID|1||123^^^^MR||DOE^JANE", pv1("W1^R2^^HOSP", "", "K")), []want{
		{"Location", "operationalStatus.display", []string{"Contaminated"}},
	})
	// A ward alone has no bed status; nor has a code outside table 0116.
	checkRules(t, message("ADT^A02", "PID|1||123^^^^MR||DOE^JANE", pv1("W1^^^HOSP", "", "O")), []want{
		{"Location", "operationalStatus.code", nil},
	})
	checkRules(t, message("ADT^A02", "PID|1||123^^^^MR||DOE^JANE", pv1("W1^R2^B3^HOSP", "", "X")), []want{
		{"Location", "operationalStatus.code", nil},
	})
}

// TestOrderProvenanceFacilityAndDevice: ORC[Provenance] rows ORC-18 (the
// entering device, an agent), ORC-21..23 (the ordering facility, its
// location, with address and telephone) and ORC-24 (the ordering provider's
// address, on the Practitioner of ORC-12 and of no other).
func TestOrderProvenanceFacilityAndDevice(t *testing.T) {
	orc := segment("ORC", map[int]string{
		1: "NW", 2: "PL-1", 9: "202601011200",
		10: "999^ENTERER^ERIC",
		12: "1234^SMITH^JOHN",
		18: "WS-17^Ward workstation",
		21: "Good Hope Hospital^L^^^^&RXK&L",
		22: "1 Church Rd^^Birmingham^^B1 1AA",
		23: "0121 4960000^WPN^PH",
		24: "2 Provider St^^Solihull^^B91 1AA",
	})
	raw := message("ORM^O01", "PID|1||123^^^^MR||DOE^JANE", orc, "OBR|1|PL-1||58410-2^Full blood count^LN")
	b, _, out := convertMessage(t, raw, Options{Bundle: Collection})
	b.expect(t, []want{
		{"Location", "name", []string{"Good Hope Hospital"}},
		{"Location", "address.city", []string{"Birmingham"}},
		{"Location", "telecom.value", []string{"0121 4960000"}},
		{"Device", "identifier.value", []string{"WS-17"}},
		{"Device", "deviceName.name", []string{"Ward workstation"}},
		{"Device", "deviceName.type", []string{"user-friendly-name"}},
		{"Practitioner", "address.city", []string{"Solihull"}},
		{"Practitioner", "name.family", []string{"SMITH", "ENTERER"}},
	})
	var p map[string]any
	for _, r := range b.all("Provenance") {
		if r["location"] != nil {
			p = r
		}
	}
	if p == nil {
		t.Fatalf("no Provenance has a location:\n%s", out)
	}
	if loc := b.byRef(t, p["location"]); loc["name"] != "Good Hope Hospital" {
		t.Errorf("Provenance.location is %v, want the ordering facility", loc)
	}
	agents, _ := p["agent"].([]any)
	if len(agents) != 3 {
		t.Fatalf("%d agents, want enterer, author and the device:\n%s", len(agents), out)
	}
	if dev := b.byRef(t, agents[2].(map[string]any)["who"]); dev["resourceType"] != "Device" {
		t.Errorf("the last agent is %v, want the entering device", dev)
	}
}

// TestAdministeredAtAddress: RXA-28 is the address of the Location RXA-27
// names (RXA[Immunization] RXA-28), and of no other; also when PV1-3 named the
// same place first, and its map built the Location then: a later use of a
// value completes the resource an earlier one built.
func TestAdministeredAtAddress(t *testing.T) {
	const place = "CLINIC^^^Health Centre"
	rxa := segment("RXA", map[int]string{
		1: "0", 2: "1", 3: "20260301101500",
		5: "208^COVID-19 vaccine^CVX", 6: "0.3",
		27: place,
		28: "1 High St^^Leeds^^LS1 1AA",
	})
	for _, visitAt := range []string{"WARD^^^Hospital", place} {
		b, _, out := convertMessage(t, message("VXU^V04", "PID|1||123^^^^MR||DOE^JANE", "PV1|1|O|"+visitAt, rxa), Options{})
		b.expect(t, []want{{"Location", "address.city", []string{"Leeds"}}})
		at := b.one(t, "Immunization")["location"]
		if addr, _ := b.byRef(t, at)["address"].(map[string]any); addr == nil || addr["city"] != "Leeds" {
			t.Errorf("PV1-3 %s: the Immunization's Location lacks RXA-28:\n%s", visitAt, out)
		}
		visit := b.one(t, "Encounter")["location"].([]any)[0].(map[string]any)["location"]
		if same := reflect.DeepEqual(visit, at); same != (visitAt == place) {
			t.Errorf("PV1-3 %s: the visit's Location is %v, the immunization's %v:\n%s", visitAt, visit, at, out)
		}
	}
}

// The first use that says something of a resource's context has its say;
// later uses fill only what it left empty.
func TestFirstUseOfContextStands(t *testing.T) {
	in1 := func(n, addr string) string {
		return segment("IN1", map[int]string{1: n, 2: "BAV^Blue Advantage", 4: "Acme Health", 5: addr})
	}
	b, _, out := convertMessage(t, message("ADT^A01", "PID|1||123^^^^MR||DOE^JANE", "PV1|1|O",
		in1("1", ""), in1("2", "2 Low St^^York"), in1("3", "3 Mid St^^Hull")), Options{})
	var payor map[string]any
	for _, o := range b.all("Organization") {
		if o["name"] == "Acme Health" {
			payor = o
		}
	}
	addrs, _ := payor["address"].([]any)
	if len(addrs) != 1 || addrs[0].(map[string]any)["city"] != "York" {
		t.Errorf("payor addresses %v, want York's alone (the first IN1-5 given):\n%s", addrs, out)
	}
}

// RXD-30 is the pharmacy the dispense took place at, RXD-31 its address.
func TestDispensingPharmacy(t *testing.T) {
	rxd := segment("RXD", map[int]string{
		1: "1", 2: "01151327^Doxycycline^NDC", 3: "20260301101500", 4: "10",
		30: "RX01^Riverside Pharmacy^L",
		31: "4 Quay St^^Bristol^^BS1 4DJ^GB",
	})
	b, _, out := convertMessage(t, message("RDS^O13", "PID|1||123^^^^MR||DOE^JANE",
		"ORC|NW|ORD1", "RXE||01151327^Doxycycline^NDC|1", rxd), Options{})
	loc := b.byRef(t, b.one(t, "MedicationDispense")["location"])
	addr, _ := loc["address"].(map[string]any)
	if loc["name"] != "Riverside Pharmacy" || addr == nil || addr["city"] != "Bristol" {
		t.Errorf("the dispense's Location %v is not RXD-30 at RXD-31:\n%s", loc, out)
	}
	b.expect(t, []want{{"Location", "identifier.value", []string{"RX01"}}})
}

// MSH-17 is the sending facility's country; MSH-23 is the receiver only when
// MSH-6 names none.
func TestSenderCountryAndReceivingOrganization(t *testing.T) {
	// In an MSH, segment's numbers are one less than the field's: MSH-1 is
	// the field separator itself, so 16 is MSH-17.
	msh := segment("MSH", map[int]string{1: "^~\\&", 2: "APP", 3: "RX1", 4: "RAPP", 6: "20260101120000",
		8: "ADT^A01", 9: "MSG1", 10: "P", 11: "2.5.1", 16: "GBR", 22: "Leeds Teaching Hospitals^^^^^^^^^RR8"})
	raw := []byte(strings.Join([]string{msh, "PID|1||123^^^^MR||DOE^JANE"}, "\r"))
	b, _, out := convertMessage(t, raw, Options{})
	mh := b.one(t, "MessageHeader")
	sender := b.byRef(t, mh["sender"])
	addr, _ := sender["address"].([]any)
	if len(addr) != 1 || addr[0].(map[string]any)["country"] != "GBR" {
		t.Errorf("sender %v lacks MSH-17's country:\n%s", sender, out)
	}
	dest := mh["destination"].([]any)[0].(map[string]any)
	if recv := b.byRef(t, dest["receiver"]); recv["name"] != "Leeds Teaching Hospitals" {
		t.Errorf("receiver %v is not MSH-23's, with MSH-6 empty:\n%s", recv, out)
	}
	for _, o := range b.all("Organization") {
		if o["id"] != sender["id"] && o["address"] != nil {
			t.Errorf("MSH-17 reached another Organization: %v", o)
		}
	}
}

// ROL-11 is the address of the practitioner ROL-4 names, and of no other.
func TestRoleAddress(t *testing.T) {
	rol := segment("ROL", map[int]string{1: "1", 2: "AD", 3: "PP^Primary Care Provider^HL70443",
		4: "G123^Jones^Ann", 11: "1 Surgery Rd^^Leeds^^LS2 2BB^GB^O"})
	checkRules(t, message("ADT^A01", "PID|1||123^^^^MR||DOE^JANE", rol, "PV1|1|I|||||C01^Consultant^Carl"),
		[]want{{"Practitioner", "address.city", []string{"Leeds"}}})
}

// TestOULOrderReadsItsOwnORC: OUL puts an order's ORC after its OBR, and the
// structure's near: {ORC: after} makes OBR-2/OBR-3's "IF ORC-2 NOT VALUED"
// read that ORC. Read before the OBR, the second order's ORC would be the
// first order's: each order would carry its numbers twice, and an order whose
// ORC repeats its numbers would lose none.
func TestOULOrderReadsItsOwnORC(t *testing.T) {
	for _, typ := range []string{"OUL^R22^OUL_R22", "OUL^R24^OUL_R24"} {
		t.Run(typ, func(t *testing.T) {
			b, _, _ := convertMessage(t, message(typ, "PID|1||123^^^^MR||DOE^JANE||19700101|F", "SPM|1|SP1",
				"OBR|1|P1^PL|F1^FL|GLU^Glucose^L", "ORC|SC|P1^PL|F1^FL||CM", "OBX|1|NM|GLU^Glucose^L||5|mmol/L",
				"OBR|2|P2^PL|F2^FL|NA^Sodium^L", "ORC|SC|||||CM", "OBX|1|NM|NA^Sodium^L||140|mmol/L"),
				Options{Bundle: Collection})
			want := [][]string{{"P1/PLAC", "F1/FILL"}, {"P2/PLAC", "F2/FILL"}}
			orders := b.all("ServiceRequest")
			if len(orders) != len(want) {
				t.Fatalf("%d ServiceRequests, want %d", len(orders), len(want))
			}
			for i, sr := range orders {
				var got []string
				for _, id := range sr["identifier"].([]any) {
					m := id.(map[string]any)
					code := m["type"].(map[string]any)["coding"].([]any)[0].(map[string]any)["code"]
					got = append(got, fmt.Sprintf("%v/%v", m["value"], code))
				}
				if !slices.Equal(got, want[i]) {
					t.Errorf("order %d identifiers %v, want %v", i+1, got, want[i])
				}
			}
		})
	}
}

// TestPatientLastUpdate: PID-33 and PID-34 together are the last update of
// the patient's record, a Provenance of the Patient (PID[Provenance-Patient]).
// recorded is PID-33, else the message's time when PID-33 is no instant, so
// that a replay gives the same bundle; with either field missing, none.
func TestPatientLastUpdate(t *testing.T) {
	for _, tc := range []struct {
		name, pid33, pid34 string
		recorded, occurred string // "" for no update Provenance
	}{
		{"an instant", "202611210845", "RX1", "2026-11-21T08:45:00+00:00", "2026-11-21T08:45:00+00:00"},
		{"a day", "20261121", "RX1", "2026-01-01T12:00:00+00:00", "2026-11-21"},
		{"no facility", "202611210845", "", "", ""},
		{"no time", "", "RX1", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, _, out := convertMessage(t, message("ADT^A08^ADT_A01", segment("PID", map[int]string{
				3: "123^^^^MR", 5: "DOE^JANE", 33: tc.pid33, 34: tc.pid34})), Options{Bundle: Collection})
			var updates []map[string]any
			for _, p := range b.all("Provenance") {
				if strings.Contains(fmt.Sprint(p["activity"]), "UPDATE") {
					updates = append(updates, p)
				}
			}
			if tc.recorded == "" {
				if len(updates) != 0 {
					t.Fatalf("%d update Provenances, want none\n%s", len(updates), out)
				}
				return
			}
			if len(updates) != 1 {
				t.Fatalf("%d update Provenances, want 1\n%s", len(updates), out)
			}
			p := updates[0]
			if p["recorded"] != tc.recorded || p["occurredDateTime"] != tc.occurred {
				t.Errorf("recorded %v, occurred %v; want %s, %s", p["recorded"], p["occurredDateTime"], tc.recorded, tc.occurred)
			}
			if target := b.byRef(t, p["target"].([]any)[0]); target["resourceType"] != "Patient" {
				t.Errorf("target is a %v, want the Patient", target["resourceType"])
			}
			agent := p["agent"].([]any)[0].(map[string]any)
			if org := b.byRef(t, agent["who"]); org["name"] != tc.pid34 {
				t.Errorf("agent is %v, want the Organization %s", org["name"], tc.pid34)
			}
			if code := fmt.Sprint(agent["type"]); !strings.Contains(code, "performer") {
				t.Errorf("agent type %s, want performer", code)
			}
		})
	}
}

// TestLivingWill: PD1-7 is an Observation of the patient's advance directive
// (PD1[Observation-LivingWill]): a table 0315 code with its system and
// display, a local code kept as sent with its text, and none without PD1-7.
func TestLivingWill(t *testing.T) {
	pid := "PID|1||123^^^^MR||DOE^JANE||19700101|F"
	checkRules(t, message("ADT^A08^ADT_A01", pid, segment("PD1", map[int]string{7: "F"})), []want{
		{"Observation", "code.coding.code", []string{"75320-2"}},
		{"Observation", "status", []string{"final"}},
		{"Observation", "valueCodeableConcept.coding.code", []string{"F"}},
		{"Observation", "valueCodeableConcept.coding.system", []string{"http://terminology.hl7.org/CodeSystem/v2-0315"}},
		{"Observation", "valueCodeableConcept.coding.display", []string{"Yes, patient has a living will but it is not on file"}},
	})
	checkRules(t, message("ADT^A08^ADT_A01", pid, segment("PD1", map[int]string{7: "LPA^Lasting power of attorney^L"})), []want{
		{"Observation", "valueCodeableConcept.coding.code", []string{"LPA"}},
		{"Observation", "valueCodeableConcept.coding.system", nil},
		{"Observation", "valueCodeableConcept.text", []string{"Lasting power of attorney"}},
	})
	checkRules(t, message("ADT^A08^ADT_A01", pid, segment("PD1", map[int]string{3: "GP PRACTICE^^A81001"})), []want{
		{"Observation", "code.coding.code", nil},
	})
}

// TestPatientImportance: PV1-16, the VIP indicator, is the visit's special
// courtesy and also the patient's importance (PV1[Patient]).
func TestPatientImportance(t *testing.T) {
	checkRules(t, message("ADT^A01^ADT_A01", "PID|1||123^^^^MR||DOE^JANE||19700101|F",
		segment("PV1", map[int]string{2: "I", 16: "VIP^Very important person^L"})), []want{
		{"Patient", "extension.url", []string{"http://hl7.org/fhir/StructureDefinition/patient-importance"}},
		{"Patient", "extension.valueCodeableConcept.coding.code", []string{"VIP"}},
		{"Encounter", "hospitalization.specialCourtesy.coding.code", []string{"VIP"}},
	})
}

// TestReportReadsItsOrdersORC: the ORC[DiagnosticReport] rows. The report of
// an order carries its ORC's numbers where they add to the OBR's (ORC-2 and
// ORC-3 only when they differ from OBR-2 and OBR-3), its placer group number
// (ORC-4), its status reason (ORC-16) and its confidentiality (ORC-28, which
// labels the order too). In OUL the ORC follows its OBR, and a report reads
// its own order's ORC, never the previous order's.
func TestReportReadsItsOrdersORC(t *testing.T) {
	const v3 = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
	orc := segment("ORC", map[int]string{1: "RE", 2: "P1^PL", 3: "F9^FL", 4: "G1^PL",
		16: "DUP^Duplicate order^L", 28: "R^Restricted^HL70177"})
	t.Run("ORU", func(t *testing.T) {
		checkRules(t, message("ORU^R01^ORU_R01", "PID|1||123^^^^MR||DOE^JANE", orc,
			"OBR|1|P1^PL|F1^FL|GLU^Glucose^L", "OBX|1|NM|GLU^Glucose^L||5|mmol/L|||||F"), []want{
			{"DiagnosticReport", "identifier.value", []string{"P1", "F1", "F9", "G1"}},
			{"DiagnosticReport", "identifier.type.coding.code", []string{"PLAC", "FILL", "FILL", "PGN"}},
			{"DiagnosticReport", "extension.url", []string{"http://hl7.org/fhir/StructureDefinition/event-statusReason"}},
			{"DiagnosticReport", "extension.valueCodeableConcept.coding.code", []string{"DUP"}},
			{"DiagnosticReport", "meta.security.code", []string{"R"}},
			{"DiagnosticReport", "meta.security.system", []string{v3}},
			{"DiagnosticReport", "meta.security.display", []string{"restricted"}},
			{"ServiceRequest", "meta.security.code", []string{"R"}},
		})
	})
	t.Run("ORC-28 labels every resource an ORC makes", func(t *testing.T) {
		orc := segment("ORC", map[int]string{1: "NW", 2: "P1^PL", 9: "20261121090000", 10: "C1^SMITH^ANN", 28: "V"})
		checkRules(t, message("VXU^V04^VXU_V04", "PID|1||123^^^^MR||DOE^JANE", orc,
			"RXA|0|1|20261121090000||08^HepB^CVX|0.5|mL^mL^UCUM"), []want{
			{"Immunization", "meta.security.code", []string{"V"}},
		})
		checkRules(t, message("ORM^O01^ORM_O01", "PID|1||123^^^^MR||DOE^JANE", orc, "OBR|1|P1^PL||GLU^Glucose^L"), []want{
			{"ServiceRequest", "meta.security.code", []string{"V"}},
			{"Provenance", "meta.security.code", []string{"V"}},
		})
	})
	t.Run("a code outside table 0177 is kept as sent", func(t *testing.T) {
		checkRules(t, message("ORU^R01^ORU_R01", "PID|1||123^^^^MR||DOE^JANE",
			segment("ORC", map[int]string{1: "RE", 2: "P1^PL", 28: "ZZ^Board only^L"}),
			"OBR|1|P1^PL||GLU^Glucose^L", "OBX|1|NM|GLU^Glucose^L||5|mmol/L|||||F"), []want{
			{"DiagnosticReport", "identifier.value", []string{"P1"}},
			{"DiagnosticReport", "meta.security.code", []string{"ZZ"}},
			{"DiagnosticReport", "meta.security.display", []string{"Board only"}},
			{"DiagnosticReport", "meta.security.system", nil},
		})
	})
	t.Run("OUL", func(t *testing.T) {
		b, _, out := convertMessage(t, message("OUL^R22^OUL_R22", "PID|1||123^^^^MR||DOE^JANE||19700101|F", "SPM|1|SP1",
			"OBR|1|P1^PL|F1^FL|GLU^Glucose^L", segment("ORC", map[int]string{1: "SC", 2: "P1^PL", 3: "F1^FL", 4: "G1^PL", 28: "V"}),
			"OBX|1|NM|GLU^Glucose^L||5|mmol/L",
			"OBR|2|P2^PL|F2^FL|NA^Sodium^L", "ORC|SC|P2^PL|F2^FL", "OBX|1|NM|NA^Sodium^L||140|mmol/L"),
			Options{Bundle: Collection})
		reports := b.all("DiagnosticReport")
		if len(reports) != 2 {
			t.Fatalf("%d DiagnosticReports, want 2\n%s", len(reports), out)
		}
		for i, want := range []string{
			`[map[type:map[coding:[map[code:PLAC system:http://terminology.hl7.org/CodeSystem/v2-0203]]] value:P1] ` +
				`map[type:map[coding:[map[code:FILL system:http://terminology.hl7.org/CodeSystem/v2-0203]]] value:F1] ` +
				`map[type:map[coding:[map[code:PGN system:http://terminology.hl7.org/CodeSystem/v2-0203]]] value:G1]]`,
			`[map[type:map[coding:[map[code:PLAC system:http://terminology.hl7.org/CodeSystem/v2-0203]]] value:P2] ` +
				`map[type:map[coding:[map[code:FILL system:http://terminology.hl7.org/CodeSystem/v2-0203]]] value:F2]]`,
		} {
			if got := fmt.Sprint(reports[i]["identifier"]); got != want {
				t.Errorf("report %d identifiers\n%s\nwant\n%s", i+1, got, want)
			}
		}
		security := func(i int) string {
			meta, _ := reports[i]["meta"].(map[string]any)
			return fmt.Sprint(meta["security"])
		}
		if got, want := security(0), "[map[code:V display:very restricted system:"+v3+"]]"; got != want {
			t.Errorf("report 1 security %s, want %s", got, want)
		}
		if got := security(1); got != "<nil>" {
			t.Errorf("report 2 security %s, want none: its ORC has no ORC-28", got)
		}
	})
}

// TestDocumentNotes: in an MDM, an NTE after an OBX is a note on the
// document's content (NTE[DocumentReference]), an attachment of its own after
// the OBX text, one line per NTE-3 repetition. An NTE without NTE-3 adds none.
func TestDocumentNotes(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	checkRules(t, message("MDM^T02^MDM_T02", "PID|1||123^^^^MR||DOE^JANE",
		"TXA|1|DS|TX|20261121090000|||||||||DOC1||||||AU",
		"OBX|1|TX|DS^Discharge summary^L||Discharged home.||||||F",
		"NTE|1|L|Reviewed by pharmacist~No changes", "NTE|2|L|",
		"OBX|2|TX|DS^Discharge summary^L||Follow up in 2 weeks.||||||F",
		"NTE|1|L|Copy sent to GP"), []want{
		{"DocumentReference", "content.attachment.data", []string{
			b64("Discharged home.\nFollow up in 2 weeks."), b64("Reviewed by pharmacist\nNo changes"), b64("Copy sent to GP")}},
		{"DocumentReference", "content.attachment.contentType", []string{
			"text/plain; charset=utf-8", "text/plain; charset=utf-8", "text/plain; charset=utf-8"}},
	})
}
