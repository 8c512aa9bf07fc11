// Package fhirresttest runs a FHIR R4 server in the test's process, for tests
// of the FHIR destination and of anything that delivers through it.
//
// The server takes what the destination sends: transaction and batch Bundles
// POSTed to the base URL, and single resources PUT to Type/id or to a
// conditional Type?identifier=system|value, or POSTed to Type, with
// If-None-Exist. It validates every resource against the R4 model with
// Google's FHIR protos (github.com/google/fhir/go, through
// transforms/fhirmodel) and answers invalid input with 400 and an
// OperationOutcome naming each problem's path. It stores what it accepts by
// type and id: a conditional PUT or If-None-Exist that matches a stored
// resource's identifier updates or finds that resource, so a replayed
// delivery does not add a second copy. In a transaction, references to
// another entry's fullUrl are rewritten to the id that entry was given, as a
// FHIR server does.
//
// Every request is recorded, failures included, with its method, path, headers
// and body. FailNext plans failures for the next requests: an error status with
// an OperationOutcome, 429 or 503 with Retry-After, or a request held without an
// answer until the client gives up.
//
// The server is not a FHIR server to deploy: it supports only what the
// destination uses, keeps everything in memory and implements no search but
// the identifier matching conditional requests need.
package fhirresttest

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spinebridge/spinebridge/transforms/fhirmodel"
)

// maxBody bounds a request body.
const maxBody = 32 << 20

// Options configures a Server.
type Options struct {
	// BasePath is the path of the FHIR base URL on the server; "/fhir" when
	// empty.
	BasePath string
	// TLS serves https with a certificate for 127.0.0.1 that CAFile writes.
	TLS bool
	// MutualTLS serves https (TLS need not be set too) and refuses clients
	// without a certificate from the server's client CA; ClientCertFiles writes
	// one.
	MutualTLS bool
	// Token, when set, is the bearer token every request must carry: a request
	// without it is answered 401.
	Token string
}

// Failure is a planned failure: how the server answers a request instead of
// handling it.
type Failure struct {
	// Status is the status code of the answer, which carries an
	// OperationOutcome. Ignored with Hang.
	Status int
	// RetryAfter, when set, is sent as the Retry-After header: seconds ("2") or
	// an HTTP date.
	RetryAfter string
	// Hang holds the request without answering until the client gives up or
	// the server is closed.
	Hang bool
	// Diagnostics is the OperationOutcome issue's diagnostics; a default says
	// the failure was planned.
	Diagnostics string
}

// Request is a request the server received.
type Request struct {
	Method string
	// Path is the request's path below the FHIR base, with its query
	// unescaped: "" for the base, "Patient",
	// "Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009".
	Path string
	// RequestID is the X-Request-ID header.
	RequestID string
	Header    http.Header
	Body      []byte
}

// Server is a FHIR server for tests. Its methods are safe for concurrent use.
type Server struct {
	// URL is the FHIR base URL, without a trailing slash.
	URL string

	srv        *httptest.Server
	base       string // path prefix
	token      string
	clientCert []byte // PEM, with MutualTLS
	clientKey  []byte
	closing    chan struct{}
	closeOnce  sync.Once

	mu       sync.Mutex
	requests []Request
	plan     []Failure
	types    map[string]*typeStore
	lastID   int
}

// typeStore holds the stored resources of one type.
type typeStore struct {
	order []string // ids in creation order
	byID  map[string]*stored
}

type stored struct {
	body    json.RawMessage
	version int
}

// NewServer starts a server. Close stops it.
func NewServer(opts Options) *Server {
	s := &Server{
		base:    strings.TrimRight(opts.BasePath, "/"),
		token:   opts.Token,
		closing: make(chan struct{}),
		types:   make(map[string]*typeStore),
	}
	if opts.BasePath == "" {
		s.base = "/fhir"
	}
	s.srv = httptest.NewUnstartedServer(s)
	switch {
	case opts.MutualTLS:
		pool, cert, key := newClientCA()
		s.clientCert, s.clientKey = cert, key
		s.srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
		s.srv.StartTLS()
	case opts.TLS:
		s.srv.StartTLS()
	default:
		s.srv.Start()
	}
	s.URL = s.srv.URL + s.base
	return s
}

// Close stops the server, ending any request held by a Hang failure.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.srv.Close()
	})
}

// Certificate returns the server's TLS certificate, self-signed, or nil
// without TLS.
func (s *Server) Certificate() *x509.Certificate { return s.srv.Certificate() }

// CAFile writes the server's certificate as a PEM file for a client's ca_file
// and returns its path.
func (s *Server) CAFile(tb testing.TB) string {
	tb.Helper()
	c := s.Certificate()
	if c == nil {
		tb.Fatal("fhirresttest: CAFile of a server without TLS")
	}
	return writeFile(tb, "ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
}

// ClientCertFiles writes a client certificate the server accepts, and its key,
// as PEM files for a client's cert_file and key_file, and returns their paths.
func (s *Server) ClientCertFiles(tb testing.TB) (certFile, keyFile string) {
	tb.Helper()
	if s.clientCert == nil {
		tb.Fatal("fhirresttest: ClientCertFiles of a server without MutualTLS")
	}
	return writeFile(tb, "client.pem", s.clientCert), writeFile(tb, "client.key", s.clientKey)
}

func writeFile(tb testing.TB, name string, b []byte) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// FailNext makes the next n requests fail as f says, after those already
// planned.
func (s *Server) FailNext(n int, f Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.plan = append(s.plan, f)
	}
}

// Requests returns the requests received so far, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Resources returns the stored resources of type typ, in the order they were
// created, each as last stored.
func (s *Server) Resources(typ string) []json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	ts := s.types[typ]
	if ts == nil {
		return nil
	}
	out := make([]json.RawMessage, len(ts.order))
	for i, id := range ts.order {
		out[i] = ts.byID[id].body
	}
	return out
}

// Resource returns the stored resource typ/id.
func (s *Server) Resource(typ, id string) (json.RawMessage, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ts := s.types[typ]; ts != nil {
		if r := ts.byID[id]; r != nil {
			return r.body, true
		}
	}
	return nil, false
}

// ServeHTTP records the request and answers it: with a planned failure when
// one is due, else as a FHIR server.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, readErr := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	rel, inBase := s.relative(r.URL)
	s.mu.Lock()
	s.requests = append(s.requests, Request{
		Method:    r.Method,
		Path:      rel,
		RequestID: r.Header.Get("X-Request-ID"),
		Header:    r.Header.Clone(),
		Body:      body,
	})
	var (
		f       Failure
		planned = len(s.plan) > 0
	)
	if planned {
		f, s.plan = s.plan[0], s.plan[1:]
	}
	s.mu.Unlock()

	switch {
	case planned:
		s.fail(w, r, f)
	case s.token != "" && r.Header.Get("Authorization") != "Bearer "+s.token:
		writeOutcome(w, http.StatusUnauthorized, issue("login", "a valid bearer token is required"))
	case readErr != nil:
		writeOutcome(w, http.StatusRequestEntityTooLarge, issue("too-long", "request body too large"))
	case !inBase:
		writeOutcome(w, http.StatusNotFound, issue("not-found", "not below the FHIR base"))
	default:
		s.handle(w, r, rel, body)
	}
}

// relative returns u's path below the base, with its query unescaped, and
// whether u is below the base at all.
func (s *Server) relative(u *url.URL) (string, bool) {
	p := u.Path
	if p != s.base && !strings.HasPrefix(p, s.base+"/") {
		return "", false
	}
	rel := strings.TrimPrefix(strings.TrimPrefix(p, s.base), "/")
	if u.RawQuery != "" {
		q, err := url.QueryUnescape(u.RawQuery)
		if err != nil {
			q = u.RawQuery
		}
		rel += "?" + q
	}
	return rel, true
}

// fail answers with a planned failure.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, f Failure) {
	if f.Hang {
		select {
		case <-r.Context().Done():
		case <-s.closing:
		}
		return
	}
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	text := f.Diagnostics
	if text == "" {
		text = "failure planned by the test"
	}
	code := "exception"
	switch {
	case f.Status == http.StatusTooManyRequests:
		code = "throttled"
	case f.Status == http.StatusServiceUnavailable:
		code = "transient"
	case f.Status >= 400 && f.Status < 500:
		code = "invalid"
	}
	writeOutcome(w, f.Status, issue(code, text))
}

// handle answers a request below the base.
func (s *Server) handle(w http.ResponseWriter, r *http.Request, rel string, body []byte) {
	p, _, _ := strings.Cut(rel, "?")
	query := r.URL.RawQuery
	segs := strings.Split(p, "/")
	if p == "" {
		segs = nil
	}
	if r.Method == http.MethodPost || r.Method == http.MethodPut {
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/fhir+json" && mt != "application/json" {
			writeOutcome(w, http.StatusUnsupportedMediaType, issue("not-supported", "Content-Type must be application/fhir+json"))
			return
		}
	}
	minimal := strings.Contains(r.Header.Get("Prefer"), "return=minimal")
	switch {
	case r.Method == http.MethodGet && len(segs) == 1 && segs[0] == "metadata":
		writeJSON(w, http.StatusOK, capabilityStatement)
	case r.Method == http.MethodGet && len(segs) == 2:
		s.read(w, segs[0], segs[1])
	case r.Method == http.MethodPost && len(segs) == 0:
		s.bundle(w, body)
	case r.Method == http.MethodPost && len(segs) == 1:
		s.single(w, op{method: http.MethodPost, typ: segs[0], ifNoneExist: r.Header.Get("If-None-Exist")}, body, minimal)
	case r.Method == http.MethodPut && len(segs) == 1 && query != "":
		s.single(w, op{method: http.MethodPut, typ: segs[0], cond: query}, body, minimal)
	case r.Method == http.MethodPut && len(segs) == 2:
		s.single(w, op{method: http.MethodPut, typ: segs[0], id: segs[1]}, body, minimal)
	default:
		writeOutcome(w, http.StatusMethodNotAllowed, issue("not-supported", r.Method+" of this path is not supported"))
	}
}

var capabilityStatement = map[string]any{
	"resourceType": "CapabilityStatement",
	"status":       "active",
	"date":         "2026-01-01",
	"kind":         "instance",
	"fhirVersion":  "4.0.1",
	"format":       []string{"json"},
	"rest":         []any{map[string]any{"mode": "server"}},
}

func (s *Server) read(w http.ResponseWriter, typ, id string) {
	body, ok := s.Resource(typ, id)
	if !ok {
		writeOutcome(w, http.StatusNotFound, issue("not-found", typ+"/"+id+" is not stored"))
		return
	}
	w.Header().Set("Content-Type", "application/fhir+json")
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

// op is one write: a request of its own or a Bundle entry's.
type op struct {
	method      string
	typ, id     string // PUT Type/id
	cond        string // PUT Type?cond: the raw query
	ifNoneExist string // POST with If-None-Exist
	fullURL     string
	resource    map[string]any

	// Set by target.
	target  string // the id written or found
	exists  bool   // target is stored already
	noWrite bool   // If-None-Exist matched: nothing is written
}

// single handles a PUT or POST of one resource.
func (s *Server) single(w http.ResponseWriter, o op, body []byte, minimal bool) {
	if err := fhirmodel.Validate(body); err != nil {
		writeOutcome(w, http.StatusBadRequest, validationIssues(err)...)
		return
	}
	res, err := decode(body)
	if err != nil {
		writeOutcome(w, http.StatusBadRequest, issue("structure", "the body is not a JSON object"))
		return
	}
	if res["resourceType"] != o.typ {
		writeOutcome(w, http.StatusBadRequest, issue("invalid", "resourceType is not "+o.typ))
		return
	}
	if id, ok := res["id"].(string); o.id != "" && ok && id != o.id {
		writeOutcome(w, http.StatusBadRequest, issue("invalid", "the resource's id is not the one in the URL"))
		return
	}
	o.resource = res
	s.mu.Lock()
	status, iss := s.target(&o)
	var version int
	if iss == nil {
		version = s.write(&o)
	}
	s.mu.Unlock()
	if iss != nil {
		writeOutcome(w, status, *iss)
		return
	}
	w.Header().Set("Location", s.URL+"/"+o.typ+"/"+o.target+"/_history/"+strconv.Itoa(version))
	w.Header().Set("ETag", `W/"`+strconv.Itoa(version)+`"`)
	if minimal {
		w.WriteHeader(status)
		return
	}
	stored, _ := s.Resource(o.typ, o.target)
	w.Header().Set("Content-Type", "application/fhir+json")
	w.WriteHeader(status)
	w.Write(stored)
}

// target works out which stored resource o writes or finds, and returns the
// status of the answer: 201 for a new resource, 200 otherwise, or an error
// status and its issue. Called with s.mu held.
func (s *Server) target(o *op) (int, *outcomeIssue) {
	cond := o.cond
	if o.method == http.MethodPost {
		cond = o.ifNoneExist
	}
	switch {
	case o.id != "":
		if !validID(o.id) {
			i := issue("invalid", "not a valid id")
			return http.StatusBadRequest, &i
		}
		o.target = o.id
	case cond != "":
		ids, iss := s.match(o.typ, cond)
		switch {
		case iss != nil:
			return http.StatusBadRequest, iss
		case len(ids) > 1:
			i := issue("multiple-matches", "the condition matches more than one "+o.typ)
			return http.StatusPreconditionFailed, &i
		case len(ids) == 1:
			o.target = ids[0]
			o.noWrite = o.method == http.MethodPost
		default:
			o.target = s.newID()
		}
	default:
		o.target = s.newID()
	}
	_, o.exists = s.lookup(o.typ, o.target)
	if o.exists {
		return http.StatusOK, nil
	}
	return http.StatusCreated, nil
}

// match returns the ids of the stored resources of typ that a condition
// matches. Only identifier=[system|]value is understood. Called with s.mu held.
func (s *Server) match(typ, rawQuery string) ([]string, *outcomeIssue) {
	q, err := url.ParseQuery(rawQuery)
	if err != nil || len(q) != 1 || len(q["identifier"]) != 1 {
		i := issue("not-supported", "conditions other than identifier=[system|]value are not supported")
		return nil, &i
	}
	system, value, hasSystem := strings.Cut(q.Get("identifier"), "|")
	if !hasSystem {
		system, value = "", system
	}
	var ids []string
	ts := s.types[typ]
	if ts == nil {
		return nil, nil
	}
	for _, id := range ts.order {
		var r struct {
			Identifier []struct {
				System string `json:"system"`
				Value  string `json:"value"`
			} `json:"identifier"`
		}
		json.Unmarshal(ts.byID[id].body, &r)
		for _, ident := range r.Identifier {
			if ident.Value == value && (!hasSystem || ident.System == system) {
				ids = append(ids, id)
				break
			}
		}
	}
	return ids, nil
}

func (s *Server) lookup(typ, id string) (*stored, bool) {
	if ts := s.types[typ]; ts != nil {
		r, ok := ts.byID[id]
		return r, ok
	}
	return nil, false
}

// newID returns an id no resource has had. Called with s.mu held.
func (s *Server) newID() string {
	s.lastID++
	return strconv.Itoa(s.lastID)
}

// write stores o's resource at its target, with its id and a new version, and
// returns the version stored (or found, for an If-None-Exist that matched).
// Called with s.mu held.
func (s *Server) write(o *op) int {
	if o.noWrite {
		r, _ := s.lookup(o.typ, o.target)
		return r.version
	}
	ts := s.types[o.typ]
	if ts == nil {
		ts = &typeStore{byID: make(map[string]*stored)}
		s.types[o.typ] = ts
	}
	r := ts.byID[o.target]
	if r == nil {
		r = &stored{}
		ts.byID[o.target] = r
		ts.order = append(ts.order, o.target)
	}
	r.version++
	res := o.resource
	res["id"] = o.target
	meta, _ := res["meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
	}
	meta["versionId"] = strconv.Itoa(r.version)
	meta["lastUpdated"] = time.Now().UTC().Format(time.RFC3339)
	res["meta"] = meta
	r.body, _ = json.Marshal(res)
	return r.version
}

// decode reads a JSON object, keeping numbers as they were written.
func decode(b []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("not an object")
	}
	return m, nil
}

// validID reports whether s matches FHIR's id: [A-Za-z0-9\-\.]{1,64}.
func validID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// outcomeIssue is one issue of an OperationOutcome.
type outcomeIssue struct {
	Severity    string   `json:"severity"`
	Code        string   `json:"code"`
	Diagnostics string   `json:"diagnostics,omitempty"`
	Expression  []string `json:"expression,omitempty"`
}

func issue(code, diagnostics string) outcomeIssue {
	return outcomeIssue{Severity: "error", Code: code, Diagnostics: diagnostics}
}

func outcome(issues ...outcomeIssue) map[string]any {
	return map[string]any{"resourceType": "OperationOutcome", "issue": issues}
}

// validationIssues turns fhirmodel's problems into issues, one each, naming
// the element's path.
func validationIssues(err error) []outcomeIssue {
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	issues := make([]outcomeIssue, 0, len(errs))
	for _, e := range errs {
		var ve *fhirmodel.ValidationError
		if !errors.As(e, &ve) {
			issues = append(issues, issue("invalid", e.Error()))
			continue
		}
		is := issue("invalid", ve.Reason)
		if ve.Path != "" {
			is.Diagnostics = ve.Path + ": " + ve.Reason
			is.Expression = []string{ve.Path}
		}
		issues = append(issues, is)
	}
	return issues
}

func writeOutcome(w http.ResponseWriter, status int, issues ...outcomeIssue) {
	writeJSON(w, status, outcome(issues...))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("fhirresttest: %v", err))
	}
	w.Header().Set("Content-Type", "application/fhir+json")
	w.WriteHeader(status)
	w.Write(b)
}
