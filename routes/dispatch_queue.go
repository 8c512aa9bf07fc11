package routes

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// item is one delivery in a destination's queue.
type item struct {
	p    PendingDelivery
	body *body
}

// keyQueue holds one ordering key's deliveries to one destination, oldest
// record first. Only its head is ever attempted, so a key's deliveries reach
// the destination in journal order, and a head waiting for a retry holds back
// its own key only.
type keyQueue struct {
	key     string
	items   []*item
	busy    bool        // the head is being attempted
	queued  bool        // the key is in the ready list
	waiting *time.Timer // the head waits for its retry
}

// destQueue is one destination's delivery queue: keys with work ready, and
// workers taking them in turn, as many as the destination's concurrency.
type destQueue struct {
	d    *Dispatcher
	name string

	mu      sync.Mutex
	cond    *sync.Cond
	keys    map[string]*keyQueue
	ready   []*keyQueue
	depth   int
	closed  bool
	workers int // running
	want    int // the destination's concurrency: surplus workers stop
}

// newDestQueue returns a queue with no workers; setWorkers starts them.
func newDestQueue(d *Dispatcher, name string) *destQueue {
	q := &destQueue{d: d, name: name, keys: map[string]*keyQueue{}}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// setWorkers makes n workers take the queue's deliveries: more start at once,
// and a surplus stops as each finishes its attempt under way.
func (q *destQueue) setWorkers(n int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	q.want = n
	for ; q.workers < n; q.workers++ {
		q.d.wg.Add(1)
		go q.work()
	}
	if q.workers > n {
		q.cond.Broadcast()
	}
}

// add queues it behind its key's earlier deliveries. Deliveries of one key
// arrive in record order, except that a replay or revival may bring an older
// one back: it goes in its place by ID.
func (q *destQueue) add(it *item) {
	q.mu.Lock()
	defer q.mu.Unlock()
	kq := q.keys[it.p.Key]
	if kq == nil {
		kq = &keyQueue{key: it.p.Key}
		q.keys[it.p.Key] = kq
	}
	i := len(kq.items)
	for i > 0 && kq.items[i-1].p.MessageID > it.p.MessageID && !(i == 1 && kq.busy) {
		i--
	}
	kq.items = append(kq.items, nil)
	copy(kq.items[i+1:], kq.items[i:])
	kq.items[i] = it
	q.depth++
	q.gauge()
	if !kq.busy && kq.waiting == nil {
		q.markReady(kq, it.p.NotBefore)
	}
}

// markReady puts kq in the ready list now, or when notBefore comes. A key
// whose destination the table in force does not declare waits for nothing:
// its head is dead-lettered at its next attempt, and no backoff brings the
// destination back.
func (q *destQueue) markReady(kq *keyQueue, notBefore time.Time) {
	if kq.queued || kq.waiting != nil {
		return
	}
	if wait := time.Until(notBefore); wait > 0 && q.d.routing.Load().Destination(q.name) != nil {
		kq.waiting = time.AfterFunc(wait, func() {
			q.mu.Lock()
			defer q.mu.Unlock()
			kq.waiting = nil
			if !kq.busy && len(kq.items) > 0 {
				q.markReady(kq, time.Time{})
			}
		})
		return
	}
	kq.queued = true
	q.ready = append(q.ready, kq)
	q.cond.Signal()
}

// unconfigured makes the keys waiting out a backoff ready now: the table in
// force no longer declares the destination, so their heads are dead-lettered
// at once rather than when the backoff ends.
func (q *destQueue) unconfigured() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	for _, kq := range q.keys {
		// A timer that has already fired marks its key ready itself.
		if kq.waiting != nil && kq.waiting.Stop() {
			kq.waiting = nil
			if !kq.busy && len(kq.items) > 0 {
				q.markReady(kq, time.Time{})
			}
		}
	}
}

func (q *destQueue) gauge() {
	if q.d.metrics != nil {
		q.d.metrics.depth.WithLabelValues(q.name).Set(float64(q.depth))
	}
}

func (q *destQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.depth
}

// close stops the workers once their attempts under way end.
func (q *destQueue) close() {
	q.mu.Lock()
	q.closed = true
	for _, kq := range q.keys {
		if kq.waiting != nil {
			kq.waiting.Stop()
		}
	}
	q.cond.Broadcast()
	q.mu.Unlock()
}

// work takes ready keys and attempts their heads until the queue closes or
// has more workers than it wants.
func (q *destQueue) work() {
	defer q.d.wg.Done()
	for {
		q.mu.Lock()
		for len(q.ready) == 0 && !q.closed && q.workers <= q.want {
			q.cond.Wait()
		}
		if q.closed || q.workers > q.want {
			q.workers--
			q.mu.Unlock()
			return
		}
		kq := q.ready[0]
		q.ready[0] = nil
		q.ready = q.ready[1:]
		kq.queued = false
		kq.busy = true
		it := kq.items[0]
		q.mu.Unlock()

		finished := q.attempt(it)

		q.mu.Lock()
		kq.busy = false
		var notBefore time.Time
		if finished {
			kq.items[0] = nil
			kq.items = kq.items[1:]
			q.depth--
			q.gauge()
		} else {
			notBefore = it.p.NotBefore
		}
		if len(kq.items) == 0 {
			delete(q.keys, kq.key)
		} else if !q.closed {
			q.markReady(kq, notBefore)
		}
		q.mu.Unlock()
		if finished {
			q.d.released(1)
		}
	}
}

// attemptTimeout bounds one attempt when the destination sets no deadline of
// its own.
const attemptTimeout = 2 * time.Minute

// attempt makes one attempt at it's delivery and settles the outcome. It
// reports whether the delivery is finished with (delivered or dead-lettered);
// otherwise it.p.NotBefore says when to try again.
func (q *destQueue) attempt(it *item) bool {
	d := q.d
	ctx := d.attempts
	gen := d.routing.Load()
	gen.inflight.Add(1)
	defer gen.inflight.Done()

	p := &it.p
	p.Attempts++
	start := time.Now()
	var (
		data  []byte
		ctype string
		rec   *Record
		err   error
	)
	dest := gen.Destination(p.Destination)
	if dest == nil {
		// The table was reloaded, or the engine restarted, without it: nothing
		// will bring it back but an operator, who finds it among the dead
		// letters and revives it once the destination is declared again.
		err = Permanent(&NotConfiguredError{Destination: p.Destination})
	} else {
		data, ctype, rec, err = it.body.get(ctx, d)
		if ws := it.body.takeWarnings(); len(ws) > 0 {
			d.warn(ctx, p, ws)
		}
	}
	if err == nil {
		actx, cancel := context.WithTimeout(d.attempts, attemptTimeout)
		err = dest.Deliver(actx, &Delivery{
			ID: p.DeliveryID(), MessageID: p.MessageID, Route: p.Route, Destination: p.Destination,
			Attempt: p.Attempts, Key: p.Key, ContentType: ctype, Body: data,
			Type: rec.Type, Trigger: rec.Trigger, Version: rec.Version, ControlID: rec.ControlID,
			Sender: rec.Sender, NHSNumber: rec.NHSNumber, Received: rec.Received,
		})
		cancel()
		if err != nil && !IsPermanent(err) && d.routing.Load().Destination(p.Destination) == nil {
			// A reload took the destination away during the attempt, which
			// went to the old table's: a retry would find it gone.
			err = Permanent(fmt.Errorf("%w; the last attempt failed: %w", &NotConfiguredError{Destination: p.Destination}, err))
		}
	}
	took := time.Since(start)
	ev := Event{Kind: EventAttempt, Route: p.Route, Destination: p.Destination, Attempt: p.Attempts, Duration: took}
	var outcome Outcome
	switch {
	case err == nil:
		outcome = Delivered
	case IsPermanent(err) || p.Attempts >= d.cfg.Retry.Attempts:
		outcome = DeadLettered
		ev.Detail = boundedError(err)
		if !IsPermanent(err) {
			ev.Detail = fmt.Sprintf("gave up after %d attempts: %s", p.Attempts, ev.Detail)
		}
	default:
		outcome = Retrying
		ev.Detail = boundedError(err)
		wait := d.cfg.Retry.backoff(p.Attempts)
		if ra := retryAfterOf(err); ra > wait {
			wait = min(ra, d.cfg.Retry.Max)
		}
		p.NotBefore = time.Now().Add(wait)
		p.LastError = ev.Detail
	}
	ev.Outcome = outcome
	if m := d.metrics; m != nil {
		m.deliveries.WithLabelValues(p.Destination, string(outcome)).Inc()
		m.attemptTime.WithLabelValues(p.Destination).Observe(took.Seconds())
		if outcome == Delivered && rec != nil {
			m.latency.WithLabelValues(p.Destination).Observe(time.Since(rec.Received).Seconds())
		}
	}
	// The outcome is stored even while shutting down: the attempt happened.
	if serr := d.store.Settle(context.WithoutCancel(ctx), p, outcome, ev); serr != nil {
		if errors.Is(serr, ErrClosed) {
			return outcome != Retrying
		}
		d.log.Error("routes: storing a delivery's outcome", "delivery", p.DeliveryID(), "err", serr)
	}
	switch outcome {
	case DeadLettered:
		d.log.Warn("routes: delivery dead-lettered", "delivery", p.DeliveryID(), "attempts", p.Attempts, "reason", ev.Detail)
	case Retrying:
		d.log.Info("routes: delivery failed, will retry", "delivery", p.DeliveryID(), "attempt", p.Attempts, "reason", ev.Detail)
	}
	return outcome != Retrying
}

// warn records in the message's journey the issues its transform met and its
// route delivers with.
func (d *Dispatcher) warn(ctx context.Context, p *PendingDelivery, issues []Issue) {
	events := make([]Event, len(issues))
	for i, is := range issues {
		events[i] = Event{MessageID: p.MessageID, Kind: EventWarning, Route: p.Route, Detail: is.Kind + ": " + is.Text}
		if d.metrics != nil {
			d.metrics.warnings.WithLabelValues(p.Route, is.Kind).Inc()
		}
	}
	if err := d.store.Note(context.WithoutCancel(ctx), events); err != nil {
		d.log.Error("routes: recording a transform's warnings", "id", p.MessageID, "err", err)
	}
}

// maxErrorText bounds the failure text kept in events and dead letters.
const maxErrorText = 300

func boundedError(err error) string {
	s := err.Error()
	if len(s) > maxErrorText {
		s = s[:maxErrorText] + "…"
	}
	return s
}
