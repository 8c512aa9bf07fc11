package itk

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// texts returns every text in the tree, for looking for what must not be there.
func texts(e *xmlElem) string {
	var b strings.Builder
	var walk func(*xmlElem)
	walk = func(e *xmlElem) {
		for _, a := range e.attrs {
			b.WriteString(a.value)
		}
		for _, k := range e.kids {
			if k.elem != nil {
				walk(k.elem)
			} else {
				b.WriteString(k.text)
			}
		}
	}
	walk(e)
	return b.String()
}

func TestXXEFixture(t *testing.T) {
	w := post(newTestHandler(t, Config{}, &fakeJournal{}), fixture(t, "xxe.xml"))
	f := mustFault(t, w)
	if f.Code != CodeInvalidMessage || !strings.HasPrefix(f.Diagnostic, "no-doctype") {
		t.Errorf("fault %+v, want 1000 no-doctype", f)
	}
	if strings.Contains(w.Body.String(), "root:") {
		t.Error("the fault holds /etc/passwd")
	}
}

// TestXXELocalFile points an external entity at a local file holding a
// secret: the request is refused, and even the parser underneath the DOCTYPE
// screen never puts the file's content in the tree.
func TestXXELocalFile(t *testing.T) {
	secret := "SECRET-" + newUUID()
	path := filepath.Join(t.TempDir(), "secret.txt")
	if err := os.WriteFile(path, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	docs := map[string]string{
		"general entity": `<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file://` + path + `">]><r>&x;</r>`,
		"in attribute":   `<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file://` + path + `">]><r a="&x;"/>`,
		"external DTD":   `<?xml version="1.0"?><!DOCTYPE r SYSTEM "file://` + path + `"><r/>`,
		"parameter":      `<?xml version="1.0"?><!DOCTYPE r [<!ENTITY % p SYSTEM "file://` + path + `"> %p;]><r/>`,
	}
	for name, doc := range docs {
		t.Run(name, func(t *testing.T) {
			w := post(newTestHandler(t, Config{}, &fakeJournal{}), []byte(doc))
			if f := mustFault(t, w); f.Code != CodeInvalidMessage {
				t.Errorf("code %d, want 1000", f.Code)
			}
			if strings.Contains(w.Body.String(), secret) {
				t.Fatal("the fault holds the file's content")
			}
			_, err := parseXML([]byte(doc), xmlLimits{})
			if !errors.Is(err, ErrDoctype) {
				t.Errorf("parseXML: %v, want ErrDoctype", err)
			}
			// Below the screen: libxml2 with substitution, DTD loading and
			// network off.
			root, err := parseTree([]byte(doc), xmlLimits{})
			if err == nil && strings.Contains(texts(root), secret) {
				t.Fatal("libxml2 substituted the external entity")
			}
		})
	}
}

func TestBillionLaughs(t *testing.T) {
	doc := fixture(t, "billion_laughs.xml")
	h := newTestHandler(t, Config{}, &fakeJournal{})
	f := mustFault(t, post(h, doc))
	if f.Code != CodeInvalidMessage || !strings.HasPrefix(f.Diagnostic, "no-doctype") {
		t.Errorf("fault %+v, want 1000 no-doctype", f)
	}
	// Bounded memory: a billion laughs expanded is 3 GB; refused, a request
	// costs what reading it and writing the fault cost.
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const runs = 20
	for range runs {
		post(h, doc)
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / runs; per > 256<<10 {
		t.Errorf("%d bytes allocated per request, want under 256 KiB", per)
	}
	// Below the screen, libxml2 without entity substitution keeps references
	// as references and the copy refuses them; the Go side stays small.
	runtime.GC()
	runtime.ReadMemStats(&before)
	root, err := parseTree(doc, xmlLimits{})
	runtime.ReadMemStats(&after)
	if err == nil && len(texts(root)) > len(doc) {
		t.Errorf("libxml2 expanded the entities: %d bytes of text", len(texts(root)))
	}
	if grown := after.TotalAlloc - before.TotalAlloc; grown > 1<<20 {
		t.Errorf("parsing allocated %d bytes, want under 1 MiB", grown)
	}
}

func TestXMLScreen(t *testing.T) {
	utf16 := []byte{0xff, 0xfe}
	for _, r := range "<r/>" {
		utf16 = append(utf16, byte(r), 0)
	}
	tests := []struct {
		name string
		doc  []byte
		lim  xmlLimits
		want error
	}{
		{"empty", nil, xmlLimits{}, ErrMalformed},
		{"UTF-16", utf16, xmlLimits{}, ErrEncoding},
		{"NUL", []byte("<r>\x00</r>"), xmlLimits{}, ErrEncoding},
		{"invalid UTF-8", []byte("<r>\xff</r>"), xmlLimits{}, ErrEncoding},
		{"declared Latin-1", []byte(`<?xml version="1.0" encoding='iso-8859-1'?><r/>`), xmlLimits{}, ErrEncoding},
		{"too large", []byte("<r>" + strings.Repeat("x", 100) + "</r>"), xmlLimits{maxSize: 50}, ErrTooLarge},
		{"too deep", []byte(strings.Repeat("<a>", 30) + strings.Repeat("</a>", 30)), xmlLimits{maxDepth: 20}, ErrTooDeep},
		{"deeper than libxml2 allows", []byte(strings.Repeat("<a>", 5000) + strings.Repeat("</a>", 5000)), xmlLimits{maxDepth: 10000}, ErrMalformed},
		{"undefined entity", []byte("<r>&x;</r>"), xmlLimits{}, ErrMalformed},
		{"unclosed", []byte("<r>"), xmlLimits{}, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := parseXML(tt.doc, tt.lim); !errors.Is(err, tt.want) {
				t.Errorf("parseXML: %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("UTF-8 declared and BOM", func(t *testing.T) {
		if _, err := parseXML([]byte("\xef\xbb\xbf<?xml version=\"1.0\" encoding=\"utf-8\"?><r>é</r>"), xmlLimits{}); err != nil {
			t.Error(err)
		}
	})
}

// TestXIncludeNotProcessed: an xi:include in a payload stays an element; the
// file it names is not read into the document.
func TestXIncludeNotProcessed(t *testing.T) {
	secret := "SECRET-" + newUUID()
	path := filepath.Join(t.TempDir(), "secret.txt")
	if err := os.WriteFile(path, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	body := strings.Replace(string(fixture(t, cdaFixture)), "<title>Inpatient discharge summary</title>",
		`<title>Inpatient discharge summary</title><xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="file://`+path+`" parse="text"/>`, 1)
	j := &fakeJournal{}
	mustOK(t, post(newTestHandler(t, Config{}, j), []byte(body)))
	if raw := string(j.records[0].Raw); strings.Contains(raw, secret) || !strings.Contains(raw, "xi:include") {
		t.Error("the xi:include was processed")
	}
}

// withPayload replaces the CDA fixture's inline payload with content and the
// manifest item's flags.
func withPayload(t *testing.T, flags, content string) []byte {
	t.Helper()
	s := string(fixture(t, cdaFixture))
	start := strings.Index(s, `<itk:payload id="`+payloadID+`">`) + len(`<itk:payload id="`+payloadID+`">`)
	end := strings.Index(s, "</itk:payload>")
	s = s[:start] + content + s[end:]
	return []byte(strings.Replace(s, ` mimetype="text/xml"`, ` mimetype="text/xml" `+flags, 1))
}

func cdaDocument(t *testing.T) []byte { return fixture(t, "cda_discharge.cda.xml") }

func TestPayloadEncodings(t *testing.T) {
	doc := cdaDocument(t)
	var gz, zl bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(doc)
	zw.Close()
	lw := zlib.NewWriter(&zl)
	lw.Write(doc)
	lw.Close()
	b64 := func(b []byte) string {
		s := base64.StdEncoding.EncodeToString(b)
		// Line breaks, as MIME-minded senders write them, are allowed.
		var out strings.Builder
		for len(s) > 76 {
			out.WriteString(s[:76] + "\n")
			s = s[76:]
		}
		return out.String() + s
	}
	for name, body := range map[string][]byte{
		"base64":      withPayload(t, `base64="true"`, b64(doc)),
		"gzip":        withPayload(t, `base64="true" compressed="true"`, b64(gz.Bytes())),
		"zlib":        withPayload(t, `base64="1" compressed="1"`, b64(zl.Bytes())),
		"false flags": withPayload(t, `base64="false" compressed="false" encrypted="false"`, string(doc[bytes.IndexByte(doc, '\n')+1:])),
	} {
		t.Run(name, func(t *testing.T) {
			j := &fakeJournal{}
			mustOK(t, post(newTestHandler(t, Config{}, j), body))
			if len(j.records) != 1 {
				t.Fatalf("%d records", len(j.records))
			}
			if name != "false flags" && !bytes.Equal(j.records[0].Raw, doc) {
				t.Error("the journaled CDA is not the document as sent")
			}
			if j.records[0].NHSNumber != "9434765919" {
				t.Errorf("NHS number %q", j.records[0].NHSNumber)
			}
		})
	}
	t.Run("base64 DOCTYPE", func(t *testing.T) {
		evil := []byte(`<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><ClinicalDocument xmlns="urn:hl7-org:v3">&x;</ClinicalDocument>`)
		f := mustFault(t, post(newTestHandler(t, Config{}, &fakeJournal{}), withPayload(t, `base64="true"`, b64(evil))))
		if f.Code != CodeInvalidMessage || !strings.Contains(f.Diagnostic, "no-doctype") {
			t.Errorf("fault %+v, want 1000 no-doctype", f)
		}
	})
	t.Run("decompression bomb", func(t *testing.T) {
		var bomb bytes.Buffer
		zw := gzip.NewWriter(&bomb)
		zw.Write([]byte("<ClinicalDocument xmlns=\"urn:hl7-org:v3\">"))
		zw.Write(bytes.Repeat([]byte(" "), 8<<20))
		zw.Close()
		h := newTestHandler(t, Config{MaxBodySize: 1 << 20}, &fakeJournal{})
		f := mustFault(t, post(h, withPayload(t, `base64="true" compressed="true"`, b64(bomb.Bytes()))))
		if f.Code != CodeInvalidMessage || !strings.Contains(f.Diagnostic, "payload-size-limit") {
			t.Errorf("fault %+v, want 1000 payload-size-limit", f)
		}
	})
	t.Run("not base64", func(t *testing.T) {
		f := mustFault(t, post(newTestHandler(t, Config{}, &fakeJournal{}), withPayload(t, `base64="true"`, "**not base64**")))
		if f.Code != CodeInvalidMessage || !strings.Contains(f.Diagnostic, "payload-base64") {
			t.Errorf("fault %+v", f)
		}
	})
	t.Run("not compressed", func(t *testing.T) {
		f := mustFault(t, post(newTestHandler(t, Config{}, &fakeJournal{}), withPayload(t, `base64="true" compressed="true"`, b64([]byte{0x1f, 0x8b, 1, 2, 3}))))
		if f.Code != CodeInvalidMessage || !strings.Contains(f.Diagnostic, "payload-compressed") {
			t.Errorf("fault %+v", f)
		}
	})
}

// TestTwoPayloads sends a CDA document and an ADT in one envelope: both are
// journaled, each with its own payload id.
func TestTwoPayloads(t *testing.T) {
	adt := string(fixture(t, adtFixture))
	v2 := adt[strings.Index(adt, "<ADT_A01 ") : strings.Index(adt, "</ADT_A01>")+len("</ADT_A01>")]
	s := string(fixture(t, cdaFixture))
	s = strings.Replace(s, `<itk:manifest count="1">`, `<itk:manifest count="2">`, 1)
	s = strings.Replace(s, "</itk:manifest>", `<itk:manifestitem id="uuid_`+otherUUID+`" mimetype="text/xml" profileid="urn:nhs-en:profile:admitPatient-v1-0"/></itk:manifest>`, 1)
	s = strings.Replace(s, `<itk:payloads count="1">`, `<itk:payloads count="2">`, 1)
	s = strings.Replace(s, "</itk:payloads>", `<itk:payload id="uuid_`+otherUUID+`">`+v2+`</itk:payload></itk:payloads>`, 1)
	j := &fakeJournal{}
	mustOK(t, post(newTestHandler(t, Config{}, j), []byte(s)))
	if len(j.records) != 1 || len(j.arrivals) != 1 {
		t.Fatalf("%d records and %d arrivals, want 1 and 1", len(j.records), len(j.arrivals))
	}
	if m, _ := ParseMeta(j.arrivals[0].Peer); m.PayloadID != "uuid_"+otherUUID {
		t.Errorf("v2 payload id %q", m.PayloadID)
	}
}

// TestValidVariants are requests that differ from the fixtures in ways the
// rules allow.
func TestValidVariants(t *testing.T) {
	for name, m := range map[string]mutation{
		"lower-case UUIDs":          chain(rep("uuid:"+messageID, "uuid:"+strings.ToLower(messageID)), rep(trackingID, strings.ToLower(trackingID))),
		"bare MessageID":            rep("uuid:"+messageID, messageID),
		"toolkit address with type": rep(`<itk:address uri="urn:nhs-uk:addressing:ods:X26"/>`, `<itk:address uri="urn:nhs-uk:addressing:ods:X26" type="`+AddressTypeOID+`"/>`),
		"non-toolkit address":       rep(`<itk:address uri="urn:nhs-uk:addressing:ods:X26"/>`, `<itk:address uri="https://gp.example.nhs.uk/itk" type="1.2.826.0.1285.0.2.0.107"/>`),
		"no handling":               chain(cut("<itk:handlingSpecification>", "</itk:handlingSpecification>"), cut("<itk:senderAddress", "/>")),
		"other prefixes":            chain(rep("xmlns:itk=", "xmlns:de="), func(s string) string { return strings.NewReplacer("<itk:", "<de:", "</itk:", "</de:").Replace(s) }),
		"unknown optional header":   rep("<soap:Header>", `<soap:Header><x:Trace xmlns:x="urn:example:trace">1</x:Trace>`),
		"timestamp with offset":     rep("2026-11-21T09:30:15Z", "2026-11-21T10:30:15+01:00"),
	} {
		t.Run(name, func(t *testing.T) {
			base := string(fixture(t, cdaFixture))
			body := m(base)
			if body == base {
				t.Fatal("the mutation changed nothing")
			}
			mustOK(t, post(newTestHandler(t, Config{}, &fakeJournal{}), []byte(body)))
		})
	}
}
