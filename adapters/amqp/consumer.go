package amqp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
	"github.com/spinebridge/spinebridge/routes"
)

// Consumer defaults.
const (
	defaultPrefetch = 32
	maxPrefetch     = 65535
	// receiveTimeout bounds the intake's work on one message. It runs on past the
	// end of Run's context, so that a message being journaled at shutdown is
	// acknowledged rather than delivered again.
	receiveTimeout = 30 * time.Second
)

// ConsumerConfig is a queue of raw HL7 v2 messages (ER7, one message or one
// batch per AMQP message) to take into the engine.
type ConsumerConfig struct {
	// URL is the broker, as for Config.URL: it may name a user but never hold a
	// password.
	URL string `yaml:"url"`
	// Queue is the queue consumed. It must exist unless Declare is set.
	Queue string `yaml:"queue"`
	// Declare declares Queue, durable, each time the consumer connects, so that
	// it need not be made beforehand. Declaring is idempotent, and fails (so the
	// connection attempt fails, and is made again) when the queue exists with
	// other settings.
	Declare bool `yaml:"declare"`
	// QueueType is the declared queue's x-queue-type: classic or quorum. Empty
	// leaves it to the broker. Only with Declare.
	QueueType string `yaml:"queue_type"`
	// DeadLetterExchange is the declared queue's x-dead-letter-exchange: where
	// the broker sends the messages the consumer rejects. Only with Declare.
	DeadLetterExchange string `yaml:"dead_letter_exchange"`
	// Prefetch is how many unacknowledged messages the broker sends ahead.
	// Default 32, at most 65535.
	Prefetch int `yaml:"prefetch"`
	// Workers is how many messages are handed to the intake at once. Default 1,
	// which journals them in the queue's order; more go faster and lose that
	// order. At most Prefetch.
	Workers      int       `yaml:"workers"`
	PasswordFile string    `yaml:"password_file"`
	PasswordEnv  string    `yaml:"password_env"`
	TLS          TLSConfig `yaml:"tls"`
	// Tag is the consumer tag the broker shows; the library makes one up when
	// empty.
	Tag string `yaml:"tag"`
	// ConnectTimeout bounds connecting, handshakes included. Default 10s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
}

// Receiver takes one message into the engine and says whether it was
// journaled: the signature of (*routes.Intake).Receive. The Reply is valid
// until release is called.
type Receiver func(ctx context.Context, a routes.Arrival) (r routes.Reply, release func())

// Consumer takes messages from a queue and hands each to a Receiver. It
// settles a message with the broker only once the receiver has answered, as
// the answer says:
//
//   - journaled and accepted, or journaled in error (AA, CA, AE, CE and
//     Reply.Committed): acknowledged. A message in error (its processing
//     failed) stays in the journal, where it can be found and replayed.
//   - refused for good (AR or CR: it does not parse, has no MSH-10, is of a
//     version or type not accepted, or is a batch whose counts do not add up),
//     whether journaled as rejected or not: rejected without requeueing, so it
//     does not come back forever. The broker drops it, or dead-letters it when
//     the queue has a dead-letter exchange, and the consumer logs why.
//   - not journaled otherwise (AE or CE: the journal could not take it): given
//     back to the queue after a pause that doubles from 100 ms to 30 s while
//     failures go on.
type Consumer struct {
	cfg      ConsumerConfig
	endpoint endpoint
	recv     Receiver
	log      *slog.Logger
	peer     string

	mu   sync.Mutex
	down error // why the consumer is not consuming; nil while it is
}

// errNotConsuming is Ready's answer before the first connection and after Run.
var errNotConsuming = errors.New("amqp: consumer not consuming")

// NewConsumer checks cfg and returns a consumer handing messages to recv. It
// does not connect; Run does.
func NewConsumer(cfg ConsumerConfig, recv Receiver, log *slog.Logger) (*Consumer, error) {
	ep, ferrs := parseEndpoint(cfg.URL, cfg.PasswordFile, cfg.PasswordEnv, cfg.TLS, cfg.ConnectTimeout)
	if cfg.Queue == "" {
		ferrs = append(ferrs, fieldErr("queue", "required"))
	}
	switch {
	case cfg.Prefetch < 0 || cfg.Prefetch > maxPrefetch:
		ferrs = append(ferrs, fieldErr("prefetch", "must be between 1 and %d", maxPrefetch))
	case cfg.Prefetch == 0:
		cfg.Prefetch = defaultPrefetch
	}
	switch {
	case cfg.Workers < 0 || cfg.Workers > cfg.Prefetch:
		ferrs = append(ferrs, fieldErr("workers", "must be between 1 and prefetch (%d)", cfg.Prefetch))
	case cfg.Workers == 0:
		cfg.Workers = 1
	}
	switch cfg.QueueType {
	case "", "classic", "quorum":
	default:
		ferrs = append(ferrs, fieldErr("queue_type", "is %q; want classic or quorum", cfg.QueueType))
	}
	if !cfg.Declare && cfg.QueueType != "" {
		ferrs = append(ferrs, fieldErr("queue_type", "set without declare"))
	}
	if !cfg.Declare && cfg.DeadLetterExchange != "" {
		ferrs = append(ferrs, fieldErr("dead_letter_exchange", "set without declare"))
	}
	var errs []error
	for _, fe := range ferrs {
		errs = append(errs, fmt.Errorf("amqp: consumer: %w", fe))
	}
	if recv == nil {
		errs = append(errs, errors.New("amqp: consumer: no receiver"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if log == nil {
		log = slog.Default()
	}
	return &Consumer{cfg: cfg, endpoint: ep, recv: recv, log: log, peer: "amqp://" + cfg.Queue, down: errNotConsuming}, nil
}

// Ready returns nil while the consumer is consuming, and otherwise why it is
// not: not yet connected, or the error that ended its last connection.
func (c *Consumer) Ready() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.down
}

func (c *Consumer) setDown(err error) {
	c.mu.Lock()
	c.down = err
	c.mu.Unlock()
}

// Run consumes until ctx ends, connecting again with a growing pause whenever
// the connection drops or cannot be made. It returns nil once ctx has ended and
// the messages in hand are settled; messages the broker had sent ahead go back
// to the queue when the connection closes.
func (c *Consumer) Run(ctx context.Context) error {
	defer c.setDown(errNotConsuming)
	var b backoff
	for {
		began := time.Now()
		err := c.consume(ctx)
		if ctx.Err() != nil {
			return nil
		}
		c.setDown(err)
		c.log.Warn("amqp: consumer stopped; connecting again", "queue", c.cfg.Queue, "err", err)
		if time.Since(began) >= steadyAfter {
			b.reset()
		}
		if !sleep(ctx.Done(), b.next()) {
			return nil
		}
	}
}

// consume runs one connection until it drops or ctx ends.
func (c *Consumer) consume(ctx context.Context) error {
	conn, err := c.endpoint.dial(ctx, "spinebridge consumer "+c.cfg.Queue)
	if err != nil {
		return fmt.Errorf("amqp: connect: %w", err)
	}
	defer func() { _ = conn.CloseDeadline(time.Now().Add(closeWait)) }()
	closed := conn.NotifyClose(make(chan *amqp091.Error, 1))
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("amqp: open channel: %w", err)
	}
	if c.cfg.Declare {
		var args amqp091.Table
		if c.cfg.QueueType != "" || c.cfg.DeadLetterExchange != "" {
			args = amqp091.Table{}
		}
		if c.cfg.QueueType != "" {
			args["x-queue-type"] = c.cfg.QueueType
		}
		if c.cfg.DeadLetterExchange != "" {
			args["x-dead-letter-exchange"] = c.cfg.DeadLetterExchange
		}
		if _, err := ch.QueueDeclare(c.cfg.Queue, true, false, false, false, args); err != nil {
			return fmt.Errorf("amqp: declare queue %s: %w", c.cfg.Queue, err)
		}
	}
	if err := ch.Qos(c.cfg.Prefetch, 0, false); err != nil {
		return fmt.Errorf("amqp: set prefetch: %w", err)
	}
	deliveries, err := ch.Consume(c.cfg.Queue, c.cfg.Tag, false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("amqp: consume %s: %w", c.cfg.Queue, err)
	}
	c.setDown(nil)
	c.log.Info("amqp: consuming", "queue", c.cfg.Queue, "prefetch", c.cfg.Prefetch, "workers", c.cfg.Workers)
	var wg sync.WaitGroup
	for range c.cfg.Workers {
		wg.Go(func() { c.work(ctx, ch, deliveries) })
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	select {
	case e := <-closed:
		if e != nil {
			return fmt.Errorf("amqp: connection closed: %w", e)
		}
	default:
	}
	return errors.New("amqp: deliveries stopped (channel closed or consumer cancelled by the broker)")
}

// work hands deliveries to the receiver one at a time until they stop or ctx
// ends.
func (c *Consumer) work(ctx context.Context, ch *amqp091.Channel, deliveries <-chan amqp091.Delivery) {
	var retry backoff
	for {
		select {
		case <-ctx.Done():
			return
		case d, ok := <-deliveries:
			if !ok {
				return
			}
			// A delivery still buffered when its channel closed cannot be
			// acknowledged, and the broker sends it again: journaling it now
			// would only make a copy.
			if ch.IsClosed() {
				return
			}
			c.handle(ctx, &d, &retry)
		}
	}
}

// handle receives one delivery and settles it with the broker as the reply
// says.
func (c *Consumer) handle(ctx context.Context, d *amqp091.Delivery, retry *backoff) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), receiveTimeout)
	reply, release := c.recv(rctx, routes.Arrival{Payload: d.Body, Peer: c.peer})
	cancel()
	committed, code, id := reply.Committed, reply.Code, reply.ID
	refused := code == hl7v2.AR || code == hl7v2.CR
	var reason string
	if refused {
		reason = refusalReason(reply.Ack)
	}
	release()

	switch {
	case refused:
		retry.reset()
		if committed {
			c.log.Warn("amqp: message refused; journaled as rejected, and rejected without requeue", "queue", c.cfg.Queue, "id", uint64(id), "ack_code", string(code), "reason", reason)
		} else {
			c.log.Warn("amqp: message refused and not journaled; rejected without requeue", "queue", c.cfg.Queue, "ack_code", string(code), "reason", reason)
		}
		if err := d.Reject(false); err != nil {
			// The broker will deliver it again, and it will be refused again.
			c.log.Warn("amqp: reject failed", "queue", c.cfg.Queue, "err", err)
		}
	case committed:
		retry.reset()
		if err := d.Ack(false); err != nil {
			// The broker will deliver it again; the intake's duplicate window, when
			// set, answers that copy without journaling it twice.
			c.log.Warn("amqp: ack failed; the message will come again", "queue", c.cfg.Queue, "id", uint64(id), "err", err)
		}
	default:
		pause := retry.next()
		c.log.Warn("amqp: message not journaled; giving it back to the queue", "queue", c.cfg.Queue, "ack_code", string(code), "pause", pause)
		sleep(ctx.Done(), pause)
		if err := d.Nack(false, true); err != nil {
			c.log.Warn("amqp: nack failed; the broker requeues the message when the channel closes", "queue", c.cfg.Queue, "err", err)
		}
	}
}

// refusalReason says why the intake refused a message, from the ACK it built:
// the ERR segment's diagnostic (ERR-7, v2.5 and later) or its table 0357 code
// (ERR-3.2, or ERR-1.4 before v2.5), else the MSA-3 text. These are the
// engine's own words, never values from the message, so they may be logged.
func refusalReason(ack []byte) string {
	var m hl7v2.Message
	if len(ack) == 0 || m.Parse(ack) != nil {
		return ""
	}
	if e, ok := m.Find("ERR", 1); ok {
		if diag := e.Field(7).Bytes(); len(diag) > 0 {
			return string(diag)
		}
		if text := e.Field(3).Comp(2).Bytes(); len(text) > 0 {
			return string(text)
		}
		if text := e.Field(1).Comp(4).Sub(2).Bytes(); len(text) > 0 {
			return string(text)
		}
	}
	if msa, ok := m.Find("MSA", 1); ok {
		return string(msa.Field(3).Bytes())
	}
	return ""
}
