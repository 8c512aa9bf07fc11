package mllp

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
)

// Case 24: the sender checks MSA-2 and classifies MSA-1: AA and CA succeed, AE
// and CE are retried with backoff, AR and CR are not, and an ACK for another
// message is an error.
func TestSenderCase24AckClassification(t *testing.T) {
	tests := []struct {
		name     string
		codes    []hl7v2.AckCode // answer to each attempt; the last repeats
		mismatch bool
		retries  int
		attempts int
		wantCode string // AckError code, "" for success
		wantErr  error
	}{
		{name: "AA_accepted", codes: []hl7v2.AckCode{hl7v2.AA}, retries: 3, attempts: 1},
		{name: "CA_accepted", codes: []hl7v2.AckCode{hl7v2.CA}, retries: 3, attempts: 1},
		{name: "AE_retried_until_limit", codes: []hl7v2.AckCode{hl7v2.AE}, retries: 2, attempts: 3, wantCode: "AE"},
		{name: "CE_retried_until_limit", codes: []hl7v2.AckCode{hl7v2.CE}, retries: 2, attempts: 3, wantCode: "CE"},
		{name: "AE_then_AA_succeeds", codes: []hl7v2.AckCode{hl7v2.AE, hl7v2.AE, hl7v2.AA}, retries: 3, attempts: 3},
		{name: "AR_not_retried", codes: []hl7v2.AckCode{hl7v2.AR}, retries: 3, attempts: 1, wantCode: "AR"},
		{name: "CR_not_retried", codes: []hl7v2.AckCode{hl7v2.CR}, retries: 3, attempts: 1, wantCode: "CR"},
		{name: "MSA2_mismatch", codes: []hl7v2.AckCode{hl7v2.AA}, mismatch: true, retries: 3, attempts: 1, wantErr: ErrAckMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &recorder{respond: func(ctx context.Context, in *Inbound, n int) Response {
				code := tt.codes[min(n, len(tt.codes))-1]
				if tt.mismatch {
					other := Inbound{Payload: testMessage("SOMEONE-ELSE")}
					return Response{Reply: ackFor(&other, code)}
				}
				var m hl7v2.Message
				m.Parse(in.Payload)
				return Response{Reply: hl7v2.AppendACK(nil, &m, &hl7v2.AckOptions{
					Code: code, ControlID: "A1", Text: "Lock \\T\\ busy",
					Errors: []hl7v2.AckError{{Code: hl7v2.CodeApplicationRecordLocked}},
				})}
			}}
			e := startListener(t, ListenerConfig{}, h)
			ctx := context.Background()
			s, err := Dial(ctx, SenderConfig{Addr: e.addr, Retries: tt.retries, Backoff: time.Millisecond, AckTimeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ack, err := s.Send(ctx, testMessage("S1"))
			if got := len(e.h.calls()); got != tt.attempts {
				t.Errorf("%d attempts, want %d", got, tt.attempts)
			}
			var ae *AckError
			switch {
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
			case tt.wantCode != "":
				if !errors.As(err, &ae) || ae.Code != tt.wantCode {
					t.Fatalf("err = %v, want an AckError %s", err, tt.wantCode)
				}
				if ae.Retryable() != (tt.wantCode == "AE" || tt.wantCode == "CE") {
					t.Errorf("%s: Retryable() = %v", ae.Code, ae.Retryable())
				}
				if ae.Text != "Application record locked" {
					t.Errorf("Text = %q, want ERR-3.2", ae.Text)
				}
				if code, _ := msa(t, ack); code != tt.wantCode {
					t.Errorf("returned ACK has %s, want the %s ACK", code, tt.wantCode)
				}
			default:
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				if _, id := msa(t, ack); id != "S1" {
					t.Errorf("ACK answers %s", id)
				}
			}
			// The sender stays usable, on a new connection if it had to drop one.
			if _, err := s.Send(ctx, testMessage("S2")); err != nil && !errors.As(err, new(*AckError)) && !errors.Is(err, ErrAckMismatch) {
				t.Errorf("next send: %v", err)
			}
		})
	}
}

// Case 24: AckError's text falls back to MSA-3, then to the v2.4 ERR-1.4.2.
func TestAckText(t *testing.T) {
	for _, tt := range []struct{ ack, want string }{
		{"MSH|^~\\&|||||||ACK|1|P|2.5\rMSA|AE|X|Msa text\rERR||PID^1^3|101^Required field missing^HL70357|E\r", "Required field missing"},
		{"MSH|^~\\&|||||||ACK|1|P|2.3\rMSA|AE|X|Msa \\F\\ text\r", "Msa | text"},
		{"MSH|^~\\&|||||||ACK|1|P|2.4\rMSA|AR|X\rERR|PID^1^3^101&Required field missing&HL70357\r", "Required field missing"},
		{"MSH|^~\\&|||||||ACK|1|P|2.4\rMSA|AR|X\r", ""},
	} {
		m, _ := hl7v2.Parse([]byte(tt.ack))
		seg, _ := m.Find("MSA", 1)
		if got := ackText(m, seg); got != tt.want {
			t.Errorf("ackText(%q) = %q, want %q", tt.ack, got, tt.want)
		}
	}
}

// Case 16: in release 2 mode a NAK is retried, up to the limit, on a new
// connection each time; a commit ACK completes the exchange.
func TestSenderCase16CommitNAKRetried(t *testing.T) {
	for _, tt := range []struct {
		name     string
		naks     int // attempts answered with NAK before ACK
		retries  int
		attempts int
		wantErr  error
	}{
		{"committed_first_time", 0, 3, 1, nil},
		{"nak_then_commit", 2, 3, 3, nil},
		{"nak_until_limit", 10, 2, 3, ErrCommitNAK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := &recorder{respond: func(ctx context.Context, in *Inbound, n int) Response {
				committed := n > tt.naks
				code := hl7v2.AA
				if !committed {
					code = hl7v2.AE
				}
				return Response{Reply: ackFor(in, code), Committed: committed}
			}}
			e := startListener(t, ListenerConfig{CommitACK: true}, h)
			ctx := context.Background()
			s, err := Dial(ctx, SenderConfig{Addr: e.addr, CommitACK: true, Retries: tt.retries, Backoff: time.Millisecond, AckTimeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ack, err := s.Send(ctx, testMessage("N1"))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			calls := e.h.calls()
			if len(calls) != tt.attempts {
				t.Errorf("%d attempts, want %d", len(calls), tt.attempts)
			}
			if err == nil {
				if code, _ := msa(t, ack); code != "AA" {
					t.Errorf("ACK %s", code)
				}
			}
			// Each retry after a NAK came on a fresh connection.
			seen := map[uint64]bool{}
			for _, c := range calls {
				seen[c.conn.ID] = true
			}
			if len(seen) != len(calls) {
				t.Errorf("%d attempts on %d connections, want a new connection for each retry", len(calls), len(seen))
			}
		})
	}
}

// In release 2 mode a reply that is not a commit acknowledgement is refused.
func TestSenderCommitModeAgainstPlainReceiver(t *testing.T) {
	e := startListener(t, ListenerConfig{}, nil)
	s, err := Dial(context.Background(), SenderConfig{Addr: e.addr, CommitACK: true, AckTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Send(context.Background(), testMessage("P1")); !errors.Is(err, ErrUnexpectedReply) {
		t.Errorf("err = %v, want ErrUnexpectedReply", err)
	}
}

// Case 25: an ACK that does not come in time is retried on a new connection, so
// the late ACK cannot be taken for the retry's; with no retries left,
// ErrAckTimeout.
func TestSenderCase25AckTimeoutRetriedOnNewConnection(t *testing.T) {
	for _, tt := range []struct {
		name    string
		retries int
		wantErr error
	}{
		{"retried", 1, nil},
		{"no_retries", 0, ErrAckTimeout},
	} {
		t.Run(tt.name, func(t *testing.T) {
			late := make(chan struct{})
			h := &recorder{respond: func(ctx context.Context, in *Inbound, n int) Response {
				if n == 1 {
					// Answered only after the sender has given up on it; the late
					// ACK goes to a connection the sender has closed.
					select {
					case <-late:
					case <-ctx.Done():
					}
				}
				return Response{Reply: ackFor(in, "")}
			}}
			e := startListener(t, ListenerConfig{}, h)
			ctx := context.Background()
			s, err := Dial(ctx, SenderConfig{Addr: e.addr, AckTimeout: 200 * time.Millisecond, Retries: tt.retries, Backoff: time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ack, err := s.Send(ctx, testMessage("SLOW"))
			close(late)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil {
				return
			}
			if code, id := msa(t, ack); code != "AA" || id != "SLOW" {
				t.Errorf("ACK %s %s", code, id)
			}
			waitFor(t, "both attempts to be handled", func() bool { return len(e.h.calls()) == 2 })
			calls := e.h.calls()
			if calls[0].conn.ID == calls[1].conn.ID {
				t.Error("retry sent on the connection that timed out")
			}
			// The next message gets its own ACK, not a stale one.
			ack, err = s.Send(ctx, testMessage("AFTER"))
			if err != nil {
				t.Fatal(err)
			}
			if _, id := msa(t, ack); id != "AFTER" {
				t.Errorf("ACK answers %s, want AFTER", id)
			}
		})
	}
}

// A lost connection is retried on a new one.
func TestSenderReconnects(t *testing.T) {
	h := &recorder{respond: func(ctx context.Context, in *Inbound, n int) Response {
		return Response{Reply: ackFor(in, ""), Close: n == 1}
	}}
	e := startListener(t, ListenerConfig{}, h)
	ctx := context.Background()
	s, err := Dial(ctx, SenderConfig{Addr: e.addr, Retries: 2, Backoff: time.Millisecond, AckTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, id := range []string{"R1", "R2", "R3"} {
		if _, err := s.Send(ctx, testMessage(id)); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
	}
}

// Cancelling the context ends a Send that is waiting, promptly, and the sender
// stays usable.
func TestSenderContextCancel(t *testing.T) {
	block := make(chan struct{})
	h := &recorder{respond: func(ctx context.Context, in *Inbound, n int) Response {
		if n == 1 {
			select {
			case <-block:
			case <-ctx.Done():
			}
		}
		return Response{Reply: ackFor(in, "")}
	}}
	e := startListener(t, ListenerConfig{}, h)
	defer close(block)
	s, err := Dial(context.Background(), SenderConfig{Addr: e.addr, AckTimeout: time.Minute, Retries: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := s.Send(ctx, testMessage("C1")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Send took %v after its context ended", d)
	}
	if _, err := s.Send(context.Background(), testMessage("C2")); err != nil {
		t.Errorf("after cancel: %v", err)
	}
}

func TestSenderRefusals(t *testing.T) {
	e := startListener(t, ListenerConfig{}, nil)
	ctx := context.Background()
	if _, err := Dial(ctx, SenderConfig{Retries: -1, AckTimeout: -1}); err == nil ||
		!strings.Contains(err.Error(), "address is empty") || !strings.Contains(err.Error(), "retries -1") {
		t.Errorf("Dial with a bad config: %v", err)
	}
	s, err := Dial(ctx, SenderConfig{Addr: e.addr})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Send(ctx, []byte("PID|1||x\r")); !errors.Is(err, ErrNoControlID) {
		t.Errorf("message without MSH: %v, want ErrNoControlID", err)
	}
	noID := bytes.Replace(testMessage("X"), []byte("|X|"), []byte("||"), 1)
	if _, err := s.Send(ctx, noID); !errors.Is(err, ErrNoControlID) {
		t.Errorf("message without MSH-10: %v, want ErrNoControlID", err)
	}
	if _, err := s.Send(ctx, append(testMessage("Z"), EndBlock)); err == nil || !strings.Contains(err.Error(), "0x1C") {
		t.Errorf("message with an end block: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Send(ctx, testMessage("Y")); !errors.Is(err, ErrClosed) {
		t.Errorf("Send after Close: %v, want ErrClosed", err)
	}
	if len(e.h.calls()) != 0 {
		t.Errorf("refused messages were sent: %q", ids(e.h.calls()))
	}
}

func TestSenderBackoff(t *testing.T) {
	s := &Sender{cfg: SenderConfig{Backoff: 100 * time.Millisecond}}
	for attempt, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 4: 800 * time.Millisecond, 30: maxBackoff} {
		for range 20 {
			if d := s.backoff(attempt); d < want/2 || d > want {
				t.Errorf("backoff(%d) = %v, want between %v and %v", attempt, d, want/2, want)
			}
		}
	}
}
