package amqp

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/spinebridge/spinebridge/routes"
)

// Kind is the destination kind this package builds, as routes files name it.
const Kind = "amqp"

// Publisher defaults.
const (
	defaultConfirmTimeout = 30 * time.Second
	defaultChannels       = 1
	defaultInFlight       = 256
	maxChannels           = 64
	maxInFlight           = 65535
)

// Config is an amqp destination as the routes file gives it:
//
//	spine-events:
//	  kind: amqp
//	  url: amqps://spinebridge@broker.example.nhs.uk/clinical
//	  password_file: /run/secrets/broker
//	  exchange: spine
//	  routing_key: "{{route}}.{{type}}.{{trigger}}"
//	  tls: { ca_file: /etc/spinebridge/broker-ca.pem }
//	  declare: { exchange_type: topic, queue: spine-events, binding_key: "#" }
//
// Pointer fields tell a key left out from one set to its zero value.
type Config struct {
	// Kind is "amqp"; it is accepted so that a destination's node in the routes
	// file decodes as it stands.
	Kind string `yaml:"kind"`
	// URL is the broker, amqp://[user@]host[:port][/vhost] or amqps://…. It may
	// name a user but never hold a password. With no user and no password source
	// the broker's default guest/guest is used.
	URL string `yaml:"url"`
	// PasswordFile is a file whose content (less a trailing newline) is the
	// password; read at each connection.
	PasswordFile string `yaml:"password_file"`
	// PasswordEnv is an environment variable holding the password.
	PasswordEnv string        `yaml:"password_env"`
	TLS         TLSConfig     `yaml:"tls"`
	Declare     DeclareConfig `yaml:"declare"`
	// Exchange is required; the default exchange is named by writing
	// exchange: "" explicitly, and then RoutingKey is the queue's name.
	Exchange *string `yaml:"exchange"`
	// RoutingKey is a template: {{route}}, {{type}} (MSH-9.1), {{trigger}}
	// (MSH-9.2), {{destination}} and {{version}} (MSH-12) are replaced by the
	// delivery's values. Empty by default.
	RoutingKey string `yaml:"routing_key"`
	// Mandatory asks the broker to return a message no queue is bound to receive,
	// which then fails with ErrUnroutable and is retried. Default true.
	Mandatory *bool `yaml:"mandatory"`
	// Persistent publishes with delivery mode 2, so durable queues keep messages
	// across a broker restart. Default true.
	Persistent *bool `yaml:"persistent"`
	// ConfirmTimeout bounds the wait for the broker's confirm of one publish.
	// Default 30s.
	ConfirmTimeout time.Duration `yaml:"confirm_timeout"`
	// ConnectTimeout bounds connecting, TLS and AMQP handshakes included.
	// Default 10s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// Headers are added to every message. Names starting x-spinebridge- and the
	// x-hl7- headers the publisher sets are refused.
	Headers map[string]string `yaml:"headers"`
	// Channels is how many confirm-mode channels the deliveries share. Default 1:
	// in BenchmarkPublish, against a broker sharing two cores with the engine,
	// more were never faster, as the broker's CPU is what limits; a broker with
	// cores to spare may do better with more.
	Channels int `yaml:"channels"`
	// InFlight bounds the publishes waiting for their confirm. Default 256.
	InFlight int `yaml:"in_flight"`
}

// DeclareConfig is what the publisher declares each time it connects; nothing
// unless told. Declaring is idempotent, and fails (so the connection attempt
// fails) when an existing exchange or queue has other settings.
type DeclareConfig struct {
	// ExchangeType declares the exchange with this type: direct, fanout, topic or
	// headers. Empty declares no exchange.
	ExchangeType string `yaml:"exchange_type"`
	// Durable makes the declared exchange and queue survive a broker restart.
	// Default true.
	Durable *bool `yaml:"durable"`
	// Queue declares a queue of this name and, unless the exchange is the default
	// one, binds it to the exchange with BindingKey.
	Queue string `yaml:"queue"`
	// QueueType is the declared queue's x-queue-type: classic or quorum. Empty
	// leaves it to the broker.
	QueueType string `yaml:"queue_type"`
	// BindingKey binds the queue; default "#", every key on a topic exchange.
	BindingKey *string `yaml:"binding_key"`
}

// settings is a Config checked, with its defaults applied.
type settings struct {
	endpoint       endpoint
	exchange       string
	key            keyTemplate
	mandatory      bool
	persistent     bool
	confirmTimeout time.Duration
	headers        map[string]string
	channels       int
	inFlight       int

	exchangeType string
	durable      bool
	queue        string
	queueType    string
	bindingKey   string
}

// Headers the publisher sets on every message.
const (
	headerRoute       = "x-spinebridge-route"
	headerDestination = "x-spinebridge-destination"
	headerAttempt     = "x-spinebridge-attempt"
	headerControlID   = "x-hl7-control-id"
	headerMessageType = "x-hl7-message-type"
)

// check validates c and applies its defaults, reporting every problem.
func (c Config) check() (*settings, []fieldError) {
	s := &settings{
		mandatory:      c.Mandatory == nil || *c.Mandatory,
		persistent:     c.Persistent == nil || *c.Persistent,
		confirmTimeout: c.ConfirmTimeout,
		headers:        c.Headers,
		channels:       c.Channels,
		inFlight:       c.InFlight,
		exchangeType:   c.Declare.ExchangeType,
		durable:        c.Declare.Durable == nil || *c.Declare.Durable,
		queue:          c.Declare.Queue,
		queueType:      c.Declare.QueueType,
		bindingKey:     "#",
	}
	ep, errs := parseEndpoint(c.URL, c.PasswordFile, c.PasswordEnv, c.TLS, c.ConnectTimeout)
	s.endpoint = ep
	if c.Kind != "" && c.Kind != Kind {
		errs = append(errs, fieldErr("kind", "is %q; this destination is %q", c.Kind, Kind))
	}
	if c.Exchange == nil {
		errs = append(errs, fieldErr("exchange", `required; write exchange: "" for the default exchange`))
	} else {
		s.exchange = *c.Exchange
	}
	key, err := parseKeyTemplate(c.RoutingKey)
	if err != nil {
		errs = append(errs, fieldError{path: "routing_key", err: err})
	}
	s.key = key
	if c.Exchange != nil && *c.Exchange == "" && c.RoutingKey == "" {
		errs = append(errs, fieldErr("routing_key", "required with the default exchange, where it names the queue"))
	}
	switch {
	case s.confirmTimeout < 0:
		errs = append(errs, fieldErr("confirm_timeout", "must not be negative"))
	case s.confirmTimeout == 0:
		s.confirmTimeout = defaultConfirmTimeout
	}
	switch {
	case s.channels < 0 || s.channels > maxChannels:
		errs = append(errs, fieldErr("channels", "must be between 1 and %d", maxChannels))
	case s.channels == 0:
		s.channels = defaultChannels
	}
	switch {
	case s.inFlight < 0 || s.inFlight > maxInFlight:
		errs = append(errs, fieldErr("in_flight", "must be between 1 and %d", maxInFlight))
	case s.inFlight == 0:
		s.inFlight = defaultInFlight
	}
	for name := range c.Headers {
		switch {
		case name == "":
			errs = append(errs, fieldErr("headers", "a header name is empty"))
		case strings.HasPrefix(name, "x-spinebridge-") || name == headerControlID || name == headerMessageType:
			errs = append(errs, fieldErr("headers."+name, "is set by the publisher"))
		}
	}
	switch s.exchangeType {
	case "", "direct", "fanout", "topic", "headers":
	default:
		errs = append(errs, fieldErr("declare.exchange_type", "is %q; want direct, fanout, topic or headers", s.exchangeType))
	}
	if s.exchangeType != "" && s.exchange == "" && c.Exchange != nil {
		errs = append(errs, fieldErr("declare.exchange_type", "the default exchange cannot be declared"))
	}
	switch s.queueType {
	case "", "classic", "quorum":
	default:
		errs = append(errs, fieldErr("declare.queue_type", "is %q; want classic or quorum", s.queueType))
	}
	if c.Declare.BindingKey != nil {
		s.bindingKey = *c.Declare.BindingKey
		if s.queue == "" {
			errs = append(errs, fieldErr("declare.binding_key", "set without declare.queue"))
		}
	}
	if s.queueType != "" && s.queue == "" {
		errs = append(errs, fieldErr("declare.queue_type", "set without declare.queue"))
	}
	return s, errs
}

// New builds a publisher named name from cfg. It does not connect: the
// connection is made at the first Deliver or Ready.
func New(name string, cfg Config, log *slog.Logger) (*Publisher, error) {
	s, errs := cfg.check()
	if len(errs) > 0 {
		all := make([]error, len(errs))
		for i, e := range errs {
			all[i] = fmt.Errorf("amqp: destination %s: %w", name, e)
		}
		return nil, errors.Join(all...)
	}
	if log == nil {
		log = slog.Default()
	}
	return newPublisher(name, s, log), nil
}

// Factory builds a publisher from its node in the routes file, without
// connecting. Every problem is reported, each as "line:col: key: message" with
// the position of the key's value (or of the node, for a key left out).
func Factory(name string, node *yaml.Node) (routes.Destination, error) {
	type posErr struct {
		line, col int
		err       error
	}
	var cfg Config
	var errs []posErr
	failed := map[string]bool{}
	if node != nil && node.Kind == yaml.MappingNode {
		// Key by key, so that a key that does not decode is known and its zero
		// value does not also fail the checks below.
		for i := 0; i+1 < len(node.Content); i += 2 {
			k := node.Content[i]
			one := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: node.Line, Column: node.Column, Content: node.Content[i : i+2]}
			if err := routes.Decode(one, &cfg); err != nil {
				errs = append(errs, posErr{k.Line, k.Column, err})
				failed[k.Value] = true
			}
		}
	} else if err := routes.Decode(node, &cfg); err != nil {
		return nil, err
	}
	s, ferrs := cfg.check()
	for _, fe := range ferrs {
		top, _, _ := strings.Cut(fe.path, ".")
		if failed[top] {
			continue
		}
		line, col := position(node, fe.path)
		errs = append(errs, posErr{line, col, fmt.Errorf("%d:%d: %w", line, col, fe)})
	}
	if len(errs) > 0 {
		slices.SortStableFunc(errs, func(a, b posErr) int {
			return cmp.Or(cmp.Compare(a.line, b.line), cmp.Compare(a.col, b.col))
		})
		all := make([]error, len(errs))
		for i, e := range errs {
			all[i] = e.err
		}
		return nil, errors.Join(all...)
	}
	return newPublisher(name, s, slog.Default()), nil
}

// position returns where the value at the dotted path is in node, or where the
// deepest mapping on the way to it is when the path is not all there. Under
// headers the rest of the path is one header name, dots and all, and its
// position is its key's.
func position(node *yaml.Node, path string) (line, col int) {
	if node == nil {
		return 0, 0
	}
	names := strings.Split(path, ".")
	if rest, ok := strings.CutPrefix(path, "headers."); ok {
		names = []string{"headers", rest}
	}
	line, col = node.Line, node.Column
	for i, name := range names {
		if node.Kind == yaml.AliasNode {
			node = node.Alias
		}
		if node.Kind != yaml.MappingNode {
			return line, col
		}
		var next *yaml.Node
		for j := 0; j+1 < len(node.Content); j += 2 {
			if node.Content[j].Value == name {
				next = node.Content[j+1]
				if names[0] == "headers" && i == 1 {
					next = node.Content[j]
				}
				break
			}
		}
		if next == nil {
			return line, col
		}
		node = next
		line, col = node.Line, node.Column
	}
	return line, col
}
