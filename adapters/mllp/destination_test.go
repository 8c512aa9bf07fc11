package mllp

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
	"github.com/spinebridge/spinebridge/routes"
)

func destNode(t *testing.T, src string) *yaml.Node {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Content[0]
}

// newTestDestination builds a destination through DestinationFactory and
// closes it when the test ends.
func newTestDestination(t *testing.T, src string) *Destination {
	t.Helper()
	d, err := DestinationFactory("legacy-pas", destNode(t, src))
	if err != nil {
		t.Fatalf("DestinationFactory:\n%v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d.(*Destination)
}

// hl7Delivery is a delivery of the original message with control id id.
func hl7Delivery(id, key string) *routes.Delivery {
	return &routes.Delivery{
		ID: "7.legacy.legacy-pas", MessageID: 7, Route: "legacy", Destination: "legacy-pas",
		Attempt: 1, Key: key, ContentType: routes.ContentTypeHL7v2, Body: testMessage(id),
	}
}

// answering is a recorder that answers each message with code, its ERR
// saying text.
func answering(code hl7v2.AckCode, text string) *recorder {
	return &recorder{respond: func(ctx context.Context, in *Inbound, n int) Response {
		var m hl7v2.Message
		m.Parse(in.Payload)
		opts := &hl7v2.AckOptions{Code: code, ControlID: "A1", Text: text}
		if text != "" {
			opts.Errors = []hl7v2.AckError{{Code: hl7v2.CodeApplicationRecordLocked}}
		}
		return Response{Reply: hl7v2.AppendACK(nil, &m, opts), Committed: true}
	}}
}

// Each acknowledgement code and fault is classified as the dispatcher needs
// it: delivered, retried or refused for good.
func TestDestinationAckClassification(t *testing.T) {
	for _, tt := range []struct {
		name      string
		h         *recorder
		wantErr   error // errors.Is, when set
		wantText  string
		retryable bool
	}{
		{name: "AA", h: answering(hl7v2.AA, "")},
		{name: "CA", h: answering(hl7v2.CA, "")},
		{name: "AE", h: answering(hl7v2.AE, "busy"), wantText: "acknowledgement AE: Application record locked", retryable: true},
		{name: "CE", h: answering(hl7v2.CE, "busy"), wantText: "acknowledgement CE", retryable: true},
		{name: "AR", h: answering(hl7v2.AR, "refused"), wantText: "legacy-pas: mllp: acknowledgement AR: Application record locked"},
		{name: "CR", h: answering(hl7v2.CR, ""), wantText: "acknowledgement CR"},
		{name: "wrong_MSA2", h: &recorder{respond: func(ctx context.Context, in *Inbound, n int) Response {
			other := Inbound{Payload: testMessage("SOMEONE-ELSE")}
			return Response{Reply: ackFor(&other, hl7v2.AA)}
		}}, wantErr: ErrAckMismatch, wantText: "ACK for another message", retryable: true},
		{name: "no_MSA", h: &recorder{respond: func(ctx context.Context, in *Inbound, n int) Response {
			return Response{Reply: []byte("MSH|^~\\&|||||||ACK|1|P|2.5\r")}
		}}, wantErr: ErrUnexpectedReply, retryable: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := startListener(t, ListenerConfig{}, tt.h)
			d := newTestDestination(t, "addr: "+e.addr+"\nack_timeout: 5s")
			err := d.Deliver(context.Background(), hl7Delivery("D1", "k"))
			if tt.wantText == "" && tt.wantErr == nil {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
			} else {
				if err == nil {
					t.Fatal("err = nil")
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Errorf("err = %v, want %v", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantText) {
					t.Errorf("err = %q, want it to say %q", err, tt.wantText)
				}
				if routes.IsPermanent(err) == tt.retryable {
					t.Errorf("permanent = %v, want %v", routes.IsPermanent(err), !tt.retryable)
				}
			}
			if strings.Contains(fmt.Sprint(err), patientName) {
				t.Errorf("error %q holds message content", err)
			}
			calls := e.h.calls()
			if len(calls) != 1 || calls[0].payload != string(testMessage("D1")) {
				t.Errorf("the receiver got %d messages; want the one body, once", len(calls))
			}
		})
	}
}

// Deliveries share one connection, kept open between them.
func TestDestinationKeepsConnection(t *testing.T) {
	e := startListener(t, ListenerConfig{}, nil)
	d := newTestDestination(t, "addr: "+e.addr)
	for i := range 3 {
		if err := d.Deliver(context.Background(), hl7Delivery(fmt.Sprint("K", i), "k")); err != nil {
			t.Fatal(err)
		}
	}
	calls := e.h.calls()
	if len(calls) != 3 || calls[0].conn.ID != calls[2].conn.ID || e.l.Stats().Accepted != 1 {
		t.Errorf("%d messages over %d connections, want 3 over 1", len(calls), e.l.Stats().Accepted)
	}
}

// No acknowledgement in time is retried; the next attempt goes on a new
// connection, where the late acknowledgement cannot be mistaken for its own.
func TestDestinationAckTimeout(t *testing.T) {
	release := make(chan struct{})
	h := &recorder{respond: func(ctx context.Context, in *Inbound, n int) Response {
		if n == 1 {
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return Response{Reply: ackFor(in, hl7v2.AA)}
	}}
	e := startListener(t, ListenerConfig{}, h)
	defer close(release)
	d := newTestDestination(t, "addr: "+e.addr+"\nack_timeout: 100ms")
	del := hl7Delivery("T1", "k")
	err := d.Deliver(context.Background(), del)
	if !errors.Is(err, ErrAckTimeout) || routes.IsPermanent(err) {
		t.Fatalf("err = %v, want a retryable ErrAckTimeout", err)
	}
	del.Attempt = 2
	if err := d.Deliver(context.Background(), del); err != nil {
		t.Fatalf("second attempt: %v", err)
	}
	if calls := e.h.calls(); len(calls) != 2 || calls[0].conn.ID == calls[1].conn.ID {
		t.Errorf("%d attempts; want 2 on two connections", len(calls))
	}
}

// A connection the receiver closed fails one attempt, and the next connects
// again.
func TestDestinationReconnects(t *testing.T) {
	h := &recorder{respond: func(ctx context.Context, in *Inbound, n int) Response {
		return Response{Reply: ackFor(in, hl7v2.AA), Close: n == 1}
	}}
	e := startListener(t, ListenerConfig{}, h)
	d := newTestDestination(t, "addr: "+e.addr+"\nack_timeout: 5s")
	if err := d.Deliver(context.Background(), hl7Delivery("R1", "k")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the receiver to close the connection", func() bool { return e.l.Stats().Open == 0 })
	var err error
	for i := range 2 {
		if err = d.Deliver(context.Background(), hl7Delivery(fmt.Sprint("R", i+2), "k")); err == nil {
			break
		}
		if routes.IsPermanent(err) {
			t.Fatalf("attempt on a closed connection: permanent %v", err)
		}
	}
	if err != nil {
		t.Fatalf("no delivery after reconnecting: %v", err)
	}
	if got := e.l.Stats().Accepted; got != 2 {
		t.Errorf("%d connections, want 2", got)
	}
}

func TestDestinationUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	d := newTestDestination(t, "addr: "+addr+"\ndial_timeout: 1s")
	if err := d.Deliver(context.Background(), hl7Delivery("U1", "k")); err == nil || routes.IsPermanent(err) {
		t.Errorf("Deliver: err = %v, want a retryable error", err)
	}
	if err := d.Ready(context.Background()); err == nil {
		t.Error("Ready: nil with nothing listening")
	}
}

// Bodies that cannot be sent are refused for good, without connecting.
func TestDestinationRefusesBody(t *testing.T) {
	e := startListener(t, ListenerConfig{}, nil)
	d := newTestDestination(t, "addr: "+e.addr)
	for _, tt := range []struct {
		name, ct, body, want string
	}{
		{"fhir", routes.ContentTypeFHIR, `{"resourceType":"Bundle"}`, "not HL7 v2"},
		{"end_block", routes.ContentTypeHL7v2, "MSH|^~\\&|A|B|C|D|||ADT^A01|X1|P|2.5\rNTE|1||a\x1cb\r", "end block"},
		{"no_control_id", routes.ContentTypeHL7v2, "MSH|^~\\&|A|B|C|D|||ADT^A01||P|2.5\r", "no MSH-10"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			del := hl7Delivery("", "k")
			del.ContentType, del.Body = tt.ct, []byte(tt.body)
			err := d.Deliver(context.Background(), del)
			if !routes.IsPermanent(err) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want a permanent error saying %q", err, tt.want)
			}
		})
	}
	if n := len(e.h.calls()); n != 0 {
		t.Errorf("the receiver got %d messages", n)
	}
}

func TestDestinationCommitACK(t *testing.T) {
	h := &recorder{respond: func(ctx context.Context, in *Inbound, n int) Response {
		return Response{Reply: ackFor(in, hl7v2.AA), Committed: n > 1}
	}}
	e := startListener(t, ListenerConfig{CommitACK: true}, h)
	d := newTestDestination(t, "addr: "+e.addr+"\ncommit_ack: true\nack_timeout: 5s")
	err := d.Deliver(context.Background(), hl7Delivery("C1", "k"))
	if !errors.Is(err, ErrCommitNAK) || routes.IsPermanent(err) {
		t.Fatalf("NAK: err = %v, want a retryable ErrCommitNAK", err)
	}
	if err := d.Deliver(context.Background(), hl7Delivery("C1", "k")); err != nil {
		t.Fatalf("committed: %v", err)
	}
}

// Messages of one key always take the same connection, so they keep their
// order; other keys spread over the others.
func TestDestinationConnectionsByKey(t *testing.T) {
	e := startListener(t, ListenerConfig{}, nil)
	d := newTestDestination(t, "addr: "+e.addr+"\nconnections: 3")
	var wg sync.WaitGroup
	for k := range 6 {
		wg.Go(func() {
			for i := range 5 {
				if err := d.Deliver(context.Background(), hl7Delivery(fmt.Sprintf("K%d-%d", k, i), fmt.Sprint("patient-", k))); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	connOf := map[string]uint64{}
	last := map[string]int{}
	for _, c := range e.h.calls() {
		m, _ := hl7v2.Parse([]byte(c.payload))
		id, _ := m.Lookup("MSH-10")
		var k, i int
		fmt.Sscanf(id.String(), "K%d-%d", &k, &i)
		key := fmt.Sprint(k)
		if prev, ok := connOf[key]; ok && prev != c.conn.ID {
			t.Errorf("key %s on connections %d and %d", key, prev, c.conn.ID)
		}
		connOf[key] = c.conn.ID
		if prev, ok := last[key]; ok && i != prev+1 {
			t.Errorf("key %s: message %d after %d", key, i, prev)
		}
		last[key] = i
	}
	if got := e.l.Stats().Accepted; got < 2 || got > 3 {
		t.Errorf("%d connections for 6 keys over 3 slots", got)
	}
}

// Ready dials when it knows no working connection, and trusts one that
// worked.
func TestDestinationReady(t *testing.T) {
	e := startListener(t, ListenerConfig{}, nil)
	d := newTestDestination(t, "addr: "+e.addr)
	if got := e.l.Stats().Accepted; got != 0 {
		t.Fatalf("DestinationFactory connected (%d connections)", got)
	}
	if err := d.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "Ready's connection to end", func() bool { return e.l.Stats().Open == 0 })
	if err := d.Deliver(context.Background(), hl7Delivery("Y1", "k")); err != nil {
		t.Fatal(err)
	}
	before := e.l.Stats().Accepted
	if err := d.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	if after := e.l.Stats().Accepted; after != before {
		t.Errorf("Ready dialled although a connection worked (%d → %d connections)", before, after)
	}
	if n := len(e.h.calls()); n != 1 {
		t.Errorf("Ready delivered: %d messages", n)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Deliver(context.Background(), hl7Delivery("Y2", "k")); !errors.Is(err, ErrClosed) {
		t.Errorf("Deliver after Close: %v", err)
	}
}

func TestDestinationMutualTLS(t *testing.T) {
	p := newTestPKI(t)
	e := startListener(t, ListenerConfig{TLS: TLSConfig{
		CertFile: p.serverCert, KeyFile: p.serverKey, ClientCAFile: p.caFile, ClientAuth: ClientAuthRequired,
	}}, nil)
	certFile := p.write(t, "client.pem", "CERTIFICATE", p.client.Certificate[0])
	keyFile := p.writeKey(t, "client.key", p.client.PrivateKey.(*ecdsa.PrivateKey))

	d := newTestDestination(t, fmt.Sprintf("addr: %s\ntls: {ca_file: %s, cert_file: %s, key_file: %s}", e.addr, p.caFile, certFile, keyFile))
	if err := d.Ready(context.Background()); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	if err := d.Deliver(context.Background(), hl7Delivery("S1", "k")); err != nil {
		t.Fatal(err)
	}
	if calls := e.h.calls(); len(calls) != 1 || !calls[0].conn.TLS || calls[0].conn.PeerCommonName != "pas.example.nhs.uk" {
		t.Errorf("calls %+v", calls)
	}

	noCert := newTestDestination(t, fmt.Sprintf("addr: %s\ntls: {ca_file: %s}", e.addr, p.caFile))
	if err := noCert.Deliver(context.Background(), hl7Delivery("S2", "k")); err == nil || routes.IsPermanent(err) {
		t.Errorf("without a client certificate: err = %v, want a retryable error", err)
	}
	plain := newTestDestination(t, "addr: "+e.addr+"\nack_timeout: 1s")
	if err := plain.Deliver(context.Background(), hl7Delivery("S3", "k")); err == nil {
		t.Error("plain TCP to a TLS listener delivered")
	}
}

func TestDestinationFactoryErrors(t *testing.T) {
	src := `addr: pas.example.nhs.uk
ack_timeout: -1s
dial_timeout: -2s
connections: 100
tls:
  cert_file: /c.pem
`
	_, err := DestinationFactory("legacy-pas", destNode(t, src))
	want := []string{
		"1:7: addr: want host:port",
		"2:14: ack_timeout: -1s is negative",
		"3:15: dial_timeout: -2s is negative",
		"4:14: connections: 100: want 1 to 64",
		"6:14: tls.cert_file: set without key_file",
	}
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Errorf("errors:\n%v\nwant:\n%s", err, strings.Join(want, "\n"))
	}
	for _, tt := range []struct{ src, want string }{
		{"commit_ack: true", "1:1: addr: required"},
		{"addr: pas:99999", "1:7: addr: the port is not a number from 1 to 65535"},
		{"addr: pas:2575\ntls: {ca_file: /nonexistent/ca.pem}", "2:16: tls.ca_file: open /nonexistent/ca.pem"},
		{"addr: pas:2575\nack_timeout: 30", "2:14: ack_timeout: cannot unmarshal"},
		{"addr: pas:2575\nretries: 3", `2:1: unknown key "retries"`},
	} {
		_, err := DestinationFactory("legacy-pas", destNode(t, tt.src))
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("%q: err = %v, want %q", tt.src, err, tt.want)
		}
	}
	if _, err := NewDestination("legacy-pas", DestinationConfig{}); err == nil || err.Error() != "mllp destination legacy-pas: addr: required" {
		t.Errorf("NewDestination: %v", err)
	}
	d, err := NewDestination("legacy-pas", DestinationConfig{Addr: "pas:2575", TLS: ClientTLSConfig{Enabled: true}})
	if err != nil || d.cfg.TLS == nil || d.cfg.AckTimeout != defaultAckTimeout || len(d.slots) != 1 {
		t.Errorf("defaults: %v, %+v", err, d)
	}
}

// A deadline from the caller ends a delivery that waits for its
// acknowledgement, as a retryable failure. The Sender sets the caller's
// deadline on the socket, which may see it pass before the context does.
func TestDestinationContext(t *testing.T) {
	release := make(chan struct{})
	h := &recorder{respond: func(ctx context.Context, in *Inbound, n int) Response {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return Response{}
	}}
	e := startListener(t, ListenerConfig{}, h)
	defer close(release)
	d := newTestDestination(t, "addr: "+e.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := d.Deliver(ctx, hl7Delivery("X1", "k"))
	if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, ErrAckTimeout) || routes.IsPermanent(err) {
		t.Errorf("err = %v, want a retryable deadline", err)
	}
}
