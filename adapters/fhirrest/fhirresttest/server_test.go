package fhirresttest

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

func readBundle(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("../testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// call makes a request to s below its base and returns the status, headers and
// decoded body.
func call(t *testing.T, c *http.Client, s *Server, method, path string, body []byte, header map[string]string) (int, http.Header, map[string]any) {
	t.Helper()
	url := s.URL
	if path != "" {
		url += "/" + path
	}
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/fhir+json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil && resp.ContentLength != 0 {
		t.Fatalf("%s %s: %s: body is not JSON: %v", method, path, resp.Status, err)
	}
	return resp.StatusCode, resp.Header, out
}

func decodeJSON(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// field returns the string at a dotted path of object keys, "" if absent.
func field(m map[string]any, path string) string {
	var v any = m
	for _, k := range strings.Split(path, ".") {
		obj, _ := v.(map[string]any)
		v = obj[k]
	}
	s, _ := v.(string)
	return s
}

func entryStatuses(t *testing.T, bundle map[string]any) []string {
	t.Helper()
	var out []string
	entries, _ := bundle["entry"].([]any)
	for _, e := range entries {
		out = append(out, field(e.(map[string]any), "response.status"))
	}
	return out
}

func counts(s *Server) map[string]int {
	out := map[string]int{}
	for _, typ := range []string{"Patient", "Encounter", "Organization", "Observation"} {
		if n := len(s.Resources(typ)); n > 0 {
			out[typ] = n
		}
	}
	return out
}

func sameCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// A transaction is stored with its references resolved; sent again, its
// conditional entries update what the first stored instead of adding to it.
func TestTransactionStoredAndReplayed(t *testing.T) {
	s := NewServer(Options{})
	defer s.Close()
	body := readBundle(t, "transaction.json")

	status, _, resp := call(t, nil, s, http.MethodPost, "", body, nil)
	if status != http.StatusOK || resp["type"] != "transaction-response" {
		t.Fatalf("status %d, %v", status, resp)
	}
	if got, want := entryStatuses(t, resp), []string{"201 Created", "201 Created", "201 Created", "201 Created"}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("entry statuses %v, want %v", got, want)
	}
	if got, want := counts(s), map[string]int{"Patient": 1, "Encounter": 1, "Organization": 1, "Observation": 1}; !sameCounts(got, want) {
		t.Fatalf("stored %v, want %v", got, want)
	}
	patient := decodeJSON(t, s.Resources("Patient")[0])
	org := decodeJSON(t, s.Resources("Organization")[0])
	enc := decodeJSON(t, s.Resources("Encounter")[0])
	obs := decodeJSON(t, s.Resources("Observation")[0])
	patientRef, orgRef := "Patient/"+field(patient, "id"), "Organization/"+field(org, "id")
	for _, c := range []struct{ got, want string }{
		{field(enc, "subject.reference"), patientRef},
		{field(enc, "serviceProvider.reference"), orgRef},
		{field(obs, "subject.reference"), patientRef},
		{field(obs, "encounter.reference"), "Encounter/" + field(enc, "id")},
		{field(patient, "meta.versionId"), "1"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
	if gp := patient["generalPractitioner"].([]any)[0].(map[string]any)["reference"]; gp != orgRef {
		t.Errorf("generalPractitioner %v, want %s (a forward reference)", gp, orgRef)
	}
	if !bytes.Contains(s.Resources("Observation")[0], []byte(`"value":61.50`)) {
		t.Errorf("the decimal was not kept as written: %s", s.Resources("Observation")[0])
	}

	status, _, resp = call(t, nil, s, http.MethodPost, "", body, nil)
	if status != http.StatusOK {
		t.Fatalf("replay: status %d", status)
	}
	// The conditional PUTs update, If-None-Exist finds the Encounter, and the
	// plain POST of the Observation adds a second one, as a FHIR server would.
	if got, want := entryStatuses(t, resp), []string{"200 OK", "200 OK", "200 OK", "201 Created"}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("replay entry statuses %v, want %v", got, want)
	}
	if got, want := counts(s), map[string]int{"Patient": 1, "Encounter": 1, "Organization": 1, "Observation": 2}; !sameCounts(got, want) {
		t.Errorf("after replay stored %v, want %v", got, want)
	}
	if v := field(decodeJSON(t, s.Resources("Patient")[0]), "meta.versionId"); v != "2" {
		t.Errorf("Patient version %s after the replay, want 2", v)
	}
}

// Invalid input is refused with an OperationOutcome naming the path, and
// nothing is stored.
func TestInvalidRefused(t *testing.T) {
	s := NewServer(Options{})
	defer s.Close()
	for _, tt := range []struct {
		name, method, path string
		body               string
		wantExpr           string
	}{
		{"bundle", http.MethodPost, "", string(readBundle(t, "invalid.json")), "Bundle.entry[0].resource.Patient.gender"},
		{"resource", http.MethodPost, "Observation", `{"resourceType":"Observation","code":{"text":"weight"}}`, "Observation"},
		{"not_json", http.MethodPut, "Patient/1", `{"resourceType":`, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, _, oo := call(t, nil, s, tt.method, tt.path, []byte(tt.body), nil)
			if status != http.StatusBadRequest || oo["resourceType"] != "OperationOutcome" {
				t.Fatalf("status %d, body %v; want 400 with an OperationOutcome", status, oo)
			}
			is := oo["issue"].([]any)[0].(map[string]any)
			if is["severity"] != "error" || is["code"] != "invalid" {
				t.Errorf("issue %v", is)
			}
			if tt.wantExpr != "" {
				if expr, _ := is["expression"].([]any); len(expr) != 1 || expr[0] != tt.wantExpr {
					t.Errorf("expression %v, want %s", is["expression"], tt.wantExpr)
				}
			}
		})
	}
	if got := counts(s); len(got) != 0 {
		t.Errorf("stored %v after invalid requests", got)
	}
}

// Single resources: PUT to an id, conditional PUT, POST with If-None-Exist,
// each answered with a Location the client can take the id from.
func TestSingleResources(t *testing.T) {
	s := NewServer(Options{})
	defer s.Close()
	org := `{"resourceType":"Organization","identifier":[{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"RX1"}],"name":"Test Hospital"}`
	steps := []struct {
		method, path string
		header       map[string]string
		wantStatus   int
		wantLocation string
		wantCount    int
	}{
		{http.MethodPut, "Organization/rx1", nil, http.StatusCreated, "/Organization/rx1/_history/1", 1},
		{http.MethodPut, "Organization/rx1", nil, http.StatusOK, "/Organization/rx1/_history/2", 1},
		{http.MethodPut, "Organization?identifier=https://fhir.nhs.uk/Id/ods-organization-code%7CRX1", nil, http.StatusOK, "/Organization/rx1/_history/3", 1},
		{http.MethodPost, "Organization", map[string]string{"If-None-Exist": "identifier=https://fhir.nhs.uk/Id/ods-organization-code|RX1"}, http.StatusOK, "/Organization/rx1/_history/3", 1},
		{http.MethodPost, "Organization", nil, http.StatusCreated, "/Organization/1/_history/1", 2},
		// Now two match: a conditional PUT cannot choose.
		{http.MethodPut, "Organization?identifier=https://fhir.nhs.uk/Id/ods-organization-code%7CRX1", nil, http.StatusPreconditionFailed, "", 2},
	}
	for i, st := range steps {
		status, h, body := call(t, nil, s, st.method, st.path, []byte(org), st.header)
		if status != st.wantStatus {
			t.Fatalf("step %d: %s %s: status %d (%v), want %d", i, st.method, st.path, status, body, st.wantStatus)
		}
		if loc := h.Get("Location"); st.wantLocation != "" && loc != s.URL+st.wantLocation {
			t.Errorf("step %d: Location %q, want %q", i, loc, s.URL+st.wantLocation)
		}
		if n := len(s.Resources("Organization")); n != st.wantCount {
			t.Errorf("step %d: %d stored, want %d", i, n, st.wantCount)
		}
	}
	if status, _, body := call(t, nil, s, http.MethodGet, "Organization/rx1", nil, nil); status != http.StatusOK || field(body, "meta.versionId") != "3" {
		t.Errorf("GET: %d %v", status, body)
	}
	if status, h, _ := call(t, nil, s, http.MethodPut, "Organization/rx1", []byte(org), map[string]string{"Prefer": "return=minimal"}); status != http.StatusOK || h.Get("Location") == "" {
		t.Errorf("PUT return=minimal: %d, Location %q", status, h.Get("Location"))
	}
	if status, _, _ := call(t, nil, s, http.MethodPost, "Organization", []byte(org), map[string]string{"Content-Type": "text/plain"}); status != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain: status %d, want 415", status)
	}
	if status, _, _ := call(t, nil, s, http.MethodPut, "Patient/1", []byte(org), nil); status != http.StatusBadRequest {
		t.Errorf("an Organization PUT as a Patient: status %d, want 400", status)
	}
}

// A batch applies each entry on its own and says how each went.
func TestBatch(t *testing.T) {
	s := NewServer(Options{})
	defer s.Close()
	batch := `{"resourceType":"Bundle","type":"batch","entry":[
	{"resource":{"resourceType":"Organization","name":"A"},"request":{"method":"POST","url":"Organization"}},
	{"request":{"method":"DELETE","url":"Organization/1"}},
	{"resource":{"resourceType":"Organization","name":"B"},"request":{"method":"PUT","url":"Organization?name=B"}}
	]}`
	status, _, resp := call(t, nil, s, http.MethodPost, "", []byte(batch), nil)
	if status != http.StatusOK || resp["type"] != "batch-response" {
		t.Fatalf("status %d, %v", status, resp)
	}
	if got, want := entryStatuses(t, resp), []string{"201 Created", "400 Bad Request", "400 Bad Request"}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("entry statuses %v, want %v", got, want)
	}
	if n := len(s.Resources("Organization")); n != 1 {
		t.Errorf("%d stored, want 1", n)
	}
}

// Planned failures come in order, one request each, and every request is
// recorded, failed ones too.
func TestFailNext(t *testing.T) {
	s := NewServer(Options{})
	defer s.Close()
	s.FailNext(1, Failure{Status: http.StatusServiceUnavailable, RetryAfter: "7"})
	s.FailNext(1, Failure{Status: http.StatusTooManyRequests, RetryAfter: "Wed, 21 Oct 2026 07:28:00 GMT"})
	s.FailNext(1, Failure{Status: http.StatusBadRequest, Diagnostics: "Bundle.entry[0]: refused"})
	body := readBundle(t, "transaction.json")
	for i, want := range []struct {
		status     int
		retryAfter string
		code       string
	}{
		{http.StatusServiceUnavailable, "7", "transient"},
		{http.StatusTooManyRequests, "Wed, 21 Oct 2026 07:28:00 GMT", "throttled"},
		{http.StatusBadRequest, "", "invalid"},
		{http.StatusOK, "", ""},
	} {
		status, h, out := call(t, nil, s, http.MethodPost, "", body, map[string]string{"X-Request-ID": "req-" + string(rune('a'+i))})
		if status != want.status || h.Get("Retry-After") != want.retryAfter {
			t.Errorf("request %d: %d Retry-After %q, want %d %q", i, status, h.Get("Retry-After"), want.status, want.retryAfter)
		}
		if want.code != "" {
			if is := out["issue"].([]any)[0].(map[string]any); is["code"] != want.code {
				t.Errorf("request %d: issue code %v, want %s", i, is["code"], want.code)
			}
		}
	}
	reqs := s.Requests()
	if len(reqs) != 4 {
		t.Fatalf("%d requests recorded, want 4", len(reqs))
	}
	for i, r := range reqs {
		if r.Method != http.MethodPost || r.Path != "" || r.RequestID != "req-"+string(rune('a'+i)) || !bytes.Equal(r.Body, body) {
			t.Errorf("request %d recorded as %s %q id %q, %d bytes", i, r.Method, r.Path, r.RequestID, len(r.Body))
		}
	}
	if got := len(s.Resources("Patient")); got != 1 {
		t.Errorf("%d Patients stored, want 1: only the last request got through", got)
	}
}

// A hung request ends when the client gives up, and the next is served.
func TestFailNextHang(t *testing.T) {
	s := NewServer(Options{})
	defer s.Close()
	s.FailNext(1, Failure{Hang: true})
	c := &http.Client{Timeout: 100 * time.Millisecond}
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/metadata", nil)
	resp, err := c.Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("a hung request was answered: %s", resp.Status)
	}
	var te interface{ Timeout() bool }
	if !errors.As(err, &te) || !te.Timeout() {
		t.Fatalf("err = %v, want a timeout", err)
	}
	if status, _, cs := call(t, nil, s, http.MethodGet, "metadata", nil, nil); status != http.StatusOK || cs["resourceType"] != "CapabilityStatement" {
		t.Errorf("after the hang: %d %v", status, cs)
	}
}

// Close ends a request held by a Hang failure rather than waiting for it.
func TestCloseEndsHang(t *testing.T) {
	s := NewServer(Options{})
	s.FailNext(1, Failure{Hang: true})
	done := make(chan error, 1)
	go func() {
		resp, err := http.Get(s.URL + "/metadata")
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	for deadline := time.Now().Add(5 * time.Second); len(s.Requests()) == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the request never arrived")
		}
	}
	s.Close()
	<-done
}

func TestToken(t *testing.T) {
	s := NewServer(Options{Token: "s3cret"})
	defer s.Close()
	if status, _, _ := call(t, nil, s, http.MethodGet, "metadata", nil, nil); status != http.StatusUnauthorized {
		t.Errorf("no token: %d, want 401", status)
	}
	if status, _, _ := call(t, nil, s, http.MethodGet, "metadata", nil, map[string]string{"Authorization": "Bearer wrong"}); status != http.StatusUnauthorized {
		t.Errorf("wrong token: %d, want 401", status)
	}
	if status, _, _ := call(t, nil, s, http.MethodGet, "metadata", nil, map[string]string{"Authorization": "Bearer s3cret"}); status != http.StatusOK {
		t.Errorf("token: %d, want 200", status)
	}
}

func TestMutualTLS(t *testing.T) {
	s := NewServer(Options{MutualTLS: true, BasePath: "/FHIR/R4"})
	defer s.Close()
	if !strings.HasPrefix(s.URL, "https://") || !strings.HasSuffix(s.URL, "/FHIR/R4") {
		t.Fatalf("URL %s", s.URL)
	}
	pem, err := os.ReadFile(s.CAFile(t))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	certFile, keyFile := s.ClientCertFiles(t)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	client := func(certs ...tls.Certificate) *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs}}}
	}
	if resp, err := client().Get(s.URL + "/metadata"); err == nil {
		resp.Body.Close()
		t.Errorf("a client without a certificate got %s", resp.Status)
	}
	if status, _, _ := call(t, client(cert), s, http.MethodGet, "metadata", nil, nil); status != http.StatusOK {
		t.Errorf("with the client certificate: %d", status)
	}
}
