// Package fhirmodel answers questions about the FHIR R4 model, and checks
// FHIR R4 JSON against it, using Google's FHIR protos
// (github.com/google/fhir/go) as the source of truth.
//
// # The model
//
// The mapping engine checks every mapping file when it loads: that
// "Patient.contact.name.family" exists, that it is a string, that
// Observation.subject may refer to a Patient, that "female" is a code
// Patient.gender allows. Resource and Datatype return a Type for any of the
// 146 R4 resources and the complex data types; Type.Element answers for one
// element and returns the element's own Type to descend into; Lookup walks a
// whole dotted path and, when a step is wrong, says which and suggests the
// nearest names, so that a typo in a mapping is reported at load with its fix
// rather than found in production.
//
// Everything comes from the generated protos' descriptors and the FHIR
// annotations on them, not from a list kept here. The ContainedResource
// message lists every resource type as a member of its oneof. A message's
// structure definition URL gives its FHIR name; validation_requirement marks
// min cardinality 1; valid_reference_type lists a Reference's targets; a
// message marked is_choice_type is a choice element (value[x]), which JSON
// spells once per type (valueQuantity, valueString); and a code bound to a
// required value set is a per-element message around an enum
// (Patient.GenderCode), whose FHIR codes are the enum names in lower case with
// '-' for '_', or the fhir_original_code annotation where the name could not
// hold the code. Names are JSON names throughout, so the proto's escaped
// field names (class_value) appear as FHIR spells them (class).
//
// The model is built once, on first use, in a few tens of milliseconds, and is
// read-only afterwards: every function here is safe for concurrent use, though
// Marshal rewrites the message it is given, which must not be shared meanwhile.
//
// # Validation
//
// Validate runs Google's jsonformat unmarshaller, with validation, over a
// resource or Bundle and returns every problem it finds, each naming the
// element's path and never its value, and adds the checks jsonformat lacks for
// empty strings, objects and arrays. Parse and Marshal expose jsonformat's
// proto model and compact writer.
//
// The engine writes FHIR JSON itself rather than through jsonformat, whose
// marshaller needs the whole proto built first and then makes a Go map for
// every JSON object before encoding the maps. For the twelve-resource bundle
// in BenchmarkMarshal that is about 2,200 allocations, and for the engine's
// ADT^A01 bundle (transforms' BenchmarkJSONFormat) about 6,400, where the
// engine's whole conversion of that message, parsing included, makes about
// 400 (BenchmarkConvert). jsonformat stays the validator: the independent
// check the conformance suite applies to every bundle the engine writes
// (conformance.Options.Validate takes this Validate), so that a bug in the
// engine's writer cannot hide in the same code that checks it.
package fhirmodel
