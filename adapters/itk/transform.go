package itk

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/spinebridge/spinebridge/routes"
)

// FHIR systems and profiles the document bundle uses.
const (
	systemNHSNumber = "https://fhir.nhs.uk/Id/nhs-number"
	systemODS       = "https://fhir.nhs.uk/Id/ods-organization-code"
	systemURI       = "urn:ietf:rfc:3986"
	systemSNOMED    = "http://snomed.info/sct"
	oidSNOMED       = "2.16.840.1.113883.2.1.3.2.4.15"
	profilePatient  = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"
	profileOrg      = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Organization"
	cdaContentType  = "application/hl7-v3+xml"
)

// CDATransformer turns a journaled CDA document into a FHIR R4 transaction
// Bundle: the patient (by NHS number), the author and custodian
// organisations (by ODS code), a Binary holding the document, a
// DocumentReference describing it, and a Provenance whose agent is the ITK
// audit identity it arrived under. Patient, Organization and
// DocumentReference are conditional PUTs on their identifiers, as the v2
// mappings' resources are; Binary and Provenance are PUTs of ids named after
// the document. Every id is a name-based UUID of identifiers, so replaying
// the record writes the same resources again rather than new ones.
type CDATransformer struct {
	// Zone is the zone of CDA times without an offset; Europe/London when nil.
	Zone *time.Location
	// Limits bound the document as a request's are.
	Limits Limits
}

var _ routes.Transformer = (*CDATransformer)(nil)

// ErrNotCDA reports a record that does not hold a CDA document.
var ErrNotCDA = errors.New("itk: record is not a CDA document")

var london = sync.OnceValues(func() (*time.Location, error) { return time.LoadLocation("Europe/London") })

// Transform implements routes.Transformer.
func (t *CDATransformer) Transform(dst []byte, rec *routes.Record) ([]byte, string, error) {
	if rec.Format != routes.FormatCDA {
		return dst, "", ErrNotCDA
	}
	h, err := ReadCDAHeader(rec.Raw, t.Limits)
	if err != nil {
		return dst, "", fmt.Errorf("itk: transform record %s: %w", rec.ID, err)
	}
	zone := t.Zone
	if zone == nil {
		if zone, err = london(); err != nil {
			return dst, "", fmt.Errorf("itk: load zone Europe/London: %w", err)
		}
	}
	b, err := buildDocumentBundle(rec, h, zone)
	if err != nil {
		return dst, "", fmt.Errorf("itk: transform record %s: %w", rec.ID, err)
	}
	out, err := json.Marshal(b)
	if err != nil {
		return dst, "", fmt.Errorf("itk: transform record %s: %w", rec.ID, err)
	}
	return append(dst, out...), routes.ContentTypeFHIR, nil
}

// The FHIR JSON the transformer writes: only the elements it fills.
type (
	bundle struct {
		ResourceType string        `json:"resourceType"`
		Type         string        `json:"type"`
		Entry        []bundleEntry `json:"entry"`
	}
	bundleEntry struct {
		FullURL  string  `json:"fullUrl"`
		Resource any     `json:"resource"`
		Request  request `json:"request"`
	}
	request struct {
		Method string `json:"method"`
		URL    string `json:"url"`
	}
	meta struct {
		Profile []string `json:"profile"`
	}
	identifier struct {
		System string `json:"system,omitempty"`
		Value  string `json:"value"`
	}
	reference struct {
		Reference  string      `json:"reference,omitempty"`
		Type       string      `json:"type,omitempty"`
		Identifier *identifier `json:"identifier,omitempty"`
		Display    string      `json:"display,omitempty"`
	}
	coding struct {
		System  string `json:"system,omitempty"`
		Code    string `json:"code"`
		Display string `json:"display,omitempty"`
	}
	codeableConcept struct {
		Coding []coding `json:"coding,omitempty"`
		Text   string   `json:"text,omitempty"`
	}
	humanName struct {
		Family string   `json:"family,omitempty"`
		Given  []string `json:"given,omitempty"`
		Prefix []string `json:"prefix,omitempty"`
	}
	patient struct {
		ResourceType string       `json:"resourceType"`
		ID           string       `json:"id"`
		Meta         meta         `json:"meta"`
		Identifier   []identifier `json:"identifier"`
		Name         []humanName  `json:"name,omitempty"`
		Gender       string       `json:"gender,omitempty"`
		BirthDate    string       `json:"birthDate,omitempty"`
	}
	organization struct {
		ResourceType string       `json:"resourceType"`
		ID           string       `json:"id"`
		Meta         meta         `json:"meta"`
		Identifier   []identifier `json:"identifier"`
		Name         string       `json:"name,omitempty"`
	}
	binary struct {
		ResourceType    string     `json:"resourceType"`
		ID              string     `json:"id"`
		ContentType     string     `json:"contentType"`
		SecurityContext *reference `json:"securityContext,omitempty"`
		Data            string     `json:"data"`
	}
	attachment struct {
		ContentType string `json:"contentType"`
		URL         string `json:"url"`
		Title       string `json:"title,omitempty"`
		Creation    string `json:"creation,omitempty"`
	}
	docContent struct {
		Attachment attachment `json:"attachment"`
	}
	documentReference struct {
		ResourceType     string           `json:"resourceType"`
		ID               string           `json:"id"`
		MasterIdentifier identifier       `json:"masterIdentifier"`
		Identifier       []identifier     `json:"identifier,omitempty"`
		Status           string           `json:"status"`
		Type             *codeableConcept `json:"type,omitempty"`
		Subject          *reference       `json:"subject,omitempty"`
		Date             string           `json:"date,omitempty"`
		Author           []reference      `json:"author,omitempty"`
		Custodian        *reference       `json:"custodian,omitempty"`
		Description      string           `json:"description,omitempty"`
		Content          []docContent     `json:"content"`
	}
	provenanceAgent struct {
		Type *codeableConcept `json:"type,omitempty"`
		Who  reference        `json:"who"`
	}
	provenanceEntity struct {
		Role string    `json:"role"`
		What reference `json:"what"`
	}
	provenance struct {
		ResourceType string             `json:"resourceType"`
		ID           string             `json:"id"`
		Target       []reference        `json:"target"`
		Recorded     string             `json:"recorded"`
		Activity     *codeableConcept   `json:"activity,omitempty"`
		Agent        []provenanceAgent  `json:"agent"`
		Entity       []provenanceEntity `json:"entity"`
	}
)

// fhirID is a name-based UUID in the lower case FHIR's uuid type requires.
func fhirID(parts ...string) string { return strings.ToLower(nameUUID(parts...)) }

func conditional(typ string, id identifier) string {
	return typ + "?identifier=" + url.QueryEscape(id.System) + "%7C" + url.QueryEscape(id.Value)
}

func buildDocumentBundle(rec *routes.Record, h *CDAHeader, zone *time.Location) (*bundle, error) {
	master, ok := documentIdentifier(h.ID)
	if !ok {
		return nil, errors.New("the CDA document has no id (ClinicalDocument/id)")
	}
	b := &bundle{ResourceType: "Bundle", Type: "transaction"}
	add := func(id string, res any, req request) string {
		full := "urn:uuid:" + id
		b.Entry = append(b.Entry, bundleEntry{FullURL: full, Resource: res, Request: req})
		return full
	}

	var subject *reference
	if nhs := h.Patient.NHSNumber; nhs != "" {
		id := identifier{System: systemNHSNumber, Value: nhs}
		p := &patient{ResourceType: "Patient", ID: fhirID("Patient", id.System, id.Value),
			Meta: meta{Profile: []string{profilePatient}}, Identifier: []identifier{id},
			Gender: h.Patient.Gender, BirthDate: fhirDate(h.Patient.BirthTime)}
		if n := h.Patient; n.Family != "" || len(n.Given) > 0 {
			name := humanName{Family: n.Family, Given: n.Given}
			if n.Prefix != "" {
				name.Prefix = []string{n.Prefix}
			}
			p.Name = []humanName{name}
		}
		subject = &reference{Reference: add(p.ID, p, request{"PUT", conditional("Patient", id)})}
	}

	orgs := map[string]string{} // ODS code -> fullUrl
	orgRef := func(o Organization) *reference {
		if o.ODS == "" {
			if o.Name == "" {
				return nil
			}
			return &reference{Display: o.Name}
		}
		if full, ok := orgs[o.ODS]; ok {
			return &reference{Reference: full}
		}
		id := identifier{System: systemODS, Value: o.ODS}
		res := &organization{ResourceType: "Organization", ID: fhirID("Organization", id.System, id.Value),
			Meta: meta{Profile: []string{profileOrg}}, Identifier: []identifier{id}, Name: o.Name}
		orgs[o.ODS] = add(res.ID, res, request{"PUT", conditional("Organization", id)})
		return &reference{Reference: orgs[o.ODS]}
	}
	author := orgRef(h.Author)
	custodian := orgRef(h.Custodian)

	bin := &binary{ResourceType: "Binary", ID: fhirID("Binary", master.System, master.Value),
		ContentType: cdaContentType, SecurityContext: subject, Data: base64.StdEncoding.EncodeToString(rec.Raw)}
	binURL := add(bin.ID, bin, request{"PUT", "Binary/" + bin.ID})

	doc := &documentReference{ResourceType: "DocumentReference", ID: fhirID("DocumentReference", master.System, master.Value),
		MasterIdentifier: master, Status: "current", Subject: subject, Custodian: custodian, Description: h.Title,
		Date: fhirInstant(h.EffectiveTime, zone),
		Content: []docContent{{Attachment: attachment{ContentType: cdaContentType, URL: binURL, Title: h.Title,
			Creation: fhirDateTime(h.EffectiveTime, zone)}}}}
	if setID, ok := documentIdentifier(h.SetID); ok {
		doc.Identifier = []identifier{setID}
	}
	if author != nil {
		doc.Author = []reference{*author}
	}
	if h.Type.Code != "" {
		c := coding{System: codeSystemURI(h.Type.System), Code: h.Type.Code, Display: h.Type.Display}
		doc.Type = &codeableConcept{Coding: []coding{c}}
	}
	docURL := add(doc.ID, doc, request{"PUT", conditional("DocumentReference", master)})

	m, _ := MetaOf(rec)
	audit := m.AuditIdentity
	if audit == "" {
		_, audit, _ = strings.Cut(rec.Sender, "|")
	}
	recorded := rec.Received
	if recorded.IsZero() {
		return nil, errors.New("the record has no received time")
	}
	prov := &provenance{ResourceType: "Provenance", ID: fhirID("Provenance", master.System, master.Value, rec.ControlID),
		Target:   []reference{{Reference: docURL}},
		Recorded: recorded.UTC().Format(time.RFC3339Nano),
		Activity: &codeableConcept{Coding: []coding{{System: "http://terminology.hl7.org/CodeSystem/v3-DataOperation", Code: "CREATE", Display: "create"}}},
		Agent:    []provenanceAgent{{Who: auditAgent(audit, orgs)}},
		Entity:   []provenanceEntity{{Role: "source", What: reference{Reference: binURL}}},
	}
	add(prov.ID, prov, request{"PUT", "Provenance/" + prov.ID})
	return b, nil
}

// auditAgent is the Provenance agent for an ITK audit identity: the
// organisation in the bundle when its ODS code is one there, else a logical
// reference by ODS code, or by the URI itself for an identity that is not a
// Toolkit one.
func auditAgent(uri string, orgs map[string]string) reference {
	if ods, ok := strings.CutPrefix(uri, "urn:nhs-uk:identity:ods:"); ok && ods != "" {
		ods, _, _ = strings.Cut(ods, ":")
		if full, ok := orgs[ods]; ok {
			return reference{Reference: full}
		}
		return reference{Type: "Organization", Identifier: &identifier{System: systemODS, Value: ods}}
	}
	if uri == "" {
		return reference{Display: "unknown sender"}
	}
	return reference{Identifier: &identifier{System: systemURI, Value: uri}}
}

// documentIdentifier is an HL7 v3 II as a FHIR Identifier: a root alone
// becomes a URI (urn:uuid: or urn:oid:); a root and extension, the root as the
// system and the extension as the value.
func documentIdentifier(ii Identifier) (identifier, bool) {
	root := ii.Root
	switch {
	case root == "":
		return identifier{}, false
	case uuidRE.MatchString(root):
		root = "urn:uuid:" + strings.ToLower(root)
	case oidRE.MatchString(root):
		root = "urn:oid:" + root
	default:
		return identifier{}, false
	}
	if ii.Extension == "" {
		return identifier{System: systemURI, Value: root}, true
	}
	return identifier{System: root, Value: ii.Extension}, true
}

// codeSystemURI is the FHIR system of an HL7 v3 code system OID.
func codeSystemURI(oid string) string {
	switch {
	case oid == "":
		return ""
	case oid == oidSNOMED || oid == "2.16.840.1.113883.6.96":
		return systemSNOMED
	}
	return "urn:oid:" + oid
}

// parseTS reads an HL7 TS (YYYY[MM[DD[HH[MM[SS[.S+]]]]]][+/-ZZZZ]) and says
// how many digits of date and time it had.
func parseTS(ts string, zone *time.Location) (t time.Time, digits int, ok bool) {
	s, offset := ts, ""
	if i := strings.IndexAny(s, "+-"); i >= 0 {
		s, offset = s[:i], s[i:]
	}
	frac := ""
	if i := strings.IndexByte(s, '.'); i >= 0 {
		s, frac = s[:i], s[i:]
	}
	digits = len(s)
	if digits < 4 || digits > 14 || digits%2 != 0 || !allDigits(s) {
		return time.Time{}, 0, false
	}
	full := s + "00000101000000"[digits:]
	layout := "20060102150405"
	if frac != "" {
		if !allDigits(frac[1:]) || digits != 14 {
			return time.Time{}, 0, false
		}
		full += frac
		layout += "." + strings.Repeat("0", len(frac)-1)
	}
	if offset != "" {
		if len(offset) != 5 || !allDigits(offset[1:]) {
			return time.Time{}, 0, false
		}
		t, err := time.Parse(layout+"-0700", full+offset)
		return t, digits, err == nil
	}
	t, err := time.ParseInLocation(layout, full, zone)
	return t, digits, err == nil
}

func allDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// fhirDate is a TS as a FHIR date, to its precision (YYYY, YYYY-MM, YYYY-MM-DD).
func fhirDate(ts string) string {
	t, digits, ok := parseTS(ts, time.UTC)
	switch {
	case !ok:
		return ""
	case digits == 4:
		return t.Format("2006")
	case digits == 6:
		return t.Format("2006-01")
	}
	return t.Format("2006-01-02")
}

// fhirDateTime is a TS as a FHIR dateTime: a date alone keeps its precision;
// a time gets its offset (zone's when the TS has none).
func fhirDateTime(ts string, zone *time.Location) string {
	t, digits, ok := parseTS(ts, zone)
	if !ok {
		return ""
	}
	if digits <= 8 {
		return fhirDate(ts)
	}
	return t.Format(time.RFC3339Nano)
}

// fhirInstant is a TS with a time as a FHIR instant, or "" for a date alone,
// which an instant cannot hold.
func fhirInstant(ts string, zone *time.Location) string {
	t, digits, ok := parseTS(ts, zone)
	if !ok || digits < 12 {
		return ""
	}
	return t.Format(time.RFC3339Nano)
}
