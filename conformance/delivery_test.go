package conformance_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/spinebridge/spinebridge/adapters/fhirrest/fhirresttest"
)

// The delivery suite runs the real binary with a routing table that sends ADT
// to a FHIR server and to RabbitMQ, and every message, unchanged, to a legacy
// MLLP system, and takes destinations down while messages flow.

const brokerURL = "amqp://guest:guest@127.0.0.1:5672/"

// legacySystem is an MLLP receiver that refuses (AE) its first refuse
// messages, then accepts, and keeps the control ids it accepted in order.
type legacySystem struct {
	*scriptedReceiver
	mu       sync.Mutex
	accepted []string
}

func newLegacySystem(t *testing.T, refuse int) *legacySystem {
	l := &legacySystem{}
	l.scriptedReceiver = newScriptedReceiver(t, func(n int, controlID string) (string, bool) {
		if n <= refuse {
			return ackFor(controlID, "AE"), true
		}
		l.mu.Lock()
		l.accepted = append(l.accepted, controlID)
		l.mu.Unlock()
		return ackFor(controlID, "AA"), true
	})
	return l
}

func (l *legacySystem) got() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.accepted...)
}

// brokerConsumer connects to the broker and returns a function that starts
// consuming queue once the engine has declared it (the routes file's declare
// block makes the exchange and queue); the test removes both when it ends.
func brokerConsumer(t *testing.T, exchange, queue string) func() <-chan amqp091.Delivery {
	t.Helper()
	ch := brokerChannel(t)
	t.Cleanup(func() {
		ch.QueueDelete(queue, false, false, false)
		ch.ExchangeDelete(exchange, false, false)
	})
	return func() <-chan amqp091.Delivery {
		deliveries, err := ch.Consume(queue, "", true, false, false, false, nil)
		if err != nil {
			t.Fatalf("consume %s: %v", queue, err)
		}
		return deliveries
	}
}

// brokerChannel connects to the local RabbitMQ and opens a channel on it; the
// connection closes when the test ends, after the test's own clean-ups, which
// may use the channel.
func brokerChannel(t *testing.T) *amqp091.Channel {
	t.Helper()
	conn, err := amqp091.Dial(brokerURL)
	if err != nil {
		t.Fatalf("RabbitMQ on 127.0.0.1:5672 is needed (.ci/run starts it; or rabbitmq-server -detached): %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

func TestEngineDeliversEveryMessageOncePerDestinationInOrderPerPatient(t *testing.T) {
	fhir := fhirresttest.NewServer(fhirresttest.Options{})
	t.Cleanup(fhir.Close)
	fhir.FailNext(12, fhirresttest.Failure{Status: http.StatusServiceUnavailable, RetryAfter: "0"})
	legacy := newLegacySystem(t, 10)
	suffix := fmt.Sprintf("%d", time.Now().UnixNano())
	exchange, queue := "sb-e2e-"+suffix, "sb-e2e-"+suffix

	dir := t.TempDir()
	routesFile := filepath.Join(dir, "routes.yaml")
	writeFile(t, routesFile, fmt.Sprintf(`routes:
  - name: adt
    when: msg.Type == "ADT"
    transform: fhir
    to: [pds, events]
    order_by: msg.Get("PID-3[1].1")
    continue: true
  - name: legacy
    when: "true"
    to: [pas]
    order_by: msg.Get("PID-3[1].1")
destinations:
  pds:
    kind: fhir
    url: %s
  events:
    kind: amqp
    url: amqp://127.0.0.1:5672/
    password_env: SB_E2E_AMQP_PASSWORD
    exchange: %s
    routing_key: "{{route}}.{{type}}.{{trigger}}"
    declare: {exchange_type: topic, queue: %s, binding_key: "#"}
  pas:
    kind: mllp
    addr: %s
    ack_timeout: 5s
`, fhir.URL, exchange, queue, legacy.addr))
	os.Setenv("SB_E2E_AMQP_PASSWORD", "guest")
	defer os.Unsetenv("SB_E2E_AMQP_PASSWORD")
	consume := brokerConsumer(t, exchange, queue)

	e := startEngineIn(t, filepath.Join(dir, "data"), fmt.Sprintf(`routes:
  file: %s
delivery:
  initial_backoff: 20ms
  max_backoff: 200ms
  max_attempts: 1000
`, routesFile))

	// Thirty admissions for three patients, interleaved, on one connection, so
	// that journal order is sending order.
	patients := []string{"9990000018", "9990000026", "9990000034"}
	var sent []string
	c := dial(t, e.mllp)
	for i := range 30 {
		id := fmt.Sprintf("E2E%03d", i)
		msg := strings.Replace(adt(id, nil), "9990000018", patients[i%3], 1) + "PV1|1|I|||||||||||||||||VISIT" + id + "\r"
		msg = strings.Replace(msg, "PV1|1|I\r", "", 1)
		c.send(msg)
		if ack := c.ack(); field(ack, "MSA", 1) != "CA" && field(ack, "MSA", 1) != "AA" {
			t.Fatalf("message %s: %q", id, ack)
		}
		sent = append(sent, id)
	}
	patientOf := func(id string) string {
		var n int
		fmt.Sscanf(id, "E2E%03d", &n)
		return patients[n%3]
	}

	// The legacy system gets each original exactly once with AA, in order per
	// patient, after refusing the first ten attempts.
	waitUntil(t, 60*time.Second, "the legacy system to accept all 30", func() bool { return len(legacy.got()) >= 30 })
	checkOncePerPatientInOrder(t, "legacy", legacy.got(), sent, patientOf)

	// The FHIR server stores every bundle once, in order per patient, after
	// refusing twelve requests with 503.
	visit := regexp.MustCompile(`VISIT(E2E\d{3})`)
	fhirGot := func() []string {
		var ids []string
		for _, r := range fhir.Requests() {
			if r.Method != http.MethodPost {
				continue
			}
			if m := visit.FindSubmatch(r.Body); m != nil {
				ids = append(ids, string(m[1]))
			}
		}
		return ids
	}
	waitUntil(t, 60*time.Second, "the FHIR server to take all 30", func() bool { return len(fhirGot()) >= 30+12 })
	all := fhirGot()
	checkOncePerPatientInOrder(t, "fhir", all[12:], sent, patientOf)
	if n := len(fhir.Resources("Patient")); n != 3 {
		t.Errorf("the FHIR server holds %d patients, want 3 (conditional updates, not duplicates)", n)
	}

	// RabbitMQ holds one message per ADT, each with its delivery id as
	// message-id.
	deliveries := consume()
	var amqpGot []string
	seenIDs := map[string]bool{}
	deadline := time.After(60 * time.Second)
	for len(amqpGot) < 30 {
		select {
		case d := <-deliveries:
			if seenIDs[d.MessageId] {
				t.Errorf("AMQP message-id %s twice", d.MessageId)
			}
			seenIDs[d.MessageId] = true
			if d.ContentType != "application/fhir+json" || d.RoutingKey != "adt.ADT.A01" {
				t.Errorf("AMQP message %s: content type %q, routing key %q", d.MessageId, d.ContentType, d.RoutingKey)
			}
			if m := visit.FindSubmatch(d.Body); m != nil {
				amqpGot = append(amqpGot, string(m[1]))
			}
		case <-deadline:
			t.Fatalf("RabbitMQ got %d of 30", len(amqpGot))
		}
	}
	checkOncePerPatientInOrder(t, "amqp", amqpGot, sent, patientOf)

	// Every journey ends delivered, and nothing is dead-lettered.
	show := e.show("1")
	for _, want := range []string{"routed by adt to pds, events", "routed by legacy to pas", "pds via adt: attempt", "delivered"} {
		if !strings.Contains(show, want) {
			t.Errorf("messages show 1 lacks %q:\n%s", want, show)
		}
	}
	resp, err := http.Get("http://" + e.admin + "/dead-letters")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(strings.TrimSpace(string(body))) != 0 {
		t.Errorf("dead letters: %s", body)
	}
	metrics := adminText(t, e, "/metrics")
	for _, want := range []string{`spinebridge_delivery_attempts_total{destination="pas",outcome="delivered"} 30`,
		`spinebridge_delivery_attempts_total{destination="pas",outcome="retrying"} 10`,
		`spinebridge_messages_routed_total{route="adt"} 30`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// checkOncePerPatientInOrder fails unless got holds every id of sent exactly
// once, and each patient's ids in the order sent.
func checkOncePerPatientInOrder(t *testing.T, dest string, got, sent []string, patientOf func(string) string) {
	t.Helper()
	count := map[string]int{}
	for _, id := range got {
		count[id]++
	}
	for _, id := range sent {
		if count[id] != 1 {
			t.Errorf("%s: %s delivered %d times, want once", dest, id, count[id])
		}
	}
	last := map[string]string{}
	for _, id := range got {
		p := patientOf(id)
		if id < last[p] {
			t.Errorf("%s: %s delivered after %s for patient %s", dest, id, last[p], p)
		}
		last[p] = id
	}
}

func waitUntil(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func adminText(t *testing.T, e *engine, path string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.admin+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// An ITK ADT (v2 XML) and an ITK CDA document sent from the CLI are journaled,
// answered OK, routed and converted like MLLP messages, by the default table.
func TestEngineITKFromTheCLIIsJournaledRoutedAndConverted(t *testing.T) {
	dir := t.TempDir()
	e := startEngineIn(t, dir, "")
	url := "http://" + e.http + "/itk"
	out, err := exec.Command(binary, "send", "--itk", url,
		filepath.Join("..", "fixtures", "itk", "adt_a01_v2xml.envelope.xml"),
		filepath.Join("..", "fixtures", "itk", "cda_discharge.envelope.xml")).CombinedOutput()
	if err != nil {
		t.Fatalf("send --itk: %v\n%s", err, out)
	}
	if strings.Count(string(out), " OK\n") != 2 {
		t.Fatalf("send --itk answered:\n%s", out)
	}
	recs := e.journal(nil)
	if len(recs) != 2 {
		t.Fatalf("journal holds %d records, want 2", len(recs))
	}
	var bundles []string
	waitUntil(t, 30*time.Second, "both bundles in out/fhir", func() bool {
		bundles, _ = filepath.Glob(filepath.Join(dir, "out", "fhir", "*", "*.json"))
		return len(bundles) == 2
	})
	var all string
	for _, b := range bundles {
		data, err := os.ReadFile(b)
		if err != nil {
			t.Fatal(err)
		}
		all += string(data)
	}
	for _, want := range []string{`"resourceType":"DocumentReference"`, `"resourceType":"Encounter"`, `"system":"https://fhir.nhs.uk/Id/nhs-number"`} {
		if !strings.Contains(all, want) {
			t.Errorf("the bundles lack %s", want)
		}
	}
	// A file is renamed into place before its delivery's outcome is stored.
	for _, r := range recs {
		waitUntil(t, 30*time.Second, "record "+r.ID+"'s FHIR delivery in its journey", func() bool {
			return regexp.MustCompile(`fhir-files via \S+: attempt 1 delivered`).MatchString(e.show(r.ID))
		})
	}
}
