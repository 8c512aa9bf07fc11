package routes

import _ "embed"

// DefaultTable is the routing table an engine runs when it is given none:
// every HL7 v2 message of a mapped type to FHIR Bundle files, and every message
// as it arrived, under ./out. See default_routes.yaml.
//
//go:embed default_routes.yaml
var DefaultTable []byte
