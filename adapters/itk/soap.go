package itk

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Responses, faults and outbound requests are built as element trees and
// written by the same writer that writes a payload out of an envelope
// (appendElement), so there is one place that escapes text and attributes.

const (
	wsaAnonymous   = "http://www.w3.org/2005/08/addressing/anonymous"
	wsaFaultAction = "http://www.w3.org/2005/08/addressing/soap/fault"
	timestampTTL   = 10 * time.Minute
)

// soapNamespaces are declared on the Envelope of everything this package writes.
var soapNamespaces = []any{
	ns("soap", nsSOAP11), ns("wsa", nsWSA), ns("wsse", nsWSSE), ns("wsu", nsWSU), ns("itk", nsITK),
}

func xsDateTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }

func timestamp(now time.Time) *xmlElem {
	return el("wsu:Timestamp", at("wsu:Id", newUUID()),
		el("wsu:Created", xsDateTime(now)),
		el("wsu:Expires", xsDateTime(now.Add(timestampTTL))))
}

func envelope(header []any, body *xmlElem) []byte {
	env := el("soap:Envelope", append(soapNamespaces, el("soap:Header", header...), el("soap:Body", body))...)
	return appendElement([]byte("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"), env, nil)
}

// buildResponse writes the synchronous answer to a request that was
// journaled: itk:SimpleMessageResponse with text, Action the request's plus
// "Response", RelatesTo its MessageID.
func buildResponse(req *Request, text string, now time.Time) []byte {
	return envelope([]any{
		el("wsa:MessageID", "uuid:"+newUUID()),
		el("wsa:Action", req.Header.Action+"Response"),
		el("wsa:To", wsaAnonymous),
		el("wsa:RelatesTo", req.Header.MessageID),
		el("wsse:Security", timestamp(now)),
	}, el("itk:SimpleMessageResponse", text))
}

// buildFault writes the SOAP fault for e. relatesTo is the request's
// MessageID, when it could be read. The diagnostic text names the rules
// broken and where, never a value.
func buildFault(relatesTo string, e *Error, more int, now time.Time) []byte {
	header := []any{
		el("wsa:MessageID", "uuid:"+newUUID()),
		el("wsa:Action", wsaFaultAction),
		el("wsa:To", wsaAnonymous),
	}
	if relatesTo != "" {
		header = append(header, el("wsa:RelatesTo", relatesTo))
	}
	header = append(header, el("wsse:Security", timestamp(now)))
	faultString := "A client related error has occurred, see detail element for further information"
	if e.Fault == FaultServer {
		faultString = "A server related error has occurred, see detail element for further information"
	}
	return envelope(header, el("soap:Fault",
		el("faultcode", "soap:"+e.Fault),
		el("faultstring", faultString),
		el("detail", el("itk:ToolkitErrorInfo",
			el("itk:ErrorID", newUUID()),
			el("itk:ErrorCode", at("codeSystem", CodeSystemToolkit), strconv.Itoa(int(e.Code))),
			el("itk:ErrorText", errorText(e.Code)),
			el("itk:ErrorDiagnosticText", diagnostic(e, more)),
		)),
	))
}

// errorText is the ErrorText of a toolkit code.
func errorText(c Code) string {
	switch c {
	case CodeInvalidMessage:
		return "Invalid message"
	case CodeRetryable:
		return "Processing error, retryable"
	case CodeNotRetryable:
		return "Processing error, not retryable"
	case CodeAccessDenied:
		return "Access denied"
	}
	return "Processing error"
}

// diagnostic is the ErrorDiagnosticText of e: its DE code, rule, place and
// text, and how many other rules the request broke.
func diagnostic(e *Error, more int) string {
	var b strings.Builder
	if e.DECode != "" {
		b.WriteString(e.DECode + " ")
	}
	b.WriteString(e.Rule)
	if e.Path != "" {
		b.WriteString(" at " + e.Path)
	}
	b.WriteString(": " + e.Text)
	if more > 0 {
		fmt.Fprintf(&b, " (and %d more)", more)
	}
	return b.String()
}

// SOAPOptions are the header of an outbound request.
type SOAPOptions struct {
	// MessageID is wsa:MessageID; a random UUID when empty. A sender that
	// retries should keep it, so the receiver can tell a resend.
	MessageID string
	To        string // wsa:To: the receiver's URL
	Username  string // wsse:Username; "spinebridge" when empty
	From      string // wsa:From address, optional
	Now       time.Time
	Limits    Limits
}

// WrapSOAP puts a Distribution Envelope (a document of its own) in a SOAP 1.1
// request with the WS-Addressing and WS-Security headers ITK requires; Action
// is the envelope's service. The envelope must pass DecodeEnvelope's rules.
func WrapSOAP(de []byte, o SOAPOptions) ([]byte, *Envelope, error) {
	root, err := parseXML(de, o.Limits.xml())
	if err != nil {
		return nil, nil, err
	}
	var c checker
	env := decodeEnvelope(&c, root, "/itk:DistributionEnvelope")
	if err := c.err(); err != nil {
		return nil, nil, err
	}
	if o.MessageID == "" {
		o.MessageID = newUUID()
	}
	if o.Username == "" {
		o.Username = "spinebridge"
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	header := []any{
		el("wsa:MessageID", "uuid:"+bareUUID(o.MessageID)),
		el("wsa:Action", env.Service),
		el("wsa:To", o.To),
	}
	if o.From != "" {
		header = append(header, el("wsa:From", el("wsa:Address", o.From)))
	}
	header = append(header, el("wsse:Security", timestamp(o.Now),
		el("wsse:UsernameToken", el("wsse:Username", o.Username))))
	// The envelope keeps its own prefixes: declare what was in force on it.
	root.nsDecl = root.inScope()
	root.parent = nil
	return envelope(header, root), env, nil
}

// Response is a receiver's synchronous answer, as ParseResponse reads it.
type Response struct {
	// Text is the SimpleMessageResponse text ("OK", or "OK:" and an id), or
	// the local name of the body's element for another kind of response.
	Text  string
	Fault *Fault // set when the answer is a SOAP fault
}

// Fault is a SOAP fault and its ToolkitErrorInfo.
type Fault struct {
	FaultCode  string // faultcode without its prefix: Client, Server, ...
	FaultText  string // faultstring
	Code       Code   // ErrorCode, 0 when the fault has no ToolkitErrorInfo
	ErrorText  string
	Diagnostic string
}

func (f *Fault) Error() string {
	if f.Code == 0 {
		return fmt.Sprintf("itk: SOAP fault %s: %s", f.FaultCode, f.FaultText)
	}
	return fmt.Sprintf("itk: SOAP fault %s %d: %s", f.FaultCode, f.Code, f.ErrorText)
}

// Retryable reports whether the fault asks the sender to try again: code 2100,
// or a Server fault without a toolkit code.
func (f *Fault) Retryable() bool {
	return f.Code == CodeRetryable || f.Code == 0 && f.FaultCode == FaultServer
}

// ErrNotSOAP reports a response body that is not a SOAP 1.1 envelope.
var ErrNotSOAP = errors.New("itk: response is not a SOAP 1.1 envelope")

// ParseResponse reads a receiver's answer to a request.
func ParseResponse(body []byte, lim Limits) (*Response, error) {
	root, err := parseXML(body, lim.xml())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotSOAP, err)
	}
	b := root.child(nsSOAP11, "Body")
	if !root.is(nsSOAP11, "Envelope") || b == nil {
		return nil, ErrNotSOAP
	}
	kids := b.elems()
	if len(kids) == 0 {
		return &Response{}, nil
	}
	if f := kids[0]; f.is(nsSOAP11, "Fault") {
		fault := &Fault{}
		if e := f.child("", "faultcode"); e != nil {
			code := strings.TrimSpace(e.text())
			if i := strings.LastIndexByte(code, ':'); i >= 0 {
				code = code[i+1:]
			}
			fault.FaultCode = code
		}
		if e := f.child("", "faultstring"); e != nil {
			fault.FaultText = strings.TrimSpace(e.text())
		}
		if d := f.child("", "detail"); d != nil {
			if info := d.child(nsITK, "ToolkitErrorInfo"); info != nil {
				if e := info.child(nsITK, "ErrorCode"); e != nil {
					n, _ := strconv.Atoi(strings.TrimSpace(e.text()))
					fault.Code = Code(n)
				}
				if e := info.child(nsITK, "ErrorText"); e != nil {
					fault.ErrorText = strings.TrimSpace(e.text())
				}
				if e := info.child(nsITK, "ErrorDiagnosticText"); e != nil {
					fault.Diagnostic = strings.TrimSpace(e.text())
				}
			}
		}
		return &Response{Fault: fault}, nil
	}
	if kids[0].is(nsITK, "SimpleMessageResponse") {
		return &Response{Text: strings.TrimSpace(kids[0].text())}, nil
	}
	return &Response{Text: kids[0].local}, nil
}

// RequestFor returns doc ready to POST: a SOAP 1.1 envelope as it stands
// (it is checked by the receiver, not here, so that a test harness can send
// broken ones), or a Distribution Envelope wrapped by WrapSOAP with o.
func RequestFor(doc []byte, o SOAPOptions) ([]byte, error) {
	root, err := parseXML(doc, o.Limits.xml())
	if err != nil {
		return nil, err
	}
	if root.space == nsSOAP11 || root.space == nsSOAP12 {
		return doc, nil
	}
	if !root.is(nsITK, "DistributionEnvelope") {
		return nil, invalid("de-root", "DE0001", "/"+root.name(), "neither a SOAP envelope nor an itk:DistributionEnvelope", ErrRule)
	}
	b, _, err := WrapSOAP(doc, o)
	return b, err
}
