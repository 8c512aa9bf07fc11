// Package conformance runs conversion suites: it converts each HL7 v2 message of a
// suite with the engine, checks that the FHIR R4 Bundle we produce is valid, and
// measures how many of the clinical facts of an expected bundle ours carries. The
// command `spinebridge conformance run` is its front end; the listener suites
// beside it in this directory drive a running engine over MLLP instead.
//
// # Suites
//
// A conversion suite is a directory tree of cases. A case is an input message
// X.hl7 beside the bundle expected for it, X-expected.json; it is named by the
// input's path within the suite without the extension ("ADT_A01/ADT-A01-01").
// This is the layout of the public corpus of Microsoft's FHIR-Converter samples,
// one folder per message type, and of our own suites.
//
// A case passes when the conversion succeeds, our bundle is valid R4, and every
// expected fact is found in it. The run as a whole is held to two things: every
// bundle valid (no exceptions), and a floor on the share of expected facts found
// across all cases, which CI raises as the engine improves and never lowers.
//
// # Why facts, not a diff
//
// Two correct conversions of one message differ in much that does not matter:
// resource ids (Microsoft's are SHA-256 GUIDs, ours are not), bundle type and
// request methods, the order of entries and repetitions, the offset a date-time is
// written at (Microsoft's expected bundles were rendered at +05:30), narrative,
// extensions, and the URIs of identifier systems (we use NHS systems on purpose).
// A text or tree diff would drown the differences that matter in these. So each
// bundle is reduced to a multiset of facts, Fact{Resource, Path, Value}, each one
// a statement a clinician or a downstream system would act on, written in a
// normal form; a case's coverage is the share of the expected multiset found in
// ours.
//
// # What counts as a clinical fact
//
// Facts are taken from every entry.resource of the Bundle, at any depth, by the
// name and shape of each element:
//
//   - Identifiers: identifier.value and identifier.type.coding.code (also for
//     masterIdentifier, accessionIdentifier and the like, and the logical
//     identifier of a reference). Who the patient is, which order, which visit.
//   - Names: a HumanName's family and given, in Patient, Practitioner,
//     RelatedPerson and wherever else one appears (Patient.contact.name).
//   - Demographics: gender, birthDate, deceasedBoolean and deceasedDateTime;
//     marital status and other coded demographics through the codes rule.
//   - Addresses: line, city and postalCode; telecom: value.
//   - Codes: the code of every coding of every CodeableConcept, under the path of
//     the element holding it (Observation.code.coding.code,
//     Observation.interpretation.coding.code, Condition.code.coding.code), and of
//     every Coding (Encounter.class.code). The coding's system is a fact only for
//     LOINC (http://loinc.org) and SNOMED CT (http://snomed.info/sct), whose URIs
//     carry clinical meaning; other systems are the converter's choice.
//   - Values: value[x] wherever it appears (Observation and its components):
//     a Quantity's value and unit, strings, codes, booleans, numbers,
//     CodeableConcepts, date-times, periods, ranges and ratios; and
//     referenceRange text, low and high.
//   - Statuses: the resource's own status and intent.
//   - Times: elements named effective[x], issued, authoredOn, recordedDate,
//     onset[x], occurrence[x], performed[x], collected[x], birthDate, date, start
//     and end (so every Period's start and end), timestamp. meta.lastUpdated is not
//     one.
//   - References between resources, as the type of the target: Observation
//     subject "->Patient", DiagnosticReport result "->Observation". Attaching a
//     result to the right order and patient is a clinical fact; the target's id is
//     not. A reference resolves through the bundle, by fullUrl (urn:uuid:...) or by
//     Type/id; a relative Type/id to a resource outside the bundle still names its
//     type, as FHIR defines it.
//
// Left out entirely: resource and element ids, meta, narrative text, extensions,
// Bundle type and requests, Provenance resources, identifier systems, periods and
// assigners, system URIs other than LOINC and SNOMED CT, a Quantity's code and
// system (converters disagree on UCUM versus local unit tables for one unit),
// quantities outside value[x] and reference ranges (doses, amounts), names that
// are plain strings (Organization.name, Location.name), display texts, and
// references to Location resources (location hierarchies are modelled
// differently by every converter; the Location resources themselves still carry
// their facts). Resources are otherwise all walked, MessageHeader included.
//
// # Normal forms
//
// Strings are trimmed and compared case-sensitively. Decimals are written in their
// shortest plain form, so 5.20 and 5.2 are one fact. A date-time with a time of
// day becomes a UTC instant followed by its precision, so
// 2006-09-01T10:30:00+05:30 and 2006-09-01T05:00:00Z are the same fact,
// "2006-09-01T05:00:00Z@second"; precision is kept strictly (minute, second,
// millisecond), so a value to the minute and one to the second are different facts
// even at the same instant, because a converter that loses or invents precision is
// wrong. A date without a time (2006-09-01, 2006-09, 2006) stays a date.
//
// # Expected bundles that are not valid R4
//
// Some expected bundles of the public corpus break R4 themselves (empty strings,
// Provenance without agent). Each expected bundle is run through the same
// validator as ours; an invalid one is noted on its case, and where it breaks R4,
// R4 wins: elements that cannot be read as their type (empty strings, malformed
// date-times or decimals, references that resolve to nothing) yield no fact and
// are not demanded of us.
//
// # Deviations
//
// Where Spinebridge deliberately differs from the expected bundles, following
// the HL7 v2-to-FHIR IG, the difference is written down as a Deviation with its
// reason and IG row (deviations.yaml, built in; --deviations replaces it). An
// expected fact we lack that a deviation covers is counted as deliberate rather
// than missing; a fact we produce is never taken by one. The coverage stays the
// share of all expected facts found, so a deviation cannot raise it; the report
// lists each deviation with the facts it accounted for, so none hides silently.
package conformance
