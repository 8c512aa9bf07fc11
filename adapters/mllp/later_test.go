package mllp

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
)

// TestLaterSendsAfterTheReply checks Response.Later: a message sent through it
// (an application acknowledgement) follows the reply on the same connection,
// a Sender with OnLateAck takes it as a late acknowledgement of the message
// it names, and sending after the connection has ended fails.
func TestLaterSendsAfterTheReply(t *testing.T) {
	var (
		mu    sync.Mutex
		sends []func([]byte) error
	)
	h := &recorder{respond: func(ctx context.Context, in *Inbound, n int) Response {
		var m hl7v2.Message
		m.Parse(in.Payload)
		appAck := hl7v2.AppendACK(nil, &m, &hl7v2.AckOptions{Code: hl7v2.AA, ControlID: "APP"})
		return Response{Reply: ackFor(in, hl7v2.CA), Later: func(send func([]byte) error) {
			if send == nil {
				t.Error("Later was given no way to send after a reply that was written")
				return
			}
			mu.Lock()
			sends = append(sends, send)
			mu.Unlock()
			go func() {
				if err := send(appAck); err != nil {
					t.Errorf("sending the application ACK: %v", err)
				}
			}()
		}}
	}}
	env := startListener(t, ListenerConfig{}, h)

	late := map[string]string{}
	var lateMu sync.Mutex
	s, err := Dial(context.Background(), SenderConfig{Addr: env.addr, OnLateAck: func(id string, ack []byte) {
		var m hl7v2.Message
		m.Parse(ack)
		code, _ := m.Lookup("MSA-1")
		lateMu.Lock()
		late[id] = code.String()
		lateMu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"L1", "L2", "L3"} {
		ack, err := s.Send(context.Background(), testMessage(id))
		if err != nil {
			t.Fatalf("%s: %v (reply %q)", id, err, ack)
		}
	}
	count := func() int { lateMu.Lock(); defer lateMu.Unlock(); return len(late) }
	if err := s.AwaitLate(context.Background(), 30*time.Second, func() bool { return count() == 3 }); err != nil {
		t.Fatal(err)
	}
	lateMu.Lock()
	for _, id := range []string{"L1", "L2", "L3"} {
		if late[id] != "AA" {
			t.Errorf("late acknowledgement of %s: %q, want AA", id, late[id])
		}
	}
	lateMu.Unlock()

	s.Close()
	mu.Lock()
	send := sends[0]
	mu.Unlock()
	waitFor(t, "a send after the connection ended to fail", func() bool {
		return errors.Is(send([]byte("MSH|^~\\&|late\r")), errConnEnded)
	})
}

// TestSenderWithoutOnLateAckRefusesAnAnswerToAnotherMessage keeps the old
// rule for senders that expect none: a reply naming another message is
// ErrAckMismatch.
func TestSenderWithoutOnLateAckRefusesAnAnswerToAnotherMessage(t *testing.T) {
	h := &recorder{respond: func(ctx context.Context, in *Inbound, n int) Response {
		return Response{Reply: hl7v2.AppendACK(nil, nil, &hl7v2.AckOptions{Code: hl7v2.AA, ControlID: "X"})}
	}}
	env := startListener(t, ListenerConfig{}, h)
	s, err := Dial(context.Background(), SenderConfig{Addr: env.addr})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Send(context.Background(), testMessage("M1")); !errors.Is(err, ErrAckMismatch) {
		t.Errorf("Send: %v, want ErrAckMismatch", err)
	}
}
