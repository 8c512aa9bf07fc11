package itk

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/spinebridge/spinebridge/routes"
)

// AckKind is the destination kind of AckDestination in the routes file.
const AckKind = "itk-ack"

// AckConfig configures an AckDestination. Its yaml tags are the keys of the
// destination's mapping in the routes file:
//
//	itk-acks:
//	  kind: itk-ack
//	  url: https://tie.example.nhs.uk/itk          # default endpoint
//	  addresses:                                    # ITK address -> endpoint
//	    "urn:nhs-uk:addressing:ods:RX1:DISCHARGE": https://pas.rx1.example.nhs.uk/itk
//	  username: spinebridge
//	  timeout: 30s
//	  tls: { ca_file: ca.pem, cert_file: client.pem, key_file: client.key }
type AckConfig struct {
	Kind string `yaml:"kind"`
	// URL is the endpoint for an acknowledgement whose address is in neither
	// Addresses nor itself an http(s) URL.
	URL string `yaml:"url"`
	// Addresses maps ITK address URIs (the original sender addresses) to the
	// endpoints that receive for them. ITK addresses are names, not locations,
	// so this table is what routes an acknowledgement.
	Addresses map[string]string `yaml:"addresses"`
	// Username is the wsse:Username sent; "spinebridge" when empty.
	Username string `yaml:"username"`
	// Timeout bounds each POST; 30 s when zero.
	Timeout time.Duration `yaml:"timeout"`
	TLS     AckTLS        `yaml:"tls"`
}

// AckTLS is a TLS client configuration as files on disk.
type AckTLS struct {
	CAFile     string `yaml:"ca_file"`
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	ServerName string `yaml:"server_name"`
}

// AckDestination delivers acknowledgements built by BuildInfrastructureAck and
// BuildBusinessAck: each Delivery's body is one acknowledgement Distribution
// Envelope, which it wraps in a SOAP request and POSTs to the endpoint of the
// envelope's address. The endpoint is, in order: the address's entry in
// Addresses; the address itself when it is an http or https URL; URL. The
// wsa:MessageID is named after the delivery id, so every retry of one
// acknowledgement carries the same one.
type AckDestination struct {
	name   string
	cfg    AckConfig
	client *http.Client
	now    func() time.Time
}

var (
	_ routes.Destination        = (*AckDestination)(nil)
	_ routes.DestinationFactory = AckFactory
)

// AckFactory builds an AckDestination from its mapping in the routes file,
// without connecting. Its errors carry the line and column of the value at
// fault, every one found.
func AckFactory(name string, node *yaml.Node) (routes.Destination, error) {
	return routes.DecodeDestination(name, node, buildAckDestination)
}

// NewAckDestination builds an AckDestination from cfg, without connecting.
func NewAckDestination(name string, cfg AckConfig) (*AckDestination, error) {
	d, ps := buildAckDestination(name, cfg)
	if len(ps) > 0 {
		return nil, ps.Plain("itk-ack destination " + name)
	}
	return d, nil
}

func buildAckDestination(name string, cfg AckConfig) (*AckDestination, routes.ConfigProblems) {
	var ps routes.ConfigProblems
	if cfg.Kind != "" && cfg.Kind != AckKind {
		ps.Add(fmt.Errorf("%q is not %q", cfg.Kind, AckKind), "kind")
	}
	if cfg.URL != "" && !isHTTPURL(cfg.URL) {
		ps.Add(errors.New("must be an http or https URL"), "url")
	}
	for addr, u := range cfg.Addresses {
		if !isHTTPURL(u) {
			ps.Add(errors.New("must be an http or https URL"), "addresses", addr)
		}
	}
	if cfg.URL == "" && len(cfg.Addresses) == 0 {
		ps.Add(errors.New("url or addresses is required"), "url")
	}
	if cfg.Timeout < 0 {
		ps.Add(errors.New("must not be negative"), "timeout")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cfg.TLS.ServerName}
	routes.LoadClientTLS(tc, cfg.TLS.CAFile, cfg.TLS.CertFile, cfg.TLS.KeyFile, &ps, "tls")
	if len(ps) > 0 {
		return nil, ps
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = tc
	return &AckDestination{name: name, cfg: cfg, client: &http.Client{Transport: transport, Timeout: cfg.Timeout}, now: time.Now}, nil
}

func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// endpoint is where an acknowledgement to the ITK address addr goes.
func (d *AckDestination) endpoint(addr string) (string, bool) {
	if u, ok := d.cfg.Addresses[addr]; ok {
		return u, true
	}
	if isHTTPURL(addr) {
		return addr, true
	}
	return d.cfg.URL, d.cfg.URL != ""
}

// maxResponse bounds how much of a receiver's answer is read.
const maxResponse = 1 << 20

// Deliver implements routes.Destination.
func (d *AckDestination) Deliver(ctx context.Context, dl *routes.Delivery) error {
	env, err := DecodeEnvelope(dl.Body, Limits{})
	if err != nil {
		return routes.Permanent(fmt.Errorf("itk-ack %s: the body is not a Distribution Envelope: %w", d.name, err))
	}
	endpoint, ok := d.endpoint(env.Addresses[0].URI)
	if !ok {
		return routes.Permanent(fmt.Errorf("itk-ack %s: no endpoint for the acknowledgement's address", d.name))
	}
	body, _, err := WrapSOAP(dl.Body, SOAPOptions{MessageID: nameUUID("delivery", dl.ID), To: endpoint, Username: d.cfg.Username, Now: d.now()})
	if err != nil {
		return routes.Permanent(fmt.Errorf("itk-ack %s: %w", d.name, err))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return routes.Permanent(fmt.Errorf("itk-ack %s: %w", d.name, err))
	}
	req.Header.Set("Content-Type", "text/xml; charset=utf-8")
	req.Header.Set("SOAPAction", `"`+env.Service+`"`)
	resp, err := d.client.Do(req)
	if err != nil {
		return fmt.Errorf("itk-ack %s: post: %w", d.name, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return fmt.Errorf("itk-ack %s: read response: %w", d.name, err)
	}
	return classify(d.name, resp, answer)
}

// classify turns a receiver's answer into the delivery's outcome: 2xx without
// a fault is taken; a fault asking for a retry (2100, or a Server fault
// without a code) or a 5xx without one is retried, honouring Retry-After on
// 429 and 503; any other fault or 4xx is permanent.
func classify(name string, resp *http.Response, body []byte) error {
	var fault *Fault
	if r, err := ParseResponse(body, Limits{MaxSize: maxResponse}); err == nil {
		fault = r.Fault
	}
	status := resp.StatusCode
	switch {
	case fault != nil && !fault.Retryable():
		return routes.Permanent(fmt.Errorf("itk-ack %s: HTTP %d: %w", name, status, fault))
	case fault != nil:
		return fmt.Errorf("itk-ack %s: HTTP %d: %w", name, status, fault)
	case status >= 200 && status < 300:
		return nil
	case status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable:
		err := fmt.Errorf("itk-ack %s: HTTP %d", name, status)
		if s, perr := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After"))); perr == nil && s > 0 {
			return routes.RetryAfter(err, time.Duration(s)*time.Second)
		}
		return err
	case status >= 500:
		return fmt.Errorf("itk-ack %s: HTTP %d", name, status)
	}
	return routes.Permanent(fmt.Errorf("itk-ack %s: HTTP %d", name, status))
}

// Ready reports whether the default endpoint accepts connections; with only
// an address table there is no single endpoint to try, and it reports ready.
func (d *AckDestination) Ready(ctx context.Context) error {
	if d.cfg.URL == "" {
		return nil
	}
	u, err := url.Parse(d.cfg.URL)
	if err != nil {
		return err
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), map[string]string{"http": "80", "https": "443"}[u.Scheme])
	}
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", host)
	if err != nil {
		return fmt.Errorf("itk-ack %s: %w", d.name, err)
	}
	return conn.Close()
}

// Close implements routes.Destination.
func (d *AckDestination) Close() error {
	d.client.CloseIdleConnections()
	return nil
}
