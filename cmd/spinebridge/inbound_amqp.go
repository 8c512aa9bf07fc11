package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"sync"
	"time"

	"github.com/spinebridge/spinebridge/adapters/amqp"
	"github.com/spinebridge/spinebridge/adapters/hl7v2"
	"github.com/spinebridge/spinebridge/adapters/itk"
	"github.com/spinebridge/spinebridge/routes"
)

// inboundConfig is where the engine takes messages from besides its
// listeners.
type inboundConfig struct {
	// AMQP are RabbitMQ queues of raw HL7 v2 messages to consume; none by
	// default. The environment sets the whole list at once, as YAML, in
	// SPINEBRIDGE_INBOUND_AMQP.
	AMQP []amqpInboundConfig `mapstructure:"amqp"`
}

// amqpInboundConfig is one queue to consume, as the configuration gives it.
type amqpInboundConfig struct {
	// Name is the listener's name: in the journal (messages show), logs,
	// metrics and route expressions (msg.Listener). "amqp" when empty; unique.
	Name string `mapstructure:"name"`
	// URL may name a user but never hold a password.
	URL          string `mapstructure:"url"`
	PasswordFile string `mapstructure:"password_file"`
	PasswordEnv  string `mapstructure:"password_env"`
	Queue        string `mapstructure:"queue"`
	// Declare declares the queue, durable, at each connection, with
	// QueueType and DeadLetterExchange when set.
	Declare            bool          `mapstructure:"declare"`
	QueueType          string        `mapstructure:"queue_type"`
	DeadLetterExchange string        `mapstructure:"dead_letter_exchange"`
	Prefetch           int           `mapstructure:"prefetch"`
	Workers            int           `mapstructure:"workers"`
	ConnectTimeout     time.Duration `mapstructure:"connect_timeout"`
	TLS                amqpTLSConfig `mapstructure:"tls"`
}

// amqpTLSConfig is TLS for an amqps:// URL, as files.
type amqpTLSConfig struct {
	CAFile     string `mapstructure:"ca_file"`
	CertFile   string `mapstructure:"cert_file"`
	KeyFile    string `mapstructure:"key_file"`
	ServerName string `mapstructure:"server_name"`
}

// amqpInbound is one configured queue and the consumer that takes from it.
type amqpInbound struct {
	name     string
	queue    string
	consumer *amqp.Consumer
	recv     *amqpIntake // given its intake by connectIntake, before Run
}

// listenerName is what an AMQP inbound may be called: it becomes a metrics
// label and a word in logs.
var listenerName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// newAMQPInbound checks inbound.amqp, reporting every problem at once, and
// builds a consumer for each queue. It connects nowhere and needs no journal,
// but reads the password and TLS files, so that a missing secret stops the
// start rather than failing every connection attempt.
func newAMQPInbound(qs []amqpInboundConfig, log *slog.Logger) ([]*amqpInbound, error) {
	var (
		errs []error
		ins  []*amqpInbound
	)
	seen := map[string]string{}
	for i, q := range qs {
		key := fmt.Sprintf("inbound.amqp[%d]", i)
		bad := func(field, format string, args ...any) {
			errs = append(errs, fmt.Errorf("config: %s.%s: %s", key, field, fmt.Sprintf(format, args...)))
		}
		name := q.Name
		if name == "" {
			name = "amqp"
		}
		switch {
		case !listenerName.MatchString(name):
			bad("name", "%q: want letters, digits, '.', '_' or '-', starting with a letter or digit", name)
		case name == "mllp" || name == "http" || name == itk.Listener:
			bad("name", "%q is the name of a listener already; name this queue", name)
		case seen[name] != "":
			bad("name", "%q is also the name of %s; give each queue a name of its own", name, seen[name])
		default:
			seen[name] = key
		}
		switch {
		case q.PasswordEnv != "" && q.PasswordFile != "":
			// NewConsumer says so.
		case q.PasswordEnv != "":
			if _, ok := os.LookupEnv(q.PasswordEnv); !ok {
				bad("password_env", "the variable %s is not set", q.PasswordEnv)
			}
		case q.PasswordFile != "":
			if _, err := os.ReadFile(q.PasswordFile); err != nil {
				bad("password_file", "%v", err)
			}
		}
		// The consumer reads the TLS files again at each connection, so that
		// renewed certificates apply; this is only to fail the start.
		var ps routes.ConfigProblems
		routes.LoadClientTLS(&tls.Config{}, q.TLS.CAFile, q.TLS.CertFile, q.TLS.KeyFile, &ps, "tls")
		if len(ps) > 0 {
			errs = append(errs, ps.Plain("config: "+key))
		}

		in := &amqpInbound{name: name, queue: q.Queue, recv: &amqpIntake{listener: name}}
		c, err := amqp.NewConsumer(amqp.ConsumerConfig{
			URL:                q.URL,
			Queue:              q.Queue,
			Declare:            q.Declare,
			QueueType:          q.QueueType,
			DeadLetterExchange: q.DeadLetterExchange,
			Prefetch:           q.Prefetch,
			Workers:            q.Workers,
			PasswordFile:       q.PasswordFile,
			PasswordEnv:        q.PasswordEnv,
			TLS:                amqp.TLSConfig{CAFile: q.TLS.CAFile, CertFile: q.TLS.CertFile, KeyFile: q.TLS.KeyFile, ServerName: q.TLS.ServerName},
			ConnectTimeout:     q.ConnectTimeout,
		}, in.recv.Receive, log.With("listener", name))
		if err != nil {
			errs = append(errs, prefixErrors("config: "+key+": ", err))
			continue
		}
		in.consumer = c
		ins = append(ins, in)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return ins, nil
}

// connectIntake gives the queue an intake of its own, named after it, with
// the engine's acknowledgement policy icfg.
func (in *amqpInbound) connectIntake(icfg routes.IntakeConfig, j routes.Journal, metrics *routes.Metrics, log *slog.Logger) error {
	icfg.Listener = in.name
	// No sender reads an ACK here: its code only settles the delivery. A message
	// that does not parse will not parse next time either, so it is refused
	// (AR), which rejects it to the queue's dead-letter exchange, whatever
	// ack.parse_error_code tells MLLP senders.
	icfg.ParseErrorCode = hl7v2.AR
	intake, err := routes.NewIntake(icfg, j, log)
	if err != nil {
		return fmt.Errorf("inbound amqp %s: %w", in.name, err)
	}
	in.recv.intake, in.recv.metrics = intake, metrics
	return nil
}

// runAMQPInbound runs every consumer until ctx ends. The returned wait blocks
// until each has settled the messages in hand with the broker, or until its
// own ctx ends, and reports whether they all stopped.
func runAMQPInbound(ctx context.Context, ins []*amqpInbound, log *slog.Logger) (wait func(context.Context) bool) {
	var wg sync.WaitGroup
	for _, in := range ins {
		log.Info("amqp inbound starting", "listener", in.name, "queue", in.queue)
		wg.Go(func() {
			if err := in.consumer.Run(ctx); err != nil {
				log.Error("amqp inbound stopped", "listener", in.name, "err", err)
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	return func(wctx context.Context) bool {
		select {
		case <-done:
			return true
		case <-wctx.Done():
			return false
		}
	}
}

// amqpIntake adapts the intake to an AMQP consumer: the queue's deliveries are
// received as MLLP frames are, journaled, checked for duplicates and routed.
type amqpIntake struct {
	intake   *routes.Intake
	metrics  *routes.Metrics
	listener string
}

func (a *amqpIntake) Receive(ctx context.Context, arr routes.Arrival) (routes.Reply, func()) {
	return receiveUnconnected(ctx, a.intake, a.metrics, a.listener, arr)
}

var _ amqp.Receiver = (*amqpIntake)(nil).Receive
