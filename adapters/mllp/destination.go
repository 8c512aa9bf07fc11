package mllp

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/fnv"
	"mime"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/spinebridge/spinebridge/routes"
)

// maxConnections bounds DestinationConfig.Connections: a legacy receiver
// rarely takes more than a handful.
const maxConnections = 64

// DestinationConfig configures an MLLP destination: a legacy system that is
// passed the original HL7 v2 messages, unchanged, during the migration. Its
// yaml tags are the keys of the destination's mapping in the routes file.
type DestinationConfig struct {
	// Addr is the receiver's host:port.
	Addr string `yaml:"addr"`
	// TLS configures TLS; plain TCP when it sets nothing.
	TLS ClientTLSConfig `yaml:"tls"`
	// CommitACK expects an MLLP release 2 commit acknowledgement before the
	// HL7 one.
	CommitACK bool `yaml:"commit_ack"`
	// AckTimeout bounds each delivery from sending the message to reading its
	// acknowledgement; 30 s when zero.
	AckTimeout time.Duration `yaml:"ack_timeout"`
	// DialTimeout bounds connecting, TLS handshake included; 10 s when zero.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// Connections is the number of connections kept open to the receiver, 1
	// when zero. Messages with one ordering key always take the same
	// connection, so they arrive in order; more connections let messages of
	// different keys pass each other.
	Connections int `yaml:"connections"`
}

// ClientTLSConfig is a TLS client configuration as files on disk.
type ClientTLSConfig struct {
	// Enabled turns TLS on with nothing else set: the system's CAs and the
	// address's host name. Setting any other key turns it on too.
	Enabled bool `yaml:"enabled"`
	// CAFile holds PEM certificates of the CAs trusted to sign the receiver's
	// certificate, instead of the system's.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile hold the PEM client certificate chain and its key,
	// for mutual TLS. Both or neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName is the name the receiver's certificate must carry, when it is
	// not the address's host.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify accepts any certificate. For tests only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// Destination sends deliveries' original HL7 v2 messages to a receiver over
// MLLP, one attempt per Deliver (the dispatcher retries), on connections it
// keeps open between deliveries. It is safe for concurrent use.
type Destination struct {
	name  string
	cfg   SenderConfig
	slots []senderSlot
}

// senderSlot is one connection: its Sender, made on first use.
type senderSlot struct {
	mu     sync.Mutex // guards s and closed
	s      *Sender
	closed bool
	// healthy says the last exchange on the connection worked, so Ready need
	// not dial.
	healthy atomic.Bool
}

var _ routes.Destination = (*Destination)(nil)

// DestinationFactory builds an MLLP destination from its mapping in the
// routes file, without connecting. Its errors name the line and column of the
// value at fault, every one found.
func DestinationFactory(name string, node *yaml.Node) (routes.Destination, error) {
	return routes.DecodeDestination(name, node, buildDestination)
}

// NewDestination builds an MLLP destination from cfg, without connecting. It
// reads the TLS files.
func NewDestination(name string, cfg DestinationConfig) (*Destination, error) {
	d, ps := buildDestination(name, cfg)
	if len(ps) > 0 {
		return nil, ps.Plain("mllp destination " + name)
	}
	return d, nil
}

func buildDestination(name string, cfg DestinationConfig) (*Destination, configProblems) {
	var ps configProblems
	if cfg.Addr == "" {
		ps.Add(errors.New("required"), "addr")
	} else if host, port, err := net.SplitHostPort(cfg.Addr); err != nil || host == "" {
		ps.Add(errors.New("want host:port"), "addr")
	} else if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		ps.Add(errors.New("the port is not a number from 1 to 65535"), "addr")
	}
	if cfg.AckTimeout < 0 {
		ps.Add(fmt.Errorf("%v is negative", cfg.AckTimeout), "ack_timeout")
	}
	if cfg.DialTimeout < 0 {
		ps.Add(fmt.Errorf("%v is negative", cfg.DialTimeout), "dial_timeout")
	}
	switch {
	case cfg.Connections < 0 || cfg.Connections > maxConnections:
		ps.Add(fmt.Errorf("%d: want 1 to %d", cfg.Connections, maxConnections), "connections")
	case cfg.Connections == 0:
		cfg.Connections = 1
	}
	tc := cfg.TLS.client(&ps)
	if len(ps) > 0 {
		return nil, ps
	}
	sc, err := SenderConfig{
		Addr:        cfg.Addr,
		TLS:         tc,
		DialTimeout: cfg.DialTimeout,
		AckTimeout:  cfg.AckTimeout,
		CommitACK:   cfg.CommitACK,
		// One attempt per delivery: the dispatcher retries, with its backoff and
		// its dead letters.
		Retries: 0,
	}.validate()
	if err != nil {
		ps.Add(err, "addr")
		return nil, ps
	}
	return &Destination{name: name, cfg: sc, slots: make([]senderSlot, cfg.Connections)}, nil
}

// client loads the files and returns the TLS client configuration, or nil
// when c turns TLS off, adding any problem to ps.
func (c ClientTLSConfig) client(ps *configProblems) *tls.Config {
	if c == (ClientTLSConfig{}) {
		return nil
	}
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         c.ServerName,
		InsecureSkipVerify: c.InsecureSkipVerify,
	}
	routes.LoadClientTLS(tc, c.CAFile, c.CertFile, c.KeyFile, ps, "tls")
	return tc
}

// Deliver sends del's body, the original message, and checks its
// acknowledgement: AA or CA delivers; AE, CE, a timeout, a lost connection and
// an acknowledgement of another message are retried (on a new connection where
// the old one cannot be trusted); AR and CR, and a message that cannot be
// sent, are refused for good.
func (d *Destination) Deliver(ctx context.Context, del *routes.Delivery) error {
	if mt, _, _ := mime.ParseMediaType(del.ContentType); mt != routes.ContentTypeHL7v2 && mt != "application/hl7-v2" {
		return routes.Permanent(fmt.Errorf("mllp: %s: the body is %q, not HL7 v2: an mllp destination takes the original message, without a transform", d.name, mt))
	}
	if bytes.IndexByte(del.Body, EndBlock) >= 0 {
		return routes.Permanent(fmt.Errorf("mllp: %s: the message holds the end block byte 0x1C and cannot be framed", d.name))
	}
	sl := &d.slots[d.slotOf(del.Key)]
	s, err := sl.sender(ctx, d.cfg)
	if err != nil {
		sl.healthy.Store(false)
		return fmt.Errorf("mllp: %s: %w", d.name, err)
	}
	_, err = s.Send(ctx, del.Body)
	var ae *AckError
	sl.healthy.Store(err == nil || errors.As(err, &ae))
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ae) && !ae.Retryable(), errors.Is(err, ErrNoControlID):
		return routes.Permanent(fmt.Errorf("mllp: %s: %w", d.name, err))
	case errors.Is(err, ErrAckMismatch):
		return fmt.Errorf("mllp: %s: ACK for another message: %w", d.name, err)
	}
	return fmt.Errorf("mllp: %s: %w", d.name, err)
}

// slotOf returns the connection a key's messages take.
func (d *Destination) slotOf(key string) int {
	if len(d.slots) == 1 {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % uint32(len(d.slots)))
}

// sender returns the slot's Sender, connecting it on first use.
func (sl *senderSlot) sender(ctx context.Context, cfg SenderConfig) (*Sender, error) {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if sl.closed {
		return nil, ErrClosed
	}
	if sl.s == nil {
		s, err := Dial(ctx, cfg)
		if err != nil {
			return nil, err
		}
		sl.s = s
	}
	return sl.s, nil
}

// Ready reports whether the receiver can be reached: at once when the last
// exchange on a connection worked, else by connecting (TLS handshake
// included) within ctx and hanging up.
func (d *Destination) Ready(ctx context.Context) error {
	for i := range d.slots {
		if d.slots[i].healthy.Load() {
			return nil
		}
	}
	s, err := Dial(ctx, d.cfg)
	if err != nil {
		return fmt.Errorf("mllp: %s: %w", d.name, err)
	}
	return s.Close()
}

// Close closes the connections, waiting for a delivery in progress on each.
func (d *Destination) Close() error {
	var errs []error
	for i := range d.slots {
		sl := &d.slots[i]
		sl.mu.Lock()
		sl.closed = true
		if sl.s != nil {
			errs = append(errs, sl.s.Close())
		}
		sl.mu.Unlock()
	}
	return errors.Join(errs...)
}

// configProblems are the problems of a configuration, each at its key.
type configProblems = routes.ConfigProblems
