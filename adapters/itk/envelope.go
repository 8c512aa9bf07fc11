package itk

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Request is a decoded ITK request: the SOAP header and the Distribution
// Envelope in its body.
type Request struct {
	Header   SOAPHeader
	Envelope *Envelope
}

// SOAPHeader is what a request's SOAP header says.
type SOAPHeader struct {
	MessageID string // wsa:MessageID
	Action    string // wsa:Action: the service
	To        string // wsa:To
	From      string // wsa:From/wsa:Address, optional
	ReplyTo   string // wsa:ReplyTo/wsa:Address, optional
	FaultTo   string // wsa:FaultTo/wsa:Address, optional
	// TimestampID, Created and Expires are the wsu:Timestamp.
	TimestampID      string
	Created, Expires time.Time
	Username         string // wsse:UsernameToken/wsse:Username
}

// Envelope is a Distribution Envelope (itk:DistributionEnvelope).
type Envelope struct {
	Service       string    // header/@service
	TrackingID    string    // header/@trackingid
	Addresses     []Address // header/addresslist/address
	AuditIdentity Address   // header/auditIdentity/id
	Manifest      []ManifestItem
	SenderAddress string // header/senderAddress/@uri, optional
	Handling      []Spec // header/handlingSpecification/spec, in order
	Payloads      []Payload
}

// Address is an address or identity URI and its optional type OID.
type Address struct {
	URI  string
	Type string
}

// ManifestItem describes one payload.
type ManifestItem struct {
	ID         string
	MimeType   string
	ProfileID  string
	Base64     bool
	Compressed bool
	Encrypted  bool
}

// Spec is one handling specification: a key and its value.
type Spec struct{ Key, Value string }

// Payload is one payload element, undecoded.
type Payload struct {
	ID   string
	elem *xmlElem
}

// Handling specification keys.
const (
	SpecInteraction          = "urn:nhs-itk:ns:201005:interaction"
	SpecBusAckRequested      = "urn:nhs-itk:ns:201005:ackrequested"
	SpecInfAckRequested      = "urn:nhs-itk:ns:201005:infackrequested"
	SpecBusResponseRequested = "urn:nhs-itk:ns:201005:busresponserequested"
)

// Default type OIDs of Toolkit addresses and identities.
const (
	AddressTypeOID  = "2.16.840.1.113883.2.1.3.2.4.18.22"
	IdentityTypeOID = "2.16.840.1.113883.2.1.3.2.4.18.27"
)

// Spec returns the value of the handling specification key, or "".
func (e *Envelope) Spec(key string) string {
	for _, s := range e.Handling {
		if s.Key == key {
			return s.Value
		}
	}
	return ""
}

// InfAckRequested reports whether the sender asked for an infrastructure ack.
func (e *Envelope) InfAckRequested() bool { return e.Spec(SpecInfAckRequested) == "true" }

// BusAckRequested reports whether the sender asked for a business ack.
func (e *Envelope) BusAckRequested() bool { return e.Spec(SpecBusAckRequested) == "true" }

var (
	uuidRE = regexp.MustCompile(`^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$`)
	// A toolkit address: urn:nhs-uk:addressing:ods:<ODS>[:<more tokens>].
	toolkitAddressRE  = regexp.MustCompile(`^urn:nhs-uk:addressing:ods:[A-Za-z0-9]+(:[^:\s]+)*$`)
	toolkitIdentityRE = regexp.MustCompile(`^urn:nhs-uk:identity:ods:[A-Za-z0-9]+(:[^:\s]+)*$`)
	oidRE             = regexp.MustCompile(`^[0-2](\.(0|[1-9][0-9]*))+$`)
	dateTimeRE        = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?$`)
	interactionRE     = regexp.MustCompile(`^urn:nhs-itk:interaction:\S+$`)
)

// isUUID reports whether s is a UUID, bare or with a "uuid:" or "urn:uuid:"
// prefix (WS-ADR-01; upper case is recommended, lower case accepted).
func isUUID(s string) bool {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "urn:"), "uuid:")
	return uuidRE.MatchString(s)
}

// bareUUID is s without its prefix, in upper case: the form ids are compared in.
func bareUUID(s string) string {
	s = strings.TrimPrefix(s, "uuid_")
	return strings.ToUpper(strings.TrimPrefix(strings.TrimPrefix(s, "urn:"), "uuid:"))
}

// parseDateTime reads an xs:dateTime; one without a zone is taken as UTC.
func parseDateTime(s string) (time.Time, bool) {
	if !dateTimeRE.MatchString(s) {
		return time.Time{}, false
	}
	layout := "2006-01-02T15:04:05.999999999"
	if strings.HasSuffix(s, "Z") || strings.LastIndexAny(s, "+-") > len("2006-01-02T") {
		layout += "Z07:00"
	}
	t, err := time.Parse(layout, s)
	return t.UTC(), err == nil
}

// checker collects the rules a request breaks.
type checker struct{ errs Errors }

func (c *checker) fail(rule, deCode, path, text string) {
	c.errs = append(c.errs, invalid(rule, deCode, path, text, ErrRule))
}

func (c *checker) failCode(code Code, fault, rule, path, text string) {
	c.errs = append(c.errs, &Error{Code: code, Fault: fault, Rule: rule, Path: path, Text: text, Err: ErrRule})
}

func (c *checker) err() error {
	if len(c.errs) == 0 {
		return nil
	}
	return c.errs
}

// Limits bound what a request may cost to read.
type Limits struct {
	MaxSize  int // largest document or decoded payload, in bytes; 16 MiB when zero
	MaxDepth int // deepest element nesting; 100 when zero
}

func (l Limits) xml() xmlLimits {
	lim := xmlLimits{maxSize: l.MaxSize, maxDepth: l.MaxDepth}
	if lim.maxSize <= 0 {
		lim.maxSize = 16 << 20
	}
	if lim.maxDepth <= 0 {
		lim.maxDepth = defaultMaxDepth
	}
	return lim
}

// Decode reads a SOAP 1.1 request carrying a Distribution Envelope and checks
// every rule that needs nothing but the request: the WS-Addressing and
// WS-Security headers and the envelope's structure, ids, URIs, counts and
// handling specifications. The rules that need the receiver's clock or
// configuration (the timestamp window, the services offered) are the
// Handler's. The error is Errors (every rule broken, in document order), and
// the Request then holds what could be read (its MessageID answers the fault);
// or a single *Error, and no Request, for input that is not a readable SOAP
// 1.1 document.
func Decode(body []byte, lim Limits) (*Request, error) {
	root, err := parseXML(body, lim.xml())
	if err != nil {
		return nil, err
	}
	return decodeRequest(root)
}

func decodeRequest(root *xmlElem) (*Request, error) {
	const envPath = "/soap:Envelope"
	switch {
	case root.is(nsSOAP12, "Envelope"):
		return nil, &Error{Code: CodeInvalidMessage, Fault: FaultVersionMismatch, Rule: "soap-11", Path: envPath, Text: "SOAP 1.2 is not accepted; ITK uses SOAP 1.1", Err: ErrRule}
	case !root.is(nsSOAP11, "Envelope"):
		return nil, invalid("soap-envelope", "", "/"+root.name(), "the document is not a SOAP 1.1 envelope", ErrRule)
	}
	var c checker
	req := &Request{}
	headers, bodies := root.all(nsSOAP11, "Header"), root.all(nsSOAP11, "Body")
	if len(headers) != 1 {
		c.fail("soap-header", "", envPath+"/soap:Header", "the envelope must have one SOAP header")
	} else {
		decodeHeader(&c, headers[0], &req.Header)
	}
	var de *xmlElem
	if len(bodies) != 1 {
		c.fail("soap-body", "", envPath+"/soap:Body", "the envelope must have one SOAP body")
	} else if kids := bodies[0].elems(); len(kids) != 1 || !kids[0].is(nsITK, "DistributionEnvelope") {
		c.fail("soap-body-envelope", "DE0001", envPath+"/soap:Body", "the SOAP body must hold one itk:DistributionEnvelope and nothing else")
	} else {
		de = kids[0]
	}
	if de != nil {
		req.Envelope = decodeEnvelope(&c, de, envPath+"/soap:Body/itk:DistributionEnvelope")
		if req.Header.Action != "" && req.Envelope.Service != "" && req.Header.Action != req.Envelope.Service {
			c.fail("wsa-action-service", "", envPath+"/soap:Header/wsa:Action", "wsa:Action must equal the Distribution Envelope's service")
		}
		checkUniqueIDs(&c, req)
	}
	return req, c.err()
}

func decodeHeader(c *checker, h *xmlElem, out *SOAPHeader) {
	const hp = "/soap:Envelope/soap:Header"
	seen := map[string]bool{}
	for _, e := range h.elems() {
		path := hp + "/" + prefixed(e)
		switch {
		case e.space == nsWSA:
			switch e.local {
			case "MessageID", "Action", "To", "From", "ReplyTo", "FaultTo", "RelatesTo":
				if seen[e.local] {
					c.fail("wsa-once", "", path, "a WS-Addressing header appears more than once")
				}
				seen[e.local] = true
			default:
				c.fail("wsa-known", "", path, "not a WS-Addressing header of a request")
			}
			switch e.local {
			case "MessageID":
				out.MessageID = strings.TrimSpace(e.text())
			case "Action":
				out.Action = strings.TrimSpace(e.text())
			case "To":
				out.To = strings.TrimSpace(e.text())
			case "From":
				out.From = endpointAddress(c, e, path)
			case "ReplyTo":
				out.ReplyTo = endpointAddress(c, e, path)
			case "FaultTo":
				out.FaultTo = endpointAddress(c, e, path)
			}
		case e.is(nsWSSE, "Security"):
			if seen["Security"] {
				c.failCode(CodeInvalidMessage, FaultClient, "wsse-security-once", path, "wsse:Security appears more than once")
			}
			seen["Security"] = true
			decodeSecurity(c, e, path, out)
		default:
			if mu, ok := e.attrNS(nsSOAP11, "mustUnderstand"); ok && (mu == "1" || mu == "true") {
				c.failCode(CodeInvalidMessage, FaultMustUnderstand, "soap-must-understand", path, "a header marked mustUnderstand is not understood here")
			}
		}
	}
	switch {
	case out.MessageID == "":
		c.fail("wsa-messageid", "", hp+"/wsa:MessageID", "wsa:MessageID is required")
	case !isUUID(out.MessageID):
		c.fail("wsa-messageid-uuid", "", hp+"/wsa:MessageID", "wsa:MessageID must be a UUID (WS-ADR-01)")
	}
	if out.Action == "" {
		c.fail("wsa-action", "", hp+"/wsa:Action", "wsa:Action is required")
	}
	if out.To == "" {
		c.fail("wsa-to", "", hp+"/wsa:To", "wsa:To is required on a request")
	}
	if !seen["Security"] {
		c.failCode(CodeAccessDenied, FaultClient, "wsse-security", hp+"/wsse:Security", "wsse:Security with a UsernameToken is required")
	}
}

// endpointAddress reads the wsa:Address of an endpoint reference (From,
// ReplyTo, FaultTo), which must not carry reference parameters or properties
// (WS-ADR-08).
func endpointAddress(c *checker, e *xmlElem, path string) string {
	for _, k := range e.elems() {
		if k.space == nsWSA && (k.local == "ReferenceParameters" || k.local == "ReferenceProperties") {
			c.fail("wsa-reference-parameters", "", path+"/"+prefixed(k), "reference parameters and properties are not allowed (WS-ADR-08)")
		}
	}
	a := e.child(nsWSA, "Address")
	if a == nil || strings.TrimSpace(a.text()) == "" {
		c.fail("wsa-endpoint-address", "", path+"/wsa:Address", "an endpoint reference needs a wsa:Address")
		return ""
	}
	return strings.TrimSpace(a.text())
}

func decodeSecurity(c *checker, sec *xmlElem, path string, out *SOAPHeader) {
	ts := sec.all(nsWSU, "Timestamp")
	tsPath := path + "/wsu:Timestamp"
	if len(ts) != 1 {
		c.fail("wsu-timestamp", "", tsPath, "wsse:Security must hold one wsu:Timestamp")
	} else {
		t := ts[0]
		out.TimestampID, _ = t.attrNS(nsWSU, "Id")
		if out.TimestampID == "" {
			c.fail("wsu-timestamp-id", "", tsPath+"/@wsu:Id", "wsu:Timestamp needs a wsu:Id")
		}
		var okC, okE bool
		if e := t.child(nsWSU, "Created"); e != nil {
			out.Created, okC = parseDateTime(strings.TrimSpace(e.text()))
		}
		if !okC {
			c.fail("wsu-created", "", tsPath+"/wsu:Created", "wsu:Created must be an xs:dateTime")
		}
		if e := t.child(nsWSU, "Expires"); e != nil {
			out.Expires, okE = parseDateTime(strings.TrimSpace(e.text()))
		}
		if !okE {
			c.fail("wsu-expires", "", tsPath+"/wsu:Expires", "wsu:Expires must be an xs:dateTime")
		}
		if okC && okE && !out.Expires.After(out.Created) {
			c.fail("wsu-expires-after-created", "", tsPath+"/wsu:Expires", "wsu:Expires must be later than wsu:Created")
		}
	}
	tokPath := path + "/wsse:UsernameToken"
	tok := sec.child(nsWSSE, "UsernameToken")
	if tok == nil {
		c.failCode(CodeAccessDenied, FaultClient, "wsse-username-token", tokPath, "wsse:UsernameToken is required")
		return
	}
	if u := tok.child(nsWSSE, "Username"); u != nil {
		out.Username = strings.TrimSpace(u.text())
	}
	if out.Username == "" {
		c.failCode(CodeAccessDenied, FaultClient, "wsse-username", tokPath+"/wsse:Username", "wsse:Username must name the user")
	}
}

// prefixed is e's name with the prefix this package uses for its namespace in
// paths, whatever prefix the sender chose.
func prefixed(e *xmlElem) string {
	switch e.space {
	case nsSOAP11:
		return "soap:" + e.local
	case nsWSA:
		return "wsa:" + e.local
	case nsWSSE:
		return "wsse:" + e.local
	case nsWSU:
		return "wsu:" + e.local
	case nsITK:
		return "itk:" + e.local
	case nsHL7v3:
		return "hl7:" + e.local
	}
	return e.local
}

// DecodeEnvelope reads a Distribution Envelope that is a document of its own,
// as the acknowledgements this package builds are, and checks the same rules
// as Decode does for one inside a request.
func DecodeEnvelope(b []byte, lim Limits) (*Envelope, error) {
	root, err := parseXML(b, lim.xml())
	if err != nil {
		return nil, err
	}
	var c checker
	env := decodeEnvelope(&c, root, "/itk:DistributionEnvelope")
	if err := c.err(); err != nil {
		return nil, err
	}
	return env, nil
}

// headerOrder is the order of a DE header's children.
var headerOrder = []string{"addresslist", "auditIdentity", "manifest", "senderAddress", "handlingSpecification"}

func decodeEnvelope(c *checker, de *xmlElem, path string) *Envelope {
	env := &Envelope{}
	if !de.is(nsITK, "DistributionEnvelope") {
		c.fail("de-root", "DE0001", path, "not an itk:DistributionEnvelope")
		return env
	}
	kids := de.elems()
	if len(kids) != 2 || !kids[0].is(nsITK, "header") || !kids[1].is(nsITK, "payloads") {
		c.fail("de-structure", "DE0001", path, "a Distribution Envelope holds itk:header then itk:payloads, and nothing else")
	}
	if h := de.child(nsITK, "header"); h != nil {
		decodeDEHeader(c, h, path+"/itk:header", env)
	}
	if p := de.child(nsITK, "payloads"); p != nil {
		decodePayloads(c, p, path+"/itk:payloads", env)
	}
	return env
}

func decodeDEHeader(c *checker, h *xmlElem, path string, env *Envelope) {
	env.Service, _ = h.attr("service")
	if env.Service == "" {
		c.fail("de-service", "DE0002", path+"/@service", "the header needs a service")
	} else if !strings.HasPrefix(env.Service, "urn:") {
		c.fail("de-service-urn", "DE0002", path+"/@service", "the service must be a URN")
	}
	env.TrackingID, _ = h.attr("trackingid")
	switch {
	case env.TrackingID == "":
		c.fail("de-trackingid", "DE0002", path+"/@trackingid", "the header needs a trackingid")
	case !uuidRE.MatchString(env.TrackingID):
		c.fail("de-trackingid-uuid", "DE0002", path+"/@trackingid", "the trackingid must be a UUID")
	}
	last := -1
	present := map[string]bool{}
	for _, e := range h.elems() {
		i := slices.Index(headerOrder, e.local)
		if e.space != nsITK || i < 0 {
			c.fail("de-header-element", "DE0002", path+"/"+prefixed(e), "not an element of a Distribution Envelope header")
			continue
		}
		if present[e.local] {
			c.fail("de-header-once", "DE0002", path+"/"+prefixed(e), "a header element appears more than once")
			continue
		}
		if i < last {
			c.fail("de-header-order", "DE0002", path+"/"+prefixed(e), "header elements must come in the order addresslist, auditIdentity, manifest, senderAddress, handlingSpecification")
		}
		last = max(last, i)
		present[e.local] = true
		p := path + "/" + prefixed(e)
		switch e.local {
		case "addresslist":
			decodeAddressList(c, e, p, env)
		case "auditIdentity":
			decodeAuditIdentity(c, e, p, env)
		case "manifest":
			decodeManifest(c, e, p, env)
		case "senderAddress":
			env.SenderAddress, _ = e.attr("uri")
			if !toolkitAddressRE.MatchString(env.SenderAddress) {
				c.fail("de-sender-address", "DE0008", p+"/@uri", "the sender address must be a Toolkit address URI (urn:nhs-uk:addressing:ods:...)")
			}
		case "handlingSpecification":
			decodeHandling(c, e, p, env)
		}
	}
	if !present["addresslist"] {
		c.fail("de-addresslist", "DE0003", path+"/itk:addresslist", "the header needs an address list")
	}
	if !present["auditIdentity"] {
		c.fail("de-audit-identity", "DE0004", path+"/itk:auditIdentity", "the header needs an audit identity (COR-DEH-03)")
	}
	if !present["manifest"] {
		c.fail("de-manifest", "DE0006", path+"/itk:manifest", "the header needs a manifest")
	}
	if (env.InfAckRequested() || env.BusAckRequested()) && env.SenderAddress == "" {
		c.fail("de-sender-address-for-acks", "DE0008", path+"/itk:senderAddress", "acknowledgements are requested, so the sender address is required")
	}
}

func decodeAddressList(c *checker, e *xmlElem, path string, env *Envelope) {
	for i, a := range e.elems() {
		p := fmt.Sprintf("%s/%s[%d]", path, prefixed(a), i+1)
		if !a.is(nsITK, "address") {
			c.fail("de-address-element", "DE0003", p, "an address list holds itk:address elements only")
			continue
		}
		addr := Address{}
		addr.URI, _ = a.attr("uri")
		addr.Type, _ = a.attr("type")
		checkURI(c, addr, toolkitAddressRE, AddressTypeOID, "de-address", "DE0003", p)
		env.Addresses = append(env.Addresses, addr)
	}
	if len(env.Addresses) == 0 {
		c.fail("de-address", "DE0003", path, "the address list needs at least one address")
	}
}

func decodeAuditIdentity(c *checker, e *xmlElem, path string, env *Envelope) {
	ids := e.elems()
	if len(ids) != 1 || !ids[0].is(nsITK, "id") {
		c.fail("de-audit-identity-id", "DE0004", path, "the audit identity holds one itk:id")
		return
	}
	env.AuditIdentity.URI, _ = ids[0].attr("uri")
	env.AuditIdentity.Type, _ = ids[0].attr("type")
	checkURI(c, env.AuditIdentity, toolkitIdentityRE, IdentityTypeOID, "de-identity", "DE0005", path+"/itk:id")
}

// checkURI applies COR-DEH-04: a Toolkit URI may leave out its type, and if it
// has one it must be the default; any other URI must carry a type OID of its
// own, not the default.
func checkURI(c *checker, a Address, toolkit *regexp.Regexp, defaultType, rule, deCode, path string) {
	switch {
	case a.URI == "":
		c.fail(rule+"-uri", deCode, path+"/@uri", "the uri is required")
	case toolkit.MatchString(a.URI):
		if a.Type != "" && a.Type != defaultType {
			c.fail(rule+"-type", deCode, path+"/@type", "a Toolkit URI's type, when given, must be the default OID")
		}
	case a.Type == "" || a.Type == defaultType:
		c.fail(rule+"-non-toolkit", deCode, path+"/@type", "a URI that is not a Toolkit URI must carry its own type OID")
	case !oidRE.MatchString(a.Type):
		c.fail(rule+"-type-oid", deCode, path+"/@type", "the type must be an OID")
	}
}

func decodeManifest(c *checker, e *xmlElem, path string, env *Envelope) {
	seen := map[string]bool{}
	items := e.elems()
	for i, it := range items {
		p := fmt.Sprintf("%s/%s[%d]", path, prefixed(it), i+1)
		if !it.is(nsITK, "manifestitem") {
			c.fail("de-manifest-element", "DE0006", p, "a manifest holds itk:manifestitem elements only")
			continue
		}
		var m ManifestItem
		m.ID, _ = it.attr("id")
		switch {
		case m.ID == "":
			c.fail("de-manifest-id", "DE0007", p+"/@id", "a manifest item needs an id")
		case !isPayloadID(m.ID):
			c.fail("de-manifest-id-format", "DE0007", p+"/@id", "a manifest item id must be uuid_ followed by a UUID")
		case seen[bareUUID(m.ID)]:
			c.fail("de-manifest-id-unique", "DE0007", p+"/@id", "manifest item ids must be unique")
		}
		seen[bareUUID(m.ID)] = true
		if m.MimeType, _ = it.attr("mimetype"); m.MimeType == "" {
			c.fail("de-manifest-mimetype", "DE0007", p+"/@mimetype", "a manifest item needs a mimetype")
		}
		if m.ProfileID, _ = it.attr("profileid"); m.ProfileID == "" {
			c.fail("de-manifest-profileid", "DE0007", p+"/@profileid", "a manifest item needs a profileid")
		}
		for _, f := range []struct {
			name string
			v    *bool
		}{{"base64", &m.Base64}, {"compressed", &m.Compressed}, {"encrypted", &m.Encrypted}} {
			s, ok := it.attr(f.name)
			if !ok {
				continue
			}
			b, ok := parseBool(s)
			if !ok {
				c.fail("de-manifest-boolean", "DE0007", p+"/@"+f.name, "must be true or false")
			}
			*f.v = b
		}
		env.Manifest = append(env.Manifest, m)
	}
	count, ok := e.attr("count")
	n, err := strconv.Atoi(count)
	switch {
	case !ok || err != nil || n < 0:
		c.fail("de-manifest-count", "DE0006", path+"/@count", "the manifest needs a count")
	case n != len(items):
		c.fail("de-manifest-count-items", "DE0006", path+"/@count", "the manifest count must equal the number of manifest items")
	}
	if len(items) == 0 {
		c.fail("de-manifest-empty", "DE0006", path, "the manifest needs at least one item")
	}
}

// isPayloadID reports whether s is a manifest or payload id: "uuid_" and a UUID.
func isPayloadID(s string) bool {
	rest, ok := strings.CutPrefix(s, "uuid_")
	return ok && uuidRE.MatchString(rest)
}

func parseBool(s string) (bool, bool) {
	switch strings.TrimSpace(s) {
	case "true", "1":
		return true, true
	case "false", "0":
		return false, true
	}
	return false, false
}

func decodeHandling(c *checker, e *xmlElem, path string, env *Envelope) {
	seen := map[string]bool{}
	for i, s := range e.elems() {
		p := fmt.Sprintf("%s/%s[%d]", path, prefixed(s), i+1)
		if !s.is(nsITK, "spec") {
			c.fail("de-handling-element", "DE0009", p, "a handling specification holds itk:spec elements only")
			continue
		}
		key, okK := s.attr("key")
		value, okV := s.attr("value")
		if !okK || key == "" || !okV {
			c.fail("de-spec-key-value", "DE0010", p, "a spec needs a key and a value")
			continue
		}
		if seen[key] {
			c.fail("de-spec-once", "DE0010", p+"/@key", "a handling specification key appears more than once")
		}
		seen[key] = true
		switch key {
		case SpecBusAckRequested, SpecInfAckRequested, SpecBusResponseRequested:
			if value != "true" && value != "false" {
				c.fail("de-spec-boolean", "DE0010", p+"/@value", "an acknowledgement request must be true or false")
			}
		case SpecInteraction:
			if !interactionRE.MatchString(value) {
				c.fail("de-spec-interaction", "DE0010", p+"/@value", "the interaction must be an ITK interaction URN")
			}
		}
		env.Handling = append(env.Handling, Spec{Key: key, Value: value})
	}
}

func decodePayloads(c *checker, e *xmlElem, path string, env *Envelope) {
	manifest := map[string]bool{}
	for _, m := range env.Manifest {
		manifest[m.ID] = true
	}
	seen := map[string]bool{}
	items := e.elems()
	for i, p := range items {
		pp := fmt.Sprintf("%s/%s[%d]", path, prefixed(p), i+1)
		if !p.is(nsITK, "payload") {
			c.fail("de-payloads-element", "DE0011", pp, "payloads holds itk:payload elements only")
			continue
		}
		id, _ := p.attr("id")
		switch {
		case id == "":
			c.fail("de-payload-id", "DE0012", pp+"/@id", "a payload needs an id")
		case seen[id]:
			c.fail("de-payload-id-unique", "DE0012", pp+"/@id", "payload ids must be unique")
		case !manifest[id]:
			c.fail("de-payload-manifest", "DE0012", pp+"/@id", "the payload id must be the id of a manifest item")
		}
		seen[id] = true
		env.Payloads = append(env.Payloads, Payload{ID: id, elem: p})
	}
	for i, m := range env.Manifest {
		if m.ID != "" && !seen[m.ID] {
			c.fail("de-manifest-payload", "DE0012", fmt.Sprintf("%s/itk:header/itk:manifest/itk:manifestitem[%d]/@id", strings.TrimSuffix(path, "/itk:payloads"), i+1), "every manifest item needs a payload with its id")
		}
	}
	count, ok := e.attr("count")
	n, err := strconv.Atoi(count)
	switch {
	case !ok || err != nil || n < 0:
		c.fail("de-payloads-count", "DE0011", path+"/@count", "payloads needs a count")
	case n != len(items):
		c.fail("de-payloads-count-items", "DE0011", path+"/@count", "the payloads count must equal the number of payloads")
	}
}

// checkUniqueIDs applies the TKW rule that the message, timestamp, tracking and
// manifest ids of one request are all different.
func checkUniqueIDs(c *checker, req *Request) {
	ids := map[string]bool{}
	add := func(id string) bool {
		if id == "" {
			return true
		}
		k := bareUUID(id)
		if ids[k] {
			return false
		}
		ids[k] = true
		return true
	}
	ok := add(req.Header.MessageID) && add(req.Header.TimestampID) && add(req.Envelope.TrackingID)
	// Manifest ids repeating one another are the manifest's own rule.
	for _, m := range req.Envelope.Manifest {
		ok = ok && (m.ID == "" || !ids[bareUUID(m.ID)])
	}
	if !ok {
		c.fail("ids-unique", "DE0005", "/soap:Envelope", "the message, timestamp, tracking and manifest ids must all differ")
	}
}
