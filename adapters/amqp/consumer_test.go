package amqp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
	"github.com/spinebridge/spinebridge/routes"
)

// hl7Message is the nth raw test message.
func hl7Message(n int) []byte {
	return fmt.Appendf(nil, "MSH|^~\\&|PAS|RX1|SPINEBRIDGE|NHS|20260314092653||ADT^A01|MSG%05d|P|2.4\rPID|1||%d^^^NHS^NH\r", n, 9000000000+n)
}

// publishRaw puts messages 0..n-1 on q through the default exchange.
func publishRaw(t *testing.T, ch *amqp091.Channel, q string, n int) {
	t.Helper()
	for i := range n {
		err := ch.PublishWithContext(context.Background(), "", q, true, false, amqp091.Publishing{
			ContentType: routes.ContentTypeHL7v2, DeliveryMode: amqp091.Persistent, Body: hl7Message(i),
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// fakeIntake answers with the reply its decide function gives for each call and
// records every payload it saw, in order, with the peer.
type fakeIntake struct {
	mu      sync.Mutex
	calls   map[string]int // by payload
	order   []string
	peers   map[string]bool
	decide  func(payload string, call int) routes.Reply
	settled chan string // each payload whose reply was final
}

func newFakeIntake(decide func(payload string, call int) routes.Reply) *fakeIntake {
	return &fakeIntake{calls: map[string]int{}, peers: map[string]bool{}, decide: decide, settled: make(chan string, 1024)}
}

func (f *fakeIntake) Receive(ctx context.Context, a routes.Arrival) (routes.Reply, func()) {
	p := string(a.Payload)
	f.mu.Lock()
	f.calls[p]++
	call := f.calls[p]
	f.order = append(f.order, p)
	f.peers[a.Peer] = true
	f.mu.Unlock()
	r := f.decide(p, call)
	if r.Committed || r.Code == hl7v2.AR || r.Code == hl7v2.CR {
		f.settled <- p
	}
	return r, func() {}
}

func committed(string, int) routes.Reply {
	return routes.Reply{Committed: true, Code: hl7v2.AA, ID: 1}
}

// runConsumer runs a consumer until the returned stop is called, which waits
// for Run to return and checks it returned nil.
func runConsumer(t *testing.T, cfg ConsumerConfig, recv Receiver) (stop func()) {
	t.Helper()
	c, err := NewConsumer(cfg, recv, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
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
	return stop
}

// await takes n settled payloads, failing the test if they do not come.
func await(t *testing.T, f *fakeIntake, n int) map[string]bool {
	t.Helper()
	got := map[string]bool{}
	timeout := time.After(30 * time.Second)
	for len(got) < n {
		select {
		case p := <-f.settled:
			got[p] = true
		case <-timeout:
			t.Fatalf("%d of %d messages settled", len(got), n)
		}
	}
	return got
}

func TestConsumerAcksJournaled(t *testing.T) {
	adm := admin(t)
	q := queue(t, adm, "", "", nil)
	const n = 20
	publishRaw(t, adm, q, n)
	f := newFakeIntake(committed)
	stop := runConsumer(t, ConsumerConfig{URL: brokerURL, Queue: q, Prefetch: 4}, f.Receive)
	await(t, f, n)
	stop()

	if d := depth(t, adm, q); d != 0 {
		t.Errorf("queue holds %d messages after all were journaled", d)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, p := range f.order {
		if p != string(hl7Message(i)) {
			t.Errorf("message %d out of the queue's order, or altered", i)
		}
	}
	if len(f.peers) != 1 || !f.peers["amqp://"+q] {
		t.Errorf("peers = %v, want amqp://%s", f.peers, q)
	}
}

func TestConsumerRequeuesJournalFailure(t *testing.T) {
	adm := admin(t)
	q := queue(t, adm, "", "", nil)
	const n = 3
	publishRaw(t, adm, q, n)
	// The journal fails each message the first time and takes it the second.
	f := newFakeIntake(func(_ string, call int) routes.Reply {
		if call == 1 {
			return routes.Reply{Committed: false, Code: hl7v2.AE}
		}
		return routes.Reply{Committed: true, Code: hl7v2.AA, ID: 1}
	})
	stop := runConsumer(t, ConsumerConfig{URL: brokerURL, Queue: q}, f.Receive)
	await(t, f, n)
	stop()

	f.mu.Lock()
	for i := range n {
		if c := f.calls[string(hl7Message(i))]; c != 2 {
			t.Errorf("message %d was received %d times, want 2 (a failure, then the redelivery)", i, c)
		}
	}
	f.mu.Unlock()
	if d := depth(t, adm, q); d != 0 {
		t.Errorf("queue holds %d messages after all were journaled", d)
	}
}

func TestConsumerRejectsRefused(t *testing.T) {
	adm := admin(t)
	dlx := exchange(t, adm)
	dlq := queue(t, adm, dlx, "#", nil)
	q := queue(t, adm, "", "", amqp091.Table{"x-dead-letter-exchange": dlx})
	publishRaw(t, adm, q, 1)
	// A refusal without journaling: the message cannot be taken, ever.
	f := newFakeIntake(func(string, int) routes.Reply { return routes.Reply{Code: hl7v2.AR} })
	stop := runConsumer(t, ConsumerConfig{URL: brokerURL, Queue: q}, f.Receive)
	await(t, f, 1)
	stop()

	if d := depth(t, adm, q); d != 0 {
		t.Errorf("queue holds %d messages after the refusal; it should not be requeued", d)
	}
	got := drain(t, adm, dlq)
	if len(got) != 1 || string(got[0].Body) != string(hl7Message(0)) {
		t.Errorf("dead-letter queue holds %d messages, want the refused one", len(got))
	}
	f.mu.Lock()
	if c := f.calls[string(hl7Message(0))]; c != 1 {
		t.Errorf("refused message received %d times, want 1", c)
	}
	f.mu.Unlock()
}

// The consumer's connection is cut while it acknowledges; it connects again
// and every message is journaled, some perhaps twice (those whose ack was cut
// off), and none is left in the queue.
func TestConsumerReconnects(t *testing.T) {
	adm := admin(t)
	q := queue(t, adm, "", "", nil)
	const n = 200
	publishRaw(t, adm, q, n)
	// The handshake, prefetch and consume take a few hundred bytes; each ack
	// about twenty more.
	px := newProxy(t, 1, 1500)
	f := newFakeIntake(committed)
	stop := runConsumer(t, ConsumerConfig{URL: px.url(), Queue: q, Prefetch: 16}, f.Receive)
	await(t, f, n)
	stop()

	if cuts, _ := px.stats(); cuts != 1 {
		t.Fatalf("the proxy cut %d times, want 1: the test did not cut the stream", cuts)
	}
	if d := depth(t, adm, q); d != 0 {
		t.Errorf("queue holds %d messages after all were journaled", d)
	}
	f.mu.Lock()
	t.Logf("%d messages, %d receptions", n, len(f.order))
	f.mu.Unlock()
}

// A message the intake journals as refused (it does not parse, say) is
// rejected without requeue, so that the queue's dead-letter exchange has it,
// and is not received again.
func TestConsumerRejectsJournaledRefusal(t *testing.T) {
	adm := admin(t)
	dlx := exchange(t, adm)
	dlq := queue(t, adm, dlx, "#", nil)
	q := queue(t, adm, "", "", amqp091.Table{"x-dead-letter-exchange": dlx})
	publishRaw(t, adm, q, 2)
	refused := string(hl7Message(0))
	f := newFakeIntake(func(p string, _ int) routes.Reply {
		if p == refused {
			return routes.Reply{Committed: true, Code: hl7v2.AR, ID: 7,
				Ack: []byte("MSH|^~\\&|||||20260314||ACK|A1\rMSA|AR||message could not be parsed\rERR|||100^Segment sequence error^HL70357|E|||message does not start with MSH\r")}
		}
		return routes.Reply{Committed: true, Code: hl7v2.AA, ID: 8}
	})
	var logs strings.Builder
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))
	c, err := NewConsumer(ConsumerConfig{URL: brokerURL, Queue: q}, f.Receive, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	await(t, f, 2)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}

	if d := depth(t, adm, q); d != 0 {
		t.Errorf("queue holds %d messages; the refused one should not be requeued, the other acknowledged", d)
	}
	got := drain(t, adm, dlq)
	if len(got) != 1 || string(got[0].Body) != refused {
		t.Errorf("dead-letter queue holds %d messages, want the refused one", len(got))
	}
	f.mu.Lock()
	if c := f.calls[refused]; c != 1 {
		t.Errorf("refused message received %d times, want 1", c)
	}
	f.mu.Unlock()
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), `reason="message does not start with MSH"`) || !strings.Contains(logs.String(), "id=7") {
		t.Errorf("the refusal is not logged with its reason and journal id:\n%s", logs.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// With declare set the consumer makes its queue, durable and with the
// dead-letter exchange given, and reports itself ready once it consumes.
func TestConsumerDeclaresQueue(t *testing.T) {
	adm := admin(t)
	dlx := exchange(t, adm)
	dlq := queue(t, adm, dlx, "#", nil)
	q := uniqueName(t, "declared")
	t.Cleanup(func() {
		if _, err := adminAgain(t).QueueDelete(q, false, false, false); err != nil {
			t.Errorf("delete queue %s: %v", q, err)
		}
	})
	f := newFakeIntake(func(string, int) routes.Reply { return routes.Reply{Code: hl7v2.AR} })
	c, err := NewConsumer(ConsumerConfig{URL: brokerURL, Queue: q, Declare: true, DeadLetterExchange: dlx}, f.Receive, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	if c.Ready() == nil {
		t.Error("Ready before Run = nil, want not consuming")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	for deadline := time.Now().Add(10 * time.Second); c.Ready() != nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("consumer not ready after 10s: %v", c.Ready())
		}
	}
	info, err := adm.QueueDeclarePassive(q, true, false, false, false, nil)
	if err != nil {
		t.Fatalf("the declared queue is not there, or not durable: %v", err)
	}
	if info.Consumers != 1 {
		t.Errorf("queue has %d consumers, want 1", info.Consumers)
	}
	publishRaw(t, adm, q, 1)
	await(t, f, 1)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if c.Ready() == nil {
		t.Error("Ready after Run = nil, want not consuming")
	}
	if got := drain(t, adm, dlq); len(got) != 1 {
		t.Errorf("dead-letter queue holds %d messages, want the refused one through the declared x-dead-letter-exchange", len(got))
	}
}

// A consumer that cannot reach its broker says why in Ready.
func TestConsumerReadyReportsConnectFailure(t *testing.T) {
	addr := closedAddr(t)
	f := newFakeIntake(committed)
	c, err := NewConsumer(ConsumerConfig{URL: "amqp://" + addr + "/", Queue: "q"}, f.Receive, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		err := c.Ready()
		if err != nil && !errors.Is(err, errNotConsuming) {
			var ne *net.OpError
			if !errors.As(err, &ne) {
				t.Errorf("Ready = %v, want the connection error", err)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Ready = %v after 10s, want the connection error", err)
		}
	}
}

// closedAddr returns a local address nothing listens on: it was listened on
// and closed, so connecting there is refused at once.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
