package transforms

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
	"github.com/spinebridge/spinebridge/fixtures"
	"github.com/spinebridge/spinebridge/transforms/fhirmodel"
)

var defaultSet = sync.OnceValues(func() (*Set, error) { return Default("") })

func loadDefault(tb testing.TB) *Set {
	tb.Helper()
	s, err := defaultSet()
	if err != nil {
		tb.Fatalf("the embedded mapping set does not load:\n%v", err)
	}
	return s
}

func fixture(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := fs.ReadFile(fixtures.HL7v2, "hl7v2/"+name)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// bundle is the parsed output, for assertions.
type bundle struct {
	Type       string `json:"type"`
	Identifier struct {
		System string `json:"system"`
		Value  string `json:"value"`
	} `json:"identifier"`
	Entry []struct {
		FullURL  string         `json:"fullUrl"`
		Resource map[string]any `json:"resource"`
		Request  *struct {
			Method string `json:"method"`
			URL    string `json:"url"`
		} `json:"request"`
	} `json:"entry"`
}

func (b *bundle) all(typ string) []map[string]any {
	var out []map[string]any
	for _, e := range b.Entry {
		if e.Resource["resourceType"] == typ {
			out = append(out, e.Resource)
		}
	}
	return out
}

func (b *bundle) one(t *testing.T, typ string) map[string]any {
	t.Helper()
	rs := b.all(typ)
	if len(rs) != 1 {
		t.Fatalf("%d %s resources, want 1", len(rs), typ)
	}
	return rs[0]
}

// byRef finds the resource a reference points at, failing when it does not
// resolve inside the bundle.
func (b *bundle) byRef(t *testing.T, ref any) map[string]any {
	t.Helper()
	r, _ := ref.(map[string]any)["reference"].(string)
	for _, e := range b.Entry {
		if e.FullURL == r {
			return e.Resource
		}
	}
	t.Fatalf("reference %q does not resolve inside the bundle", r)
	return nil
}

// convert runs the default set over a fixture and checks what every bundle
// must be: valid R4, ids unique, every reference resolving inside it.
func convert(t *testing.T, name string, opts Options) (*bundle, []Issue, []byte) {
	t.Helper()
	return convertMessage(t, fixture(t, name), opts)
}

// convertMessage is convert for a message given inline.
func convertMessage(t *testing.T, raw []byte, opts Options) (*bundle, []Issue, []byte) {
	t.Helper()
	b, issues, out := convertWith(t, loadDefault(t), raw, opts)
	if err := fhirmodel.Validate(out); err != nil {
		t.Fatalf("bundle is not valid R4: %v\n%s", err, out)
	}
	seen := map[string]bool{}
	for _, e := range b.Entry {
		if seen[e.FullURL] {
			t.Errorf("fullUrl %s appears twice", e.FullURL)
		}
		seen[e.FullURL] = true
	}
	for _, ref := range refs(*b) {
		if !seen[ref] {
			t.Errorf("reference %s does not resolve inside the bundle", ref)
		}
	}
	return b, issues, out
}

// convertWith parses raw, converts it with set and decodes the bundle, without
// validating it: a set of a few made-up maps need not make valid R4.
func convertWith(t *testing.T, set *Set, raw []byte, opts Options) (*bundle, []Issue, []byte) {
	t.Helper()
	m, err := hl7v2.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	c := set.NewConverter(opts)
	out, err := c.Convert(nil, m)
	if err != nil {
		t.Fatalf("Convert: %v", err)
	}
	var b bundle
	if err := json.Unmarshal(out, &b); err != nil {
		t.Fatalf("bundle is not JSON: %v", err)
	}
	return &b, slices.Clone(c.Issues()), out
}

// refs collects every "reference" value in the bundle.
func refs(b bundle) []string {
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if r, ok := x["reference"].(string); ok {
				out = append(out, r)
			}
			for _, c := range x {
				walk(c)
			}
		case []any:
			for _, c := range x {
				walk(c)
			}
		}
	}
	for _, e := range b.Entry {
		walk(e.Resource)
	}
	return out
}

func TestConvertADTUKCore(t *testing.T) {
	b, issues, _ := convert(t, "bench/adt_a01.hl7", Options{})
	if len(issues) != 0 {
		t.Errorf("issues on a clean message: %v", issues)
	}
	if b.Type != "transaction" {
		t.Errorf("type %q, want transaction", b.Type)
	}
	p := b.one(t, "Patient")
	ids := p["identifier"].([]any)
	nhs := ids[0].(map[string]any)
	if nhs["system"] != "https://fhir.nhs.uk/Id/nhs-number" || nhs["value"] != "9990000018" {
		t.Errorf("first identifier %v, want the NHS number", nhs)
	}
	ext := nhs["extension"].([]any)[0].(map[string]any)
	code := ext["valueCodeableConcept"].(map[string]any)["coding"].([]any)[0].(map[string]any)
	if ext["url"] != "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus" || code["code"] != "01" {
		t.Errorf("verification status %v, want UK Core extension with code 01", ext)
	}
	if p["birthDate"] != "1958-03-14" || p["gender"] != "female" {
		t.Errorf("birthDate %v gender %v", p["birthDate"], p["gender"])
	}
	if prof := p["meta"].(map[string]any)["profile"].([]any)[0]; prof != "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient" {
		t.Errorf("profile %v", prof)
	}
	gp := b.byRef(t, p["generalPractitioner"].([]any)[0])
	gpID := gp["identifier"].([]any)[0].(map[string]any)
	if gp["resourceType"] != "Organization" || gpID["system"] != "https://fhir.nhs.uk/Id/ods-organization-code" || gpID["value"] != "B86001" {
		t.Errorf("GP practice %v, want an Organization with ODS code B86001", gp)
	}
	// Escapes decoded: \T\ is &, \S\ is ^.
	var texts []string
	for _, a := range b.all("AllergyIntolerance") {
		texts = append(texts, a["code"].(map[string]any)["coding"].([]any)[0].(map[string]any)["display"].(string))
		texts = append(texts, a["reaction"].([]any)[0].(map[string]any)["manifestation"].([]any)[0].(map[string]any)["text"].(string))
	}
	if !slices.Contains(texts, "Penicillin & derivatives") || !slices.Contains(texts, "Anaphylaxis ^ rash") {
		t.Errorf("escape sequences not decoded: %q", texts)
	}
	enc := b.one(t, "Encounter")
	if b.byRef(t, enc["subject"])["resourceType"] != "Patient" {
		t.Error("Encounter.subject is not the Patient")
	}
	if cls := enc["class"].(map[string]any); cls["code"] != "IMP" {
		t.Errorf("class %v, want IMP", cls)
	}
	for _, o := range b.all("Observation") {
		if b.byRef(t, o["subject"])["resourceType"] != "Patient" || b.byRef(t, o["encounter"])["resourceType"] != "Encounter" {
			t.Errorf("Observation %v not tied to the patient and encounter", o["code"])
		}
	}
	if n := len(b.all("RelatedPerson")); n != 2 {
		t.Errorf("%d RelatedPerson, want 2 (one per NK1)", n)
	}
	// The same practitioner in EVN and PV1 would be one resource; two
	// different ones in PV1-7 and PV1-8 are two.
	if n := len(b.all("Practitioner")); n < 3 {
		t.Errorf("%d Practitioner, want at least 3 (attending, referring, GP)", n)
	}
}

func TestConvertEmptyElementsNeverWritten(t *testing.T) {
	_, _, out := convert(t, "bench/adt_a01.hl7", Options{})
	for _, empty := range []string{`""`, `{}`, `[]`, `null`} {
		if strings.Contains(string(out), ":"+empty) {
			t.Errorf("bundle holds an empty element %s", empty)
		}
	}
}

func TestConvertResultsAttachToTheirOwnOrder(t *testing.T) {
	b, issues, _ := convert(t, "oru_r01_two_orders.hl7", Options{})
	reports := b.all("DiagnosticReport")
	if len(reports) != 2 {
		t.Fatalf("%d reports, want 2", len(reports))
	}
	results := map[string][]string{"FBC": {"718-7", "6690-2"}, "CRP": {"1988-5", "8251-1"}}
	for _, r := range reports {
		code := r["code"].(map[string]any)["coding"].([]any)[0].(map[string]any)["code"].(string)
		order := b.byRef(t, r["basedOn"].([]any)[0])
		var got []string
		for _, ref := range r["result"].([]any) {
			obs := b.byRef(t, ref)
			got = append(got, obs["code"].(map[string]any)["coding"].([]any)[0].(map[string]any)["code"].(string))
			if b.byRef(t, obs["basedOn"].([]any)[0])["id"] != order["id"] {
				t.Errorf("%s result %v is based on another order", code, got)
			}
		}
		if !slices.Equal(got, results[code]) {
			t.Errorf("report %s has results %v, want %v", code, got, results[code])
		}
	}
	// "<5" is a number with its comparator.
	b.expect(t, []want{
		{"Observation", "valueQuantity.comparator", []string{"<"}},
		{"Observation", "valueQuantity.value", []string{"135", "11.2", "5"}},
	})
	if len(issues) != 0 {
		t.Errorf("issues %v", issues)
	}
	// A result that is no number is left out and reported, the rest converted.
	b, issues, _ = convertMessage(t, message("ORU^R01", "PID|1||123^^^^MR||DOE^JANE", "OBR|1|PL-1||58410-2^Full blood count^LN",
		"OBX|1|NM|777-3^Platelets^LN||>clumped|10*9/L^^UCUM|||||F", "OBX|2|NM|718-7^Haemoglobin^LN||135|g/L^^UCUM|||||F"), Options{})
	found := false
	for _, is := range issues {
		if is.Location == "OBX[1]-5[1]" && is.Kind == IssueValue && strings.Contains(is.Message, `">clumped"`) {
			found = true
		}
	}
	if !found {
		t.Errorf("no issue for the OBX-5 value >clumped: %v", issues)
	}
	b.expect(t, []want{{"Observation", "valueQuantity.value", []string{"135"}}})
}

func TestConvertTimesInTheConfiguredZone(t *testing.T) {
	b, _, _ := convert(t, "oru_r01_two_orders.hl7", Options{})
	effective := map[string]string{}
	for _, r := range b.all("DiagnosticReport") {
		code := r["code"].(map[string]any)["coding"].([]any)[0].(map[string]any)["code"].(string)
		effective[code] = r["effectiveDateTime"].(string)
	}
	// No offset in the message: London time, BST in July and GMT in January.
	if effective["FBC"] != "2026-07-15T08:30:00+01:00" || effective["CRP"] != "2026-01-15T08:30:00+00:00" {
		t.Errorf("effective times %v, want London summer and winter offsets", effective)
	}
	tokyo, err := time.LoadLocation("Asia/Tokyo")
	if err != nil {
		t.Skip("no tz database:", err)
	}
	b, _, _ = convert(t, "oru_r01_two_orders.hl7", Options{Zone: tokyo})
	if got := b.all("DiagnosticReport")[0]["effectiveDateTime"]; got != "2026-07-15T08:30:00+09:00" {
		t.Errorf("with Zone Asia/Tokyo: %v", got)
	}
}

func TestConvertNHSNumberCheckDigit(t *testing.T) {
	b, issues, _ := convert(t, "adt_a04_bad_nhs_number.hl7", Options{})
	var found bool
	for _, is := range issues {
		if is.Kind == IssueNHSNumber {
			found = true
			if is.Location != "PID[1]-3[1].1" || is.Message != "NHS number fails its Modulus 11 check" {
				t.Errorf("issue %v", is)
			}
		}
	}
	if !found {
		t.Errorf("no issue for NHS number 9990000019: %v", issues)
	}
	// Reported, not dropped: the route decides whether to reject.
	if id := b.one(t, "Patient")["identifier"].([]any)[0].(map[string]any); id["value"] != "9990000019" {
		t.Errorf("identifier %v", id)
	}
}

func TestConvertBundleTypes(t *testing.T) {
	for _, bt := range []BundleType{Transaction, Batch, Message, Collection} {
		t.Run(string(bt), func(t *testing.T) {
			b, _, _ := convert(t, "bench/adt_a01.hl7", Options{Bundle: bt})
			if b.Type != string(bt) {
				t.Errorf("type %q", b.Type)
			}
			// MSH[Bundle] MSH-10: the message control ID identifies the bundle.
			if b.Identifier.Value != "ADT000000001" || b.Identifier.System != "" {
				t.Errorf("identifier %+v, want the message control ID ADT000000001", b.Identifier)
			}
			if bt == Message && b.Entry[0].Resource["resourceType"] != "MessageHeader" {
				t.Errorf("message bundle starts with %v", b.Entry[0].Resource["resourceType"])
			}
			for _, e := range b.Entry {
				hasRequest := e.Request != nil
				if hasRequest != (bt == Transaction || bt == Batch) {
					t.Fatalf("%s entry request %v", bt, e.Request)
				}
				if !hasRequest {
					continue
				}
				typ := e.Resource["resourceType"].(string)
				if typ == "Patient" {
					want := "Patient?identifier=https%3A%2F%2Ffhir.nhs.uk%2FId%2Fnhs-number%7C9990000018"
					if e.Request.Method != "PUT" || e.Request.URL != want {
						t.Errorf("Patient request %+v, want conditional update on the NHS number", e.Request)
					}
				} else if e.Request.URL != typ+"/"+e.Resource["id"].(string) {
					t.Errorf("%s request %+v, want PUT of its deterministic id", typ, e.Request)
				}
			}
		})
	}
}

// TestConvertMergeRetiresTheRecordItNames: an A40's MRG names a record the
// receiver already holds, created by an earlier message under its NHS
// number. The merged Patient updates that record (inactive, replaced by the
// survivor) rather than adding a second Patient with the same NHS number;
// the survivor's link says it replaces that record.
func TestConvertMergeRetiresTheRecordItNames(t *testing.T) {
	b, _, out := convertMessage(t, []byte("MSH|^~\\&|PAS|RX1|SPINE|NHS|20261121093000||ADT^A40^ADT_A39|MRG0001|P|2.5\r"+
		"EVN|A40|20261121093000\r"+
		"PID|1||9434765919^^^NHS^NH~RX1A111111^^^RX1^MR||JONES^MARY||19800412|F\r"+
		"MRG|RX1A222222^^^RX1^MR~9434765870^^^NHS^NH||||||JONES^MARY\r"), Options{})
	const byNHSNumber = "Patient?identifier=https%3A%2F%2Ffhir.nhs.uk%2FId%2Fnhs-number%7C"
	var urls []string
	var survivor, merged string
	for _, e := range b.Entry {
		if e.Resource["resourceType"] != "Patient" {
			continue
		}
		urls = append(urls, e.Request.URL)
		if e.Resource["active"] == nil {
			survivor = e.FullURL
		} else {
			merged = e.FullURL
		}
	}
	if want := []string{byNHSNumber + "9434765919", byNHSNumber + "9434765870"}; !slices.Equal(urls, want) {
		t.Errorf("Patient requests %q, want %q\n%s", urls, want, out)
	}
	b.expect(t, []want{
		{"Patient", "active", []string{"false"}},
		{"Patient", "link.type", []string{"replaces", "replaced-by"}},
		{"Patient", "link.other.reference", []string{merged, survivor}},
	})
}

func TestConvertIsDeterministic(t *testing.T) {
	_, _, a := convert(t, "bench/adt_a01.hl7", Options{})
	_, _, b := convert(t, "bench/adt_a01.hl7", Options{})
	if string(a) != string(b) {
		t.Error("the same message gave two different bundles")
	}
}

func TestConvertRefusesWhatItCannotMap(t *testing.T) {
	c := loadDefault(t).NewConverter(Options{})
	for _, tc := range []struct{ name, msg, want string }{
		{"unmapped type", "MSH|^~\\&|A|B|C|D|20260101||ZZZ^Z01|1|P|2.5\rPID|1\r", "no mapping"},
		{"no MSH", "PID|1||123\r", "no MSH"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m hl7v2.Message
			_ = m.Parse([]byte(tc.msg))
			_, err := c.Convert(nil, &m)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Convert = %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

// TestConvertIdsWithoutIdentifiers: patients without PID-3 in two messages are
// two resources, not one id a PUT would overwrite.
func TestConvertIdsWithoutIdentifiers(t *testing.T) {
	c := loadDefault(t).NewConverter(Options{})
	ids := map[string]bool{}
	for _, msg := range []string{
		"MSH|^~\\&|PAS|RX1|EPR|RX1|20260101||ADT^A04|M1|P|2.5\rPID|1||||ONE^ANNE||19700101|F\r",
		"MSH|^~\\&|PAS|RX1|EPR|RX1|20260101||ADT^A04|M2|P|2.5\rPID|1||||TWO^BEN||19800101|M\r",
	} {
		var m hl7v2.Message
		if err := m.Parse([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		out, err := c.Convert(nil, &m)
		if err != nil {
			t.Fatal(err)
		}
		var b bundle
		if err := json.Unmarshal(out, &b); err != nil {
			t.Fatal(err)
		}
		ids[b.one(t, "Patient")["id"].(string)] = true
	}
	if len(ids) != 2 {
		t.Errorf("two unidentified patients share the id %v", ids)
	}
}

func TestConvertWithNamedStructure(t *testing.T) {
	set, err := Default("")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(set.Structures(), "ADT") || !slices.Contains(set.Structures(), "ORU_R01") {
		t.Fatalf("Structures() = %v, want ADT and ORU_R01 among them", set.Structures())
	}
	// A site-specific ZPI^Z01 has no structure of its own; naming ADT converts
	// it as one.
	raw := "MSH|^~\\&|PAS|RX1|EPR|RX1|20260101120000||ZPI^Z01|Z1|P|2.4\rPID|1||1234567^^^RX1^MR||SMITH^JOHN\r"
	m, err := hl7v2.Parse([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	_, err = set.NewConverter(Options{}).Convert(nil, m)
	if !errors.Is(err, ErrNoMapping) {
		t.Fatalf("by MSH-9: %v, want ErrNoMapping", err)
	}
	if want := `transforms: MSH-9 "ZPI^Z01": no mapping for this message type; mapped: ADT,`; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %q, want it to start %q", err, want)
	}
	out, err := set.NewConverter(Options{Structure: "ADT"}).Convert(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, []byte(`"family":"SMITH"`)) {
		t.Errorf("converted as ADT, the patient is missing: %s", out)
	}
}

// TestConvertMemoEndsWithItsMessage: a converter remembers what each path read
// in a segment, so the next message must not be answered from it, even when
// it is parsed into the same buffer at the same length, as a dispatcher
// worker reusing its buffers does. The two results differ only in OBX-2 and
// OBX-5, which decide which value[x] each Observation gets.
func TestConvertMemoEndsWithItsMessage(t *testing.T) {
	const head = "MSH|^~\\&|LAB|RX1|EPR|RX1|20260301101500||ORU^R01^ORU_R01|LAB1|P|2.5.1\r" +
		"PID|1||9990000018^^^NHS^NH||SMITH^ANNE||19800101|F\r" +
		"OBR|1|ORD1|FIL1|1234-5^Panel^LN|||20260301100000\r"
	// OBX-16 differs too: the table of resources data-type maps built, whose
	// keys are views of the message, must not outlive it either.
	numeric := head + "OBX|1|NM|2345-7^Glucose^LN||5.4|mmol/L|||||F|||||111^ONE\r"
	text := head + "OBX|1|ST|2345-7^Glucose^LN||low|mmol/L|||||F|||||222^TWO\r"
	if len(numeric) != len(text) {
		t.Fatal("the two messages must be the same length")
	}
	set := loadDefault(t)
	fresh := func(raw string) []byte {
		m, err := hl7v2.Parse([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		out, err := set.NewConverter(Options{}).Convert(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	c := set.NewConverter(Options{})
	buf := []byte(numeric)
	var m hl7v2.Message
	for i, raw := range []string{numeric, text, numeric} {
		copy(buf, raw)
		if err := m.Parse(buf); err != nil {
			t.Fatal(err)
		}
		got, err := c.Convert(nil, &m)
		if err != nil {
			t.Fatal(err)
		}
		if want := fresh(raw); !bytes.Equal(got, want) {
			t.Errorf("message %d: a reused converter wrote\n%s\nwhere a new one writes\n%s", i+1, got, want)
		}
	}
	if !bytes.Contains(fresh(text), []byte(`"valueString":"low"`)) || !bytes.Contains(fresh(numeric), []byte(`"valueQuantity"`)) {
		t.Error("the messages do not exercise OBX-2's conditions")
	}
	if !bytes.Contains(fresh(text), []byte(`"family":"222"`)) && !bytes.Contains(fresh(text), []byte(`"TWO"`)) {
		t.Error("the messages do not exercise OBX-16's Practitioner")
	}
}

// An attachment whose data is not what its encoding says is left out and
// reported: the Observation keeps its content type, and the bundle stays valid.
func TestConvertCorruptAttachmentReported(t *testing.T) {
	raw := message("ORU^R01", "PID|1||123^^^^MR||DOE^JANE", "OBR|1|PL-1||18842-5^Discharge summary^LN",
		"OBX|1|ED|18842-5^Discharge summary^LN||^AP^PDF^Base64^not*base64||||||F",
		"OBX|2|ED|18842-5^Discharge summary^LN||^AP^PDF^Hex^4G||||||F",
		"OBX|3|ED|18842-5^Discharge summary^LN||^AP^PDF^Base64^"+strings.Repeat("*", 100000)+"||||||F")
	b, issues, out := convertMessage(t, raw, Options{Bundle: Collection})
	if got := b.at("Observation", "extension.valueAttachment.data"); len(got) != 0 {
		t.Errorf("corrupt data written: %q\n%s", got, out)
	}
	if got := b.at("Observation", "extension.valueAttachment.contentType"); !slices.Equal(got, []string{"application/pdf", "application/pdf", "application/pdf"}) {
		t.Errorf("contentType %q", got)
	}
	var reported []string
	for _, is := range issues {
		if strings.HasPrefix(is.Location, "OBX") {
			reported = append(reported, is.Message)
		}
	}
	if len(reported) != 3 || !strings.Contains(reported[0], "not base64") || !strings.Contains(reported[1], "not hexadecimal") {
		t.Errorf("issues %q, want one for each corrupt OBX-5", issues)
	}
	// A long value is quoted in part, not copied whole into the issue.
	if len(reported) == 3 && (len(reported[2]) > 200 || !strings.Contains(reported[2], "100000 bytes")) {
		t.Errorf("issue for a 100 kB value: %.300s", reported[2])
	}
}

// TestConvertLeavesOutWhatTheMessageCannotMakeWhole: ORU^R01's PATIENT group
// is optional, and an order without a patient cannot be a ServiceRequest,
// whose subject R4 requires. The results, whose subject is optional, are still
// written; the order is left out with an issue naming its segment and map, and
// the references to it are cut rather than left dangling.
func TestConvertLeavesOutWhatTheMessageCannotMakeWhole(t *testing.T) {
	raw := []byte("MSH|^~\\&|WINPATH|RX1|ICE|A81001|20261121101500||ORU^R01^ORU_R01|LAB1|P|2.4\r" +
		"ORC|RE|ORD1^ICE|LAB1^WINPATH||CM\r" +
		"OBR|1|ORD1^ICE|LAB1^WINPATH|QC^Quality control^L|||20261121090000|||||||||||||||20261121101000||HM|F\r" +
		"OBX|1|NM|HB^Haemoglobin^L||134|g/L|115-165||||F\r")
	b, issues, _ := convertMessage(t, raw, Options{})
	if n := len(b.all("ServiceRequest")); n != 0 {
		t.Errorf("%d ServiceRequests written without a subject", n)
	}
	b.expect(t, []want{
		{"Observation", "valueQuantity.value", []string{"134"}},
		{"Observation", "basedOn", nil},
		{"DiagnosticReport", "basedOn", nil},
		{"DiagnosticReport", "status", []string{"final"}},
	})
	var found bool
	for _, is := range issues {
		if strings.Contains(is.Message, "ServiceRequest left out: R4 requires its subject") && strings.HasPrefix(is.Location, "ORC (segment 2)") {
			found = true
		}
	}
	if !found {
		t.Errorf("no issue names the ServiceRequest left out; issues: %v", issues)
	}
}

// Each GT1 of a message is a guarantor of the one account PID-18 names, with
// its own party and period: a refs: element written with [+] starts the
// entry's own item when the entry runs, and its rules fill that item.
func TestConvertEachGuarantorHasItsOwnItem(t *testing.T) {
	for _, typ := range []string{"ADT^A01^ADT_A01", "ORM^O01^ORM_O01", "VXU^V04^VXU_V04"} {
		b, _, _ := convertMessage(t, message(typ,
			"PID|1||9990000018^^^NHS^NH||THOMPSON^ELEANOR||19800101|F||||||||||ACC123",
			"GT1|1||SMITH^JOHN||||||||PAR",
			"GT1|2||JONES^MARY||||||||GRD||20260101",
			"GT1|3||THOMPSON^ELEANOR||||||||SEL||20250101|20251231"), Options{})
		acc := b.all("Account")
		if len(acc) != 1 {
			t.Fatalf("%s: %d accounts, want the one PID-18 names", typ, len(acc))
		}
		items, _ := acc[0]["guarantor"].([]any)
		if len(items) != 3 {
			t.Fatalf("%s: guarantors %v", typ, acc[0]["guarantor"])
		}
		want := []struct{ party, family, start string }{
			{"RelatedPerson", "SMITH", ""}, {"RelatedPerson", "JONES", "2026-01-01"}, {"Patient", "THOMPSON", "2025-01-01"},
		}
		for i, w := range want {
			item := items[i].(map[string]any)
			party := b.byRef(t, item["party"])
			name := party["name"].([]any)[0].(map[string]any)
			period, _ := item["period"].(map[string]any)
			start, _ := period["start"].(string)
			if party["resourceType"] != w.party || name["family"] != w.family || start != w.start {
				t.Errorf("%s: guarantor %d is %v %v from %q, want %s %s from %q", typ, i+1, party["resourceType"], name["family"], start, w.party, w.family, w.start)
			}
		}
	}
}

// An issue names the value it is about: a computed rule whose expression
// fails names its own rule, not the field a rule before it read.
func TestIssueNamesItsOwnValue(t *testing.T) {
	set, err := Load(Layer{FS: files(map[string]string{
		"segments/PID-Patient.yaml": "segment: PID\nresource: Patient\nrules:\n" +
			"  - {from: \"7\", to: birthDate}\n" +
			"  - {expr: 'string(int(Get(\"8\")))', to: gender}\n",
	})})
	if err != nil {
		t.Fatal(err)
	}
	_, issues, _ := convertWith(t, set, []byte("MSH|^~\\&|A|B|C|D|20260101||ADT^A08|1|P|2.5\rPID|1||123||DOE^JANE||19800101|F\r"), Options{Bundle: Collection})
	if len(issues) != 1 || issues[0].Kind != IssueMapping || issues[0].At != (hl7v2.Location{}) || issues[0].Location != "PID" {
		t.Errorf("issues %+v, want one mapping issue placed at PID, not at PID-7", issues)
	}
}

// TestConvertKeepsPrimitivesValid: what FuzzConvert found. A value R4 would
// refuse in its element is left out with an issue naming it, and the rest
// of the bundle stays valid: a control character (a stray byte, or a hex
// escape such as \X1C\) is dropped from text, as no FHIR string may hold
// one; a uri with a space or control character, a code with two blanks in a
// row and a positiveInt of 0 are left out; a message all of whose resources
// are left out is a bundle with no entry array, R4 allowing no empty one.
func TestConvertKeepsPrimitivesValid(t *testing.T) {
	raw := message("ADT^A01^ADT_A01",
		"PID|1||123^^^^MR||DOE\\X1C\\^JA\x1cNE||19700101|F",
		"NK1|1|DOE^JOHN|0  00^Spouse")
	b, issues, out := convertMessage(t, raw, Options{Bundle: Collection})
	if err := fhirmodel.Validate(out); err != nil {
		t.Fatalf("invalid bundle: %v\n%s", err, out)
	}
	if got := b.at("Patient", "name.family"); !slices.Equal(got, []string{"DOE"}) {
		t.Errorf("family %q, want the control character dropped", got)
	}
	if got := b.at("Patient", "name.given"); !slices.Equal(got, []string{"JANE"}) {
		t.Errorf("given %q, want the control character dropped", got)
	}
	if got := b.at("RelatedPerson", "relationship.coding.code"); len(got) != 0 {
		t.Errorf("relationship code %q written", got)
	}
	var reported []string
	for _, is := range issues {
		reported = append(reported, is.Message)
	}
	for _, want := range []string{`"0  00" left out: not a code`} {
		if !slices.ContainsFunc(reported, func(m string) bool { return strings.Contains(m, want) }) {
			t.Errorf("no issue %q in %q", want, reported)
		}
	}

	sched := message("SIU^S12^SIU_S12", "SCH|1||||||||0|MIN")
	b, issues, out = convertMessage(t, sched, Options{Bundle: Collection})
	if got := b.at("Appointment", "minutesDuration"); len(got) != 0 {
		t.Errorf("minutesDuration %q, want none: a positiveInt is 1 or more\n%s", got, out)
	}
	if !slices.ContainsFunc(issues, func(is Issue) bool { return strings.Contains(is.Message, "out of the element's range 1") }) {
		t.Errorf("no issue for SCH-9 0: %q", issues)
	}

	var m hl7v2.Message
	if err := m.Parse([]byte("MSH|!|||||||ADT")); err != nil {
		t.Fatal(err)
	}
	if out, err := loadDefault(t).NewConverter(Options{}).Convert(nil, &m); err != nil || bytes.Contains(out, []byte(`"entry"`)) {
		t.Errorf("a message with nothing to convert: %v\n%s", err, out)
	}

	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"http://loinc.org", true}, {"urn:oid:2.16.840.1.113883.6.1", true}, {"2.16.840.1", true},
		{"http://x.org/a%20b", true}, {"", true},
		{"http://loinc.org x", false}, {"urn:x\x7f", false}, {"http://x.org/a%zz", false},
		{":x", false}, {"1a:b", false},
	} {
		if got := uriText([]byte(tc.in)); got != tc.want {
			t.Errorf("uriText(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"F", true}, {"entered in error", true}, {"", false}, {"a  b", false}, {" a", false}, {"a\r", false},
	} {
		if got := codeText([]byte(tc.in)); got != tc.want {
			t.Errorf("codeText(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if got := string(dropControls(nil, []byte("a\x1cb\tc\x00"))); got != "ab\tc" {
		t.Errorf("dropControls = %q", got)
	}
}
