package routes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
)

// enhanced returns an ADT in enhanced mode: MSH-15 AL and MSH-16 as given.
func enhanced(controlID, msh16 string, extra string) []byte {
	m := hl7Message(controlID, "9990000001", 300)
	m = bytes.Replace(m, []byte("|P|2.5.1\r"), []byte("|P|2.5.1|||AL|"+msh16+"\r"), 1)
	return append(m, extra...)
}

// TestIntakeApplicationAcks checks the application acknowledgements of
// messages in enhanced mode: made once the message is processed (AA, AE when
// its transform fails, AR when no route takes it), sent on the connection or
// recorded as MSH-16 and the listener's mode say, and always in the journey.
func TestIntakeApplicationAcks(t *testing.T) {
	j, _ := openTest(t)
	nhs, _ := ParseIssueKind("nhs-number")
	routing := &fakeRouting{to: []string{"x"}, transform: "upper", dests: map[string]Destination{"x": newRecorder(nil)}, reject: nhs}
	d, _ := startDispatcher(t, DispatcherConfig{Store: j, Routing: routing})
	in, err := NewIntake(IntakeConfig{Listener: "mllp", Processor: d, AppAcks: AppAckConnection}, j, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	receive := func(payload []byte) Reply {
		t.Helper()
		r, release := in.Receive(ctx, Arrival{Payload: payload, Peer: "p"})
		release()
		if r.Code != hl7v2.CA {
			t.Fatalf("accept acknowledgement %s, want CA", r.Code)
		}
		return r
	}
	// journey waits for message id's application-ack event and returns it.
	journey := func(id ID) string {
		t.Helper()
		var detail string
		waitFor(t, "the application ACK in the journey", func() bool {
			evs, _ := j.Events(ctx, id)
			for _, ev := range evs {
				if ev.Kind == EventAppAck {
					detail = ev.Detail
					return true
				}
			}
			return false
		})
		return detail
	}
	sent := make(chan []byte, 10)
	send := func(msg []byte) error {
		sent <- bytes.Clone(msg)
		return nil
	}
	next := func() *hl7v2.Message {
		t.Helper()
		select {
		case b := <-sent:
			m, err := hl7v2.Parse(b)
			if err != nil {
				t.Fatalf("application ACK does not parse: %v", err)
			}
			return m
		case <-time.After(30 * time.Second):
			t.Fatal("no application ACK sent")
			return nil
		}
	}
	get := func(m *hl7v2.Message, path string) string {
		v, _ := m.Lookup(path)
		return v.String()
	}

	for _, c := range []struct {
		name, cid, msh16, extra string
		code, errCode, journey  string
	}{
		{"processed", "E1", "AL", "", "AA", "", "AA sent on the connection"},
		{"empty MSH-16 is AL", "E2", "", "", "AA", "", "AA sent on the connection"},
		{"transform fails", "E3", "AL", "NTE|2||BADMAP\r", "AE", "207", "AE sent on the connection: route all: "},
		{"no route", "UNROUTED", "AL", "", "AR", "200", "AR sent on the connection: no route accepts this message"},
		{"rejected", "E5", "AL", "NTE|2||BADNHS\r", "AE", "102", "AE sent on the connection: route all: transform upper: rejected: PID[1]-3[1].1: NHS number"},
		{"errors only", "E4", "ER", "NTE|2||BADMAP\r", "AE", "207", "AE sent on the connection"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := receive(enhanced(c.cid, c.msh16, c.extra))
			if r.Later == nil {
				t.Fatal("no application acknowledgement under way")
			}
			r.Later(send)
			ack := next()
			if get(ack, "MSA-1") != c.code || get(ack, "MSA-2") != c.cid || get(ack, "MSH-9.1") != "ACK" {
				t.Errorf("application ACK MSA %s|%s, MSH-9 %s; want %s for %s", get(ack, "MSA-1"), get(ack, "MSA-2"), get(ack, "MSH-9"), c.code, c.cid)
			}
			if get(ack, "MSH-15") != "" || get(ack, "MSH-16") != "" {
				t.Error("the application ACK asks to be acknowledged itself")
			}
			if got := get(ack, "ERR-3.1"); got != c.errCode {
				t.Errorf("ERR-3.1 = %q, want %q", got, c.errCode)
			}
			if got := get(ack, "ERR-2"); c.errCode == "102" && got != "PID^1^3^1^1" {
				t.Errorf("a rejection's ERR-2 = %q, want PID-3's first repetition's NHS number", got)
			}
			if got := journey(r.ID); !strings.HasPrefix(got, c.journey) {
				t.Errorf("journey says %q, want %q...", got, c.journey)
			}
		})
	}

	t.Run("not wanted", func(t *testing.T) {
		if r := receive(enhanced("N1", "NE", "")); r.Later != nil {
			t.Error("MSH-16 NE starts an application acknowledgement")
		}
		r, release := in.Receive(ctx, Arrival{Payload: hl7Message("O1", "9990000001", 300), Peer: "p"})
		release()
		if r.Later != nil {
			t.Error("original mode starts an application acknowledgement")
		}
		// SU on failure, then AL: only the second is sent. Both wait for
		// routing in ID order, and the first has no ACK to make.
		receive(enhanced("S1", "SU", "NTE|2||BADMAP\r")).Later(send)
		receive(enhanced("S2", "AL", "")).Later(send)
		if ack := next(); get(ack, "MSA-2") != "S2" {
			t.Errorf("application ACK for %s sent; MSH-16 SU asks for none on failure", get(ack, "MSA-2"))
		}
	})

	t.Run("no connection", func(t *testing.T) {
		r := receive(enhanced("C1", "AL", ""))
		r.Later(nil)
		if got := journey(r.ID); got != "AA recorded, not sent: no connection to send it on" {
			t.Errorf("journey says %q", got)
		}
		r = receive(enhanced("C2", "AL", ""))
		r.Later(func([]byte) error { return errors.New("mllp: connection closed") })
		if got := journey(r.ID); got != "AA recorded, not sent: mllp: connection closed" {
			t.Errorf("journey says %q", got)
		}
	})

	t.Run("record mode", func(t *testing.T) {
		rec, err := NewIntake(IntakeConfig{Listener: "mllp", Processor: d}, j, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		r, release := rec.Receive(ctx, Arrival{Payload: enhanced("R1", "AL", "NTE|2||BADMAP\r"), Peer: "p"})
		release()
		r.Later(send)
		if got := journey(r.ID); !strings.HasPrefix(got, "AE recorded: route all: ") {
			t.Errorf("journey says %q", got)
		}
		select {
		case b := <-sent:
			t.Errorf("record mode sent %q", b)
		default:
		}
	})
}

func TestIntakeConfigAppAcks(t *testing.T) {
	err := IntakeConfig{AppAcks: "later"}.Validate()
	if err == nil || !strings.Contains(err.Error(), `application acks "later": must be "record" or "connection"`) {
		t.Errorf("Validate: %v", err)
	}
}

// stalled is a processor that never finishes processing: the intakes of an
// engine that stops before any application acknowledgement is made.
type stalled struct{}

func (stalled) Process(context.Context, *Record) error { return nil }

func (stalled) Processed(ctx context.Context, _ *Record) error {
	<-ctx.Done()
	return ctx.Err()
}

func (stalled) Note(context.Context, ...Event) error {
	return errors.New("stalled: nothing is recorded")
}

func (stalled) Events(context.Context, ID) ([]Event, error) { return nil, nil }

// TestResumeAppAcks checks that the next run records the application
// acknowledgements an earlier run owed when it stopped: those of the messages
// in enhanced mode that asked for one and have none in their journey, through
// the intake of the listener that took each, and no others.
func TestResumeAppAcks(t *testing.T) {
	j, dir := openTest(t)
	ctx := context.Background()
	discard := slog.New(slog.DiscardHandler)
	earlier := map[string]*Intake{}
	// receive journals payload as the earlier run's listener would; the run
	// stops before the reply's Later runs.
	receive := func(listener string, payload []byte) ID {
		t.Helper()
		in := earlier[listener]
		if in == nil {
			var err error
			if in, err = NewIntake(IntakeConfig{Listener: listener, Processor: stalled{}}, j, discard); err != nil {
				t.Fatal(err)
			}
			earlier[listener] = in
		}
		r, release := in.Receive(ctx, Arrival{Payload: payload, Peer: "p"})
		release()
		if !r.Committed {
			t.Fatalf("%s not journaled: %s", payload[:60], r.Code)
		}
		return r.ID
	}
	owedAA := receive("mllp", enhanced("A1", "AL", ""))
	owedAE := receive("mllp", enhanced("A2", "", "NTE|2||BADMAP\r"))
	owedHTTP := receive("http", enhanced("A3", "AL", ""))
	original := receive("mllp", hl7Message("O1", "9990000001", 300))
	never := receive("mllp", enhanced("N1", "NE", ""))
	onlyErrors := receive("mllp", enhanced("E1", "ER", ""))
	otherListener := receive("queue", enhanced("Q1", "AL", ""))
	made := receive("mllp", enhanced("M1", "AL", ""))
	if err := j.Note(ctx, []Event{{MessageID: made, Kind: EventAppAck, Detail: "AA recorded"}}); err != nil {
		t.Fatal(err)
	}

	j = reopen(t, j, dir)
	if got := j.LastAtOpen(); got != made {
		t.Fatalf("LastAtOpen = %d, want %d", got, made)
	}
	appAcks := func(id ID) []string {
		t.Helper()
		evs, err := j.Events(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		var details []string
		for _, ev := range evs {
			if ev.Kind == EventAppAck {
				details = append(details, ev.Detail)
			}
		}
		return details
	}

	// Stopping before routing reaches them records nothing: they stay owed.
	stopped, stop := context.WithTimeout(ctx, 50*time.Millisecond)
	defer stop()
	idle, err := NewIntake(IntakeConfig{Listener: "mllp", Processor: stalled{}}, j, discard)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := ResumeAppAcks(stopped, j, j.LastAtOpen(), idle); n != 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stopped resume: %d recorded, err %v; want 0 and the context's error", n, err)
	}
	if got := appAcks(owedAA); len(got) != 0 {
		t.Fatalf("a stopped resume recorded %q", got)
	}

	routing := &fakeRouting{to: []string{"x"}, transform: "upper", dests: map[string]Destination{"x": newRecorder(nil)}}
	d, _ := startDispatcher(t, DispatcherConfig{Store: j, Routing: routing})
	mllpIn, err := NewIntake(IntakeConfig{Listener: "mllp", Processor: d}, j, discard)
	if err != nil {
		t.Fatal(err)
	}
	httpIn, err := NewIntake(IntakeConfig{Listener: "http", Processor: d, AppAcks: AppAckConnection}, j, discard)
	if err != nil {
		t.Fatal(err)
	}
	n, err := ResumeAppAcks(ctx, j, j.LastAtOpen(), mllpIn, httpIn)
	if err != nil || n != 3 {
		t.Fatalf("resume: %d recorded, err %v; want 3", n, err)
	}
	for _, c := range []struct {
		id   ID
		want string // the one application-ack event's detail; "" for none
	}{
		{owedAA, "AA recorded"},
		{owedAE, "AE recorded: route all: "},
		{owedHTTP, "AA recorded, not sent: no connection to send it on"},
		{original, ""},
		{never, ""},
		{onlyErrors, ""},
		{otherListener, ""},
		{made, "AA recorded"},
	} {
		got := appAcks(c.id)
		switch {
		case c.want == "" && len(got) != 0:
			t.Errorf("record %d: journey has %q, want no application ACK", c.id, got)
		case c.want != "" && (len(got) != 1 || !strings.HasPrefix(got[0], c.want)):
			t.Errorf("record %d: journey has %q, want one %q...", c.id, got, c.want)
		}
	}
	if n, err := ResumeAppAcks(ctx, j, j.LastAtOpen(), mllpIn, httpIn); n != 0 || err != nil {
		t.Errorf("second resume: %d recorded, err %v; want none owed", n, err)
	}
}

// TestResumeAppAcksBeforeTheDispatcherStarts checks the order serve starts
// them in, side by side: an acknowledgement owed for a message the earlier run
// had already routed is recorded even when ResumeAppAcks waits for routing
// before the dispatcher has read where routing stands, and nothing is left to
// route that would move it on.
func TestResumeAppAcksBeforeTheDispatcherStarts(t *testing.T) {
	j, dir := openTest(t)
	ctx := context.Background()
	discard := slog.New(slog.DiscardHandler)
	earlier, err := NewIntake(IntakeConfig{Listener: "mllp", Processor: stalled{}}, j, discard)
	if err != nil {
		t.Fatal(err)
	}
	r, release := earlier.Receive(ctx, Arrival{Payload: enhanced("R1", "AL", ""), Peer: "p"})
	release()
	if !r.Committed {
		t.Fatalf("not journaled: %s", r.Code)
	}
	// The earlier run routes and delivers it, and stops before its
	// application acknowledgement is made.
	routing := &fakeRouting{to: []string{"x"}, dests: map[string]Destination{"x": newRecorder(nil)}}
	d, stop := startDispatcher(t, DispatcherConfig{Store: j, Routing: routing})
	if err := d.WaitRouted(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	stop()

	j = reopen(t, j, dir)
	d, err = NewDispatcher(DispatcherConfig{Store: j, Routing: routing, Log: discard})
	if err != nil {
		t.Fatal(err)
	}
	in, err := NewIntake(IntakeConfig{Listener: "mllp", Processor: d}, j, discard)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		n   int
		err error
	}
	resumed := make(chan result, 1)
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	go func() {
		n, err := ResumeAppAcks(rctx, j, j.LastAtOpen(), in)
		resumed <- result{n, err}
	}()
	waitBlocked(t, "(*Dispatcher).WaitRouted")
	startDispatcherRun(t, d)
	if got := <-resumed; got.n != 1 || got.err != nil {
		t.Fatalf("resume: %d recorded, err %v; want 1", got.n, got.err)
	}
}

// pacedProcessor is the dispatcher as ResumeAppAcks sees it, keeping the
// deadline of each wait and the records whose acknowledgements are recorded,
// in order. For the records in late it first waits out the deadline, as a
// pass that reaches them only then would.
type pacedProcessor struct {
	*Dispatcher
	late map[ID]bool

	mu        sync.Mutex
	deadlines []time.Time
	noted     []ID
}

func (p *pacedProcessor) Processed(ctx context.Context, rec *Record) error {
	deadline, ok := ctx.Deadline()
	if !ok {
		return errors.New("pacedProcessor: a wait without a deadline")
	}
	p.mu.Lock()
	p.deadlines = append(p.deadlines, deadline)
	p.mu.Unlock()
	if p.late[rec.ID] {
		<-ctx.Done()
	}
	return p.Dispatcher.Processed(ctx, rec)
}

func (p *pacedProcessor) Note(ctx context.Context, events ...Event) error {
	p.mu.Lock()
	for _, ev := range events {
		p.noted = append(p.noted, ev.MessageID)
	}
	p.mu.Unlock()
	return p.Dispatcher.Note(ctx, events...)
}

// TestResumeAppAcksShareOneDeadline checks that the acknowledgements owed for
// messages routing will not reach, held back by a destination stuck for good,
// all wait until one deadline rather than one wait each, and are recorded in
// ID order: the routed one with its verdict, though the pass reaches it only
// after the deadline, and the others as not made.
func TestResumeAppAcksShareOneDeadline(t *testing.T) {
	j, dir := openTest(t)
	ctx := context.Background()
	discard := slog.New(slog.DiscardHandler)
	// With one delivery held in memory at most, the one to the stuck
	// destination stops routing for good.
	stuck := newRecorder(func(*Delivery) error { return errors.New("connection refused") })
	cfg := DispatcherConfig{Store: j, MaxPending: 1, Log: discard,
		Routing: &fakeRouting{to: []string{"x"}, dests: map[string]Destination{"x": stuck}},
		Retry:   RetryPolicy{Initial: time.Hour, Max: time.Hour, Attempts: 1 << 20}}
	d, stop := startDispatcher(t, cfg)
	earlier, err := NewIntake(IntakeConfig{Listener: "mllp", Processor: stalled{}}, j, discard)
	if err != nil {
		t.Fatal(err)
	}
	var ids []ID
	for i, extra := range []string{"NTE|2||BADMAP\r", "", "", ""} {
		r, release := earlier.Receive(ctx, Arrival{Payload: enhanced(fmt.Sprintf("S%d", i), "AL", extra), Peer: "p"})
		release()
		if !r.Committed {
			t.Fatalf("not journaled: %s", r.Code)
		}
		ids = append(ids, r.ID)
		if i == 0 {
			// Routed and held by the stuck destination: the rest never are.
			if err := d.WaitRouted(ctx, r.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	stop()

	j = reopen(t, j, dir)
	cfg.Store = j
	cfg.Routing = &fakeRouting{to: []string{"x"}, transform: "upper", dests: map[string]Destination{"x": stuck}}
	d, _ = startDispatcher(t, cfg)
	if err := d.WaitRouted(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	// The routed one is reached only once the deadline has passed; its
	// transform fails.
	proc := &pacedProcessor{Dispatcher: d, late: map[ID]bool{ids[0]: true}}
	const wait = 50 * time.Millisecond
	in, err := NewIntake(IntakeConfig{Listener: "mllp", Processor: proc, AppAckWait: wait}, j, discard)
	if err != nil {
		t.Fatal(err)
	}
	n, err := ResumeAppAcks(ctx, j, j.LastAtOpen(), in)
	if err != nil || n != len(ids) {
		t.Fatalf("resume: %d recorded, err %v; want %d", n, err, len(ids))
	}
	if len(proc.deadlines) != len(ids) {
		t.Fatalf("%d waits, want %d", len(proc.deadlines), len(ids))
	}
	for i, dl := range proc.deadlines[1:] {
		if !dl.Equal(proc.deadlines[0]) {
			t.Errorf("the wait for record %d ends at %v, %v after the first", ids[i+1], dl, dl.Sub(proc.deadlines[0]))
		}
	}
	if !slices.Equal(proc.noted, ids) {
		t.Errorf("recorded in the order %v, want %v", proc.noted, ids)
	}
	for i, id := range ids {
		evs, err := j.Events(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, ev := range evs {
			if ev.Kind == EventAppAck {
				got = append(got, ev.Detail)
			}
		}
		want := "not made: the message was not processed within 50ms"
		if i == 0 {
			want = "AE recorded: route all: transform upper: no mapping"
		}
		if len(got) != 1 || !strings.HasPrefix(got[0], want) {
			t.Errorf("record %d: journey has %q, want one %q...", id, got, want)
		}
	}
}

// startDispatcherRun runs d until the test ends.
func startDispatcherRun(t *testing.T, d *Dispatcher) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// waitBlocked waits until some goroutine is blocked in a select inside fn, as
// the goroutine dump shows it: it has looked at the state it waits on and
// found it wanting.
func waitBlocked(t *testing.T, fn string) {
	t.Helper()
	buf := make([]byte, 1<<20)
	waitFor(t, "a goroutine blocked in "+fn, func() bool {
		dump := buf[:runtime.Stack(buf, true)]
		for g := range bytes.SplitSeq(dump, []byte("\n\n")) {
			header, _, _ := bytes.Cut(g, []byte("\n"))
			if bytes.Contains(header, []byte("[select")) && bytes.Contains(g, []byte(fn+"(")) {
				return true
			}
		}
		return false
	})
}
