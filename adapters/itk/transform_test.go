package itk

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spinebridge/spinebridge/routes"
	"github.com/spinebridge/spinebridge/transforms/fhirmodel"
)

// cdaRecord is the record the handler journals for the CDA fixture.
func cdaRecord(t *testing.T) *routes.Record {
	t.Helper()
	j := &fakeJournal{}
	mustOK(t, post(newTestHandler(t, Config{}, j), fixture(t, cdaFixture)))
	rec := j.records[0]
	rec.Received = time.Date(2026, 11, 21, 9, 31, 0, 0, time.UTC)
	return rec
}

func TestCDATransformer(t *testing.T) {
	rec := cdaRecord(t)
	var tr CDATransformer
	out, ct, err := tr.Transform(nil, rec)
	if err != nil {
		t.Fatal(err)
	}
	if ct != routes.ContentTypeFHIR {
		t.Errorf("content type %q", ct)
	}
	// jsonformat's validating unmarshaller, and the checks it lacks.
	if err := fhirmodel.Validate(out); err != nil {
		t.Fatalf("bundle is not valid FHIR R4: %v", err)
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, out, "", "  "); err != nil {
		t.Fatal(err)
	}
	golden(t, "cda_discharge.bundle.json", append(pretty.Bytes(), '\n'))

	again, _, err := tr.Transform([]byte("prefix"), rec)
	if err != nil || !bytes.Equal(again, append([]byte("prefix"), out...)) {
		t.Error("a second transform of the same record differs, or does not append to dst")
	}

	var b struct {
		Type  string
		Entry []struct {
			FullURL  string
			Resource map[string]any
			Request  struct{ Method, URL string }
		}
	}
	if err := json.Unmarshal(out, &b); err != nil {
		t.Fatal(err)
	}
	byType := map[string][]int{}
	for i, e := range b.Entry {
		byType[e.Resource["resourceType"].(string)] = append(byType[e.Resource["resourceType"].(string)], i)
		if e.FullURL != "urn:uuid:"+e.Resource["id"].(string) {
			t.Errorf("entry %d: fullUrl %s does not name id %s", i, e.FullURL, e.Resource["id"])
		}
	}
	if b.Type != "transaction" || len(byType["Patient"]) != 1 || len(byType["Organization"]) != 2 || len(byType["Binary"]) != 1 ||
		len(byType["DocumentReference"]) != 1 || len(byType["Provenance"]) != 1 {
		t.Fatalf("bundle %s holds %v", b.Type, byType)
	}
	pat := b.Entry[byType["Patient"][0]]
	if pat.Request.URL != "Patient?identifier=https%3A%2F%2Ffhir.nhs.uk%2FId%2Fnhs-number%7C9434765919" || pat.Request.Method != "PUT" {
		t.Errorf("patient request %+v", pat.Request)
	}
	for _, i := range byType["Organization"] {
		if u := b.Entry[i].Request.URL; !strings.HasPrefix(u, "Organization?identifier=https%3A%2F%2Ffhir.nhs.uk%2FId%2Fods-organization-code%7C") {
			t.Errorf("organisation request %s", u)
		}
	}
	bin := b.Entry[byType["Binary"][0]].Resource
	if bin["data"] != b64std(rec.Raw) {
		t.Error("the Binary does not hold the CDA document")
	}
	doc := b.Entry[byType["DocumentReference"][0]]
	content := doc.Resource["content"].([]any)[0].(map[string]any)["attachment"].(map[string]any)
	if content["url"] != b.Entry[byType["Binary"][0]].FullURL {
		t.Errorf("attachment url %v does not name the Binary", content["url"])
	}
	if doc.Request.URL != "DocumentReference?identifier=urn%3Aietf%3Arfc%3A3986%7Curn%3Auuid%3Ac0a81f2e-5d4b-4a3c-9e8f-7d6c5b4a3921" {
		t.Errorf("document request %s", doc.Request.URL)
	}
	prov := b.Entry[byType["Provenance"][0]].Resource
	who := prov["agent"].([]any)[0].(map[string]any)["who"].(map[string]any)
	// The audit identity is RX1, the author organisation in the bundle.
	if who["reference"] != b.Entry[byType["Organization"][0]].FullURL {
		t.Errorf("provenance agent %v, want the RX1 organisation", who)
	}
}

func b64std(b []byte) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.Encode(b)
	return strings.Trim(strings.TrimSpace(buf.String()), `"`)
}

func TestCDATransformerVariants(t *testing.T) {
	rec := cdaRecord(t)
	t.Run("not CDA", func(t *testing.T) {
		r := *rec
		r.Format = routes.FormatHL7v2
		if _, _, err := new(CDATransformer).Transform(nil, &r); !errors.Is(err, ErrNotCDA) {
			t.Errorf("err %v, want ErrNotCDA", err)
		}
	})
	t.Run("no NHS number, other audit identity, no offsets", func(t *testing.T) {
		r := *rec
		raw := strings.Replace(string(rec.Raw), `<id root="2.16.840.1.113883.2.1.4.1" extension="9434765919"/>`, "", 1)
		raw = strings.ReplaceAll(raw, "+0000", "")
		r.Raw = []byte(raw)
		m, _ := MetaOf(rec)
		m.AuditIdentity = "urn:nhs-uk:identity:ods:Y02"
		r.Peer = m.Peer()
		out, _, err := new(CDATransformer).Transform(nil, &r)
		if err != nil {
			t.Fatal(err)
		}
		if err := fhirmodel.Validate(out); err != nil {
			t.Fatalf("bundle is not valid FHIR R4: %v", err)
		}
		s := string(out)
		if strings.Contains(s, `"resourceType":"Patient"`) || strings.Contains(s, `"subject"`) {
			t.Error("a patient without an NHS number was written")
		}
		if !strings.Contains(s, `"who":{"type":"Organization","identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"Y02"}}`) {
			t.Errorf("the agent is not Y02 by ODS code:\n%s", s)
		}
		// November: Europe/London is UTC+0.
		if !strings.Contains(s, `"date":"2026-11-21T09:30:00Z"`) {
			t.Errorf("effective time not read in Europe/London:\n%s", s)
		}
	})
	t.Run("no document id", func(t *testing.T) {
		r := *rec
		r.Raw = []byte(strings.Replace(string(rec.Raw), `<id root="C0A81F2E-5D4B-4A3C-9E8F-7D6C5B4A3921"/>`, "", 1))
		if _, _, err := new(CDATransformer).Transform(nil, &r); err == nil {
			t.Error("a document without an id was transformed")
		}
	})
}

func TestParseTS(t *testing.T) {
	tests := []struct{ ts, date, dateTime, instant string }{
		{"1948", "1948", "1948", ""},
		{"194803", "1948-03", "1948-03", ""},
		{"19480312", "1948-03-12", "1948-03-12", ""},
		{"202611210930", "2026-11-21", "2026-11-21T09:30:00Z", "2026-11-21T09:30:00Z"},
		{"20260715093000", "2026-07-15", "2026-07-15T09:30:00+01:00", "2026-07-15T09:30:00+01:00"},
		{"20261121093000.25+0530", "2026-11-21", "2026-11-21T09:30:00.25+05:30", "2026-11-21T09:30:00.25+05:30"},
		{"2026112", "", "", ""},
		{"20261121093000+05", "", "", ""},
		{"abcd", "", "", ""},
	}
	zone, err := london()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		if got := fhirDate(tt.ts); got != tt.date {
			t.Errorf("fhirDate(%s) = %q, want %q", tt.ts, got, tt.date)
		}
		if got := fhirDateTime(tt.ts, zone); got != tt.dateTime {
			t.Errorf("fhirDateTime(%s) = %q, want %q", tt.ts, got, tt.dateTime)
		}
		if got := fhirInstant(tt.ts, zone); got != tt.instant {
			t.Errorf("fhirInstant(%s) = %q, want %q", tt.ts, got, tt.instant)
		}
	}
}
