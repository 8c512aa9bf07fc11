package itk

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/spinebridge/spinebridge/routes"
)

// ackReceiver stands in for the original sender's ITK endpoint.
type ackReceiver struct {
	mu       sync.Mutex
	requests []*Request
	actions  []string
	answer   func(w http.ResponseWriter)
}

func (a *ackReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	req, err := Decode(body, Limits{})
	if err != nil {
		// The acknowledgement must pass the same rules as any request.
		w.WriteHeader(http.StatusInternalServerError)
		w.Write(buildFault("", First(err), 0, fixedNow))
		return
	}
	a.mu.Lock()
	a.requests = append(a.requests, req)
	a.actions = append(a.actions, r.Header.Get("SOAPAction"))
	a.mu.Unlock()
	if a.answer != nil {
		a.answer(w)
		return
	}
	w.Header().Set("Content-Type", "text/xml")
	w.Write(buildResponse(req, "OK", fixedNow))
}

func faultAnswer(code Code, fault string) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		w.WriteHeader(http.StatusInternalServerError)
		w.Write(buildFault("", &Error{Code: code, Fault: fault, Rule: "test", Text: "test"}, 0, fixedNow))
	}
}

func ackDelivery(t *testing.T) *routes.Delivery {
	t.Helper()
	ack, err := BuildInfrastructureAck(ackMeta(t), nil, ackOpts)
	if err != nil {
		t.Fatal(err)
	}
	return &routes.Delivery{ID: "42.discharge.itk-acks", MessageID: 42, Attempt: 1, ContentType: routes.ContentTypeXML, Body: ack}
}

func TestAckDestinationDeliver(t *testing.T) {
	tests := []struct {
		name       string
		answer     func(http.ResponseWriter)
		wantErr    bool
		permanent  bool
		retryAfter time.Duration
	}{
		{name: "OK"},
		{name: "202 without a body", answer: func(w http.ResponseWriter) { w.WriteHeader(http.StatusAccepted) }},
		{name: "fault 2100", answer: faultAnswer(CodeRetryable, FaultServer), wantErr: true},
		{name: "fault 1000", answer: faultAnswer(CodeInvalidMessage, FaultClient), wantErr: true, permanent: true},
		{name: "fault 2200", answer: faultAnswer(CodeNotRetryable, FaultServer), wantErr: true, permanent: true},
		{name: "fault 3000", answer: faultAnswer(CodeAccessDenied, FaultClient), wantErr: true, permanent: true},
		{name: "500 without a fault", answer: func(w http.ResponseWriter) { w.WriteHeader(http.StatusBadGateway) }, wantErr: true},
		{name: "503 Retry-After", answer: func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusServiceUnavailable)
		}, wantErr: true, retryAfter: 7 * time.Second},
		{name: "404", answer: func(w http.ResponseWriter) { w.WriteHeader(http.StatusNotFound) }, wantErr: true, permanent: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rcv := &ackReceiver{answer: tt.answer}
			srv := httptest.NewServer(rcv)
			defer srv.Close()
			d, err := NewAckDestination("itk-acks", AckConfig{URL: srv.URL, Username: "x26-engine"})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			err = d.Deliver(context.Background(), ackDelivery(t))
			if (err != nil) != tt.wantErr || routes.IsPermanent(err) != tt.permanent {
				t.Fatalf("err %v (permanent %v), want error %v permanent %v", err, routes.IsPermanent(err), tt.wantErr, tt.permanent)
			}
			var de *routes.DeliveryError
			if tt.retryAfter > 0 && (!errors.As(err, &de) || de.RetryAfter != tt.retryAfter) {
				t.Errorf("err %v, want RetryAfter %v", err, tt.retryAfter)
			}
			if len(rcv.requests) != 1 {
				t.Fatalf("%d requests reached the receiver (a fault means it broke the rules)", len(rcv.requests))
			}
			req := rcv.requests[0]
			if req.Header.Action != ServiceInfrastructureAck || rcv.actions[0] != `"`+ServiceInfrastructureAck+`"` ||
				req.Header.To != srv.URL || req.Header.Username != "x26-engine" {
				t.Errorf("request header %+v, SOAPAction %s", req.Header, rcv.actions[0])
			}
		})
	}
}

// TestAckDestinationResend: every attempt at one delivery carries the same
// wsa:MessageID, so the receiver can tell a resend.
func TestAckDestinationResend(t *testing.T) {
	rcv := &ackReceiver{}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	d, err := NewAckDestination("itk-acks", AckConfig{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	dl := ackDelivery(t)
	for attempt := 1; attempt <= 2; attempt++ {
		dl.Attempt = attempt
		if err := d.Deliver(context.Background(), dl); err != nil {
			t.Fatal(err)
		}
	}
	if a, b := rcv.requests[0].Header.MessageID, rcv.requests[1].Header.MessageID; a != b {
		t.Errorf("message ids %s and %s differ", a, b)
	}
}

func TestAckDestinationEndpoint(t *testing.T) {
	d, err := NewAckDestination("acks", AckConfig{URL: "https://tie.example.nhs.uk/itk",
		Addresses: map[string]string{"urn:nhs-uk:addressing:ods:RX1:DISCHARGE": "https://pas.rx1.example.nhs.uk/itk"}})
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]string{
		"urn:nhs-uk:addressing:ods:RX1:DISCHARGE": "https://pas.rx1.example.nhs.uk/itk",
		"https://gp.example.nhs.uk/itk":           "https://gp.example.nhs.uk/itk",
		"urn:nhs-uk:addressing:ods:Y02":           "https://tie.example.nhs.uk/itk",
	} {
		if got, ok := d.endpoint(addr); !ok || got != want {
			t.Errorf("endpoint(%s) = %s, want %s", addr, got, want)
		}
	}
	only, _ := NewAckDestination("acks", AckConfig{Addresses: map[string]string{"urn:nhs-uk:addressing:ods:RX1": "http://127.0.0.1:1/"}})
	err = only.Deliver(context.Background(), ackDelivery(t))
	if !routes.IsPermanent(err) {
		t.Errorf("an address with no endpoint: %v, want a permanent error", err)
	}
	if err := only.Deliver(context.Background(), &routes.Delivery{ID: "1.r.d", Body: []byte("MSH|^~\\&|")}); !routes.IsPermanent(err) {
		t.Errorf("a body that is not an envelope: %v, want a permanent error", err)
	}
}

func TestAckFactory(t *testing.T) {
	var node yaml.Node
	src := "kind: itk-ack\nurl: ftp://example\naddresses:\n  urn:nhs-uk:addressing:ods:RX1: not-a-url\ntimeout: -1s\n"
	if err := yaml.Unmarshal([]byte(src), &node); err != nil {
		t.Fatal(err)
	}
	_, err := AckFactory("acks", node.Content[0])
	if err == nil {
		t.Fatal("a bad config was accepted")
	}
	for _, want := range []string{"2:6: url:", "4:34: addresses.urn:nhs-uk:addressing:ods:RX1:", "5:10: timeout:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if err := yaml.Unmarshal([]byte("kind: itk-ack\nurl: https://tie.example.nhs.uk/itk\ntimeout: 5s\n"), &node); err != nil {
		t.Fatal(err)
	}
	d, err := AckFactory("acks", node.Content[0])
	if err != nil {
		t.Fatal(err)
	}
	if d.(*AckDestination).cfg.Timeout != 5*time.Second {
		t.Errorf("timeout %v", d.(*AckDestination).cfg.Timeout)
	}
	// Each TLS file is reported at its own key.
	src = "kind: itk-ack\nurl: https://tie.example.nhs.uk/itk\ntls:\n  ca_file: /nonexistent/ca.pem\n  key_file: client.key\n"
	if err := yaml.Unmarshal([]byte(src), &node); err != nil {
		t.Fatal(err)
	}
	_, err = AckFactory("acks", node.Content[0])
	for _, want := range []string{"4:12: tls.ca_file: open /nonexistent/ca.pem", "5:13: tls.key_file: set without cert_file"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
	if err := yaml.Unmarshal([]byte("kind: itk-ack\nurls: x\n"), &node); err != nil {
		t.Fatal(err)
	}
	if _, err := AckFactory("acks", node.Content[0]); err == nil || !strings.Contains(err.Error(), "2:1: unknown key") {
		t.Errorf("unknown key: %v", err)
	}
}

func TestAckDestinationReady(t *testing.T) {
	srv := httptest.NewServer(&ackReceiver{})
	d, _ := NewAckDestination("acks", AckConfig{URL: srv.URL})
	if err := d.Ready(context.Background()); err != nil {
		t.Errorf("Ready with the endpoint up: %v", err)
	}
	srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.Ready(ctx); err == nil {
		t.Error("Ready with the endpoint down")
	}
}
