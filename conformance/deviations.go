package conformance

// Deviations are the expected facts Spinebridge deliberately does not produce,
// each with the reason and the HL7 v2-to-FHIR IG row that justifies it. They
// are listed, with their counts, in every report and in docs/conformance.md.
var Deviations = []Deviation{}
