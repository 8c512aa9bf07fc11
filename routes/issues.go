package routes

import (
	"errors"
	"slices"
	"strings"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
)

// Issue is a problem a transform met in a message and transformed past: a
// value it left out, an NHS number whose check digit fails. A route decides
// what becomes of it (reject:): the message is delivered and the issue kept in
// its journey as a warning, or the route refuses it with an AE.
type Issue struct {
	Kind string         // one of IssueKindNames
	At   hl7v2.Location // where its value lies, when known
	Text string         // the transform's report: place, problem and mapping rule
}

// IssueTransformer is a Transformer that reports the issues it met.
type IssueTransformer interface {
	Transformer
	// TransformIssues is Transform, appending to issues those it met.
	TransformIssues(dst []byte, rec *Record, issues []Issue) (body []byte, contentType string, _ []Issue, err error)
}

// IssueKindNames are the kinds of issue a route may reject on, as routes files
// name them. Their order is their bit in IssueKinds, which pending deliveries
// store: new kinds go at the end.
var IssueKindNames = []string{"nhs-number", "value", "incomplete", "charset", "mapping"}

// issueDiagnostics are the ERR-7 texts of a rejection, one per kind. Unlike an
// issue's Text they never hold a value from the message.
var issueDiagnostics = map[string]string{
	"nhs-number": "NHS number fails its Modulus 11 check",
	"value":      "a value is not of its field's type, or not a code allowed there",
	"incomplete": "the message lacks what FHIR R4 requires of a resource it describes",
	"charset":    "the character set in MSH-18 is not supported",
	"mapping":    "a mapping failed on this message",
}

// issueErrorCodes are the ERR-3 codes of a rejection, by kind; 207 otherwise.
var issueErrorCodes = map[string]hl7v2.ErrorCode{
	"nhs-number": hl7v2.CodeDataType,
	"value":      hl7v2.CodeDataType,
	"incomplete": hl7v2.CodeRequiredFieldMissing,
}

// IssueKinds is a set of issue kinds: those a route rejects on.
type IssueKinds uint8

// ParseIssueKind returns the set holding the kind named, or false when there
// is no such kind.
func ParseIssueKind(name string) (IssueKinds, bool) {
	for i, n := range IssueKindNames {
		if n == name {
			return 1 << i, true
		}
	}
	return 0, false
}

// Has reports whether kind is in k.
func (k IssueKinds) Has(kind string) bool {
	b, ok := ParseIssueKind(kind)
	return ok && k&b != 0
}

// String lists the kinds in k, comma-separated.
func (k IssueKinds) String() string {
	var names []string
	for i, n := range IssueKindNames {
		if k&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	return strings.Join(names, ", ")
}

// RejectedError is the failure of a transform whose route rejects a message
// for issues it met. It is permanent: the route's deliveries are
// dead-lettered with it, and a sender waiting for processing gets an AE
// naming each issue.
type RejectedError struct {
	Issues []Issue // those of the kinds the route rejects on
}

func (e *RejectedError) Error() string {
	texts := make([]string, len(e.Issues))
	for i, is := range e.Issues {
		texts[i] = is.Text
	}
	return "rejected: " + strings.Join(texts, "; ")
}

// transform runs t on rec and returns the body, its content type and the
// issues met that reject does not name. When it names one met, the error is a
// permanent *RejectedError holding those.
func transform(t Transformer, rec *Record, reject IssueKinds) ([]byte, string, []Issue, error) {
	it, ok := t.(IssueTransformer)
	if !ok {
		body, ctype, err := t.Transform(nil, rec)
		return body, ctype, nil, err
	}
	body, ctype, issues, err := it.TransformIssues(nil, rec, nil)
	if err != nil || reject == 0 {
		return body, ctype, issues, err
	}
	var rejected *RejectedError
	warned := issues[:0:0]
	for _, is := range issues {
		if reject.Has(is.Kind) {
			if rejected == nil {
				rejected = &RejectedError{}
			}
			rejected.Issues = append(rejected.Issues, is)
		} else {
			warned = append(warned, is)
		}
	}
	if rejected != nil {
		return nil, "", warned, Permanent(rejected)
	}
	return body, ctype, warned, nil
}

// maxAckErrors bounds the ERR segments of a rejection's ACK.
const maxAckErrors = 4

// rejection is the verdict for a message a route rejected, or false when err
// is not a rejection: code, with an ERR segment per issue (up to
// maxAckErrors) that names the field and the kind of problem, never its value.
func rejection(err error, code hl7v2.AckCode) (verdict, bool) {
	var re *RejectedError
	if !errors.As(err, &re) || len(re.Issues) == 0 {
		return verdict{}, false
	}
	v := verdict{code: code, status: StatusError}
	var problems, kinds []string
	for _, is := range re.Issues {
		if !slices.Contains(kinds, is.Kind) {
			kinds = append(kinds, is.Kind)
		}
		if v.nerr < len(v.errs) {
			ec, ok := issueErrorCodes[is.Kind]
			if !ok {
				ec = hl7v2.CodeApplicationInternalError
			}
			v.errs[v.nerr] = hl7v2.AckError{Code: ec, Location: is.At, Diagnostic: issueDiagnostics[is.Kind]}
			v.nerr++
		}
		if p := issueDiagnostics[is.Kind]; !slices.Contains(problems, p) {
			problems = append(problems, p)
		}
	}
	v.text = "message rejected: " + strings.Join(problems, "; ")
	v.kinds = strings.Join(kinds, ", ")
	return v, true
}
