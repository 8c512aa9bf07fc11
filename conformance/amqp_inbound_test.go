package conformance_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
)

// The AMQP inbound suite runs the real binary consuming raw HL7 v2 from a
// RabbitMQ queue, with a routing table that writes every message to files.

// inboundQueue is a fresh queue with a dead-letter exchange and a queue bound
// to it, on the local broker, removed when the test ends.
type inboundQueue struct {
	ch          *amqp091.Channel
	name        string // the queue the engine consumes
	dlx         string // its dead-letter exchange
	deadLetters string // the queue bound to dlx
}

func newInboundQueue(t *testing.T) *inboundQueue {
	t.Helper()
	ch := brokerChannel(t)
	base := fmt.Sprintf("sb-inbound-%d", time.Now().UnixNano())
	q := &inboundQueue{ch: ch, name: base, dlx: base + ".rejected", deadLetters: base + ".rejected"}
	t.Cleanup(func() {
		ch.QueueDelete(q.name, false, false, false)
		ch.QueueDelete(q.deadLetters, false, false, false)
		ch.ExchangeDelete(q.dlx, false, false)
	})
	if err := ch.ExchangeDeclare(q.dlx, "fanout", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(q.deadLetters, false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(q.deadLetters, "", q.dlx, false, nil); err != nil {
		t.Fatal(err)
	}
	// Declared as the engine's declare: true declares it, so that both agree.
	if _, err := ch.QueueDeclare(q.name, true, false, false, false, amqp091.Table{"x-dead-letter-exchange": q.dlx}); err != nil {
		t.Fatal(err)
	}
	return q
}

func (q *inboundQueue) publish(t *testing.T, body string) {
	t.Helper()
	err := q.ch.PublishWithContext(context.Background(), "", q.name, true, false, amqp091.Publishing{
		ContentType: "x-application/hl7-v2+er7", DeliveryMode: amqp091.Persistent, Body: []byte(body),
	})
	if err != nil {
		t.Fatal(err)
	}
}

// depth is how many messages a queue holds ready for a consumer; messages a
// consumer holds unacknowledged are not counted.
func (q *inboundQueue) depth(t *testing.T, name string) int {
	t.Helper()
	info, err := q.ch.QueueDeclarePassive(name, false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	return info.Messages
}

// inboundEngine starts serve consuming q as the inbound named name, with a
// routes table writing every message unchanged to files under dir/out.
func inboundEngine(t *testing.T, q *inboundQueue, dir, name string) *engine {
	t.Helper()
	routesFile := writeArchiveRoutes(t, dir)
	// The password comes from the environment, as a deployment's would.
	t.Setenv("SB_INBOUND_AMQP_PASSWORD", "guest")
	return startEngineIn(t, filepath.Join(dir, "data"), fmt.Sprintf(`routes:
  file: %s
inbound:
  amqp:
    - name: %s
      url: amqp://guest@127.0.0.1:5672/
      password_env: SB_INBOUND_AMQP_PASSWORD
      queue: %s
      declare: true
      dead_letter_exchange: %s
      prefetch: 16
`, routesFile, name, q.name, q.dlx))
}

// delivered reads the files the archive destination wrote and counts them by
// MSH-10.
func delivered(t *testing.T, dir string) map[string]int {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "out", "*", "*"))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, f := range files {
		if strings.HasPrefix(filepath.Base(f), ".") {
			continue // a file still being written
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		got[field(string(b), "MSH", 10)]++
	}
	return got
}

// Messages published to a queue are consumed by serve, journaled, deduplicated,
// routed and delivered exactly as MLLP messages are; the queue drains; a
// message that is not HL7 v2 is journaled as rejected and goes to the queue's
// dead-letter exchange, once.
func TestAMQPInboundDeliversEveryMessageOnceAndRejectsMalformed(t *testing.T) {
	q := newInboundQueue(t)
	const n = 40
	var ids []string
	for i := range n {
		id := fmt.Sprintf("AMQP%03d", i)
		ids = append(ids, id)
		q.publish(t, adt(id, nil))
	}
	// The same message again, as a sender that republished it would: a
	// duplicate, journaled as one and not delivered twice.
	q.publish(t, adt(ids[0], nil))
	const malformed = "this is not an HL7 v2 message\r"
	q.publish(t, malformed)

	dir := t.TempDir()
	e := inboundEngine(t, q, dir, "lab-queue")

	waitUntil(t, 60*time.Second, fmt.Sprintf("%d files from the archive destination", n), func() bool { return len(delivered(t, dir)) >= n })
	waitUntil(t, 30*time.Second, "the malformed message in the dead-letter queue", func() bool { return q.depth(t, q.deadLetters) >= 1 })
	waitUntil(t, 30*time.Second, "/readyz to report ready", func() bool {
		return strings.TrimSpace(adminText(t, e, "/readyz")) == "ready"
	})
	metrics := adminText(t, e, "/metrics")
	for _, want := range []string{
		fmt.Sprintf(`spinebridge_messages_received_total{code="AA",listener="lab-queue"} %d`, n+1), // the duplicate is answered AA too
		`spinebridge_messages_received_total{code="AR",listener="lab-queue"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// Stop as an operator would: the consumer settles what it holds first.
	if code := e.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("exit status %d after SIGTERM:\n%s", code, e.log)
	}

	// Nothing is left in the queue, not even unacknowledged messages returned
	// by the engine's stop; the malformed message was dead-lettered once.
	if d := q.depth(t, q.name); d != 0 {
		t.Errorf("queue holds %d messages after the engine stopped, want 0", d)
	}
	if d := q.depth(t, q.deadLetters); d != 1 {
		t.Errorf("dead-letter queue holds %d messages, want the malformed one, once", d)
	}
	if m, ok, err := q.ch.Get(q.deadLetters, true); err != nil || !ok || string(m.Body) != malformed {
		t.Errorf("dead-letter queue: %v, %v, %q; want the malformed message as published", err, ok, m.Body)
	}

	got := delivered(t, dir)
	for _, id := range ids {
		if got[id] != 1 {
			t.Errorf("%s delivered %d times, want once", id, got[id])
		}
	}
	if len(got) != n {
		t.Errorf("%d distinct messages delivered, want %d: %v", len(got), n, got)
	}

	statuses := map[string]int{}
	var firstID, rejectedID string
	for _, r := range journalAfterStop(t, filepath.Join(dir, "data")) {
		statuses[r.Status]++
		if r.ControlID == ids[0] && r.Status == "accepted" {
			firstID = r.ID
		}
		if r.Status == "rejected" {
			rejectedID = r.ID
		}
	}
	if statuses["accepted"] != n || statuses["duplicate"] != 1 || statuses["rejected"] != 1 || len(statuses) != 3 {
		t.Errorf("journal statuses %v, want %d accepted, 1 duplicate, 1 rejected", statuses, n)
	}

	// messages show names where the message came from and where it went.
	show := func(id string) string {
		out, err := exec.Command(binary, "messages", "show", "--data-dir", filepath.Join(dir, "data"), id).CombinedOutput()
		if err != nil {
			t.Fatalf("messages show %s: %v\n%s", id, err, out)
		}
		return string(out)
	}
	journey := show(firstID)
	for _, want := range []string{
		`listener:\s+lab-queue\n`,
		`peer:\s+amqp://` + regexp.QuoteMeta(q.name) + `\n`,
		`control id:\s+AMQP000\n`,
		`status:\s+accepted\n`,
		`routed by originals to archive`,
		`archive via originals: attempt 1 delivered`,
	} {
		if !regexp.MustCompile(want).MatchString(journey) {
			t.Errorf("messages show %s does not match %s:\n%s", firstID, want, journey)
		}
	}
	rejected := show(rejectedID)
	for _, want := range []string{`listener:\s+lab-queue\n`, `status:\s+rejected\n`, `ack code:\s+AR\n`, `message does not start with MSH`} {
		if !regexp.MustCompile(want).MatchString(rejected) {
			t.Errorf("messages show %s does not match %s:\n%s", rejectedID, want, rejected)
		}
	}
	if !strings.Contains(e.log.String(), `reason="message does not start with MSH"`) {
		t.Errorf("the engine did not log why the malformed message was rejected:\n%s", e.log)
	}
}

// Killed with messages in hand, the engine loses none: every message acked to
// the broker was journaled first, and those journaled but not yet acked come
// again and are answered as duplicates. After a restart each message is
// delivered once and the queue drains.
func TestAMQPInboundKilledMidQueueLosesNothing(t *testing.T) {
	q := newInboundQueue(t)
	const n = 400
	for i := range n {
		q.publish(t, adt(fmt.Sprintf("KILL%04d", i), nil))
	}
	dir := t.TempDir()
	e := inboundEngine(t, q, dir, "amqp")
	waitUntil(t, 60*time.Second, "some messages delivered", func() bool { return len(delivered(t, dir)) >= 20 })
	e.kill()
	<-e.exited
	before := len(delivered(t, dir))

	e = inboundEngine(t, q, dir, "amqp")
	waitUntil(t, 120*time.Second, fmt.Sprintf("all %d delivered after the restart", n), func() bool { return len(delivered(t, dir)) >= n })
	waitUntil(t, 30*time.Second, "the queue to drain", func() bool { return q.depth(t, q.name) == 0 })
	if code := e.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("exit status %d after SIGTERM:\n%s", code, e.log)
	}
	if d := q.depth(t, q.name); d != 0 {
		t.Errorf("queue holds %d messages after the engine stopped, want 0", d)
	}
	got := delivered(t, dir)
	for i := range n {
		if id := fmt.Sprintf("KILL%04d", i); got[id] != 1 {
			t.Errorf("%s delivered %d times, want once", id, got[id])
		}
	}
	accepted := 0
	for _, r := range journalAfterStop(t, filepath.Join(dir, "data")) {
		if r.Status == "accepted" {
			accepted++
		}
	}
	if accepted != n {
		t.Errorf("%d messages journaled as accepted, want %d (each once)", accepted, n)
	}
	t.Logf("%d of %d delivered before kill -9; all %d once after the restart", before, n, n)
}

// An inbound queue whose broker cannot be reached does not stop the engine
// from starting or taking MLLP, and /readyz says what is wrong.
func TestAMQPInboundUnreachableBrokerIsNotReady(t *testing.T) {
	addr := closedAddr(t)
	e := startEngine(t, fmt.Sprintf(`inbound:
  amqp:
    - name: lab
      url: amqp://%s/
      queue: lab
`, addr))
	c := dial(t, e.mllp)
	c.send(adt("WHILE-DOWN", nil))
	if code := field(c.ack(), "MSA", 1); code != "AA" {
		t.Errorf("MLLP message answered %s while the inbound broker is down, want AA", code)
	}
	waitUntil(t, 30*time.Second, "/readyz to name the inbound queue's connection failure", func() bool {
		return strings.Contains(adminText(t, e, "/readyz"), "inbound amqp lab: amqp: connect: dial tcp "+addr)
	})
	resp, err := http.Get("http://" + e.admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %d, want 503", resp.StatusCode)
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
