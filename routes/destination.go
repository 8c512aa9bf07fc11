package routes

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Delivery is one message on its way to one destination: what the dispatcher
// hands a Destination. Its ID is the same on every attempt, so a destination
// that can tell a resend from a new message (an AMQP message-id, a FHIR
// X-Request-ID, MSA-2 of an MLLP ACK) sees the same value each time.
type Delivery struct {
	// ID names this delivery for good: "<journal id>.<route>.<destination>".
	ID          string
	MessageID   ID     // the journal record it comes from
	Route       string // the route that sent it
	Destination string // the destination's name in the routes file
	Attempt     int    // 1 on the first attempt
	Key         string // the ordering key the route gave it
	// ContentType is the body's media type: ContentTypeFHIR for a transformed
	// message, ContentTypeHL7v2 (or ContentTypeXML for an ITK document) for the
	// original bytes.
	ContentType string
	Body        []byte // valid for the call only

	// From the journal record, for headers, templates and file names.
	Type, Trigger, Version, ControlID, Sender, NHSNumber string
	Received                                             time.Time
}

// Content types of delivery bodies.
const (
	ContentTypeFHIR   = "application/fhir+json"
	ContentTypeHL7v2  = "x-application/hl7-v2+er7"
	ContentTypeXML    = "application/xml"
	ContentTypeNDJSON = "application/x-ndjson"
)

// Destination is where deliveries go: a FHIR server, an AMQP exchange, a legacy
// MLLP system, a directory. Implementations are safe for concurrent use; the
// dispatcher calls Deliver from several goroutines, never concurrently for two
// deliveries with the same Key.
type Destination interface {
	// Deliver sends d once and returns nil only when the destination has taken
	// it for good (HTTP 2xx, broker confirm, AA/CA, file renamed into place).
	// An error is retried unless it is Permanent; a RetryAfter in it is
	// honoured.
	Deliver(ctx context.Context, d *Delivery) error
	// Ready reports whether the destination is reachable now, for /readyz. It
	// must return quickly (it is given a short deadline) and must not deliver.
	Ready(ctx context.Context) error
	// Close releases connections; Deliver is not called after it.
	Close() error
}

// Concurrent is a Destination that knows how many deliveries it is best given
// at once: a broker's window of unconfirmed publishes, a directory whose
// writes are made durable in groups. The dispatcher runs that many of its
// deliveries in flight unless the routes file sets the destination's
// concurrency.
type Concurrent interface {
	Concurrency() int
}

// DestinationFactory builds a destination of one kind from its node in the
// routes file. It must not connect anywhere: lint builds destinations too.
// Errors should name positions as Decode does ("line:col: message"); several
// may be joined.
type DestinationFactory func(name string, node *yaml.Node) (Destination, error)

// DeliveryError classifies why an attempt failed. Wrap an error with Permanent
// or RetryAfter; an error that is neither is retried with the destination's
// backoff.
type DeliveryError struct {
	Err        error
	Permanent  bool          // never retried: dead-lettered at once
	RetryAfter time.Duration // the destination asked to wait this long (429, 503)
}

func (e *DeliveryError) Error() string { return e.Err.Error() }
func (e *DeliveryError) Unwrap() error { return e.Err }

// Permanent marks err as a failure no retry can mend: 4xx with an
// OperationOutcome, AR/CR, an output the destination refuses as invalid.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &DeliveryError{Err: err, Permanent: true}
}

// RetryAfter marks err as retryable no sooner than after d.
func RetryAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &DeliveryError{Err: err, RetryAfter: d}
}

// IsPermanent reports whether err, or an error it wraps, is Permanent.
func IsPermanent(err error) bool {
	var de *DeliveryError
	return errors.As(err, &de) && de.Permanent
}

// retryAfterOf returns the wait a destination asked for, or zero.
func retryAfterOf(err error) time.Duration {
	var de *DeliveryError
	if errors.As(err, &de) {
		return de.RetryAfter
	}
	return 0
}

// ErrNotConfigured is what NotConfiguredError matches with errors.Is.
var ErrNotConfigured = errors.New("destination not configured")

// NotConfiguredError says that deliveries name a destination the routing table
// in force does not declare: the table was reloaded, or the engine restarted,
// without it, or under another name. No retry can reach it, so such a
// delivery is dead-lettered at once, and its dead letter is sent again only
// once the destination is declared again.
type NotConfiguredError struct {
	Destination string
	// Kept is how many dead letters ReviveDeadLetters left as they were; 0 for
	// a delivery's failure.
	Kept int
}

func (e *NotConfiguredError) Error() string {
	if e.Kept == 0 {
		return fmt.Sprintf("destination %q is no longer configured", e.Destination)
	}
	return fmt.Sprintf("destination %q is not configured: its %d dead letters stay until it is declared again (or replay their messages to route them with the table in force)", e.Destination, e.Kept)
}

// Is reports whether target is ErrNotConfigured.
func (e *NotConfiguredError) Is(target error) bool { return target == ErrNotConfigured }

// Decode decodes node into v, a pointer to a struct with yaml tags, key by key,
// so that every error carries the "line:col: " of the node at fault: a key v
// has no field for, or a value of the wrong type. Nested structs are decoded the
// same way. Every error found is returned, joined.
func Decode(node *yaml.Node, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("routes.Decode: %T is not a pointer to a struct", v)
	}
	return decodeStruct(node, rv.Elem())
}

func decodeStruct(node *yaml.Node, sv reflect.Value) error {
	if node == nil {
		return nil
	}
	if node.Kind == yaml.AliasNode {
		node = node.Alias
	}
	if node.Kind != yaml.MappingNode {
		return fmt.Errorf("%d:%d: expected a mapping", node.Line, node.Column)
	}
	fields := map[string]int{}
	st := sv.Type()
	for i := range st.NumField() {
		f := st.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fields[name] = i
	}
	var errs []error
	for i := 0; i+1 < len(node.Content); i += 2 {
		k, val := node.Content[i], node.Content[i+1]
		fi, ok := fields[k.Value]
		if !ok {
			errs = append(errs, fmt.Errorf("%d:%d: unknown key %q; known: %s", k.Line, k.Column, k.Value, strings.Join(slices.Sorted(maps.Keys(fields)), ", ")))
			continue
		}
		fv := sv.Field(fi)
		if fv.Kind() == reflect.Struct && fv.Type() != reflect.TypeFor[time.Time]() {
			if err := decodeStruct(val, fv); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if err := val.Decode(fv.Addr().Interface()); err != nil {
			errs = append(errs, fmt.Errorf("%d:%d: %s: %s", val.Line, val.Column, k.Value, yamlMessage(err)))
		}
	}
	return errors.Join(errs...)
}

// yamlMessage is err without the "yaml: unmarshal errors: line N:" framing,
// which Decode replaces with the value's own position.
func yamlMessage(err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg := te.Errors[0]
		if _, rest, ok := strings.Cut(msg, ": "); ok && strings.HasPrefix(msg, "line ") {
			return rest
		}
		return msg
	}
	return err.Error()
}

// Transformer turns a journaled record into the body a route delivers: the
// mapping engine's FHIR Bundle for HL7 v2, a DocumentReference Bundle for a CDA
// document. A route's transform names one. Implementations are safe for
// concurrent use.
type Transformer interface {
	// Transform appends rec's transformed body to dst and returns it with its
	// content type. An error is permanent for this record (the route's
	// deliveries are dead-lettered with it as the reason).
	Transform(dst []byte, rec *Record) (body []byte, contentType string, err error)
}

// DecodeDestination is the body of a DestinationFactory whose kind builds from
// a config struct C: it decodes node into a C (see Decode) and calls build,
// reporting the decode errors, or else build's problems at the positions of
// their values. A nil node is an empty mapping.
func DecodeDestination[C any, D Destination](name string, node *yaml.Node, build func(string, C) (D, ConfigProblems)) (Destination, error) {
	if node == nil {
		node = &yaml.Node{Kind: yaml.MappingNode}
	}
	var cfg C
	if err := Decode(node, &cfg); err != nil {
		return nil, err
	}
	d, ps := build(name, cfg)
	if len(ps) > 0 {
		return nil, ps.At(node)
	}
	return d, nil
}

// ConfigProblems collects what is wrong with a destination's configuration,
// each problem at the path of keys of the value at fault (["tls",
// "cert_file"]), so that a factory reports all of them at their positions.
type ConfigProblems []ConfigProblem

// LoadClientTLS reads a TLS client's files into tc: caFile's PEM certificates
// become the roots the server is verified against, certFile and keyFile (both
// or neither) the client certificate for mutual TLS. Each problem goes to ps
// at path plus the file's key (ca_file, cert_file, key_file), the keys of a
// destination's tls: mapping.
func LoadClientTLS(tc *tls.Config, caFile, certFile, keyFile string, ps *ConfigProblems, path ...string) {
	at := func(key string) []string { return append(slices.Clone(path), key) }
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			ps.Add(err, at("ca_file")...)
		} else {
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				ps.Add(fmt.Errorf("%s holds no PEM certificate", caFile), at("ca_file")...)
			}
		}
	}
	switch {
	case certFile == "" && keyFile != "":
		ps.Add(errors.New("set without cert_file"), at("key_file")...)
	case certFile != "" && keyFile == "":
		ps.Add(errors.New("set without key_file"), at("cert_file")...)
	case certFile != "":
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			ps.Add(fmt.Errorf("with key file %s: %w", keyFile, err), at("cert_file")...)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
}

// ConfigProblem is one value of a configuration at fault.
type ConfigProblem struct {
	Path []string
	Err  error
}

// Add records err against the value at path.
func (ps *ConfigProblems) Add(err error, path ...string) {
	*ps = append(*ps, ConfigProblem{Path: path, Err: err})
}

// At returns the problems as one error, each with the line and column of its
// value in node, as Decode reports them ("line:col: key.path: message"); a
// missing key points at the mapping that lacks it.
func (ps ConfigProblems) At(node *yaml.Node) error {
	errs := make([]error, len(ps))
	for i, p := range ps {
		n := node
		for _, key := range p.Path {
			for j := 0; j+1 < len(n.Content); j += 2 {
				if n.Content[j].Value == key {
					n = n.Content[j+1]
					break
				}
			}
		}
		errs[i] = fmt.Errorf("%d:%d: %s: %w", n.Line, n.Column, strings.Join(p.Path, "."), p.Err)
	}
	return errors.Join(errs...)
}

// Plain returns the problems as one error for a configuration built in code,
// each as "prefix: key.path: message".
func (ps ConfigProblems) Plain(prefix string) error {
	errs := make([]error, len(ps))
	for i, p := range ps {
		errs[i] = fmt.Errorf("%s: %s: %w", prefix, strings.Join(p.Path, "."), p.Err)
	}
	return errors.Join(errs...)
}
