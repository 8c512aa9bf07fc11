// Package mappings holds Spinebridge's default HL7 v2 to FHIR R4 mapping set as
// data: segment maps, data-type maps, code tables and message structures, each
// naming the HL7 v2-to-FHIR IG table it implements. The transforms package
// compiles them; README.md describes the file formats.
package mappings

import "embed"

// Files is the default mapping set.
//
//go:embed segments datatypes tables messages
var Files embed.FS
