package itk

import (
	"errors"
	"fmt"
	"strings"
)

// Code is an ITK toolkit error code, as a SOAP fault's ToolkitErrorInfo and an
// infrastructure NACK carry it.
type Code int

// The toolkit error codes (code system CodeSystemToolkit).
const (
	// CodeInvalidMessage refuses a request that breaks the SOAP, WS-Addressing or
	// Distribution Envelope rules, or whose payload cannot be read: the sender
	// must fix it before sending it again.
	CodeInvalidMessage Code = 1000
	// CodeRetryable reports a failure on this side that may pass (the journal
	// could not take the message): the sender should send it again later.
	CodeRetryable Code = 2100
	// CodeNotRetryable reports a message this receiver will never process (a
	// service or payload kind it does not offer, an encrypted payload).
	CodeNotRetryable Code = 2200
	// CodeAccessDenied refuses a request without the identity the receiver needs.
	CodeAccessDenied Code = 3000
)

// Code systems of the codes an error carries.
const (
	// CodeSystemToolkit is the ITK toolkit error code system (1000, 2100, ...).
	CodeSystemToolkit = "2.16.840.1.113883.2.1.3.2.4.17.268"
	// CodeSystemDE is the ITK 2.2 Distribution Envelope error vocabulary
	// (DE0001 ... DE0012).
	CodeSystemDE = "2.16.840.1.113883.2.1.3.2.4.17.516"
)

// Fault codes of SOAP 1.1, as the local part of faultcode.
const (
	FaultClient          = "Client"
	FaultServer          = "Server"
	FaultMustUnderstand  = "MustUnderstand"
	FaultVersionMismatch = "VersionMismatch"
)

// Sentinel errors for errors.Is: the classes of refusal callers branch on.
var (
	// ErrDoctype refuses a document with a document type declaration: DTDs and
	// entities are never processed, so a document that needs one is refused
	// before it is parsed.
	ErrDoctype = errors.New("document type declarations are not accepted")
	// ErrTooLarge refuses input over a size limit: the request body, or a payload
	// once decoded or decompressed.
	ErrTooLarge = errors.New("too large")
	// ErrTooDeep refuses XML nested deeper than the limit.
	ErrTooDeep = errors.New("nested too deeply")
	// ErrEncoding refuses input that is not UTF-8.
	ErrEncoding = errors.New("not UTF-8")
	// ErrMalformed refuses input that is not well-formed XML.
	ErrMalformed = errors.New("malformed XML")
	// ErrRule reports a request that breaks a rule of SOAP, WS-Addressing,
	// WS-Security or the Distribution Envelope.
	ErrRule = errors.New("envelope rule broken")
	// ErrPayload reports a payload that cannot be decoded or converted.
	ErrPayload = errors.New("payload not readable")
	// ErrUnsupported reports a well-formed request this receiver does not
	// process: an unknown service, an encrypted payload, an unknown payload kind.
	ErrUnsupported = errors.New("not supported")
	// ErrNotStored reports a message the journal did not take.
	ErrNotStored = errors.New("not stored")
)

// Error is why a request was refused. It names the rule and where in the
// request it failed, never the value found there: that may be patient data.
type Error struct {
	Code  Code   // the toolkit code the fault or NACK carries
	Fault string // the SOAP faultcode: FaultClient, FaultServer, ...
	// DECode is the Distribution Envelope error code (DE0001 ... DE0012) when a
	// rule of the envelope failed, else empty.
	DECode string
	// Rule is a short, stable name of the rule, such as "wsa-action-service";
	// the negative fixtures are named after it.
	Rule string
	// Path is where the rule failed, as an XPath with the usual prefixes
	// (soap, wsa, wsse, wsu, itk); empty when it concerns the whole request.
	Path string
	Text string // what is wrong, for people
	Err  error  // the sentinel: ErrRule, ErrDoctype, ...
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "itk: %d", e.Code)
	if e.DECode != "" {
		b.WriteString(" " + e.DECode)
	}
	if e.Rule != "" {
		b.WriteString(" " + e.Rule)
	}
	if e.Path != "" {
		b.WriteString(" at " + e.Path)
	}
	b.WriteString(": " + e.Text)
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Errors is every rule a request breaks, in document order. Its Error shows the
// first and counts the rest.
type Errors []*Error

func (es Errors) Error() string {
	switch len(es) {
	case 0:
		return "itk: no errors"
	case 1:
		return es[0].Error()
	}
	return fmt.Sprintf("%v (and %d more)", es[0], len(es)-1)
}

// Unwrap lets errors.Is and errors.As see every error in the list.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// First returns the error a refusal reports: the first of err's *Error values,
// or a retryable server error when err holds none.
func First(err error) *Error {
	var es Errors
	if errors.As(err, &es) && len(es) > 0 {
		return es[0]
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: CodeRetryable, Fault: FaultServer, Rule: "internal", Text: "the message could not be processed", Err: err}
}

// invalid returns a client error with code 1000.
func invalid(rule, deCode, path, text string, sentinel error) *Error {
	return &Error{Code: CodeInvalidMessage, Fault: FaultClient, DECode: deCode, Rule: rule, Path: path, Text: text, Err: sentinel}
}
