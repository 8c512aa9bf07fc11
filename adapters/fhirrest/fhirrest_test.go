package fhirrest

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/spinebridge/spinebridge/adapters/fhirrest/fhirresttest"
	"github.com/spinebridge/spinebridge/routes"
)

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// delivery is the first attempt at delivering body from journal record 42.
func delivery(body []byte) *routes.Delivery {
	return &routes.Delivery{
		ID: "42.adt-to-pds.pds", MessageID: 42, Route: "adt-to-pds", Destination: "pds",
		Attempt: 1, ContentType: routes.ContentTypeFHIR, Body: body,
	}
}

// node parses a destination's mapping as the routes file would hold it.
func node(t *testing.T, src string) *yaml.Node {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Content[0]
}

// newDest builds a destination through Factory from YAML.
func newDest(t *testing.T, src string) *Destination {
	t.Helper()
	d, err := Factory("pds", node(t, src))
	if err != nil {
		t.Fatalf("Factory:\n%v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d.(*Destination)
}

var uuidV5 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestDeliverBundle(t *testing.T) {
	s := fhirresttest.NewServer(fhirresttest.Options{})
	defer s.Close()
	d := newDest(t, "url: "+s.URL+"/\nheaders: {NHSD-End-User-Organisation-ODS: RX1}\n")
	body := readFile(t, "transaction.json")
	if err := d.Deliver(context.Background(), delivery(body)); err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{"Patient", "Encounter", "Organization", "Observation"} {
		if n := len(s.Resources(typ)); n != 1 {
			t.Errorf("%d %s stored, want 1", n, typ)
		}
	}
	reqs := s.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if r.Method != http.MethodPost || r.Path != "" || string(r.Body) != string(body) {
		t.Errorf("request %s %q with %d bytes, want the Bundle POSTed to the base", r.Method, r.Path, len(r.Body))
	}
	for k, want := range map[string]string{
		"Content-Type":                   "application/fhir+json",
		"Accept":                         "application/fhir+json",
		"X-Request-ID":                   nameUUID(&requestNamespace, "42.adt-to-pds.pds"),
		"X-Correlation-ID":               nameUUID(&correlationNamespace, "42"),
		"NHSD-End-User-Organisation-ODS": "RX1",
		"Authorization":                  "",
	} {
		if got := r.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if !uuidV5.MatchString(r.RequestID) {
		t.Errorf("X-Request-ID %q is not a version 5 UUID", r.RequestID)
	}
}

// An invalid Bundle is refused for good, with what the server's
// OperationOutcome said and nothing of the patient's.
func TestDeliverInvalidPermanent(t *testing.T) {
	s := fhirresttest.NewServer(fhirresttest.Options{})
	defer s.Close()
	d := newDest(t, "url: "+s.URL)
	err := d.Deliver(context.Background(), delivery(readFile(t, "invalid.json")))
	if !routes.IsPermanent(err) {
		t.Fatalf("err = %v, want a permanent error", err)
	}
	msg := err.Error()
	for _, want := range []string{"POST Bundle", "400 Bad Request", "error invalid", "Bundle.entry[0].resource.Patient.gender: code type mismatch"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
	for _, phi := range []string{"9000000017", "Jones", "girl", "127.0.0.1"} {
		if strings.Contains(msg, phi) {
			t.Errorf("error %q holds %q", msg, phi)
		}
	}
}

// 5xx and 429 are retried, no sooner than Retry-After; a later attempt of the
// same delivery carries the same X-Request-ID and gets through.
func TestDeliverRetryable(t *testing.T) {
	date := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	for _, tt := range []struct {
		name    string
		failure fhirresttest.Failure
		min     time.Duration
		max     time.Duration
	}{
		{"503_seconds", fhirresttest.Failure{Status: http.StatusServiceUnavailable, RetryAfter: "7"}, 7 * time.Second, 7 * time.Second},
		{"429_date", fhirresttest.Failure{Status: http.StatusTooManyRequests, RetryAfter: date}, 60 * time.Second, 90 * time.Second},
		{"500_no_header", fhirresttest.Failure{Status: http.StatusInternalServerError}, 0, 0},
		{"408", fhirresttest.Failure{Status: http.StatusRequestTimeout}, 0, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := fhirresttest.NewServer(fhirresttest.Options{})
			defer s.Close()
			d := newDest(t, "url: "+s.URL)
			s.FailNext(1, tt.failure)
			del := delivery(readFile(t, "transaction.json"))
			err := d.Deliver(context.Background(), del)
			if err == nil || routes.IsPermanent(err) {
				t.Fatalf("err = %v, want a retryable error", err)
			}
			var de *routes.DeliveryError
			wait := time.Duration(0)
			if errors.As(err, &de) {
				wait = de.RetryAfter
			}
			if wait < tt.min || wait > tt.max {
				t.Errorf("RetryAfter %v, want between %v and %v", wait, tt.min, tt.max)
			}
			del.Attempt = 2
			if err := d.Deliver(context.Background(), del); err != nil {
				t.Fatalf("second attempt: %v", err)
			}
			reqs := s.Requests()
			if len(reqs) != 2 || reqs[0].RequestID != reqs[1].RequestID || reqs[0].RequestID == "" {
				t.Errorf("X-Request-IDs of the two attempts: %q", requestIDs(reqs))
			}
		})
	}
}

func requestIDs(reqs []fhirresttest.Request) []string {
	out := make([]string, len(reqs))
	for i, r := range reqs {
		out[i] = r.RequestID
	}
	return out
}

// A server that does not answer in time is retried.
func TestDeliverTimeout(t *testing.T) {
	s := fhirresttest.NewServer(fhirresttest.Options{})
	defer s.Close()
	d := newDest(t, "url: "+s.URL+"\ntimeout: 100ms")
	s.FailNext(1, fhirresttest.Failure{Hang: true})
	del := delivery(readFile(t, "transaction.json"))
	err := d.Deliver(context.Background(), del)
	if err == nil || routes.IsPermanent(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a retryable timeout", err)
	}
	if strings.Contains(err.Error(), s.URL) {
		t.Errorf("error %q quotes the URL", err)
	}
	if err := d.Deliver(context.Background(), del); err != nil {
		t.Fatalf("second attempt: %v", err)
	}
	if reqs := s.Requests(); len(reqs) != 2 || reqs[0].RequestID != reqs[1].RequestID {
		t.Errorf("X-Request-IDs of the two attempts: %q", requestIDs(reqs))
	}
}

// A connection refused is retried.
func TestDeliverUnreachable(t *testing.T) {
	s := fhirresttest.NewServer(fhirresttest.Options{})
	d := newDest(t, "url: "+s.URL)
	s.Close()
	err := d.Deliver(context.Background(), delivery(readFile(t, "transaction.json")))
	if err == nil || routes.IsPermanent(err) {
		t.Fatalf("err = %v, want a retryable error", err)
	}
	if err := d.Ready(context.Background()); err == nil {
		t.Error("Ready: nil for a closed server")
	}
}

// The token file is read again when it changes: a rotated token is used from
// the next delivery, and a 401 before it is retried.
func TestBearerTokenFile(t *testing.T) {
	s := fhirresttest.NewServer(fhirresttest.Options{Token: "token-two"})
	defer s.Close()
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("token-one\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := newDest(t, "url: "+s.URL+"\ntoken_file: "+file)
	del := delivery(readFile(t, "transaction.json"))
	err := d.Deliver(context.Background(), del)
	if err == nil || routes.IsPermanent(err) || !strings.Contains(err.Error(), "401 Unauthorized") {
		t.Fatalf("err = %v, want a retryable 401", err)
	}
	if strings.Contains(err.Error(), "token-one") {
		t.Errorf("error %q holds the token", err)
	}
	if err := os.WriteFile(file, []byte("token-two\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Make sure the file looks changed even on a file system with coarse times.
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(file, later, later); err != nil {
		t.Fatal(err)
	}
	if err := d.Deliver(context.Background(), del); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if got := s.Requests()[1].Header.Get("Authorization"); got != "Bearer token-two" {
		t.Errorf("Authorization %q", got)
	}
}

func TestBearerTokenEnv(t *testing.T) {
	s := fhirresttest.NewServer(fhirresttest.Options{Token: "env-token"})
	defer s.Close()
	t.Setenv("SPINEBRIDGE_TEST_FHIR_TOKEN", "env-token")
	d := newDest(t, "url: "+s.URL+"\ntoken_env: SPINEBRIDGE_TEST_FHIR_TOKEN")
	if err := d.Deliver(context.Background(), delivery(readFile(t, "transaction.json"))); err != nil {
		t.Fatal(err)
	}
}

func TestMutualTLS(t *testing.T) {
	s := fhirresttest.NewServer(fhirresttest.Options{MutualTLS: true})
	defer s.Close()
	ca := s.CAFile(t)
	cert, key := s.ClientCertFiles(t)
	body := readFile(t, "transaction.json")

	d := newDest(t, "url: "+s.URL+"\ntls: {ca_file: "+ca+", cert_file: "+cert+", key_file: "+key+"}")
	if err := d.Deliver(context.Background(), delivery(body)); err != nil {
		t.Fatalf("with a client certificate: %v", err)
	}
	if err := d.Ready(context.Background()); err != nil {
		t.Errorf("Ready: %v", err)
	}

	noCert := newDest(t, "url: "+s.URL+"\ntls: {ca_file: "+ca+"}")
	if err := noCert.Deliver(context.Background(), delivery(body)); err == nil || routes.IsPermanent(err) {
		t.Errorf("without a client certificate: err = %v, want a retryable error", err)
	}
	untrusted := newDest(t, "url: "+s.URL+"\ntls: {cert_file: "+cert+", key_file: "+key+"}")
	if err := untrusted.Deliver(context.Background(), delivery(body)); err == nil {
		t.Error("a server certificate from an untrusted CA was accepted")
	}
}

func TestReady(t *testing.T) {
	s := fhirresttest.NewServer(fhirresttest.Options{})
	defer s.Close()
	d := newDest(t, "url: "+s.URL)
	if err := d.Ready(context.Background()); err != nil {
		t.Errorf("Ready: %v", err)
	}
	s.FailNext(1, fhirresttest.Failure{Status: http.StatusNotFound})
	if err := d.Ready(context.Background()); err != nil {
		t.Errorf("Ready after a 404: %v; any answer below 500 shows the server is there", err)
	}
	s.FailNext(1, fhirresttest.Failure{Status: http.StatusServiceUnavailable})
	if err := d.Ready(context.Background()); err == nil {
		t.Error("Ready after a 503: nil")
	}
	reqs := s.Requests()
	if r := reqs[0]; r.Method != http.MethodGet || r.Path != "metadata" || r.RequestID == "" {
		t.Errorf("Ready sent %s %q with X-Request-ID %q", r.Method, r.Path, r.RequestID)
	}
	if len(s.Resources("Patient")) != 0 {
		t.Error("Ready delivered")
	}
}

// Mode resources sends each entry on its own, every entry after those it
// refers to, with references rewritten to the ids the server gave; sent again,
// the requests carry the same IDs and the conditional entries add nothing.
func TestDeliverResources(t *testing.T) {
	s := fhirresttest.NewServer(fhirresttest.Options{})
	defer s.Close()
	d := newDest(t, "url: "+s.URL+"\nmode: resources")
	del := delivery(readFile(t, "transaction.json"))
	if err := d.Deliver(context.Background(), del); err != nil {
		t.Fatal(err)
	}
	first := s.Requests()
	var got []string
	for _, r := range first {
		got = append(got, r.Method+" "+r.Path)
	}
	want := []string{
		"PUT Organization?identifier=https://fhir.nhs.uk/Id/ods-organization-code|RX1",
		"PUT Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009",
		"POST Encounter",
		"POST Observation",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if h := first[2].Header.Get("If-None-Exist"); h != "identifier=https://fhir.example.nhs.uk/Id/visit-number|V0001" {
		t.Errorf("If-None-Exist %q", h)
	}
	seen := map[string]bool{}
	for _, r := range first {
		if seen[r.RequestID] || !uuidV5.MatchString(r.RequestID) {
			t.Errorf("X-Request-ID %q repeated or not a UUID", r.RequestID)
		}
		seen[r.RequestID] = true
	}
	var obs struct {
		Subject   struct{ Reference string }
		Encounter struct{ Reference string }
	}
	raw := s.Resources("Observation")[0]
	if err := json.Unmarshal(raw, &obs); err != nil {
		t.Fatal(err)
	}
	var patient struct{ ID string }
	json.Unmarshal(s.Resources("Patient")[0], &patient)
	if obs.Subject.Reference != "Patient/"+patient.ID || !strings.HasPrefix(obs.Encounter.Reference, "Encounter/") {
		t.Errorf("Observation refers to %q and %q", obs.Subject.Reference, obs.Encounter.Reference)
	}
	if !strings.Contains(string(raw), `"value":61.50`) {
		t.Errorf("the decimal was not sent as written: %s", raw)
	}

	if err := d.Deliver(context.Background(), del); err != nil {
		t.Fatal(err)
	}
	again := s.Requests()[len(first):]
	for i := range first {
		if again[i].RequestID != first[i].RequestID {
			t.Errorf("request %d: X-Request-ID %q the second time, %q the first", i, again[i].RequestID, first[i].RequestID)
		}
	}
	for typ, want := range map[string]int{"Patient": 1, "Organization": 1, "Encounter": 1, "Observation": 2} {
		if n := len(s.Resources(typ)); n != want {
			t.Errorf("%d %s stored, want %d", n, typ, want)
		}
	}
}

// Mode resources stops at the first entry the server refuses, and classifies
// it as mode bundle would.
func TestDeliverResourcesFailure(t *testing.T) {
	s := fhirresttest.NewServer(fhirresttest.Options{})
	defer s.Close()
	d := newDest(t, "url: "+s.URL+"\nmode: resources")
	err := d.Deliver(context.Background(), delivery(readFile(t, "invalid.json")))
	if !routes.IsPermanent(err) || !strings.Contains(err.Error(), "PUT Patient (entry 0): 400 Bad Request: error invalid: Patient.gender: code type mismatch") {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), "9000000017") {
		t.Errorf("error %q quotes the conditional URL", err)
	}
}

func TestDeliverRefused(t *testing.T) {
	s := fhirresttest.NewServer(fhirresttest.Options{})
	defer s.Close()
	bundleDest := newDest(t, "url: "+s.URL)
	resourcesDest := newDest(t, "url: "+s.URL+"\nmode: resources")
	circle := `{"resourceType":"Bundle","type":"transaction","entry":[
	{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Patient","link":[{"type":"seealso","other":{"reference":"urn:uuid:2"}}]},"request":{"method":"POST","url":"Patient"}},
	{"fullUrl":"urn:uuid:2","resource":{"resourceType":"Patient","link":[{"type":"seealso","other":{"reference":"urn:uuid:1"}}]},"request":{"method":"POST","url":"Patient"}}]}`
	for _, tt := range []struct {
		name string
		d    *Destination
		ct   string
		body string
		want string
	}{
		{"hl7v2_body", bundleDest, routes.ContentTypeHL7v2, "MSH|^~\\&|", "not FHIR JSON"},
		{"not_a_bundle", bundleDest, routes.ContentTypeFHIR, `{"resourceType":"Patient"}`, "transaction and batch"},
		{"collection", bundleDest, routes.ContentTypeFHIR, `{"resourceType":"Bundle","type":"collection"}`, "transaction and batch"},
		{"circle", resourcesDest, routes.ContentTypeFHIR, circle, "circle of references"},
		{"delete", resourcesDest, routes.ContentTypeFHIR, `{"resourceType":"Bundle","type":"batch","entry":[{"resource":{"resourceType":"Patient"},"request":{"method":"DELETE","url":"Patient/1"}}]}`, "not DELETE"},
		{"absolute_url", resourcesDest, routes.ContentTypeFHIR, `{"resourceType":"Bundle","type":"batch","entry":[{"resource":{"resourceType":"Patient"},"request":{"method":"PUT","url":"https://elsewhere/Patient/1"}}]}`, "not a relative URL"},
		{"dot_segments", resourcesDest, routes.ContentTypeFHIR, `{"resourceType":"Bundle","type":"batch","entry":[{"resource":{"resourceType":"Patient"},"request":{"method":"PUT","url":"Patient/../Account/1"}}]}`, "dot segments"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			del := delivery([]byte(tt.body))
			del.ContentType = tt.ct
			err := tt.d.Deliver(context.Background(), del)
			if !routes.IsPermanent(err) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want a permanent error saying %q", err, tt.want)
			}
		})
	}
	if n := len(s.Requests()); n != 0 {
		t.Errorf("%d requests sent for bodies that cannot be delivered", n)
	}
}

// Factory reports every problem at once, each at its value's line and column.
func TestFactoryErrors(t *testing.T) {
	src := `url: ftp://example.nhs.uk/fhir
mode: everything
timeout: -1s
token_file: /nonexistent/token
token_env: FHIR_TOKEN
headers:
  Authorization: Basic x
  "Bad Name": v
tls:
  key_file: /k.pem
`
	_, err := Factory("pds", node(t, src))
	if err == nil {
		t.Fatal("no error")
	}
	got := strings.Split(err.Error(), "\n")
	want := []string{
		"1:6: url: want an http or https URL",
		"2:7: mode: \"everything\": want bundle or resources",
		"3:10: timeout: -1s is negative",
		"7:18: headers.Authorization: set by the destination itself; a token goes in token_file or token_env",
		"8:15: headers.Bad Name: not a valid header name",
		"5:12: token_env: token_file is set too; choose one",
		"10:13: tls.key_file: set without cert_file",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	for _, tt := range []struct{ src, want string }{
		{"mode: bundle", "1:1: url: required"},
		{"url: https://user:pw@example.nhs.uk/fhir", "1:6: url: holds credentials"},
		{"url: http://example.nhs.uk/fhir\ntls: {ca_file: /x}", "2:6: tls: set for a url that is not https"},
		{"url: https://example.nhs.uk/fhir\ntoken_env: SPINEBRIDGE_TEST_UNSET", "2:12: token_env: environment variable SPINEBRIDGE_TEST_UNSET: empty token"},
		{"url: https://example.nhs.uk/fhir\ntoken_file: /nonexistent/token", "2:13: token_file: token file: stat /nonexistent/token"},
		{"url: https://example.nhs.uk/fhir\ntimeout: 5", "2:10: timeout: cannot unmarshal"},
		{"url: https://example.nhs.uk/fhir\nretries: 3", "2:1: unknown key \"retries\""},
	} {
		_, err := Factory("pds", node(t, tt.src))
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("%q: err = %v, want %q", tt.src, err, tt.want)
		}
	}

	if _, err := New("pds", Config{URL: "https://example.nhs.uk/fhir", Mode: "x"}); err == nil || err.Error() != `fhir destination pds: mode: "x": want bundle or resources` {
		t.Errorf("New: %v", err)
	}
}

// Factory builds without connecting: a server that is not there is no load
// error.
func TestFactoryDoesNotConnect(t *testing.T) {
	s := fhirresttest.NewServer(fhirresttest.Options{})
	url := s.URL
	newDest(t, "url: "+url)
	if n := len(s.Requests()); n != 0 {
		t.Errorf("Factory sent %d requests", n)
	}
	s.Close()
	newDest(t, "url: "+url)
}

// A transaction-response or batch-response whose entries did not all succeed
// fails the delivery, as the worst entry says.
func TestCheckEntries(t *testing.T) {
	for _, tt := range []struct {
		name, body string
		wantErr    string
		permanent  bool
	}{
		{"all_2xx", `{"resourceType":"Bundle","type":"batch-response","entry":[{"response":{"status":"201 Created"}},{"response":{"status":"200"}}]}`, "", false},
		{"not_a_bundle", `{"resourceType":"OperationOutcome"}`, "", false},
		{"batch_400", `{"resourceType":"Bundle","type":"batch-response","entry":[{"response":{"status":"201 Created"}},
			{"response":{"status":"400 Bad Request","outcome":{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"required","diagnostics":"Patient.name: missing"}]}}},
			{"response":{"status":"422"}}]}`,
			"fhir: POST Bundle: entry 1: 400 Bad Request: error required: Patient.name: missing (and 1 more entries failed)", true},
		{"batch_503", `{"resourceType":"Bundle","type":"batch-response","entry":[{"response":{"status":"400"}},{"response":{"status":"503"}}]}`,
			"fhir: POST Bundle: entry 0: 400 Bad Request (and 1 more entries failed)", false},
		{"unreadable_status", `{"resourceType":"Bundle","type":"transaction-response","entry":[{"response":{"status":"bad\nstatus"}}]}`,
			`fhir: POST Bundle: entry 0: status "bad status"`, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := checkEntries("POST Bundle", []byte(tt.body))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err == nil || err.Error() != tt.wantErr || routes.IsPermanent(err) != tt.permanent {
				t.Errorf("err = %v (permanent %v), want %q (permanent %v)", err, routes.IsPermanent(err), tt.wantErr, tt.permanent)
			}
		})
	}
}

func TestSummarise(t *testing.T) {
	long := strings.Repeat("é", 150) // 300 bytes
	for _, tt := range []struct{ body, want string }{
		{`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid","diagnostics":"line one\nline two"}]}`, ": error invalid: line one line two"},
		{`{"resourceType":"OperationOutcome","issue":[{"severity":"fatal","code":"exception","details":{"text":"from details"}}]}`, ": fatal exception: from details"},
		{`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid","diagnostics":"` + long + `"}]}`, ": error invalid: " + strings.Repeat("é", 100) + "…"},
		{`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"a"},{"severity":"error","code":"b"},{"severity":"warning","code":"c"},{"severity":"error","code":"d"},{"severity":"error","code":"e"}]}`,
			": error a; error b; warning c (and 2 more issues)"},
		{`{"resourceType":"Patient"}`, ""},
		{`<html>oops</html>`, ""},
	} {
		if got := summarise([]byte(tt.body)); got != tt.want {
			t.Errorf("summarise(%.60q) = %q, want %q", tt.body, got, tt.want)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 21, 9, 30, 0, 0, time.UTC)
	for _, tt := range []struct {
		v    string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"0", 0, true},
		{"120", 2 * time.Minute, true},
		{"Sat, 21 Nov 2026 09:31:30 GMT", 90 * time.Second, true},
		{"Sat, 21 Nov 2026 09:00:00 GMT", 0, true},
		{"999999", time.Hour, true},
		{"-5", 0, false},
		{"soon", 0, false},
	} {
		got, ok := retryAfter(tt.v, now)
		if got != tt.want || ok != tt.ok {
			t.Errorf("retryAfter(%q) = %v, %v; want %v, %v", tt.v, got, ok, tt.want, tt.ok)
		}
	}
}

func TestNameUUID(t *testing.T) {
	dns := [16]byte{0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8}
	// RFC 9562's namespace and the example Python's uuid documentation gives.
	if got, want := nameUUID(&dns, "python.org"), "886313e1-3b8a-5372-9b90-0c9aee199e5d"; got != want {
		t.Errorf("nameUUID = %s, want %s", got, want)
	}
	if a, b := nameUUID(&requestNamespace, "1.r.d"), nameUUID(&requestNamespace, "1.r.d"); a != b {
		t.Error("not deterministic")
	}
	if a, b := nameUUID(&requestNamespace, "1.r.d"), nameUUID(&requestNamespace, "2.r.d"); a == b {
		t.Error("two names, one UUID")
	}
	if u := randomUUID(); !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(u) {
		t.Errorf("randomUUID = %s", u)
	}
}

// A body fenced when Deliver returns cannot be read by a transport that is
// still sending it.
func TestFencedBody(t *testing.T) {
	f := &fencedBody{b: []byte("abc")}
	r := f.reader()
	buf := make([]byte, 1)
	if n, err := r.Read(buf); n != 1 || err != nil {
		t.Fatalf("Read = %d, %v", n, err)
	}
	f.fence()
	if _, err := r.Read(buf); !errors.Is(err, errFenced) {
		t.Errorf("Read after fence: %v", err)
	}
	if _, err := f.reader().Read(buf); !errors.Is(err, errFenced) {
		t.Errorf("a new reader after fence: %v", err)
	}
}
