package routes

import (
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

// issueKind is a kind of issue and what a rejection for one says.
type issueKind struct {
	name       string
	code       hl7v2.ErrorCode
	diagnostic string
}

// issueKinds are the kinds of issue a route may reject on, with the ERR-3
// code and the ERR-7 text of a rejection for one. Unlike an issue's Text, the
// text never holds a value from the message. Their order is their bit in
// IssueKinds, which pending deliveries store: new kinds go at the end.
var issueKinds = [...]issueKind{
	{"nhs-number", hl7v2.CodeDataType, "NHS number fails its Modulus 11 check"},
	{"value", hl7v2.CodeDataType, "a value is not of its field's type, or not a code allowed there"},
	{"incomplete", hl7v2.CodeRequiredFieldMissing, "the message lacks what FHIR R4 requires of a resource it describes"},
	{"charset", hl7v2.CodeApplicationInternalError, "the character set in MSH-18 is not supported"},
	{"mapping", hl7v2.CodeApplicationInternalError, "a mapping failed on this message"},
}

// IssueKindNames are the kinds' names, as routes files write them.
var IssueKindNames = func() []string {
	names := make([]string, len(issueKinds))
	for i, k := range issueKinds {
		names[i] = k.name
	}
	return names
}()

// IssueKinds is a set of issue kinds: those a route rejects on.
type IssueKinds uint8

// ParseIssueKind returns the set holding the kind named, or false when there
// is no such kind.
func ParseIssueKind(name string) (IssueKinds, bool) {
	if i := kindIndex(name); i >= 0 {
		return 1 << i, true
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
	for i, ik := range issueKinds {
		if k&(1<<i) != 0 {
			names = append(names, ik.name)
		}
	}
	return strings.Join(names, ", ")
}

// kindIndex returns the place of kind in issueKinds, or -1.
func kindIndex(kind string) int {
	return slices.IndexFunc(issueKinds[:], func(k issueKind) bool { return k.name == kind })
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

// kinds lists the kinds of e's issues, each once, for logs: unlike the
// issues' texts they never quote the message.
func (e *RejectedError) kinds() string {
	var k IssueKinds
	for _, is := range e.Issues {
		b, _ := ParseIssueKind(is.Kind)
		k |= b
	}
	return k.String()
}

// rejection is the verdict for a message a route rejected for re's issues:
// code, with an ERR segment per issue (up to maxAckErrors) that names the
// field and the kind of problem, never its value.
func rejection(re *RejectedError, code hl7v2.AckCode) verdict {
	v := verdict{code: code, status: StatusError}
	var problems []string
	for _, is := range re.Issues {
		ik := issueKind{code: hl7v2.CodeApplicationInternalError}
		if i := kindIndex(is.Kind); i >= 0 {
			ik = issueKinds[i]
		}
		if v.nerr < len(v.errs) {
			v.errs[v.nerr] = hl7v2.AckError{Code: ik.code, Location: is.At, Diagnostic: ik.diagnostic}
			v.nerr++
		}
		if !slices.Contains(problems, ik.diagnostic) {
			problems = append(problems, ik.diagnostic)
		}
	}
	v.text = "message rejected: " + strings.Join(problems, "; ")
	return v
}
