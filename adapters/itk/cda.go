package itk

import (
	"strings"

	"github.com/lestrrat-go/libxml2/types"
	"github.com/lestrrat-go/libxml2/xpath"
)

// OIDs of the identifiers a UK CDA header carries.
const (
	oidNHSNumber = "2.16.840.1.113883.2.1.4.1"
	oidODSOrg    = "2.16.840.1.113883.2.1.3.2.4.19.1"
	oidODSSite   = "2.16.840.1.113883.2.1.3.2.4.19.2"
)

// CDAHeader is what the engine reads from a CDA document's header: enough to
// journal it, index it by patient and describe it as a DocumentReference. Every
// field may be empty when the document leaves it out.
type CDAHeader struct {
	ID            Identifier // ClinicalDocument/id
	SetID         Identifier // ClinicalDocument/setId
	Version       string     // ClinicalDocument/versionNumber/@value
	Type          Coding     // ClinicalDocument/code: the document type
	Title         string
	EffectiveTime string // HL7 TS, e.g. 20261121093015+0000
	Patient       CDAPatient
	Author        Organization // the author's represented organisation
	AuthorTime    string       // HL7 TS of the first author
	Custodian     Organization
}

// Identifier is an HL7 v3 II: an OID or UUID root and an optional extension.
type Identifier struct{ Root, Extension string }

// Coding is an HL7 v3 code with its code system OID.
type Coding struct{ Code, System, Display string }

// CDAPatient is the recordTarget's patient.
type CDAPatient struct {
	NHSNumber string // patientRole/id with the NHS number root
	Family    string
	Given     []string
	Prefix    string
	Gender    string // FHIR administrative gender: male, female, other, unknown
	BirthTime string // HL7 TS
}

// Organization is an organisation named in the header by its ODS code.
type Organization struct {
	ODS  string
	Name string
}

// ReadCDAHeader parses a CDA document (with the same safety rules as a
// request: no DTD, no entities, UTF-8, size and depth limits) and reads its
// header through XPath.
func ReadCDAHeader(doc []byte, lim Limits) (*CDAHeader, error) {
	l := lim.xml()
	if err := screenXML(doc, l); err != nil {
		return nil, err
	}
	var h *CDAHeader
	err := withDocument(doc, l, func(d types.Document, _ *xmlElem) error {
		var err error
		h, err = readCDAHeader(d)
		return err
	})
	return h, err
}

func readCDAHeader(d types.Document) (*CDAHeader, error) {
	root, err := d.DocumentElement()
	if err != nil {
		return nil, invalid("cda-root", "DE0012", "", "the document has no root element", ErrPayload)
	}
	x, err := xpath.NewContext(root)
	if err != nil {
		return nil, invalid("cda-root", "DE0012", "", "the document could not be read", ErrPayload)
	}
	defer x.Free()
	if err := x.RegisterNS("hl7", nsHL7v3); err != nil {
		return nil, invalid("cda-root", "DE0012", "", "the document could not be read", ErrPayload)
	}
	q := query{x}
	if q.count("/hl7:ClinicalDocument") != 1 {
		return nil, invalid("cda-root", "DE0012", "/hl7:ClinicalDocument", "the payload is not an HL7 CDA ClinicalDocument", ErrPayload)
	}
	const cd = "/hl7:ClinicalDocument"
	const pr = cd + "/hl7:recordTarget/hl7:patientRole"
	const pt = pr + "/hl7:patient"
	const au = cd + "/hl7:author[1]"
	const cu = cd + "/hl7:custodian/hl7:assignedCustodian/hl7:representedCustodianOrganization"
	h := &CDAHeader{
		ID:            q.ii(cd + "/hl7:id"),
		SetID:         q.ii(cd + "/hl7:setId"),
		Version:       q.str(cd + "/hl7:versionNumber/@value"),
		Type:          Coding{Code: q.str(cd + "/hl7:code/@code"), System: q.str(cd + "/hl7:code/@codeSystem"), Display: q.str(cd + "/hl7:code/@displayName")},
		Title:         q.str(cd + "/hl7:title"),
		EffectiveTime: q.str(cd + "/hl7:effectiveTime/@value"),
		Patient: CDAPatient{
			NHSNumber: q.str(pr + "/hl7:id[@root='" + oidNHSNumber + "']/@extension"),
			Family:    q.str(pt + "/hl7:name[1]/hl7:family"),
			Given:     q.strs(pt + "/hl7:name[1]/hl7:given"),
			Prefix:    q.str(pt + "/hl7:name[1]/hl7:prefix"),
			Gender:    cdaGender(q.str(pt+"/hl7:administrativeGenderCode/@code"), q.str(pt+"/hl7:administrativeGenderCode/@codeSystem")),
			BirthTime: q.str(pt + "/hl7:birthTime/@value"),
		},
		Author:     q.org(au + "/hl7:assignedAuthor/hl7:representedOrganization"),
		AuthorTime: q.str(au + "/hl7:time/@value"),
		Custodian:  q.org(cu),
	}
	return h, nil
}

// query runs XPath expressions against one document.
type query struct{ x *xpath.Context }

func (q query) nodes(expr string) (types.XPathResult, types.NodeList) {
	res, err := q.x.Find(expr)
	if err != nil {
		return nil, nil
	}
	return res, res.NodeList()
}

func (q query) count(expr string) int {
	res, nodes := q.nodes(expr)
	if res != nil {
		defer res.Free()
	}
	return len(nodes)
}

// str returns the trimmed text of the first node expr selects, or "".
func (q query) str(expr string) string {
	if s := q.strs(expr); len(s) > 0 {
		return s[0]
	}
	return ""
}

// strs returns the trimmed, non-empty texts of the nodes expr selects.
func (q query) strs(expr string) []string {
	res, nodes := q.nodes(expr)
	if res == nil {
		return nil
	}
	defer res.Free()
	var out []string
	for _, n := range nodes {
		if s := strings.TrimSpace(n.TextContent()); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func (q query) ii(path string) Identifier {
	return Identifier{Root: q.str(path + "/@root"), Extension: q.str(path + "/@extension")}
}

// org reads an organisation whose id has an ODS root (organisation or site).
func (q query) org(path string) Organization {
	return Organization{
		ODS:  q.str(path + "/hl7:id[@root='" + oidODSOrg + "' or @root='" + oidODSSite + "']/@extension"),
		Name: q.str(path + "/hl7:name"),
	}
}

// cdaGender maps the HL7 v3 AdministrativeGender codes and the NHS Data
// Dictionary sex codes (0 not known, 1 male, 2 female, 9 not specified) to
// FHIR's administrative gender.
func cdaGender(code, system string) string {
	switch system {
	case "2.16.840.1.113883.2.1.3.2.4.16.25":
		switch code {
		case "1":
			return "male"
		case "2":
			return "female"
		case "0", "9":
			return "unknown"
		}
	default:
		switch code {
		case "M":
			return "male"
		case "F":
			return "female"
		case "UN":
			return "other"
		}
	}
	return ""
}
