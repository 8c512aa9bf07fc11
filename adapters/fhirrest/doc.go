// Package fhirrest delivers FHIR R4 resources to a FHIR server over its REST
// API: the destination of kind "fhir" in the routes file.
//
// # Two ways to send a Bundle
//
// A route's transform writes a transaction Bundle whose entries refer to each
// other by "urn:uuid:" full URLs and carry a request: a conditional PUT
// ("Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009") for what
// has a business identifier, a POST for the rest. In mode "bundle", the
// default, the Bundle is POSTed to the server's base URL as it stands, and the
// server resolves the references and applies the entries as one transaction (or
// as a batch, each on its own). In mode "resources", for servers that take no
// transactions, each entry is sent on its own, in order: PUT to base/request.url
// for an entry whose request is a PUT, POST to base/Type (with If-None-Exist
// when the entry has ifNoneExist) for the others. A reference to another entry
// is rewritten to the "Type/id" the server gave that entry, read from the
// Location header or the body of its response, so an entry is sent after the
// entries it refers to even when it comes before them in the Bundle. Entries
// that refer to each other in a circle can only be sent in a transaction.
//
// # Sending the same delivery twice
//
// Every request carries X-Request-ID, a UUID the NHS API Platform uses to spot
// a request it has already taken, and X-Correlation-ID. Both are name-based
// (version 5) UUIDs, of the delivery's ID and of its journal record's ID, so a
// retry of a delivery, by the dispatcher or after a restart, carries the same
// values as the first attempt; in mode resources each entry has its own request
// ID, the same on every attempt. Conditional PUTs and If-None-Exist make the
// entries themselves safe to apply twice.
//
// # Outcomes
//
// A 2xx answer delivers, unless it is a transaction-response or batch-response
// Bundle with an entry whose status is not 2xx. 408, 425, 429, 5xx, 401 (a
// rotated token file mends it), a redirect, a timeout and a failed connection
// are retried, no sooner than Retry-After says when the server sends it; any
// other 4xx is permanent and the delivery is dead-lettered. Errors say what the
// server's OperationOutcome said, severity, code and diagnostics, cut short;
// they never quote the request's URL, whose conditional query may hold an NHS
// number, nor the body.
//
// # Authentication
//
// A bearer token comes from token_env, read when the destination is built, or
// from token_file, read again whenever the file changes, so that a token
// rotated on disk is used from the next delivery on. TLS can present a client
// certificate (mutual TLS) and trust a private CA.
package fhirrest
