package amqp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/spinebridge/spinebridge/routes"
)

const (
	// closeWait bounds how long Close waits for publishes to be confirmed, and
	// then for the connection to close.
	closeWait = 5 * time.Second
	appID     = "spinebridge"
)

// Publisher is an amqp destination: it publishes each delivery to an exchange
// and reports it delivered once the broker has confirmed it. It is safe for
// concurrent use; concurrent deliveries share one connection and a few
// confirm-mode channels.
type Publisher struct {
	name    string
	set     *settings
	log     *slog.Logger
	headers map[string]any // the static headers, boxed once

	slots   chan struct{} // one per publish waiting for its confirm
	closing chan struct{} // closed by Close: no more publishes
	stop    chan struct{} // closed by Close once publishes are done: the connection loop ends
	done    chan struct{} // closed when the connection loop has ended
	once    sync.Once     // starts the connection loop, or rules it out at Close
	closed  atomic.Bool

	cur     atomic.Pointer[session] // the connected session, read without the lock
	mu      sync.Mutex
	err     error         // why the last attempt to connect failed or the connection was lost
	fails   uint64        // attempts to connect that failed so far
	changed chan struct{} // closed and replaced whenever cur, err or fails change

	next   atomic.Uint32 // round robin over channels
	tables sync.Pool     // amqp091.Table, reused for headers once a publish is written
}

var (
	_ routes.Destination = (*Publisher)(nil)
	_ routes.Concurrent  = (*Publisher)(nil)
)

func newPublisher(name string, s *settings, log *slog.Logger) *Publisher {
	p := &Publisher{
		name:    name,
		set:     s,
		log:     log,
		headers: make(map[string]any, len(s.headers)),
		slots:   make(chan struct{}, s.inFlight),
		closing: make(chan struct{}),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		changed: make(chan struct{}),
	}
	for k, v := range s.headers {
		p.headers[k] = v
	}
	p.tables.New = func() any { return amqp091.Table{} }
	return p
}

// Deliver publishes d and waits for the broker's confirm. It returns nil only
// once the broker has acknowledged the publish; see the package comment for
// the errors it returns instead.
func (p *Publisher) Deliver(ctx context.Context, d *routes.Delivery) error {
	select {
	case <-p.closing:
		return ErrClosed
	default:
	}
	key := p.set.key.render(d)
	if len(key) > maxRoutingKey {
		return routes.Permanent(fmt.Errorf("amqp: routing key of %d bytes is longer than the %d AMQP allows", len(key), maxRoutingKey))
	}
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("amqp: waiting to publish: %w", ctx.Err())
	case <-p.closing:
		return ErrClosed
	}
	defer func() { <-p.slots }()

	s, err := p.session(ctx)
	if err != nil {
		return err
	}
	if s.blocked.Load() {
		return ErrBlocked
	}
	pc, err := s.channel(p.next.Add(1))
	if err != nil {
		return fmt.Errorf("%w: open channel: %w", ErrNotConnected, err)
	}
	pd := &pending{id: d.ID, done: make(chan error, 1)}
	table := p.tables.Get().(amqp091.Table)
	msg := p.publishing(d, table)
	err = pc.publish(ctx, p.set.exchange, key, p.set.mandatory, &msg, pd)
	// The publish is written (or failed): the table can serve the next one.
	clear(table)
	p.tables.Put(table)
	switch {
	case err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()):
		return fmt.Errorf("amqp: waiting to publish: %w", err)
	case errors.Is(err, amqp091.ErrClosed):
		return fmt.Errorf("%w: publish: %w", ErrNotConnected, err)
	case err != nil:
		return fmt.Errorf("%w: publish: %w", ErrNotConfirmed, err)
	}

	timer := time.NewTimer(p.set.confirmTimeout)
	defer timer.Stop()
	select {
	case err := <-pd.done:
		return err
	case <-timer.C:
		return ErrConfirmTimeout
	case <-ctx.Done():
		return fmt.Errorf("amqp: waiting for the broker's confirm, the message may or may not have arrived: %w", ctx.Err())
	}
}

// Concurrency is the publisher's in_flight window: that many deliveries at
// once keep the window full, which is what lets the broker confirm publishes
// in groups instead of one disk write each.
func (p *Publisher) Concurrency() int { return p.set.inFlight }

// publishing builds the message for d, with its headers in t.
func (p *Publisher) publishing(d *routes.Delivery, t amqp091.Table) amqp091.Publishing {
	for k, v := range p.headers {
		t[k] = v
	}
	t[headerRoute] = d.Route
	t[headerDestination] = d.Destination
	t[headerAttempt] = int32(d.Attempt)
	if d.ControlID != "" {
		t[headerControlID] = d.ControlID
	}
	switch {
	case d.Type != "" && d.Trigger != "":
		t[headerMessageType] = d.Type + "^" + d.Trigger
	case d.Type != "":
		t[headerMessageType] = d.Type
	}
	msg := amqp091.Publishing{
		Headers:      t,
		ContentType:  d.ContentType,
		DeliveryMode: amqp091.Transient,
		MessageId:    d.ID,
		Timestamp:    d.Received,
		AppId:        appID,
		Body:         d.Body,
	}
	if p.set.persistent {
		msg.DeliveryMode = amqp091.Persistent
	}
	if d.MessageID != 0 {
		msg.CorrelationId = d.MessageID.String()
	}
	return msg
}

// Ready reports whether the publisher is connected, connecting first when it
// is not, within ctx. A broker that blocks publishers is not ready.
func (p *Publisher) Ready(ctx context.Context) error {
	s, err := p.session(ctx)
	if err != nil {
		return err
	}
	if s.blocked.Load() {
		return ErrBlocked
	}
	return nil
}

// Close waits up to 5 s for the publishes waiting for their confirm, then
// closes the connection. Deliver fails with ErrClosed after it.
func (p *Publisher) Close() error {
	if !p.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(p.closing)
	// Holding every slot means no publish is waiting for its confirm.
	t := time.NewTimer(closeWait)
	defer t.Stop()
fill:
	for range cap(p.slots) {
		select {
		case p.slots <- struct{}{}:
		case <-t.C:
			break fill
		}
	}
	close(p.stop)
	p.once.Do(func() { close(p.done) })
	<-p.done
	return nil
}

// session returns the connected session, connecting first if need be. When
// there is none it waits for the outcome of the next attempt to connect, or for
// ctx to end.
func (p *Publisher) session(ctx context.Context) (*session, error) {
	if s := p.cur.Load(); s != nil && !s.conn.IsClosed() {
		return s, nil
	}
	p.once.Do(func() { go p.run() })
	p.mu.Lock()
	fails := p.fails
	p.mu.Unlock()
	for {
		p.mu.Lock()
		s, err, changed, f := p.cur.Load(), p.err, p.changed, p.fails
		p.mu.Unlock()
		if s != nil && !s.conn.IsClosed() {
			return s, nil
		}
		if f != fails {
			return nil, fmt.Errorf("%w: %w", ErrNotConnected, err)
		}
		select {
		case <-changed:
		case <-p.closing:
			return nil, ErrClosed
		case <-ctx.Done():
			if err != nil {
				return nil, fmt.Errorf("%w: %w (and then: %w)", ErrNotConnected, err, ctx.Err())
			}
			return nil, fmt.Errorf("%w: %w", ErrNotConnected, ctx.Err())
		}
	}
}

// setState records a change of connection and wakes those waiting for one.
func (p *Publisher) setState(s *session, err error, failed bool) {
	p.mu.Lock()
	p.cur.Store(s)
	p.err = err
	if failed {
		p.fails++
	}
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

// run connects, watches the connection and connects again after it drops,
// until Close.
func (p *Publisher) run() {
	defer close(p.done)
	ctx, cancel := context.WithCancel(context.Background())
	watching := make(chan struct{})
	go func() {
		defer close(watching)
		select {
		case <-p.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	defer func() {
		cancel()
		<-watching
	}()

	var b backoff
	for {
		s, err := p.connect(ctx)
		if err != nil {
			if ctx.Err() != nil {
				p.setState(nil, ErrClosed, false)
				return
			}
			p.setState(nil, err, true)
			p.log.Warn("amqp: connect failed", "destination", p.name, "err", err)
			if !sleep(p.stop, b.next()) {
				return
			}
			continue
		}
		p.setState(s, nil, false)
		p.log.Info("amqp: connected", "destination", p.name, "channels", len(s.chans))
		began := time.Now()
		reason := p.watch(s)
		if reason == nil {
			p.setState(nil, ErrClosed, false)
			s.close()
			return
		}
		p.setState(nil, reason, false)
		s.close()
		p.log.Warn("amqp: connection lost", "destination", p.name, "err", reason)
		if time.Since(began) >= steadyAfter {
			b.reset()
		}
		if !sleep(p.stop, b.next()) {
			return
		}
	}
}

// watch follows s until its connection closes, and returns why, or nil when
// the publisher is closed first.
func (p *Publisher) watch(s *session) error {
	blocks := s.blocks
	for {
		select {
		case e, ok := <-s.closed:
			if !ok || e == nil {
				return errors.New("amqp: connection closed")
			}
			return fmt.Errorf("amqp: connection closed: %w", e)
		case b, ok := <-blocks:
			if !ok {
				blocks = nil
				continue
			}
			s.blocked.Store(b.Active)
			if b.Active {
				p.log.Warn("amqp: broker blocks publishing", "destination", p.name, "reason", b.Reason)
			} else {
				p.log.Info("amqp: broker unblocks publishing", "destination", p.name)
			}
		case <-p.stop:
			return nil
		}
	}
}

// connect dials, declares what the configuration asks for, and opens the
// channels.
func (p *Publisher) connect(ctx context.Context) (*session, error) {
	conn, err := p.set.endpoint.dial(ctx, "spinebridge destination "+p.name)
	if err != nil {
		return nil, fmt.Errorf("amqp: connect: %w", err)
	}
	s := &session{
		conn:   conn,
		closed: conn.NotifyClose(make(chan *amqp091.Error, 1)),
		blocks: conn.NotifyBlocked(make(chan amqp091.Blocking, 1)),
		chans:  make([]atomic.Pointer[pubChannel], p.set.channels),
	}
	if err := p.declare(conn); err != nil {
		s.close()
		return nil, fmt.Errorf("amqp: declare: %w", err)
	}
	for i := range s.chans {
		pc, err := s.open()
		if err != nil {
			s.close()
			return nil, fmt.Errorf("amqp: open channel: %w", err)
		}
		s.chans[i].Store(pc)
	}
	return s, nil
}

// declare declares the exchange and queue the configuration names, if any.
func (p *Publisher) declare(conn *amqp091.Connection) error {
	set := p.set
	if set.exchangeType == "" && set.queue == "" {
		return nil
	}
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	if set.exchangeType != "" {
		if err := ch.ExchangeDeclare(set.exchange, set.exchangeType, set.durable, false, false, false, nil); err != nil {
			return fmt.Errorf("exchange %s: %w", set.exchange, err)
		}
	}
	if set.queue == "" {
		return nil
	}
	var args amqp091.Table
	if set.queueType != "" {
		args = amqp091.Table{"x-queue-type": set.queueType}
	}
	if _, err := ch.QueueDeclare(set.queue, set.durable, false, false, false, args); err != nil {
		return fmt.Errorf("queue %s: %w", set.queue, err)
	}
	if set.exchange != "" {
		if err := ch.QueueBind(set.queue, set.bindingKey, set.exchange, false, nil); err != nil {
			return fmt.Errorf("bind queue %s to exchange %s: %w", set.queue, set.exchange, err)
		}
	}
	return nil
}

// session is one connection and its publishing channels.
type session struct {
	conn    *amqp091.Connection
	closed  chan *amqp091.Error
	blocks  chan amqp091.Blocking
	blocked atomic.Bool // the broker has blocked publishing (a memory or disk alarm)

	mu      sync.Mutex // serialises reopening channels, and closing
	closing bool       // no channel may be opened any more
	chans   []atomic.Pointer[pubChannel]
	wg      sync.WaitGroup // the channels' confirm goroutines
}

// channel returns the nth channel round robin, reopening it if the broker has
// closed it (as it does when a publish names an exchange that does not exist).
func (s *session) channel(n uint32) (*pubChannel, error) {
	slot := &s.chans[n%uint32(len(s.chans))]
	if pc := slot.Load(); !pc.dead.Load() {
		return pc, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if pc := slot.Load(); !pc.dead.Load() {
		return pc, nil
	}
	if s.closing {
		return nil, amqp091.ErrClosed
	}
	pc, err := s.open()
	if err != nil {
		return nil, err
	}
	slot.Store(pc)
	return pc, nil
}

// open opens a channel in confirm mode and starts its confirm goroutine.
func (s *session) open() (*pubChannel, error) {
	ch, err := s.conn.Channel()
	if err != nil {
		return nil, err
	}
	// Unbuffered, and read by one goroutine: the broker sends a message's return
	// before its confirm, and the library hands them over in that order, so the
	// goroutine has recorded the return before it takes the confirm.
	confirms := ch.NotifyPublish(make(chan amqp091.Confirmation))
	returns := ch.NotifyReturn(make(chan amqp091.Return))
	closes := ch.NotifyClose(make(chan *amqp091.Error, 1))
	if err := ch.Confirm(false); err != nil {
		ch.Close()
		return nil, err
	}
	pc := &pubChannel{ch: ch, lock: make(chan struct{}, 1), pending: make(map[uint64]*pending)}
	s.wg.Go(func() { pc.run(confirms, returns, closes) })
	return pc, nil
}

// close closes the connection and waits for the channels' goroutines, which
// fail the publishes still waiting for their confirm.
func (s *session) close() {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	_ = s.conn.CloseDeadline(time.Now().Add(closeWait))
	s.wg.Wait()
}

// pending is a publish waiting for its confirm.
type pending struct {
	id         string // its message-id, to match a return
	returned   bool
	returnCode uint16
	returnText string
	done       chan error // receives the outcome, once
}

// pubChannel is a confirm-mode channel and the publishes waiting on it.
type pubChannel struct {
	ch   *amqp091.Channel
	lock chan struct{} // held across a publish, so tags follow the order of publishes
	seq  uint64        // the tag of the last publish; guarded by lock

	mu      sync.Mutex
	pending map[uint64]*pending // by delivery tag
	dead    atomic.Bool         // the channel has closed; set under mu
}

// publish publishes msg and registers pd to receive its outcome. The broker
// numbers the publishes on a channel 1, 2, 3… in the order they reach it, and
// the lock keeps ours in the same order, so pd is registered under its tag
// before the publish can be confirmed.
func (c *pubChannel) publish(ctx context.Context, exchange, key string, mandatory bool, msg *amqp091.Publishing, pd *pending) error {
	select {
	case c.lock <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-c.lock }()
	c.mu.Lock()
	if c.dead.Load() {
		c.mu.Unlock()
		return amqp091.ErrClosed
	}
	c.seq++
	tag := c.seq
	c.pending[tag] = pd
	c.mu.Unlock()

	dc, err := c.ch.PublishWithDeferredConfirm(exchange, key, mandatory, false, *msg)
	if err == nil && (dc == nil || dc.DeliveryTag != tag) {
		// Cannot happen while this channel publishes only here; if it did, no
		// confirm on it could be trusted, so close it and let every publish on it
		// fail and be retried.
		c.ch.Close()
		return fmt.Errorf("delivery tags out of step on the channel (expected %d)", tag)
	}
	if err != nil {
		// The library takes the tag back when a publish fails.
		c.mu.Lock()
		if c.pending[tag] == pd {
			delete(c.pending, tag)
		}
		c.seq--
		c.mu.Unlock()
		return err
	}
	return nil
}

// run takes the channel's returns and confirms in the order the broker sent
// them, until the channel closes, and then fails the publishes still waiting.
func (c *pubChannel) run(confirms <-chan amqp091.Confirmation, returns <-chan amqp091.Return, closes <-chan *amqp091.Error) {
	for confirms != nil || returns != nil {
		select {
		case r, ok := <-returns:
			if !ok {
				returns = nil
				continue
			}
			c.returned(&r)
		case cf, ok := <-confirms:
			if !ok {
				confirms = nil
				continue
			}
			c.confirmed(cf)
		}
	}
	cause := fmt.Errorf("%w: channel closed", ErrNotConfirmed)
	select {
	case e := <-closes:
		if e != nil {
			cause = fmt.Errorf("%w: %w", ErrNotConfirmed, e)
		}
	default:
	}
	c.mu.Lock()
	c.dead.Store(true)
	for tag, pd := range c.pending {
		delete(c.pending, tag)
		pd.done <- cause
	}
	c.mu.Unlock()
}

// returned marks the publish r returns. A return names no delivery tag, so it
// is matched by message-id to the oldest publish with that id still waiting:
// the broker returns messages in the order they were published.
func (c *pubChannel) returned(r *amqp091.Return) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var match *pending
	var oldest uint64
	for tag, pd := range c.pending {
		if pd.id == r.MessageId && !pd.returned && (match == nil || tag < oldest) {
			match, oldest = pd, tag
		}
	}
	if match != nil {
		match.returned = true
		match.returnCode = r.ReplyCode
		match.returnText = r.ReplyText
	}
}

// confirmed hands a confirm's outcome to the publish it is for.
func (c *pubChannel) confirmed(cf amqp091.Confirmation) {
	c.mu.Lock()
	pd := c.pending[cf.DeliveryTag]
	delete(c.pending, cf.DeliveryTag)
	c.mu.Unlock()
	switch {
	case pd == nil:
		// Its publish failed and took the entry back.
	case !cf.Ack:
		pd.done <- ErrNacked
	case pd.returned:
		pd.done <- fmt.Errorf("%w: %d %s", ErrUnroutable, pd.returnCode, pd.returnText)
	default:
		pd.done <- nil
	}
}
