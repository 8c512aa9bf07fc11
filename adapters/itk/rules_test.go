package itk

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// mutation turns a valid request into one that breaks a rule.
type mutation func(string) string

// rep replaces the first old with new.
func rep(old, new string) mutation {
	return func(s string) string { return strings.Replace(s, old, new, 1) }
}

// cut removes the text from the first start through the end that follows it.
func cut(start, end string) mutation {
	return func(s string) string {
		i := strings.Index(s, start)
		if i < 0 {
			return s
		}
		j := strings.Index(s[i:], end)
		if j < 0 {
			return s
		}
		return s[:i] + s[i+j+len(end):]
	}
}

// dup repeats the text from the first start through the end that follows it.
func dup(start, end string) mutation {
	return func(s string) string {
		i := strings.Index(s, start)
		j := strings.Index(s[i:], end)
		if i < 0 || j < 0 {
			return s
		}
		part := s[i : i+j+len(end)]
		return s[:i] + part + part + s[i+j+len(end):]
	}
}

func chain(ms ...mutation) mutation {
	return func(s string) string {
		for _, m := range ms {
			s = m(s)
		}
		return s
	}
}

// A negative case is one rule of the spec digest (or of SOAP, or of the v2 XML
// encoding) broken on its own. Each becomes fixtures/itk/invalid/<name>.xml.
type negative struct {
	name    string // file name without .xml: the code, then the rule
	base    string // the fixture it is made from
	mut     mutation
	code    Code
	fault   string
	deCode  string
	rule    string
	handler bool // only the Handler checks it (clock, configuration, payloads)
}

const (
	cdaFixture = "cda_discharge.xml"
	adtFixture = "adt_a01_v2xml.xml"
	otherUUID  = "11111111-2222-4333-8444-555555555555"
	trackingID = "7F3E8A21-4B5C-4D6E-8F90-A1B2C3D4E5F6"
	messageID  = "6B1E2C3A-0F4D-4E21-9A7B-2C1D3E4F5A60"
	payloadID  = "uuid_2A4C6E80-1B3D-4F57-9A1C-3E5F7A9B1C2D"
	cdaService = "urn:nhs-itk:services:201005:SendCDADocument-v2-0"
)

func c1000(name, rule, de string, m mutation) negative {
	return negative{name: "1000-" + name, base: cdaFixture, mut: m, code: CodeInvalidMessage, fault: FaultClient, deCode: de, rule: rule}
}

var negatives = []negative{
	// SOAP 1.1 and WS-Addressing (spec digest 1.1).
	{name: "1000-soap-11", base: cdaFixture, mut: rep(`xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"`, `xmlns:soap="http://www.w3.org/2003/05/soap-envelope"`), code: CodeInvalidMessage, fault: FaultVersionMismatch, rule: "soap-11"},
	c1000("soap-envelope", "soap-envelope", "", chain(rep("<soap:Envelope ", "<soap:Envelop "), rep("</soap:Envelope>", "</soap:Envelop>"))),
	c1000("soap-header", "soap-header", "", chain(rep("<soap:Header>", "<soap:Heading>"), rep("</soap:Header>", "</soap:Heading>"))),
	c1000("soap-body-envelope", "soap-body-envelope", "DE0001", rep("<soap:Body>", "<soap:Body><itk:extra/>")),
	{name: "1000-soap-must-understand", base: cdaFixture, mut: rep("<soap:Header>", `<soap:Header><x:Custom xmlns:x="urn:example:custom" soap:mustUnderstand="1"/>`), code: CodeInvalidMessage, fault: FaultMustUnderstand, rule: "soap-must-understand"},
	c1000("wsa-messageid", "wsa-messageid", "", cut("<wsa:MessageID>", "</wsa:MessageID>")),
	c1000("wsa-messageid-uuid", "wsa-messageid-uuid", "", rep("uuid:"+messageID, "message-1")),
	c1000("wsa-once", "wsa-once", "", dup("<wsa:To", "</wsa:To>")),
	c1000("wsa-action", "wsa-action", "", rep(">"+cdaService+"</wsa:Action>", "></wsa:Action>")),
	c1000("wsa-action-service", "wsa-action-service", "", rep(">"+cdaService+"</wsa:Action>", ">urn:nhs-itk:services:201005:SendNHS111Report-v2-0</wsa:Action>")),
	c1000("wsa-known", "wsa-known", "", rep("<wsa:From>", "<wsa:Sender>urn:x</wsa:Sender><wsa:From>")),
	c1000("wsa-to", "wsa-to", "", cut("<wsa:To", "</wsa:To>")),
	c1000("wsa-reference-parameters", "wsa-reference-parameters", "", rep("</wsa:Address></wsa:From>", "</wsa:Address><wsa:ReferenceParameters/></wsa:From>")),
	c1000("wsa-endpoint-address", "wsa-endpoint-address", "", cut("<wsa:Address>", "</wsa:Address>")),
	// WS-Security: the timestamp and the user.
	{name: "3000-wsse-security", base: cdaFixture, mut: cut("<wsse:Security>", "</wsse:Security>"), code: CodeAccessDenied, fault: FaultClient, rule: "wsse-security"},
	{name: "3000-wsse-username-token", base: cdaFixture, mut: cut("<wsse:UsernameToken>", "</wsse:UsernameToken>"), code: CodeAccessDenied, fault: FaultClient, rule: "wsse-username-token"},
	{name: "3000-wsse-username", base: cdaFixture, mut: rep(">rx1-discharge<", "> <"), code: CodeAccessDenied, fault: FaultClient, rule: "wsse-username"},
	c1000("wsse-security-once", "wsse-security-once", "", dup("<wsse:Security>", "</wsse:Security>")),
	c1000("wsu-timestamp", "wsu-timestamp", "", cut("<wsu:Timestamp", "</wsu:Timestamp>")),
	c1000("wsu-timestamp-id", "wsu-timestamp-id", "", rep(` wsu:Id="D3A1B2C4-5E6F-4A7B-8C9D-0E1F2A3B4C5D"`, "")),
	c1000("wsu-created", "wsu-created", "", rep("2026-11-21T09:30:15Z</wsu:Created>", "21/11/2026 09:30</wsu:Created>")),
	c1000("wsu-expires", "wsu-expires", "", rep("2026-11-21T09:40:15Z", "2026-11-21 09:40:15")),
	c1000("wsu-expires-after-created", "wsu-expires-after-created", "", rep("2026-11-21T09:40:15Z", "2026-11-21T09:30:15Z")),
	{name: "1000-wsu-timestamp-expired", base: cdaFixture, mut: chain(rep("2026-11-21T09:30:15Z", "2026-11-21T08:30:15Z"), rep("2026-11-21T09:40:15Z", "2026-11-21T08:40:15Z")), code: CodeInvalidMessage, fault: FaultClient, rule: "wsu-timestamp-window", handler: true},
	{name: "1000-wsu-timestamp-future", base: cdaFixture, mut: chain(rep("2026-11-21T09:30:15Z", "2026-11-21T10:30:15Z"), rep("2026-11-21T09:40:15Z", "2026-11-21T10:40:15Z")), code: CodeInvalidMessage, fault: FaultClient, rule: "wsu-timestamp-window", handler: true},
	c1000("utf-8", "utf-8", "", rep(`encoding="UTF-8"`, `encoding="ISO-8859-1"`)),
	c1000("xml-well-formed", "xml-well-formed", "", rep("</soap:Body>", "</soap:Bod>")),
	c1000("ids-unique", "ids-unique", "DE0005", rep(`trackingid="`+trackingID+`"`, `trackingid="`+messageID+`"`)),
	{name: "2200-service-offered", base: cdaFixture, mut: chain(rep(cdaService+"</wsa:Action>", "urn:nhs-itk:services:201005:SendLetter-v1-0</wsa:Action>"), rep(`service="`+cdaService, `service="urn:nhs-itk:services:201005:SendLetter-v1-0`)), code: CodeNotRetryable, fault: FaultServer, deCode: "DE0002", rule: "service-offered", handler: true},

	// The Distribution Envelope (spec digest 1.2).
	c1000("de-structure", "de-structure", "DE0001", rep("<itk:DistributionEnvelope>", "<itk:DistributionEnvelope><itk:extra/>")),
	c1000("de-service", "de-service", "DE0002", rep(`service="`+cdaService+`" `, "")),
	c1000("de-service-urn", "de-service-urn", "DE0002", chain(rep(">"+cdaService+"</wsa:Action>", ">SendCDADocument-v2-0</wsa:Action>"), rep(`service="`+cdaService, `service="SendCDADocument-v2-0`))),
	c1000("de-trackingid", "de-trackingid", "DE0002", rep(` trackingid="`+trackingID+`"`, "")),
	c1000("de-trackingid-uuid", "de-trackingid-uuid", "DE0002", rep(`trackingid="`+trackingID+`"`, `trackingid="TRACK-1"`)),
	c1000("de-header-element", "de-header-element", "DE0002", rep("<itk:addresslist>", "<itk:priority/><itk:addresslist>")),
	c1000("de-header-once", "de-header-once", "DE0002", dup("<itk:auditIdentity>", "</itk:auditIdentity>")),
	c1000("de-header-order", "de-header-order", "DE0002", chain(cut("<itk:senderAddress", "/>"), rep("<itk:manifest ", `<itk:senderAddress uri="urn:nhs-uk:addressing:ods:RX1:DISCHARGE"/><itk:manifest `))),
	c1000("de-addresslist", "de-addresslist", "DE0003", cut("<itk:addresslist>", "</itk:addresslist>")),
	c1000("de-address", "de-address", "DE0003", cut(`<itk:address uri="urn:nhs-uk:addressing:ods:X26"/>`, "/>")),
	c1000("de-address-element", "de-address-element", "DE0003", rep(`<itk:address uri=`, `<itk:recipient uri=`)),
	c1000("de-address-uri", "de-address-uri", "DE0003", rep(`<itk:address uri="urn:nhs-uk:addressing:ods:X26"/>`, `<itk:address/>`)),
	c1000("de-address-type", "de-address-type", "DE0003", rep(`<itk:address uri="urn:nhs-uk:addressing:ods:X26"/>`, `<itk:address uri="urn:nhs-uk:addressing:ods:X26" type="2.16.840.1.113883.2.1.3.2.4.18.99"/>`)),
	c1000("de-address-non-toolkit", "de-address-non-toolkit", "DE0003", rep(`<itk:address uri="urn:nhs-uk:addressing:ods:X26"/>`, `<itk:address uri="https://gp.example.nhs.uk/itk"/>`)),
	c1000("de-address-non-toolkit-default-type", "de-address-non-toolkit", "DE0003", rep(`<itk:address uri="urn:nhs-uk:addressing:ods:X26"/>`, `<itk:address uri="https://gp.example.nhs.uk/itk" type="`+AddressTypeOID+`"/>`)),
	c1000("de-address-type-oid", "de-address-type-oid", "DE0003", rep(`<itk:address uri="urn:nhs-uk:addressing:ods:X26"/>`, `<itk:address uri="https://gp.example.nhs.uk/itk" type="local-routing"/>`)),
	c1000("de-audit-identity", "de-audit-identity", "DE0004", cut("<itk:auditIdentity>", "</itk:auditIdentity>")),
	c1000("de-audit-identity-id", "de-audit-identity-id", "DE0004", dup(`<itk:id uri="urn:nhs-uk:identity:ods:RX1"/>`, "/>")),
	c1000("de-identity-uri", "de-identity-uri", "DE0005", rep(`<itk:id uri="urn:nhs-uk:identity:ods:RX1"/>`, `<itk:id/>`)),
	c1000("de-identity-type", "de-identity-type", "DE0005", rep(`<itk:id uri="urn:nhs-uk:identity:ods:RX1"/>`, `<itk:id uri="urn:nhs-uk:identity:ods:RX1" type="`+AddressTypeOID+`"/>`)),
	c1000("de-identity-non-toolkit", "de-identity-non-toolkit", "DE0005", rep(`<itk:id uri="urn:nhs-uk:identity:ods:RX1"/>`, `<itk:id uri="urn:example:rx1:pas"/>`)),
	c1000("de-manifest", "de-manifest", "DE0006", cut("<itk:manifest ", "</itk:manifest>")),
	c1000("de-manifest-count", "de-manifest-count", "DE0006", rep(`<itk:manifest count="1">`, `<itk:manifest count="one">`)),
	c1000("de-manifest-count-items", "de-manifest-count-items", "DE0006", rep(`<itk:manifest count="1">`, `<itk:manifest count="2">`)),
	c1000("de-manifest-empty", "de-manifest-empty", "DE0006", chain(rep(`<itk:manifest count="1">`, `<itk:manifest count="0">`), cut("<itk:manifestitem ", "/>"))),
	c1000("de-manifest-element", "de-manifest-element", "DE0006", rep(`<itk:manifestitem `, `<itk:item/><itk:manifestitem `)),
	c1000("de-manifest-id", "de-manifest-id", "DE0007", rep(`<itk:manifestitem id="`+payloadID+`" `, `<itk:manifestitem `)),
	c1000("de-manifest-id-format", "de-manifest-id-format", "DE0007", rep(`<itk:manifestitem id="`+payloadID+`"`, `<itk:manifestitem id="payload-1"`)),
	c1000("de-manifest-id-unique", "de-manifest-id-unique", "DE0007", chain(rep(`<itk:manifest count="1">`, `<itk:manifest count="2">`), dup("<itk:manifestitem ", "/>"))),
	c1000("de-manifest-mimetype", "de-manifest-mimetype", "DE0007", rep(` mimetype="text/xml"`, "")),
	c1000("de-manifest-profileid", "de-manifest-profileid", "DE0007", rep(` profileid="urn:nhs-en:profile:eDischargeInpatientDischargeSummary-v2-0"`, "")),
	c1000("de-manifest-boolean", "de-manifest-boolean", "DE0007", rep(` mimetype="text/xml"`, ` mimetype="text/xml" base64="no"`)),
	c1000("de-manifest-payload", "de-manifest-payload", "DE0012", chain(rep(`<itk:manifest count="1">`, `<itk:manifest count="2">`), rep("</itk:manifest>", `<itk:manifestitem id="uuid_`+otherUUID+`" mimetype="text/xml" profileid="urn:nhs-en:profile:eDischargeInpatientDischargeSummary-v2-0"/></itk:manifest>`))),
	c1000("de-sender-address", "de-sender-address", "DE0008", rep(`<itk:senderAddress uri="urn:nhs-uk:addressing:ods:RX1:DISCHARGE"/>`, `<itk:senderAddress uri="https://rx1.example.nhs.uk/acks"/>`)),
	c1000("de-sender-address-for-acks", "de-sender-address-for-acks", "DE0008", cut("<itk:senderAddress", "/>")),
	c1000("de-handling-element", "de-handling-element", "DE0009", rep("<itk:handlingSpecification>", "<itk:handlingSpecification><itk:priority/>")),
	c1000("de-spec-key-value", "de-spec-key-value", "DE0010", rep(` value="urn:nhs-itk:interaction:primaryRecipienteDischargeInpatientDischargeSummaryDocument-v1-0"`, "")),
	c1000("de-spec-once", "de-spec-once", "DE0010", dup(`<itk:spec key="urn:nhs-itk:ns:201005:ackrequested"`, "/>")),
	c1000("de-spec-boolean", "de-spec-boolean", "DE0010", rep(`key="urn:nhs-itk:ns:201005:infackrequested" value="true"`, `key="urn:nhs-itk:ns:201005:infackrequested" value="yes"`)),
	c1000("de-spec-interaction", "de-spec-interaction", "DE0010", rep(`value="urn:nhs-itk:interaction:primaryRecipienteDischargeInpatientDischargeSummaryDocument-v1-0"`, `value="discharge summary"`)),
	c1000("de-payloads-count", "de-payloads-count", "DE0011", rep(`<itk:payloads count="1">`, `<itk:payloads>`)),
	c1000("de-payloads-count-items", "de-payloads-count-items", "DE0011", rep(`<itk:payloads count="1">`, `<itk:payloads count="2">`)),
	c1000("de-payloads-element", "de-payloads-element", "DE0011", rep(`<itk:payloads count="1">`, `<itk:payloads count="1"><itk:attachment/>`)),
	c1000("de-payload-id", "de-payload-id", "DE0012", rep(`<itk:payload id="`+payloadID+`">`, `<itk:payload>`)),
	c1000("de-payload-id-unique", "de-payload-id-unique", "DE0012", chain(rep(`<itk:payloads count="1">`, `<itk:payloads count="2">`), dup("<itk:payload ", "</itk:payload>"))),
	c1000("de-payload-manifest", "de-payload-manifest", "DE0012", rep(`<itk:payload id="`+payloadID+`">`, `<itk:payload id="uuid_`+otherUUID+`">`)),

	// Payloads.
	{name: "2200-payload-encrypted", base: cdaFixture, mut: rep(` mimetype="text/xml"`, ` mimetype="text/xml" encrypted="true"`), code: CodeNotRetryable, fault: FaultServer, deCode: "DE0012", rule: "payload-encrypted", handler: true},
	{name: "1000-payload-compressed-base64", base: cdaFixture, mut: rep(` mimetype="text/xml"`, ` mimetype="text/xml" compressed="true"`), code: CodeInvalidMessage, fault: FaultClient, deCode: "DE0012", rule: "payload-compressed-base64", handler: true},
	{name: "1000-payload-base64", base: cdaFixture, mut: rep(` mimetype="text/xml"`, ` mimetype="text/xml" base64="true"`), code: CodeInvalidMessage, fault: FaultClient, deCode: "DE0012", rule: "payload-base64", handler: true},
	{name: "1000-payload-inline", base: cdaFixture, mut: rep(`<itk:payload id="`+payloadID+`">`, `<itk:payload id="`+payloadID+`"><note xmlns="urn:example:note"/>`), code: CodeInvalidMessage, fault: FaultClient, deCode: "DE0012", rule: "payload-inline", handler: true},
	{name: "2200-payload-kind", base: cdaFixture, mut: rep(`<ClinicalDocument xmlns="urn:hl7-org:v3"`, `<ClinicalDocument xmlns="urn:example:letters"`), code: CodeNotRetryable, fault: FaultServer, deCode: "DE0012", rule: "payload-kind", handler: true},

	// The HL7 v2 XML encoding.
	{name: "1000-v2xml-msh", base: adtFixture, mut: chain(rep("<MSH>", "<MSX>"), rep("</MSH>", "</MSX>")), code: CodeInvalidMessage, fault: FaultClient, deCode: "DE0012", rule: "v2xml-msh", handler: true},
	{name: "1000-v2xml-field", base: adtFixture, mut: rep("<PID.8>F</PID.8>", "<PV1.8>F</PV1.8>"), code: CodeInvalidMessage, fault: FaultClient, deCode: "DE0012", rule: "v2xml-field", handler: true},
	{name: "1000-v2xml-component", base: adtFixture, mut: rep("<CX.5>NH</CX.5>", "<CX5>NH</CX5>"), code: CodeInvalidMessage, fault: FaultClient, deCode: "DE0012", rule: "v2xml-component", handler: true},
	{name: "1000-v2xml-component-once", base: adtFixture, mut: rep("<CX.5>NH</CX.5>", "<CX.5>NH</CX.5><CX.5>NH</CX.5>"), code: CodeInvalidMessage, fault: FaultClient, deCode: "DE0012", rule: "v2xml-component-once", handler: true},
	{name: "1000-v2xml-depth", base: adtFixture, mut: rep("<HD.1>NHS</HD.1>", "<HD.1><IS.1>NHS</IS.1></HD.1>"), code: CodeInvalidMessage, fault: FaultClient, deCode: "DE0012", rule: "v2xml-depth", handler: true},
	{name: "1000-v2xml-text", base: adtFixture, mut: rep("<PID.1>1</PID.1>", "stray<PID.1>1</PID.1>"), code: CodeInvalidMessage, fault: FaultClient, deCode: "DE0012", rule: "v2xml-text", handler: true},
	{name: "1000-v2xml-escape", base: adtFixture, mut: rep(`<escape V=".br"/>`, `<escape V="|"/>`), code: CodeInvalidMessage, fault: FaultClient, deCode: "DE0012", rule: "v2xml-escape", handler: true},
	{name: "1000-v2xml-namespace", base: adtFixture, mut: rep("<ZU1>", `<ZU1 xmlns="urn:example:local">`), code: CodeInvalidMessage, fault: FaultClient, deCode: "DE0012", rule: "v2xml-namespace", handler: true},
}

// TestNegativeFixtures checks that each fixture under fixtures/itk/invalid is
// the valid request with one rule broken (rewritten with -update), that Decode
// names that rule first, and that the Handler answers it with the right fault.
func TestNegativeFixtures(t *testing.T) {
	dir := filepath.Join(fixtureDir, "invalid")
	if *update {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	names := map[string]bool{}
	for _, n := range negatives {
		t.Run(n.name, func(t *testing.T) {
			if names[n.name] {
				t.Fatalf("two cases named %s", n.name)
			}
			names[n.name] = true
			base := string(fixture(t, n.base))
			body := n.mut(base)
			if body == base {
				t.Fatal("the mutation changed nothing")
			}
			golden(t, filepath.Join("invalid", n.name+".xml"), []byte(body))

			if !n.handler {
				_, err := Decode([]byte(body), Limits{})
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("Decode: %v, want an *Error", err)
				}
				if f := First(err); f.Rule != n.rule || f.Code != n.code || f.DECode != n.deCode {
					t.Errorf("Decode's first error %v, want rule %s code %d %s", f, n.rule, n.code, n.deCode)
				}
			}
			w := post(newTestHandler(t, Config{}, &fakeJournal{}), []byte(body))
			f := mustFault(t, w)
			if f.Code != n.code || f.FaultCode != n.fault {
				t.Errorf("fault %s %d, want %s %d", f.FaultCode, f.Code, n.fault, n.code)
			}
			want := strings.TrimSpace(n.deCode + " " + n.rule)
			if !strings.HasPrefix(f.Diagnostic, want+" ") && !strings.HasPrefix(f.Diagnostic, want+":") {
				t.Errorf("diagnostic %q does not start with %q", f.Diagnostic, want)
			}
		})
	}
	if *update {
		return
	}
	// Every fixture on disk is still a case.
	files, _ := filepath.Glob(filepath.Join(dir, "*.xml"))
	for _, f := range files {
		if name := strings.TrimSuffix(filepath.Base(f), ".xml"); !names[name] {
			t.Errorf("fixture %s has no case; delete it or add one", f)
		}
	}
}
