package routes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
)

// Match is one route a message matched, as the dispatcher needs it.
type Match struct {
	Route     string
	Transform string // "" delivers the original bytes
	Validate  bool
	Reject    IssueKinds // the transform's issues that refuse the message
	Key       string     // the ordering key; "" means the inbound connection
	To        []string   // destination names
	Ack       AckPoint   // the route's acknowledgement point; "" leaves it to the listener
}

// Routing is a loaded routing table as the dispatcher sees it. The dispatcher
// calls Match from one goroutine at a time; Destination from many.
type Routing interface {
	// Match appends to dst the routes rec matches, in table order. m is rec
	// parsed, or nil for a record that is not HL7 v2.
	Match(rec *Record, m *hl7v2.Message, dst []Match) ([]Match, error)
	// Destination returns the destination declared under name, or nil.
	Destination(name string) Destination
	// Concurrency is how many deliveries destination name may have in flight,
	// or 0 to leave it to DispatcherConfig.Concurrency.
	Concurrency(name string) int
	// HoldsAcks reports whether any route acknowledges at AckProcessed, so
	// that Process need not match messages when none does.
	HoldsAcks() bool
	// Close releases the table's destinations.
	Close() error
}

// Store is the journal with its outbox, as Local provides both.
type Store interface {
	Journal
	Outbox
}

// RetryPolicy is how failed deliveries are retried: exponential backoff from
// Initial, doubling up to Max, each pause drawn between half and all of its
// value so that destinations recovering are not hit in step; after Attempts
// attempts in all the delivery is dead-lettered.
type RetryPolicy struct {
	Initial  time.Duration
	Max      time.Duration
	Attempts int
}

// backoff is the pause before attempt n+1 after n failed attempts.
func (p RetryPolicy) backoff(n int) time.Duration {
	d := p.Initial
	for i := 1; i < n && d < p.Max; i++ {
		d *= 2
	}
	d = min(d, p.Max)
	return d/2 + rand.N(d/2+1)
}

// DispatcherConfig configures a Dispatcher.
type DispatcherConfig struct {
	Store        Store
	Routing      Routing
	Transformers map[string]Transformer
	// Validate checks a transformed body when a route asks for validation; a
	// failure dead-letters the delivery as invalid output.
	Validate func(body []byte) error
	// Concurrency is how many deliveries each destination has in flight at
	// most, unless the routing table says otherwise for it (Routing.Concurrency);
	// 8 when zero. Deliveries with one key are never in flight together.
	Concurrency int
	// Retry is the retry policy; 1 s, 5 min and 10 attempts when zero.
	Retry RetryPolicy
	// MaxPending bounds the deliveries held in memory: routing pauses above it
	// (the records wait in the journal); 20,000 when zero.
	MaxPending int
	// AckPoint is the listeners' acknowledgement point; with AckProcessed
	// (here or on a route) Process holds the ACK until the message is routed
	// and transformed.
	AckPoint AckPoint
	Metrics  *Metrics
	Log      *slog.Logger
}

// Dispatcher moves journaled records along their routes: it reads each record
// after the cursor in ID order, matches it against the routing table, stores
// one delivery per destination (Outbox.Routed), and hands the deliveries to the
// destinations' queues, which deliver them with retries and dead letters.
type Dispatcher struct {
	cfg     DispatcherConfig
	store   Store
	log     *slog.Logger
	metrics *Metrics
	routing atomic.Pointer[generation]

	mu     sync.Mutex
	queues map[string]*destQueue
	ctx    context.Context // Run's
	// attempts is the context of delivery attempts: it outlives Run's by
	// shutdownGrace, so that attempts under way at shutdown can finish.
	attempts     context.Context
	stopAttempts context.CancelFunc

	pending    atomic.Int64  // deliveries held in memory
	drained    chan struct{} // signalled when pending drops below MaxPending
	wake       chan struct{} // replays asked for through this process
	replayDue  atomic.Bool   // replays may be waiting: at start, and after Replay
	cursor     atomic.Uint64
	routedUpTo chan struct{} // closed and replaced each time the cursor moves
	routedMu   sync.Mutex

	wg sync.WaitGroup
}

// generation is one routing table and the deliveries in flight through it;
// a replaced table is closed once they are done.
type generation struct {
	Routing
	inflight sync.WaitGroup
	mu       sync.Mutex // Match serves one goroutine at a time: the router, or Process
}

func (g *generation) match(rec *Record, m *hl7v2.Message, dst []Match) ([]Match, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.Match(rec, m, dst)
}

// NewDispatcher returns a dispatcher; Run starts it.
func NewDispatcher(cfg DispatcherConfig) (*Dispatcher, error) {
	if cfg.Store == nil || cfg.Routing == nil {
		return nil, errors.New("dispatcher: a store and a routing table are required")
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 8
	}
	if cfg.Retry.Initial <= 0 {
		cfg.Retry.Initial = time.Second
	}
	if cfg.Retry.Max <= 0 {
		cfg.Retry.Max = 5 * time.Minute
	}
	cfg.Retry.Max = max(cfg.Retry.Max, cfg.Retry.Initial)
	if cfg.Retry.Attempts <= 0 {
		cfg.Retry.Attempts = 10
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 20000
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	d := &Dispatcher{
		cfg:        cfg,
		store:      cfg.Store,
		log:        cfg.Log,
		metrics:    cfg.Metrics,
		queues:     map[string]*destQueue{},
		drained:    make(chan struct{}, 1),
		wake:       make(chan struct{}, 1),
		routedUpTo: make(chan struct{}),
	}
	d.routing.Store(&generation{Routing: cfg.Routing})
	d.replayDue.Store(true) // replays stored while no engine ran
	return d, nil
}

// SetRouting replaces the routing table: records routed from now on use r, and
// the old table is closed once the deliveries in flight through it are done.
// Deliveries to a destination r does not declare are dead-lettered
// (NotConfiguredError): those waiting to be retried at once, one in flight
// when its attempt ends.
func (d *Dispatcher) SetRouting(r Routing) {
	old := d.routing.Swap(&generation{Routing: r})
	d.mu.Lock()
	for name, q := range d.queues {
		q.setWorkers(d.concurrency(r, name))
		if r.Destination(name) == nil {
			q.unconfigured()
		}
	}
	d.mu.Unlock()
	go func() {
		old.inflight.Wait()
		if err := old.Close(); err != nil {
			d.log.Warn("routes: closing the replaced table's destinations", "err", err)
		}
	}()
}

// Run routes and delivers until ctx ends, then waits for the attempts in
// flight to finish and returns. What was not delivered stays in the outbox for
// the next run.
func (d *Dispatcher) Run(ctx context.Context) error {
	d.ctx = ctx
	d.attempts, d.stopAttempts = context.WithCancel(context.WithoutCancel(ctx))
	defer d.stopAttempts()
	next, err := d.store.Cursor(ctx)
	if err != nil {
		return stopped(ctx, err)
	}
	// Waiters may already be parked (ResumeAppAcks starts beside Run): wake
	// them, since for records an earlier run routed no later move of the
	// cursor may ever come.
	d.advance(next)
	// Deliveries stored by an earlier run, in ID order, which keeps each key's
	// order.
	var loaded []PendingDelivery
	if err := d.store.Pending(ctx, func(p PendingDelivery) bool {
		loaded = append(loaded, p)
		return true
	}); err != nil {
		return stopped(ctx, err)
	}
	d.enqueue(loaded, nil)
	if len(loaded) > 0 {
		d.log.Info("routes: resuming deliveries from the last run", "pending", len(loaded))
	}
	err = d.route(ctx)
	d.mu.Lock()
	for _, q := range d.queues {
		q.close()
	}
	d.mu.Unlock()
	// An attempt cut short stays pending and is made again at the next start.
	stop := time.AfterFunc(shutdownGrace, d.stopAttempts)
	defer stop.Stop()
	d.wg.Wait()
	return stopped(ctx, err)
}

// stopped is what Run returns for err: nil when err is ctx's cancellation,
// which is a stop, whether it came while routing or while starting.
func stopped(ctx context.Context, err error) error {
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil
	}
	return err
}

// shutdownGrace is how long attempts under way at shutdown may go on.
const shutdownGrace = 10 * time.Second

// routeBatch is how many records one pass of the router reads and stores in
// one write.
const routeBatch = 256

// route is the router loop: replays first, then the records after the cursor,
// then wait for more.
func (d *Dispatcher) route(ctx context.Context) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var (
		msg     hl7v2.Message
		matches []Match
	)
	for {
		if d.replayDue.Swap(false) {
			if err := d.runReplays(ctx, &msg); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				d.log.Error("routes: replaying", "err", err)
				d.replayDue.Store(true) // try again on the next pass
			}
		}
		for d.pending.Load() >= int64(d.cfg.MaxPending) {
			select {
			case <-d.drained:
			case <-tick.C:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		from := ID(d.cursor.Load())
		var (
			pending []PendingDelivery
			events  []Event
			bodies  []*body
			last    = from - 1
		)
		err := d.store.Read(ctx, from, routeBatch, func(rec *Record) bool {
			last = rec.ID
			if rec.Status != StatusAccepted {
				return true // refused, duplicate or failed: nothing to route
			}
			p, ev, bs := d.routeOne(rec, &msg, matches[:0], EventRouted)
			pending, events, bodies = append(pending, p...), append(events, ev...), append(bodies, bs...)
			return true
		})
		if err != nil {
			return err
		}
		if last >= from {
			if err := d.store.Routed(ctx, last+1, pending, events); err != nil {
				return err
			}
			d.enqueue(pending, bodies)
			d.advance(last + 1)
			continue
		}
		select {
		case <-d.store.Appended():
		case <-d.wake:
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// routeOne matches rec and returns its deliveries, its journey events and the
// bodies the deliveries share (one per transform).
func (d *Dispatcher) routeOne(rec *Record, msg *hl7v2.Message, matches []Match, kind EventKind) ([]PendingDelivery, []Event, []*body) {
	var parsed *hl7v2.Message
	if rec.Format == FormatHL7v2 {
		if err := msg.Parse(rec.Raw); err == nil {
			parsed = msg
		}
	}
	matches, err := d.routing.Load().match(rec, parsed, matches)
	if err != nil {
		if d.metrics != nil {
			d.metrics.routeErrors.Inc()
		}
		d.log.Error("routes: routing failed", "id", rec.ID, "err", err)
		return nil, []Event{{MessageID: rec.ID, Kind: EventRouteError, Detail: err.Error()}}, nil
	}
	if len(matches) == 0 {
		if d.metrics != nil {
			d.metrics.unrouted.Inc()
		}
		return nil, []Event{{MessageID: rec.ID, Kind: EventUnrouted}}, nil
	}
	var (
		pending []PendingDelivery
		events  []Event
		bodies  []*body
	)
	shared := map[string]*body{}
	for _, m := range matches {
		if d.metrics != nil {
			d.metrics.routed.WithLabelValues(m.Route).Inc()
		}
		events = append(events, Event{MessageID: rec.ID, Kind: kind, Route: m.Route, Detail: strings.Join(m.To, ", ")})
		key := m.Key
		if key == "" {
			key = rec.Listener + " " + rec.Peer
		}
		bk := bodyKey(m.Transform, m.Validate, m.Reject)
		b := shared[bk]
		if b == nil {
			b = &body{rec: rec, transform: m.Transform, validate: m.Validate, reject: m.Reject}
			shared[bk] = b
		}
		for _, to := range m.To {
			pending = append(pending, PendingDelivery{MessageID: rec.ID, Route: m.Route, Destination: to,
				Key: key, Transform: m.Transform, Validate: m.Validate, Reject: m.Reject})
			bodies = append(bodies, b)
		}
	}
	return pending, events, bodies
}

// advance moves the routed cursor and wakes whoever waits for it.
func (d *Dispatcher) advance(next ID) {
	d.cursor.Store(uint64(next))
	d.routedMu.Lock()
	close(d.routedUpTo)
	d.routedUpTo = make(chan struct{})
	d.routedMu.Unlock()
}

// WaitRouted blocks until record id has been routed, or ctx ends.
func (d *Dispatcher) WaitRouted(ctx context.Context, id ID) error {
	for {
		d.routedMu.Lock()
		ch := d.routedUpTo
		d.routedMu.Unlock()
		if ID(d.cursor.Load()) > id {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// runReplays routes again the records a replay was asked for.
func (d *Dispatcher) runReplays(ctx context.Context, msg *hl7v2.Message) error {
	ids, err := d.store.Replays(ctx)
	if err != nil || len(ids) == 0 {
		return err
	}
	for _, id := range ids {
		rec, err := d.store.Get(ctx, id)
		if err != nil {
			return err
		}
		pending, events, bodies := d.routeOne(rec, msg, nil, EventRouted)
		if err := d.store.Replayed(ctx, id, pending, events); err != nil {
			return err
		}
		d.enqueue(pending, bodies)
	}
	return nil
}

// Process is the intake's hook for the "processed" acknowledgement point: when
// the listeners' point, or a route rec matches, says processed, it waits until
// rec is routed and its deliveries stored, and runs its routes' transforms and
// validation; an error there (or in routing) is the message's AE. Otherwise it
// returns at once and the ACK leaves after the durable write. It transforms
// apart from the deliveries, which transform again when they are made.
func (d *Dispatcher) Process(ctx context.Context, rec *Record) error {
	gen := d.routing.Load()
	if d.cfg.AckPoint != AckProcessed && !gen.HoldsAcks() {
		return nil // the common case: the ACK leaves after the durable write
	}
	matches, err := d.match(gen, rec)
	if err != nil {
		return err
	}
	processed := d.cfg.AckPoint == AckProcessed
	for _, m := range matches {
		processed = processed || m.Ack == AckProcessed
	}
	if !processed {
		return nil
	}
	return d.processed(ctx, rec, matches)
}

// ErrUnrouted is Processed's answer for a message that no route takes.
var ErrUnrouted = errors.New("no route accepts this message")

// Processed waits until rec is routed and the transforms of the routes it
// matches have run, whatever the acknowledgement point: nil when every one
// succeeded, ErrUnrouted when no route matches, else the failure. The
// application acknowledgement (MSH-16) of a message is made from its answer.
func (d *Dispatcher) Processed(ctx context.Context, rec *Record) error {
	matches, err := d.match(d.routing.Load(), rec)
	if err != nil {
		return err
	}
	if len(matches) == 0 {
		return ErrUnrouted
	}
	return d.processed(ctx, rec, matches)
}

// Note adds events to their messages' journeys.
func (d *Dispatcher) Note(ctx context.Context, events ...Event) error {
	return d.store.Note(ctx, events)
}

// Events returns a message's journey.
func (d *Dispatcher) Events(ctx context.Context, id ID) ([]Event, error) {
	return d.store.Events(ctx, id)
}

// match matches rec against gen's table, parsing it when it is HL7 v2.
func (d *Dispatcher) match(gen *generation, rec *Record) ([]Match, error) {
	var msg *hl7v2.Message
	if rec.Format == FormatHL7v2 {
		if m, err := hl7v2.Parse(rec.Raw); err == nil {
			msg = m
		}
	}
	matches, err := gen.match(rec, msg, nil)
	if err != nil {
		return nil, fmt.Errorf("routing: %w", err)
	}
	return matches, nil
}

// processed waits until rec is routed, then runs the transforms of matches.
func (d *Dispatcher) processed(ctx context.Context, rec *Record, matches []Match) error {
	if err := d.WaitRouted(ctx, rec.ID); err != nil {
		return err
	}
	for _, m := range matches {
		if m.Transform == "" {
			continue
		}
		b := &body{id: rec.ID, rec: rec, transform: m.Transform, validate: m.Validate, reject: m.Reject}
		if _, _, _, err := b.get(ctx, d); err != nil {
			return fmt.Errorf("route %s: %w", m.Route, err)
		}
	}
	return nil
}

// Replay asks for messages to be routed and delivered again, with the routing
// table as it stands now.
func (d *Dispatcher) Replay(ctx context.Context, ids ...ID) error {
	for _, id := range ids {
		if err := d.store.RequestReplay(ctx, id); err != nil {
			return err
		}
	}
	d.replayDue.Store(true)
	select {
	case d.wake <- struct{}{}:
	default:
	}
	return nil
}

// ReviveDeadLetters sends the dead letters for destination ("" for all) again
// and returns how many. Those of a destination the table in force does not
// declare stay dead letters, since no attempt could reach it; the others are
// sent again all the same, and the error then holds a NotConfiguredError
// (ErrNotConfigured) for each such destination, saying how many stay.
func (d *Dispatcher) ReviveDeadLetters(ctx context.Context, destination string) (int, error) {
	gen := d.routing.Load()
	var letters []DeadLetter
	kept := map[string]int{}
	if err := d.store.DeadLetters(ctx, destination, func(dl DeadLetter) bool {
		if gen.Destination(dl.Destination) == nil {
			kept[dl.Destination]++
		} else {
			letters = append(letters, dl)
		}
		return true
	}); err != nil {
		return 0, err
	}
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(kept)) {
		errs = append(errs, &NotConfiguredError{Destination: name, Kept: kept[name]})
	}
	if len(letters) == 0 {
		return 0, errors.Join(errs...)
	}
	pending, err := d.store.Revive(ctx, letters, Event{Kind: EventRevived})
	if err != nil {
		return 0, err
	}
	d.enqueue(pending, nil)
	return len(pending), errors.Join(errs...)
}

// enqueue hands deliveries to their destinations' queues. bodies, when not
// nil, holds each delivery's shared body; deliveries loaded from the store
// share one body per record and transform.
func (d *Dispatcher) enqueue(pending []PendingDelivery, bodies []*body) {
	if len(pending) == 0 {
		return
	}
	if bodies == nil {
		bodies = make([]*body, len(pending))
		shared := map[[2]string]*body{}
		for i, p := range pending {
			k := [2]string{p.MessageID.String(), bodyKey(p.Transform, p.Validate, p.Reject)}
			if shared[k] == nil {
				shared[k] = &body{id: p.MessageID, transform: p.Transform, validate: p.Validate, reject: p.Reject}
			}
			bodies[i] = shared[k]
		}
	}
	d.pending.Add(int64(len(pending)))
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range pending {
		p := &pending[i]
		q := d.queues[p.Destination]
		if q == nil {
			q = newDestQueue(d, p.Destination)
			q.setWorkers(d.concurrency(d.routing.Load(), p.Destination))
			d.queues[p.Destination] = q
		}
		q.add(&item{p: *p, body: bodies[i]})
	}
}

// concurrency is how many deliveries destination name may have in flight
// under r.
func (d *Dispatcher) concurrency(r Routing, name string) int {
	if n := r.Concurrency(name); n > 0 {
		return n
	}
	return d.cfg.Concurrency
}

// released counts deliveries settled for good.
func (d *Dispatcher) released(n int) {
	if d.pending.Add(-int64(n)) < int64(d.cfg.MaxPending) {
		select {
		case d.drained <- struct{}{}:
		default:
		}
	}
}

// QueueDepths returns the deliveries waiting per destination.
func (d *Dispatcher) QueueDepths() map[string]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]int, len(d.queues))
	for name, q := range d.queues {
		out[name] = q.len()
	}
	return out
}

// body is what a record's deliveries through one transform send: made once,
// on first use, and shared by them.
type body struct {
	mu        sync.Mutex
	id        ID
	rec       *Record // the record; nil until read for deliveries loaded from the store
	transform string
	validate  bool
	reject    IssueKinds

	done     bool
	data     []byte
	ctype    string
	err      error   // permanent: the transform or validation failed
	warnings []Issue // the issues met that the route delivers with
	told     bool    // warnings has been handed out
}

// bodyKey tells apart the bodies a record's deliveries need: those of routes
// with the same transform, validation and rejections are the same.
func bodyKey(transform string, validate bool, reject IssueKinds) string {
	k := transform
	if validate {
		k += "+validate"
	}
	if reject != 0 {
		k += "+reject:" + reject.String()
	}
	return k
}

// takeWarnings returns the body's warnings the first time it is asked, and
// nothing after, so that its deliveries record them once.
func (b *body) takeWarnings() []Issue {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.told || !b.done {
		return nil
	}
	b.told = true
	return b.warnings
}

// get returns the body and the record it was made from (Raw dropped once a
// transform has run), making it on first use. An error that is not Permanent
// (the record could not be read) is not kept: the next attempt tries again.
func (b *body) get(ctx context.Context, d *Dispatcher) ([]byte, string, *Record, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return b.data, b.ctype, b.rec, b.err
	}
	if b.rec == nil {
		rec, err := d.store.Get(ctx, b.id)
		if err != nil {
			return nil, "", nil, err
		}
		b.rec = rec
	}
	b.done = true
	rec := b.rec
	if b.transform == "" {
		b.data, b.ctype = rec.Raw, rawContentType(rec)
		return b.data, b.ctype, rec, nil
	}
	t := d.cfg.Transformers[b.transform]
	if t == nil {
		b.err = Permanent(fmt.Errorf("transform %q is not known to this engine", b.transform))
		return nil, "", rec, b.err
	}
	data, ctype, warnings, err := transform(t, rec, b.reject)
	b.warnings = warnings
	if err == nil && b.validate && d.cfg.Validate != nil {
		if verr := d.cfg.Validate(data); verr != nil {
			err = fmt.Errorf("invalid output: %w", verr)
		}
	}
	if err != nil {
		b.err = Permanent(fmt.Errorf("transform %s: %w", b.transform, err))
		return nil, "", rec, b.err
	}
	b.data, b.ctype = data, ctype
	// Keep the output and the record's small fields, not its raw bytes.
	meta := *rec
	meta.Raw, meta.Ack = nil, nil
	b.rec = &meta
	return b.data, b.ctype, b.rec, nil
}

func rawContentType(rec *Record) string {
	if rec.Format == FormatCDA {
		return ContentTypeXML
	}
	return ContentTypeHL7v2
}
