package amqp

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/spinebridge/spinebridge/routes"
)

var received = time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC)

// delivery is the nth test delivery along route.
func delivery(n int, route string) *routes.Delivery {
	id := routes.ID(1000 + n)
	return &routes.Delivery{
		ID:          fmt.Sprintf("%d.%s.events", id, route),
		MessageID:   id,
		Route:       route,
		Destination: "events",
		Attempt:     1,
		Key:         strconv.Itoa(n),
		ContentType: routes.ContentTypeFHIR,
		Body:        fmt.Appendf(nil, `{"resourceType":"Bundle","type":"transaction","id":"b%d","entry":[]}`, n),
		Type:        "ADT",
		Trigger:     "A01",
		Version:     "2.4",
		ControlID:   fmt.Sprintf("MSG%05d", n),
		Received:    received,
	}
}

func newTestPublisher(t testing.TB, cfg Config) *Publisher {
	t.Helper()
	p, err := New("events", cfg, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return p
}

func deliverCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestDeliverConfirmed(t *testing.T) {
	adm := admin(t)
	ex := exchange(t, adm)
	q := queue(t, adm, ex, "adt-to-pds.ADT.*", nil)
	p := newTestPublisher(t, Config{
		URL:        brokerURL,
		Exchange:   &ex,
		RoutingKey: "{{route}}.{{type}}.{{trigger}}",
		Headers:    map[string]string{"x-team": "clinical"},
	})
	ctx := deliverCtx(t)
	if err := p.Ready(ctx); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	const n = 3
	for i := range n {
		d := delivery(i, "adt-to-pds")
		d.Attempt = i + 1
		if err := p.Deliver(ctx, d); err != nil {
			t.Fatalf("Deliver %d: %v", i, err)
		}
	}
	got := drain(t, adm, q)
	if len(got) != n {
		t.Fatalf("queue holds %d messages, want %d", len(got), n)
	}
	for i, m := range got {
		d := delivery(i, "adt-to-pds")
		checks := []struct {
			name      string
			got, want any
		}{
			{"body", string(m.Body), string(d.Body)},
			{"message-id", m.MessageId, d.ID},
			{"correlation-id", m.CorrelationId, "100" + strconv.Itoa(i)},
			{"content-type", m.ContentType, routes.ContentTypeFHIR},
			{"delivery-mode", m.DeliveryMode, amqp091.Persistent},
			{"timestamp", m.Timestamp.UTC(), received},
			{"app-id", m.AppId, "spinebridge"},
			{"routing key", m.RoutingKey, "adt-to-pds.ADT.A01"},
			{headerRoute, m.Headers[headerRoute], "adt-to-pds"},
			{headerDestination, m.Headers[headerDestination], "events"},
			{headerControlID, m.Headers[headerControlID], d.ControlID},
			{headerMessageType, m.Headers[headerMessageType], "ADT^A01"},
			{headerAttempt, m.Headers[headerAttempt], int32(i + 1)},
			{"x-team", m.Headers["x-team"], "clinical"},
		}
		for _, c := range checks {
			if c.got != c.want {
				t.Errorf("message %d: %s = %#v, want %#v", i, c.name, c.got, c.want)
			}
		}
	}
}

func TestDeliverUnroutable(t *testing.T) {
	adm := admin(t)
	ex := exchange(t, adm)
	p := newTestPublisher(t, Config{URL: brokerURL, Exchange: &ex, RoutingKey: "{{route}}"})
	ctx := deliverCtx(t)

	d := delivery(1, "nowhere")
	err := p.Deliver(ctx, d)
	if !errors.Is(err, ErrUnroutable) {
		t.Fatalf("Deliver to an exchange with no binding: %v, want ErrUnroutable", err)
	}
	if routes.IsPermanent(err) {
		t.Errorf("an unroutable message is permanent; a binding may yet appear: %v", err)
	}

	// The binding appears, and the retry goes through.
	q := queue(t, adm, ex, "nowhere", nil)
	d.Attempt = 2
	if err := p.Deliver(ctx, d); err != nil {
		t.Fatalf("Deliver once bound: %v", err)
	}
	got := drain(t, adm, q)
	if len(got) != 1 || got[0].Headers[headerAttempt] != int32(2) {
		t.Fatalf("queue holds %d messages (want 1, attempt 2)", len(got))
	}
}

// Returns name no delivery tag; under load each must still fail the delivery it
// is for and no other.
func TestDeliverUnroutableAmongRoutable(t *testing.T) {
	adm := admin(t)
	ex := exchange(t, adm)
	q := queue(t, adm, ex, "bound", nil)
	p := newTestPublisher(t, Config{URL: brokerURL, Exchange: &ex, RoutingKey: "{{route}}", Channels: 1})
	ctx := deliverCtx(t)

	const n = 200
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		route := "bound"
		if i%3 == 0 {
			route = "unbound"
		}
		wg.Go(func() { errs[i] = p.Deliver(ctx, delivery(i, route)) })
	}
	wg.Wait()
	routable := 0
	for i, err := range errs {
		if i%3 == 0 {
			if !errors.Is(err, ErrUnroutable) {
				t.Errorf("delivery %d (unbound): %v, want ErrUnroutable", i, err)
			}
			continue
		}
		routable++
		if err != nil {
			t.Errorf("delivery %d (bound): %v", i, err)
		}
	}
	if got := len(drain(t, adm, q)); got != routable {
		t.Errorf("queue holds %d messages, want %d", got, routable)
	}
}

func TestDeliverNacked(t *testing.T) {
	adm := admin(t)
	q := queue(t, adm, "", "", amqp091.Table{"x-max-length": int32(1), "x-overflow": "reject-publish"})
	def := ""
	p := newTestPublisher(t, Config{URL: brokerURL, Exchange: &def, RoutingKey: q})
	ctx := deliverCtx(t)
	if err := p.Deliver(ctx, delivery(1, "r")); err != nil {
		t.Fatalf("first Deliver: %v", err)
	}
	err := p.Deliver(ctx, delivery(2, "r"))
	if !errors.Is(err, ErrNacked) || routes.IsPermanent(err) {
		t.Fatalf("Deliver to a full queue: %v, want a retryable ErrNacked", err)
	}
}

// Publishing to an exchange that does not exist makes the broker close the
// channel; once the exchange exists, deliveries go through on a new channel.
func TestDeliverMissingExchange(t *testing.T) {
	adm := admin(t)
	ex := uniqueName(t, "x")
	p := newTestPublisher(t, Config{URL: brokerURL, Exchange: &ex, RoutingKey: "k", Channels: 1})
	ctx := deliverCtx(t)
	err := p.Deliver(ctx, delivery(1, "r"))
	if !errors.Is(err, ErrNotConfirmed) || routes.IsPermanent(err) {
		t.Fatalf("Deliver to a missing exchange: %v, want a retryable ErrNotConfirmed", err)
	}
	var amqpErr *amqp091.Error
	if !errors.As(err, &amqpErr) || amqpErr.Code != amqp091.NotFound {
		t.Errorf("error does not carry the broker's 404: %v", err)
	}

	if err := adm.ExchangeDeclare(ex, "topic", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = adminAgain(t).ExchangeDelete(ex, false, false) })
	q := queue(t, adm, ex, "k", nil)
	if err := p.Deliver(ctx, delivery(2, "r")); err != nil {
		t.Fatalf("Deliver once the exchange exists: %v", err)
	}
	if got := len(drain(t, adm, q)); got != 1 {
		t.Errorf("queue holds %d messages, want 1", got)
	}
}

func TestDeliverDeclares(t *testing.T) {
	adm := admin(t)
	ex, q := uniqueName(t, "x"), uniqueName(t, "q")
	t.Cleanup(func() {
		c := adminAgain(t)
		if _, err := c.QueueDelete(q, false, false, false); err != nil {
			t.Errorf("delete queue: %v", err)
		}
		if err := c.ExchangeDelete(ex, false, false); err != nil {
			t.Errorf("delete exchange: %v", err)
		}
	})
	durable, key := false, "hl7.#"
	p := newTestPublisher(t, Config{
		URL: brokerURL, Exchange: &ex, RoutingKey: "hl7.{{type}}",
		Declare: DeclareConfig{ExchangeType: "topic", Durable: &durable, Queue: q, BindingKey: &key},
	})
	ctx := deliverCtx(t)
	if err := p.Deliver(ctx, delivery(1, "r")); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	got := drain(t, adm, q)
	if len(got) != 1 || got[0].RoutingKey != "hl7.ADT" {
		t.Fatalf("declared queue holds %d messages, want 1 with key hl7.ADT", len(got))
	}
}

// A Deliver during an outage fails, retryably, once an attempt to connect has
// failed, and says why; so does Ready.
func TestDeliverBrokerDown(t *testing.T) {
	addr := closedAddr(t)
	ex := "spine"
	p := newTestPublisher(t, Config{URL: "amqp://" + addr + "/", Exchange: &ex})
	ctx := deliverCtx(t)
	err := p.Deliver(ctx, delivery(1, "r"))
	if !errors.Is(err, ErrNotConnected) || routes.IsPermanent(err) {
		t.Fatalf("Deliver with the broker down: %v, want a retryable ErrNotConnected", err)
	}
	if !strings.Contains(err.Error(), "refused") {
		t.Errorf("error does not say why: %v", err)
	}
	if err := p.Ready(ctx); !errors.Is(err, ErrNotConnected) {
		t.Errorf("Ready with the broker down: %v, want ErrNotConnected", err)
	}
}

func TestDeliverAfterClose(t *testing.T) {
	ex := "spine"
	p, err := New("events", Config{URL: brokerURL, Exchange: &ex}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := deliverCtx(t)
	if err := p.Ready(ctx); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Deliver(ctx, delivery(1, "r")); !errors.Is(err, ErrClosed) {
		t.Errorf("Deliver after Close: %v, want ErrClosed", err)
	}
	if err := p.Ready(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Ready after Close: %v, want ErrClosed", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// The connection is cut twice in the middle of a stream of concurrent
// deliveries, each retried until it succeeds as the dispatcher would. Every
// delivery must then be in the queue: none was reported delivered without the
// broker's confirm. Copies are allowed (a publish can arrive and its confirm be
// lost); they are counted.
func TestDeliverSurvivesConnectionCuts(t *testing.T) {
	adm := admin(t)
	ex := exchange(t, adm)
	q := queue(t, adm, ex, "#", nil)
	px := newProxy(t, 2, 40_000, 120_000)
	p := newTestPublisher(t, Config{URL: px.url(), Exchange: &ex, RoutingKey: "{{route}}"})

	const n = 500
	var failures atomic.Int64
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			d := delivery(i, "cut")
			for d.Attempt = 1; ; d.Attempt++ {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				err := p.Deliver(ctx, d)
				cancel()
				if err == nil {
					return
				}
				if routes.IsPermanent(err) || !errorsIsAny(err, ErrNotConfirmed, ErrNotConnected) {
					t.Errorf("delivery %d attempt %d: %v, want ErrNotConfirmed or ErrNotConnected", i, d.Attempt, err)
					return
				}
				failures.Add(1)
				if d.Attempt == 100 {
					t.Errorf("delivery %d: still failing after %d attempts: %v", i, d.Attempt, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	cuts, refused := px.stats()
	if cuts != 2 || refused < 2 {
		t.Fatalf("the proxy cut %d times and refused %d connections; the test needs 2 cuts, each followed by refusals", cuts, refused)
	}
	if failures.Load() == 0 {
		t.Fatal("no delivery failed: the cuts did not land in the middle of the stream")
	}

	seen := map[string]int{}
	for _, m := range drain(t, adm, q) {
		seen[m.MessageId]++
	}
	copies := 0
	for i := range n {
		id := delivery(i, "cut").ID
		switch c := seen[id]; {
		case c == 0:
			t.Errorf("delivery %s was reported delivered but is not in the queue", id)
		case c > 1:
			copies += c - 1
		}
	}
	t.Logf("%d deliveries, %d failed attempts retried, %d cuts, %d connections refused, %d copies in the queue", n, failures.Load(), cuts, refused, copies)
}

// Close lets the publishes waiting for their confirm finish: every delivery in
// flight when it is called either succeeds, and is then in the queue, or fails
// retryably.
func TestCloseSettlesPublishesInFlight(t *testing.T) {
	adm := admin(t)
	ex := exchange(t, adm)
	q := queue(t, adm, ex, "#", nil)
	p, err := New("events", Config{URL: brokerURL, Exchange: &ex, RoutingKey: "{{route}}"}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := deliverCtx(t)
	if err := p.Ready(ctx); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	const n = 300
	errs := make([]error, n)
	var wg sync.WaitGroup
	var started atomic.Int64
	closing := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			if started.Add(1) == n/2 {
				close(closing)
			}
			errs[i] = p.Deliver(ctx, delivery(i, "close"))
		})
	}
	<-closing
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wg.Wait()

	inQueue := map[string]bool{}
	for _, m := range drain(t, adm, q) {
		inQueue[m.MessageId] = true
	}
	delivered := 0
	for i, err := range errs {
		id := delivery(i, "close").ID
		switch {
		case err == nil:
			delivered++
			if !inQueue[id] {
				t.Errorf("delivery %s was reported delivered but is not in the queue", id)
			}
		case routes.IsPermanent(err) || !errorsIsAny(err, ErrClosed, ErrNotConfirmed, ErrNotConnected):
			t.Errorf("delivery %d: %v, want success or a retryable failure", i, err)
		}
	}
	t.Logf("%d of %d deliveries confirmed before Close", delivered, n)
}
