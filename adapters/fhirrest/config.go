package fhirrest

import (
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/spinebridge/spinebridge/routes"
)

// Modes of sending a Bundle.
const (
	// ModeBundle POSTs the Bundle to the base URL as it stands.
	ModeBundle = "bundle"
	// ModeResources sends the Bundle's entries one request each.
	ModeResources = "resources"
)

const defaultTimeout = 30 * time.Second

// Config configures a FHIR destination. Its yaml tags are the keys of the
// destination's mapping in the routes file.
type Config struct {
	// URL is the server's FHIR base, http or https, without credentials, query
	// or fragment: "https://int.api.service.nhs.uk/personal-demographics/FHIR/R4".
	URL string `yaml:"url"`
	// Mode is ModeBundle (the default) or ModeResources.
	Mode string `yaml:"mode"`
	// Timeout bounds each request, from sending it to reading its response;
	// 30 s when zero.
	Timeout time.Duration `yaml:"timeout"`
	// TokenFile names a file holding a bearer token. It is read again whenever
	// its modification time or size changes.
	TokenFile string `yaml:"token_file"`
	// TokenEnv names an environment variable holding a bearer token, read when
	// the destination is built.
	TokenEnv string `yaml:"token_env"`
	// TLS configures https.
	TLS TLSConfig `yaml:"tls"`
	// Headers are extra headers sent with every request, such as
	// NHSD-End-User-Organisation-ODS. They are not secret: a token goes in
	// token_file or token_env, and the headers this package sets itself cannot
	// be replaced.
	Headers map[string]string `yaml:"headers"`
}

// TLSConfig is a TLS client configuration as files on disk.
type TLSConfig struct {
	// CAFile holds PEM certificates of the CAs trusted to sign the server's
	// certificate, instead of the system's.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile hold the PEM client certificate chain and its key,
	// for mutual TLS. Both or neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName is the name the server's certificate must carry, when it is not
	// the URL's host.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify accepts any server certificate. For tests only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

func (c TLSConfig) isZero() bool { return c == TLSConfig{} }

// Factory builds a FHIR destination from its mapping in the routes file,
// without connecting. Its errors name the line and column of the value at
// fault, every one found.
func Factory(name string, node *yaml.Node) (routes.Destination, error) {
	return routes.DecodeDestination(name, node, build)
}

// New builds a FHIR destination from cfg, without connecting. It reads the
// token and the TLS files.
func New(name string, cfg Config) (*Destination, error) {
	d, ps := build(name, cfg)
	if len(ps) > 0 {
		return nil, ps.Plain("fhir destination " + name)
	}
	return d, nil
}

// reservedHeaders are set on every request by the destination itself.
var reservedHeaders = []string{
	"Accept", "Authorization", "Content-Length", "Content-Type", "Host",
	"If-None-Exist", "Prefer", "Transfer-Encoding", "X-Correlation-ID", "X-Request-ID",
}

// build checks cfg and builds the destination, or returns every problem found.
func build(name string, cfg Config) (*Destination, problems) {
	var ps problems
	base, err := parseBase(cfg.URL)
	if err != nil {
		ps.Add(err, "url")
	}
	switch cfg.Mode {
	case "":
		cfg.Mode = ModeBundle
	case ModeBundle, ModeResources:
	default:
		ps.Add(fmt.Errorf("%q: want %s or %s", cfg.Mode, ModeBundle, ModeResources), "mode")
	}
	switch {
	case cfg.Timeout < 0:
		ps.Add(fmt.Errorf("%v is negative", cfg.Timeout), "timeout")
	case cfg.Timeout == 0:
		cfg.Timeout = defaultTimeout
	}
	headers := http.Header{}
	for _, k := range slices.Sorted(maps.Keys(cfg.Headers)) {
		v := cfg.Headers[k]
		switch {
		case !validHeaderName(k):
			ps.Add(errors.New("not a valid header name"), "headers", k)
		case isReserved(k):
			ps.Add(errors.New("set by the destination itself; a token goes in token_file or token_env"), "headers", k)
		case !validHeaderValue(v):
			ps.Add(errors.New("value holds a control character"), "headers", k)
		default:
			headers.Set(k, v)
		}
	}
	var tok *tokenSource
	switch {
	case cfg.TokenFile != "" && cfg.TokenEnv != "":
		ps.Add(errors.New("token_file is set too; choose one"), "token_env")
	case cfg.TokenFile != "":
		tok = &tokenSource{file: cfg.TokenFile}
		if _, err := tok.get(); err != nil {
			ps.Add(err, "token_file")
		}
	case cfg.TokenEnv != "":
		tok = &tokenSource{}
		if err := tok.set(os.Getenv(cfg.TokenEnv)); err != nil {
			ps.Add(fmt.Errorf("environment variable %s: %w", cfg.TokenEnv, err), "token_env")
		}
	}
	var tc *tls.Config
	if !cfg.TLS.isZero() {
		if base != nil && base.Scheme != "https" {
			ps.Add(errors.New("set for a url that is not https"), "tls")
		}
		tc = cfg.TLS.client(&ps)
	}
	if len(ps) > 0 {
		return nil, ps
	}
	return newDestination(name, cfg, base, headers, tok, tc), nil
}

// parseBase checks a FHIR base URL and returns it without a trailing slash.
func parseBase(s string) (*url.URL, error) {
	if s == "" {
		return nil, errors.New("required")
	}
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("not a URL: %w", err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, errors.New("want an http or https URL")
	case u.Host == "":
		return nil, errors.New("has no host")
	case u.User != nil:
		return nil, errors.New("holds credentials; a token goes in token_file or token_env")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return nil, errors.New("a FHIR base has no query or fragment")
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// client loads the files and returns the TLS client configuration, adding any
// problem to ps.
func (c TLSConfig) client(ps *problems) *tls.Config {
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         c.ServerName,
		InsecureSkipVerify: c.InsecureSkipVerify,
	}
	routes.LoadClientTLS(tc, c.CAFile, c.CertFile, c.KeyFile, ps, "tls")
	return tc
}

// validHeaderName reports whether s is an HTTP token (RFC 9110 §5.1).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

// validHeaderValue reports whether s holds no control character but tab.
func validHeaderValue(s string) bool {
	for i := range len(s) {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func isReserved(name string) bool {
	for _, r := range reservedHeaders {
		if strings.EqualFold(name, r) {
			return true
		}
	}
	return false
}

// problems are the problems of a configuration, each at its key.
type problems = routes.ConfigProblems
