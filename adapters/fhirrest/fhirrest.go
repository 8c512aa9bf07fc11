package fhirrest

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/spinebridge/spinebridge/routes"
)

// maxResponseBody bounds what is read of a response: an OperationOutcome or a
// transaction-response of thousands of entries fits.
const maxResponseBody = 4 << 20

// Destination delivers FHIR Bundles to one FHIR server. It is safe for
// concurrent use.
type Destination struct {
	name      string
	base      string // no trailing slash
	mode      string
	timeout   time.Duration
	token     *tokenSource // nil: no Authorization header
	headers   http.Header  // Config.Headers
	transport *http.Transport
	client    *http.Client
}

var _ routes.Destination = (*Destination)(nil)

func newDestination(name string, cfg Config, base *url.URL, headers http.Header, tok *tokenSource, tc *tls.Config) *Destination {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tc,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   10 * time.Second,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &Destination{
		name:      name,
		base:      base.String(),
		mode:      cfg.Mode,
		timeout:   cfg.Timeout,
		token:     tok,
		headers:   headers,
		transport: tr,
		client: &http.Client{
			Transport: tr,
			// A redirect of a POST would turn it into a GET; the url is what to
			// mend.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// Deliver sends d's Bundle, as a whole or entry by entry as the mode says. A
// body that is not FHIR JSON is refused for good.
func (d *Destination) Deliver(ctx context.Context, del *routes.Delivery) error {
	if mt, _, _ := mime.ParseMediaType(del.ContentType); mt != routes.ContentTypeFHIR && mt != "application/json" {
		return routes.Permanent(fmt.Errorf("fhir: the body is %q, not FHIR JSON: the route needs a transform", mt))
	}
	tok, err := d.bearer()
	if err != nil {
		return err
	}
	if d.mode == ModeResources {
		return d.deliverResources(ctx, del, tok)
	}
	var head struct {
		ResourceType string `json:"resourceType"`
		Type         string `json:"type"`
	}
	if json.Unmarshal(del.Body, &head) != nil || head.ResourceType != "Bundle" || head.Type != "transaction" && head.Type != "batch" {
		return routes.Permanent(errors.New("fhir: mode bundle sends transaction and batch Bundles, and the body is neither"))
	}
	const what = "POST Bundle"
	resp, err := d.send(ctx, &request{
		method:        http.MethodPost,
		url:           d.base,
		what:          what,
		body:          del.Body,
		requestID:     nameUUID(&requestNamespace, del.ID),
		correlationID: nameUUID(&correlationNamespace, del.MessageID.String()),
		token:         tok,
		// The entries' statuses are all that is read of the answer.
		prefer: "return=minimal",
	})
	if err != nil {
		return err
	}
	if err := classify(what, resp.status, resp.header, resp.body, time.Now()); err != nil {
		return err
	}
	if resp.truncated {
		return nil
	}
	return checkEntries(what, resp.body)
}

// bearer returns the Authorization header's value, or "" without a token.
func (d *Destination) bearer() (string, error) {
	if d.token == nil {
		return "", nil
	}
	tok, err := d.token.get()
	if err != nil {
		return "", fmt.Errorf("fhir: %w", err)
	}
	return "Bearer " + tok, nil
}

// request is one HTTP request to the server.
type request struct {
	method, url string
	what        string // names the request in errors, without its URL: "PUT Patient (entry 2)"
	body        []byte
	requestID   string
	// correlationID, token, ifNoneExist and prefer are sent when set.
	correlationID, token, ifNoneExist, prefer string
}

// response is what was read of a response.
type response struct {
	status    int
	header    http.Header
	body      []byte
	truncated bool // body is the first maxResponseBody bytes
}

// send makes one request, bounded by the destination's timeout, and reads at
// most maxResponseBody of its response. A failure to get a response is
// returned as a retryable error that names neither URL nor body.
func (d *Destination) send(ctx context.Context, r *request) (*response, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, r.method, r.url, nil)
	if err != nil {
		return nil, routes.Permanent(fmt.Errorf("fhir: %s: %w", r.what, stripURL(err)))
	}
	// The body is the caller's only until Deliver returns, and the transport
	// may yet read it after a response came early: fence it.
	if len(r.body) > 0 {
		body := &fencedBody{b: r.body}
		defer body.fence()
		req.Body = body.reader()
		req.GetBody = func() (io.ReadCloser, error) { return body.reader(), nil }
		req.ContentLength = int64(len(r.body))
	}

	h := req.Header
	for k, v := range d.headers {
		h[k] = v
	}
	h.Set("Content-Type", routes.ContentTypeFHIR)
	h.Set("Accept", routes.ContentTypeFHIR)
	h.Set("X-Request-ID", r.requestID)
	for k, v := range map[string]string{
		"X-Correlation-ID": r.correlationID,
		"Authorization":    r.token,
		"If-None-Exist":    r.ifNoneExist,
		"Prefer":           r.prefer,
	} {
		if v != "" {
			h.Set(k, v)
		}
	}

	resp, err := d.client.Do(req)
	if err != nil {
		return nil, d.transportError(ctx, r.what, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody+1))
	if err != nil {
		return nil, d.transportError(ctx, r.what+": read response", err)
	}
	out := &response{status: resp.StatusCode, header: resp.Header, body: b}
	if len(b) > maxResponseBody {
		out.body, out.truncated = b[:maxResponseBody], true
	}
	return out, nil
}

// transportError describes a request that got no (whole) response: retryable,
// and without the URL that net/http's errors quote, whose query may hold an
// identifier.
func (d *Destination) transportError(ctx context.Context, what string, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("fhir: %s: no response in time: %w", what, context.DeadlineExceeded)
	}
	return fmt.Errorf("fhir: %s: %w", what, stripURL(err))
}

// stripURL returns the error a *url.Error wraps, dropping the URL it quotes.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// Ready GETs the server's capability statement (base/metadata): any answer
// below 500 shows the server is reachable.
func (d *Destination) Ready(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.base+"/metadata", nil)
	if err != nil {
		return fmt.Errorf("fhir: ready: %w", stripURL(err))
	}
	req.Header.Set("Accept", routes.ContentTypeFHIR)
	req.Header.Set("X-Request-ID", randomUUID())
	tok, err := d.bearer()
	if err != nil {
		return err
	}
	if tok != "" {
		req.Header.Set("Authorization", tok)
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return fmt.Errorf("fhir: %s unreachable: %w", d.name, stripURL(err))
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBody))
	resp.Body.Close()
	if resp.StatusCode >= 500 {
		return fmt.Errorf("fhir: %s: GET metadata: %s", d.name, statusText(resp.StatusCode))
	}
	return nil
}

// Close drops the idle connections.
func (d *Destination) Close() error {
	d.transport.CloseIdleConnections()
	return nil
}

// fencedBody hands a request body to the transport until fence is called, and
// nothing after: a body the caller owns only for the call is never read once
// the call has returned.
type fencedBody struct {
	mu     sync.Mutex
	b      []byte
	fenced bool
}

func (f *fencedBody) fence() {
	f.mu.Lock()
	f.fenced = true
	f.mu.Unlock()
}

// reader returns a new reader of the whole body, for a first send or a
// resend.
func (f *fencedBody) reader() io.ReadCloser {
	return &fencedReader{f: f, r: bytes.NewReader(f.b)}
}

type fencedReader struct {
	f *fencedBody
	r *bytes.Reader
}

var errFenced = errors.New("fhir: request body read after the delivery returned")

func (r *fencedReader) Read(p []byte) (int, error) {
	r.f.mu.Lock()
	defer r.f.mu.Unlock()
	if r.f.fenced {
		return 0, errFenced
	}
	return r.r.Read(p)
}

func (r *fencedReader) Close() error { return nil }
