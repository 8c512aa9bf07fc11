package routes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
)

// fakeRouting sends every record to the destinations in to, on one route, keyed
// by NHS number; records whose control id is in failMatch make Match fail.
type fakeRouting struct {
	to        []string
	transform string
	dests     map[string]Destination
	closed    chan struct{}
	ack       AckPoint
	reject    IssueKinds
	conc      map[string]int // Concurrency by destination
}

func (f *fakeRouting) Match(rec *Record, m *hl7v2.Message, dst []Match) ([]Match, error) {
	if m == nil {
		return nil, errors.New("not HL7 v2")
	}
	if rec.ControlID == "UNROUTED" {
		return dst, nil
	}
	return append(dst, Match{Route: "all", Transform: f.transform, To: f.to, Key: rec.NHSNumber, Ack: f.ack, Reject: f.reject}), nil
}

func (f *fakeRouting) Destination(name string) Destination { return f.dests[name] }

func (f *fakeRouting) Concurrency(name string) int { return f.conc[name] }

func (f *fakeRouting) HoldsAcks() bool { return f.ack == AckProcessed }

func (f *fakeRouting) Close() error {
	if f.closed != nil {
		close(f.closed)
	}
	return nil
}

// recorder is a destination that keeps what it was given and fails as told.
type recorder struct {
	mu  sync.Mutex
	got []Delivery
	ids map[string]int // attempts per delivery id
	// fail decides each attempt's result; nil accepts everything.
	fail func(d *Delivery) error
}

func newRecorder(fail func(d *Delivery) error) *recorder {
	return &recorder{ids: map[string]int{}, fail: fail}
}

func (r *recorder) Deliver(ctx context.Context, d *Delivery) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ids[d.ID]++
	if r.fail != nil {
		if err := r.fail(d); err != nil {
			return err
		}
	}
	c := *d
	c.Body = slices.Clone(d.Body)
	r.got = append(r.got, c)
	return nil
}

func (r *recorder) Ready(context.Context) error { return nil }
func (r *recorder) Close() error                { return nil }

func (r *recorder) delivered() []Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// upperTransform stands in for the mapping engine: it upper-cases the message,
// fails one holding BADMAP and finds an issue with PID-3 in one holding BADNHS.
type upperTransform struct{}

func (u upperTransform) Transform(dst []byte, rec *Record) ([]byte, string, error) {
	out, ctype, _, err := u.TransformIssues(dst, rec, nil)
	return out, ctype, err
}

func (upperTransform) TransformIssues(dst []byte, rec *Record, issues []Issue) ([]byte, string, []Issue, error) {
	if strings.Contains(string(rec.Raw), "BADMAP") {
		return dst, "", issues, errors.New("no mapping for this message")
	}
	if strings.Contains(string(rec.Raw), "BADNHS") {
		issues = append(issues, Issue{Kind: "nhs-number", At: hl7v2.Location{Segment: "PID", Occurrence: 1, Field: 3, Repetition: 1, Component: 1},
			Text: "PID[1]-3[1].1: NHS number fails its Modulus 11 check"})
	}
	return append(dst, strings.ToUpper(string(rec.Raw))...), ContentTypeFHIR, issues, nil
}

// startDispatcher runs a dispatcher over j until the test ends or stop is
// called.
func startDispatcher(t *testing.T, cfg DispatcherConfig) (d *Dispatcher, stop func()) {
	t.Helper()
	if cfg.Retry == (RetryPolicy{}) {
		cfg.Retry = RetryPolicy{Initial: time.Millisecond, Max: 5 * time.Millisecond, Attempts: 5}
	}
	if cfg.Transformers == nil {
		cfg.Transformers = map[string]Transformer{"upper": upperTransform{}}
	}
	d, err := NewDispatcher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return d, stop
}

// waitFor polls cond until it holds, failing the test after a generous limit.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// appendRecords journals n accepted ADT messages spread over keys patients.
func appendRecords(t *testing.T, j Journal, n, keys int, start int) []ID {
	t.Helper()
	ids := make([]ID, n)
	for i := range n {
		rec := testRecord(start + i)
		rec.NHSNumber = fmt.Sprintf("99900000%02d", (start+i)%keys)
		ids[i] = mustAppend(t, j, rec)
	}
	return ids
}

// checkOrder fails unless every key's deliveries came in ID order.
func checkOrder(t *testing.T, name string, got []Delivery) {
	t.Helper()
	last := map[string]ID{}
	for _, d := range got {
		if d.MessageID <= last[d.Key] {
			t.Errorf("%s: record %d delivered after %d for key %s", name, d.MessageID, last[d.Key], d.Key)
		}
		last[d.Key] = d.MessageID
	}
}

func TestDispatchDeliversOncePerDestinationInOrderThroughFailures(t *testing.T) {
	j, _ := openTest(t)
	good := newRecorder(nil)
	// flaky fails every third attempt, retryably, and names a wait for some.
	var n int
	flaky := newRecorder(func(d *Delivery) error {
		n++
		switch n % 3 {
		case 0:
			return errors.New("connection reset")
		case 1:
			if n%7 == 1 {
				return RetryAfter(errors.New("429 too many requests"), time.Millisecond)
			}
		}
		return nil
	})
	metrics := NewMetrics()
	routing := &fakeRouting{to: []string{"good", "flaky"}, transform: "upper",
		dests: map[string]Destination{"good": good, "flaky": flaky}}
	startDispatcher(t, DispatcherConfig{Store: j, Routing: routing, Concurrency: 4, Metrics: metrics,
		Retry: RetryPolicy{Initial: time.Millisecond, Max: 2 * time.Millisecond, Attempts: 100}})
	ids := appendRecords(t, j, 300, 7, 0)

	for name, r := range map[string]*recorder{"good": good, "flaky": flaky} {
		waitFor(t, name+" to get every message", func() bool { return len(r.delivered()) >= len(ids) })
		got := r.delivered()
		if len(got) != len(ids) {
			t.Errorf("%s: %d deliveries, want %d", name, len(got), len(ids))
		}
		seen := map[ID]bool{}
		for _, d := range got {
			if seen[d.MessageID] {
				t.Errorf("%s: record %d delivered twice", name, d.MessageID)
			}
			seen[d.MessageID] = true
			if d.ContentType != ContentTypeFHIR || !strings.HasPrefix(string(d.Body), "MSH|^~\\&|PAS|") {
				t.Errorf("%s: delivery %s is not the transformed message: %q %.20q", name, d.ID, d.ContentType, d.Body)
			}
			if want := fmt.Sprintf("%d.all.%s", d.MessageID, name); d.ID != want {
				t.Errorf("%s: delivery id %q, want %q", name, d.ID, want)
			}
		}
		checkOrder(t, name, got)
	}
	// A retried delivery keeps its id: the flaky destination saw more attempts
	// than deliveries, under as many ids as deliveries.
	flaky.mu.Lock()
	retried := 0
	for _, c := range flaky.ids {
		if c > 1 {
			retried++
		}
	}
	distinct := len(flaky.ids)
	flaky.mu.Unlock()
	if retried == 0 || distinct != len(ids) {
		t.Errorf("flaky: %d ids, %d retried; want %d ids, some retried", distinct, retried, len(ids))
	}

	ctx := context.Background()
	var left int
	if err := j.Pending(ctx, func(PendingDelivery) bool { left++; return true }); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the outbox to empty", func() bool {
		left = 0
		_ = j.Pending(ctx, func(PendingDelivery) bool { left++; return true })
		return left == 0
	})
	evs, err := j.Events(ctx, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[EventKind]int{}
	for _, ev := range evs {
		kinds[ev.Kind]++
	}
	if kinds[EventRouted] != 1 || kinds[EventAttempt] < 2 {
		t.Errorf("journey of %d: %+v, want one routed and an attempt per destination", ids[0], evs)
	}
}

func TestDispatchBlockedKeyHoldsOnlyItself(t *testing.T) {
	j, _ := openTest(t)
	release := make(chan struct{})
	var blocked sync.Once
	dest := newRecorder(func(d *Delivery) error {
		if d.Key == "9990000000" {
			select {
			case <-release:
				return nil
			default:
				blocked.Do(func() {})
				return errors.New("503 service unavailable")
			}
		}
		return nil
	})
	routing := &fakeRouting{to: []string{"d"}, dests: map[string]Destination{"d": dest}}
	startDispatcher(t, DispatcherConfig{Store: j, Routing: routing, Concurrency: 2,
		Retry: RetryPolicy{Initial: time.Millisecond, Max: 5 * time.Millisecond, Attempts: 1 << 20}})
	ids := appendRecords(t, j, 40, 4, 0) // keys 9990000000..03, ten records each

	waitFor(t, "the other keys to be delivered", func() bool { return len(dest.delivered()) >= 30 })
	for _, d := range dest.delivered() {
		if d.Key == "9990000000" {
			t.Fatalf("record %d of the failing key was delivered", d.MessageID)
		}
	}
	close(release)
	waitFor(t, "the failing key to catch up", func() bool { return len(dest.delivered()) == len(ids) })
	checkOrder(t, "d", dest.delivered())
}

func TestDispatchDeadLettersAndRevives(t *testing.T) {
	j, _ := openTest(t)
	var refuse sync.Map // control ids the destination refuses for good
	var fixed bool
	var mu sync.Mutex
	dest := newRecorder(func(d *Delivery) error {
		mu.Lock()
		defer mu.Unlock()
		if fixed {
			return nil
		}
		if _, ok := refuse.Load(d.ControlID); ok {
			return Permanent(errors.New("400 Bad Request: OperationOutcome invalid: Patient.birthDate"))
		}
		if d.ControlID == "MSG2" {
			return errors.New("timeout")
		}
		return nil
	})
	refuse.Store("MSG1", true)
	routing := &fakeRouting{to: []string{"pds"}, dests: map[string]Destination{"pds": dest}}
	d, _ := startDispatcher(t, DispatcherConfig{Store: j, Routing: routing,
		Retry: RetryPolicy{Initial: time.Millisecond, Max: time.Millisecond, Attempts: 3}})
	ids := appendRecords(t, j, 4, 4, 0)
	ctx := context.Background()

	var dead []DeadLetter
	waitFor(t, "two dead letters", func() bool {
		dead = dead[:0]
		_ = j.DeadLetters(ctx, "", func(dl DeadLetter) bool { dead = append(dead, dl); return true })
		return len(dead) == 2
	})
	reasons := map[ID]string{}
	for _, dl := range dead {
		reasons[dl.MessageID] = dl.Reason
	}
	if r := reasons[ids[1]]; !strings.Contains(r, "OperationOutcome") {
		t.Errorf("permanent failure's reason %q", r)
	}
	if r := reasons[ids[2]]; !strings.Contains(r, "gave up after 3 attempts: timeout") {
		t.Errorf("retried failure's reason %q", r)
	}
	dest.mu.Lock()
	if n := dest.ids[ids[1].String()+".all.pds"]; n != 1 {
		t.Errorf("a permanent failure was attempted %d times, want 1", n)
	}
	dest.mu.Unlock()

	mu.Lock()
	fixed = true
	mu.Unlock()
	n, err := d.ReviveDeadLetters(ctx, "pds")
	if err != nil || n != 2 {
		t.Fatalf("revive: %d, %v; want 2", n, err)
	}
	waitFor(t, "every message delivered", func() bool { return len(dest.delivered()) == 4 })
	left := 0
	_ = j.DeadLetters(ctx, "", func(DeadLetter) bool { left++; return true })
	if left != 0 {
		t.Errorf("%d dead letters left after reviving", left)
	}
	evs, _ := j.Events(ctx, ids[1])
	if evs[len(evs)-1].Outcome != Delivered || !slices.ContainsFunc(evs, func(e Event) bool { return e.Kind == EventRevived }) {
		t.Errorf("journey after revival: %+v", evs)
	}
}

func TestDispatchResumesAfterRestartAndReplays(t *testing.T) {
	j, dir := openTest(t)
	down := newRecorder(func(*Delivery) error { return errors.New("connection refused") })
	routing := &fakeRouting{to: []string{"x"}, dests: map[string]Destination{"x": down}}
	d, stop := startDispatcher(t, DispatcherConfig{Store: j, Routing: routing,
		Retry: RetryPolicy{Initial: time.Hour, Max: time.Hour, Attempts: 10}})
	ids := appendRecords(t, j, 5, 5, 0)
	if err := d.WaitRouted(context.Background(), ids[4]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first attempts", func() bool {
		down.mu.Lock()
		defer down.mu.Unlock()
		return len(down.ids) == 5
	})
	stop()

	// The next run finds the deliveries still pending and makes them, waiting
	// out the backoff the last run stored.
	j = reopen(t, j, dir)
	up := newRecorder(nil)
	routing = &fakeRouting{to: []string{"x"}, dests: map[string]Destination{"x": up}}
	pending := 0
	_ = j.Pending(context.Background(), func(p PendingDelivery) bool {
		pending++
		if p.Attempts != 1 || p.LastError != "connection refused" {
			t.Errorf("stored delivery %+v", p)
		}
		return true
	})
	if pending != 5 {
		t.Fatalf("%d pending after restart, want 5", pending)
	}
	if err := j.Settle(context.Background(), &PendingDelivery{MessageID: ids[0], Route: "all", Destination: "x", Key: "k"}, Retrying, Event{}); err != nil {
		t.Fatal(err) // clears the stored backoff of one delivery
	}
	d, _ = startDispatcher(t, DispatcherConfig{Store: j, Routing: routing})
	waitFor(t, "the delivery without backoff", func() bool { return len(up.delivered()) == 1 })

	// A replay routes the message again with the table as it stands and
	// delivers it under the same delivery id.
	if err := d.Replay(context.Background(), ids[0]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the replay", func() bool { return len(up.delivered()) == 2 })
	got := up.delivered()
	if got[1].ID != got[0].ID || got[1].MessageID != ids[0] {
		t.Errorf("replayed delivery %q of %d, want %q", got[1].ID, got[1].MessageID, got[0].ID)
	}
	if err := d.Replay(context.Background(), 999); !errors.Is(err, ErrNotFound) {
		t.Errorf("replay of an unknown id: %v", err)
	}
}

func TestDispatchUnroutedAndTransformFailures(t *testing.T) {
	j, _ := openTest(t)
	dest := newRecorder(nil)
	routing := &fakeRouting{to: []string{"x"}, transform: "upper", dests: map[string]Destination{"x": dest}}
	d, _ := startDispatcher(t, DispatcherConfig{Store: j, Routing: routing})
	ctx := context.Background()

	unrouted := testRecord(1)
	unrouted.ControlID = "UNROUTED"
	badMap := testRecord(2)
	badMap.Raw = append(badMap.Raw, "NTE|2||BADMAP\r"...)
	refused := testRecord(3)
	refused.Status = StatusRejected
	for _, r := range []*Record{unrouted, badMap, refused} {
		mustAppend(t, j, r)
	}
	if err := d.WaitRouted(ctx, refused.ID); err != nil {
		t.Fatal(err)
	}
	evs, _ := j.Events(ctx, unrouted.ID)
	if len(evs) != 1 || evs[0].Kind != EventUnrouted {
		t.Errorf("unrouted journey: %+v", evs)
	}
	if evs, _ := j.Events(ctx, refused.ID); len(evs) != 0 {
		t.Errorf("a refused message was routed: %+v", evs)
	}
	waitFor(t, "the bad mapping to be dead-lettered", func() bool {
		n := 0
		_ = j.DeadLetters(ctx, "x", func(dl DeadLetter) bool {
			n++
			if !strings.Contains(dl.Reason, "transform upper: no mapping") {
				t.Errorf("reason %q", dl.Reason)
			}
			return true
		})
		return n == 1
	})
	if len(dest.delivered()) != 0 {
		t.Errorf("delivered %d, want none", len(dest.delivered()))
	}
}

func TestDispatchSetRoutingClosesTheOldTableWhenIdle(t *testing.T) {
	j, _ := openTest(t)
	old := &fakeRouting{to: []string{"a"}, dests: map[string]Destination{"a": newRecorder(nil)}, closed: make(chan struct{})}
	d, _ := startDispatcher(t, DispatcherConfig{Store: j, Routing: old})
	next := newRecorder(nil)
	d.SetRouting(&fakeRouting{to: []string{"a"}, dests: map[string]Destination{"a": next}})
	select {
	case <-old.closed:
	case <-time.After(30 * time.Second):
		t.Fatal("the replaced table was not closed")
	}
	appendRecords(t, j, 3, 3, 0)
	waitFor(t, "delivery through the new table", func() bool { return len(next.delivered()) == 3 })
}

func TestDispatchProcessHoldsTheAckOnlyForProcessedRoutes(t *testing.T) {
	j, _ := openTest(t)
	dest := newRecorder(nil)
	routing := &fakeRouting{to: []string{"x"}, transform: "upper", dests: map[string]Destination{"x": dest}, ack: AckProcessed}
	d, _ := startDispatcher(t, DispatcherConfig{Store: j, Routing: routing})
	in, err := NewIntake(IntakeConfig{Listener: "mllp", Processor: d}, j, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	good, release := in.Receive(ctx, Arrival{Payload: hl7Message("P1", "9990000001", 300), Peer: "p"})
	release()
	if good.Code != hl7v2.AA {
		t.Errorf("a message that transforms got %s", good.Code)
	}
	if ID(d.cursor.Load()) <= good.ID {
		t.Error("the ACK left before the message was routed")
	}
	bad := append(hl7Message("P2", "9990000001", 300), "NTE|2||BADMAP\r"...)
	r, release := in.Receive(ctx, Arrival{Payload: bad, Peer: "p"})
	defer release()
	if r.Code != hl7v2.AE || !strings.Contains(string(r.Ack), "ERR|") {
		t.Errorf("a message whose transform fails got %s: %q", r.Code, r.Ack)
	}

	// A route that leaves the ACK to the listener does not wait.
	routing.ack = ""
	r2, release2 := in.Receive(ctx, Arrival{Payload: bad, Peer: "q"})
	release2()
	if r2.Code != hl7v2.AA {
		t.Errorf("with a durable ack point a failing transform changed the ACK to %s", r2.Code)
	}
}

// gateDest holds every attempt until its gate opens, counting attempts in
// flight.
type gateDest struct {
	gate     atomic.Pointer[chan struct{}]
	inflight atomic.Int32
	peak     atomic.Int32 // the most in flight since the last reset
	rec      *recorder
}

func (g *gateDest) Deliver(ctx context.Context, d *Delivery) error {
	n := g.inflight.Add(1)
	defer g.inflight.Add(-1)
	for p := g.peak.Load(); n > p && !g.peak.CompareAndSwap(p, n); p = g.peak.Load() {
	}
	<-*g.gate.Load()
	return g.rec.Deliver(ctx, d)
}

func (g *gateDest) Ready(context.Context) error { return nil }
func (g *gateDest) Close() error                { return nil }

// TestDispatchConcurrencyFollowsTheTable checks that a destination has as many
// deliveries in flight as its table says, and that a new table's figure takes
// over: more workers at once, fewer as attempts under way end.
func TestDispatchConcurrencyFollowsTheTable(t *testing.T) {
	j, _ := openTest(t)
	dest := &gateDest{rec: newRecorder(nil)}
	first := make(chan struct{})
	dest.gate.Store(&first)
	table := func(n int) *fakeRouting {
		return &fakeRouting{to: []string{"d"}, dests: map[string]Destination{"d": dest}, conc: map[string]int{"d": n}}
	}
	d, _ := startDispatcher(t, DispatcherConfig{Store: j, Routing: table(6), Concurrency: 2})
	ids := appendRecords(t, j, 200, 40, 0)

	settle := func(want int32) {
		t.Helper()
		waitFor(t, fmt.Sprintf("%d deliveries in flight", want), func() bool { return dest.inflight.Load() == want })
		// Long enough for a surplus worker to take one of the ready keys.
		time.Sleep(50 * time.Millisecond)
		if got := dest.peak.Load(); got != want {
			t.Errorf("%d deliveries were in flight at once, want %d", got, want)
		}
	}
	settle(6)

	// Fewer: the six attempts under way finish, and only three go on.
	second := make(chan struct{})
	dest.gate.Store(&second)
	d.SetRouting(table(3))
	close(first)
	waitFor(t, "the first six to finish", func() bool { return len(dest.rec.delivered()) >= 6 })
	dest.peak.Store(dest.inflight.Load())
	settle(3)

	// More: new workers start at once.
	d.SetRouting(table(10))
	settle(10)

	close(second)
	waitFor(t, "every delivery", func() bool { return len(dest.rec.delivered()) == len(ids) })
	checkOrder(t, "d", dest.rec.delivered())
}

// stopAtPending is a journal whose Pending finds the run being stopped, as
// when the engine stops just after it started.
type stopAtPending struct {
	*Local
	stop context.CancelFunc
}

func (s stopAtPending) Pending(ctx context.Context, fn func(PendingDelivery) bool) error {
	s.stop()
	return s.Local.Pending(ctx, fn)
}

// A dispatcher stopped while it loads the last run's deliveries has stopped,
// not failed: Run returns nil, as it does when stopped while routing.
func TestDispatchStoppedWhileStarting(t *testing.T) {
	j, _ := openTest(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, err := NewDispatcher(DispatcherConfig{Store: stopAtPending{j, cancel}, Routing: &fakeRouting{to: []string{"x"}},
		Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Run(ctx); err != nil {
		t.Errorf("Run stopped while starting: %v", err)
	}
}

// funcDest is a destination whose Deliver is a function.
type funcDest func(ctx context.Context, d *Delivery) error

func (f funcDest) Deliver(ctx context.Context, d *Delivery) error { return f(ctx, d) }
func (funcDest) Ready(context.Context) error                      { return nil }
func (funcDest) Close() error                                     { return nil }

// deadLetters lists j's dead letters for destination ("" for all).
func deadLetters(t *testing.T, j Outbox, destination string) []DeadLetter {
	t.Helper()
	var dead []DeadLetter
	if err := j.DeadLetters(context.Background(), destination, func(dl DeadLetter) bool {
		dead = append(dead, dl)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return dead
}

// pendingOf lists j's pending deliveries.
func pendingOf(t *testing.T, j Outbox) []PendingDelivery {
	t.Helper()
	var ps []PendingDelivery
	if err := j.Pending(context.Background(), func(p PendingDelivery) bool {
		ps = append(ps, p)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return ps
}

// waitingKeys is how many of destination's keys wait out a backoff.
func waitingKeys(d *Dispatcher, destination string) int {
	d.mu.Lock()
	q := d.queues[destination]
	d.mu.Unlock()
	if q == nil {
		return 0
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	for _, kq := range q.keys {
		if kq.waiting != nil {
			n++
		}
	}
	return n
}

// TestDeadLettersForARemovedDestination checks what becomes of the deliveries
// an earlier run left pending to a destination the next run's table no longer
// declares: they are dead-lettered at once, whatever backoff was stored, with
// a reason that names the destination, and their records stay. Reviving them
// is refused with ErrNotConfigured, and leaves them dead letters, until the
// destination is declared again.
func TestDeadLettersForARemovedDestination(t *testing.T) {
	j, dir := openTest(t)
	ctx := context.Background()
	retry := RetryPolicy{Initial: time.Hour, Max: time.Hour, Attempts: 1 << 20}
	down := newRecorder(func(*Delivery) error { return errors.New("connection refused") })
	spine := newRecorder(nil)
	routing := &fakeRouting{to: []string{"pds", "spine"}, dests: map[string]Destination{"pds": down, "spine": spine}}
	_, stop := startDispatcher(t, DispatcherConfig{Store: j, Routing: routing, Retry: retry})
	ids := appendRecords(t, j, 3, 3, 0)
	waitFor(t, "the first attempts", func() bool {
		n := 0
		for _, p := range pendingOf(t, j) {
			if p.Attempts == 1 {
				n++
			}
		}
		return n == len(ids) && len(spine.delivered()) == len(ids)
	})
	stop()

	// The next run's table has no pds: the routes file lost it while the
	// engine was down.
	j = reopen(t, j, dir)
	routing = &fakeRouting{to: []string{"spine"}, dests: map[string]Destination{"spine": spine}}
	d, _ := startDispatcher(t, DispatcherConfig{Store: j, Routing: routing, Retry: retry})
	var dead []DeadLetter
	waitFor(t, "the deliveries to pds to be dead-lettered", func() bool {
		dead = deadLetters(t, j, "")
		return len(dead) == len(ids)
	})
	for i, dl := range dead {
		if dl.MessageID != ids[i] || dl.Destination != "pds" || dl.Attempts != 2 {
			t.Errorf("dead letter %d: record %d to %s after %d attempts; want record %d to pds after 2", i, dl.MessageID, dl.Destination, dl.Attempts, ids[i])
		}
		if want := `destination "pds" is no longer configured`; dl.Reason != want {
			t.Errorf("dead letter of %d: reason %q, want %q", dl.MessageID, dl.Reason, want)
		}
		if _, err := j.Get(ctx, dl.MessageID); err != nil {
			t.Errorf("record %d: %v", dl.MessageID, err)
		}
	}
	if left := pendingOf(t, j); len(left) != 0 {
		t.Errorf("still pending: %+v", left)
	}
	evs, err := j.Events(ctx, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if last := evs[len(evs)-1]; last.Kind != EventAttempt || last.Outcome != DeadLettered || last.Destination != "pds" {
		t.Errorf("journey ends with %+v, want the dead letter to pds", last)
	}

	// Sending them again cannot reach pds: refused, and they stay.
	for _, dest := range []string{"pds", ""} {
		n, err := d.ReviveDeadLetters(ctx, dest)
		if n != 0 || !errors.Is(err, ErrNotConfigured) {
			t.Fatalf("revive %q without pds: %d sent, err %v; want 0 and ErrNotConfigured", dest, n, err)
		}
		if want := `destination "pds" is not configured: its 3 dead letters stay`; !strings.HasPrefix(err.Error(), want) {
			t.Errorf("revive %q: %q, want %q...", dest, err, want)
		}
	}
	if got := len(deadLetters(t, j, "")); got != len(ids) {
		t.Errorf("%d dead letters after a refused revival, want %d", got, len(ids))
	}
	if left := pendingOf(t, j); len(left) != 0 {
		t.Errorf("pending after a refused revival: %+v", left)
	}

	// Declared again, pds takes them.
	up := newRecorder(nil)
	d.SetRouting(&fakeRouting{to: []string{"pds", "spine"}, dests: map[string]Destination{"pds": up, "spine": spine}})
	if n, err := d.ReviveDeadLetters(ctx, ""); n != len(ids) || err != nil {
		t.Fatalf("revive with pds back: %d sent, err %v; want %d", n, err, len(ids))
	}
	waitFor(t, "pds to get every message", func() bool { return len(up.delivered()) == len(ids) })
	if dead := deadLetters(t, j, ""); len(dead) != 0 {
		t.Errorf("dead letters left: %+v", dead)
	}
}

// TestDeadLettersWhenAReloadRemovesTheDestination checks a reload that takes a
// destination away while deliveries to it are under way: one waiting out a
// long backoff is dead-lettered at once; one in flight ends against the old
// table's destination and, failing, is dead-lettered rather than retried, with
// its failure; one the old destination takes is delivered.
func TestDeadLettersWhenAReloadRemovesTheDestination(t *testing.T) {
	j, _ := openTest(t)
	gate := make(chan struct{})
	var inflight atomic.Int32
	var delivered atomic.Int32
	pds := funcDest(func(ctx context.Context, d *Delivery) error {
		switch d.ControlID {
		case "MSG0":
			return errors.New("connection refused")
		case "MSG1":
			inflight.Add(1)
			<-gate
			return errors.New("503 service unavailable")
		default:
			inflight.Add(1)
			<-gate
			delivered.Add(1)
			return nil
		}
	})
	routing := &fakeRouting{to: []string{"pds"}, dests: map[string]Destination{"pds": pds}}
	d, _ := startDispatcher(t, DispatcherConfig{Store: j, Routing: routing, Concurrency: 4,
		Retry: RetryPolicy{Initial: time.Hour, Max: time.Hour, Attempts: 1 << 20}})
	ids := appendRecords(t, j, 3, 3, 0)
	waitFor(t, "one delivery retrying and two in flight", func() bool {
		return inflight.Load() == 2 && waitingKeys(d, "pds") == 1
	})

	spine := newRecorder(nil)
	d.SetRouting(&fakeRouting{to: []string{"spine"}, dests: map[string]Destination{"spine": spine}})
	close(gate)

	var dead []DeadLetter
	waitFor(t, "two dead letters", func() bool {
		dead = deadLetters(t, j, "pds")
		return len(dead) == 2
	})
	for i, want := range []string{
		`destination "pds" is no longer configured`,
		`destination "pds" is no longer configured; the last attempt failed: 503 service unavailable`,
	} {
		if dead[i].MessageID != ids[i] || dead[i].Reason != want {
			t.Errorf("dead letter %d: record %d, reason %q; want record %d, %q", i, dead[i].MessageID, dead[i].Reason, ids[i], want)
		}
	}
	waitFor(t, "the outbox to empty", func() bool { return len(pendingOf(t, j)) == 0 })
	if delivered.Load() != 1 {
		t.Errorf("%d delivered by the old table's pds, want 1", delivered.Load())
	}
}
