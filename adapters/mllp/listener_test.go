package mllp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
)

// framed returns the test message id, framed.
func framed(id string) string { return string(AppendFrame(nil, testMessage(id))) }

// step is one step of a framing scenario: bytes to write (one byte per write when
// bytewise), or an ACK to read and check.
type step struct {
	write    string
	bytewise bool
	code, id string
}

func w(s string) step          { return step{write: s} }
func a(code, id string) step   { return step{code: code, id: id} }
func slowly(s string) step     { return step{write: s, bytewise: true} }
func errCall(err error) string { return fmt.Sprintf("err(%v)", err) }

// TestListenerFramingCases drives the framing listener cases through a real
// listener on loopback. Unless a case ends the connection, it must still answer
// a further message afterwards.
func TestListenerFramingCases(t *testing.T) {
	withVT := strings.Replace(string(testMessage("V1")), "ELEANOR", "ELE\x0bANOR", 1)
	msh1 := string(testMessage("S1")[:bytes.IndexByte(testMessage("S1"), '\r')+1])
	batch := "FHS|^~\\&|PAS|RX1\rBHS|^~\\&|PAS|RX1\r" + string(testMessage("B1")) + "BTS|1\rFTS|1\r"
	oversized := string(testMessage("L1")) + "NTE|1||" + strings.Repeat("x", 10<<10) + "\r"
	var pipelined strings.Builder
	var pipelinedAcks []step
	var pipelinedCalls []string
	for i := range 20 {
		id := fmt.Sprintf("P%02d", i)
		pipelined.WriteString(framed(id))
		pipelinedAcks = append(pipelinedAcks, a("AA", id))
		pipelinedCalls = append(pipelinedCalls, id)
	}

	tests := []struct {
		name      string
		cfg       ListenerConfig
		steps     []step
		calls     []string // control ids, or errCall(err), in order
		end       string   // "" (still open), "eof" or "reset"
		junk      uint64
		faulty    uint64
		checkLogs string // a text the listener's log must hold
		check     func(t *testing.T, calls []received)
	}{
		{name: "case01_well_formed_frame",
			steps: []step{w(framed("M1")), a("AA", "M1")},
			calls: []string{"M1"}},
		{name: "case02_lenient_missing_cr_answered_without_waiting",
			steps: []step{w(framed("M1")[:len(framed("M1"))-1]), a("AA", "M1"), w("\r" + framed("M2")), a("AA", "M2")},
			calls: []string{"M1", "M2"}},
		{name: "case02_strict_missing_cr_rejected",
			cfg:   ListenerConfig{Frame: FrameOptions{Strict: true}},
			steps: []step{w(framed("M1")[:len(framed("M1"))-1] + framed("M2"))},
			end:   "eof", faulty: 1, checkLogs: "strict mode"},
		{name: "case02_strict_cr_never_sent_resets_after_read_timeout",
			cfg:   ListenerConfig{Frame: FrameOptions{Strict: true}, ReadTimeout: 200 * time.Millisecond},
			steps: []step{w(framed("M1")[:len(framed("M1"))-1])},
			end:   "reset", faulty: 1},
		{name: "case04_lenient_keepalives_skipped",
			steps: []step{w("\r\n"), w(framed("M1")), a("AA", "M1"), w("\n\n \r" + framed("M2")), a("AA", "M2")},
			calls: []string{"M1", "M2"}},
		{name: "case04_lenient_junk_discarded_and_counted",
			steps:     []step{w("xx" + framed("M1")), a("AA", "M1")},
			calls:     []string{"M1"},
			junk:      2,
			checkLogs: "discarded bytes outside frames"},
		{name: "case04_strict_junk_closes",
			cfg:   ListenerConfig{Frame: FrameOptions{Strict: true}},
			steps: []step{w("x" + framed("M1"))},
			end:   "eof", junk: 1, faulty: 1},
		{name: "case05_lenient_start_block_in_payload_passes",
			steps: []step{w(string(AppendFrame(nil, []byte(withVT)))), a("AA", "V1")},
			calls: []string{"V1"},
			check: func(t *testing.T, calls []received) {
				if calls[0].payload != withVT {
					t.Errorf("payload altered: %q", calls[0].payload)
				}
			}},
		{name: "case05_strict_start_block_in_payload_flagged",
			cfg:    ListenerConfig{Frame: FrameOptions{Strict: true}},
			steps:  []step{w(string(AppendFrame(nil, []byte(withVT)))), a("AE", "V1")},
			calls:  []string{errCall(ErrStartInPayload)},
			faulty: 1},
		{name: "case06_end_block_in_payload_tail_not_dispatched",
			steps: []step{w("\x0b" + msh1 + "\x1cPID|1||tail\r" + framed("M2")), a("AA", "S1"), a("AA", "M2")},
			calls: []string{"S1", "M2"},
			junk:  len64("PID|1||tail")},
		{name: "case07_two_frames_in_one_write",
			steps: []step{w(framed("M1") + framed("M2")), a("AA", "M1"), a("AA", "M2")},
			calls: []string{"M1", "M2"}},
		{name: "case07_frame_one_byte_at_a_time",
			steps: []step{slowly(framed("M1")), a("AA", "M1")},
			calls: []string{"M1"}},
		{name: "case08_pipelined_acks_in_order",
			steps: append([]step{w(pipelined.String())}, pipelinedAcks...),
			calls: pipelinedCalls},
		{name: "case09_empty_frame_rejected_connection_survives",
			steps:  []step{w("\x0b\x1c\r"), a("AR", ""), w(framed("M1")), a("AA", "M1")},
			calls:  []string{errCall(ErrEmptyFrame), "M1"},
			faulty: 1},
		{name: "case10_batch_payload_passed_unchanged",
			steps: []step{w(string(AppendFrame(nil, []byte(batch)))), a("AE", "")},
			check: func(t *testing.T, calls []received) {
				if calls[0].payload != batch || calls[0].err != nil {
					t.Errorf("batch dispatched as %q, %v", calls[0].payload, calls[0].err)
				}
			}},
		{name: "case11_too_large_rejected_and_closed",
			cfg:    ListenerConfig{Frame: FrameOptions{MaxFrameSize: 1024}},
			steps:  []step{w(string(AppendFrame(nil, []byte(oversized)))), a("AR", "L1")},
			calls:  []string{errCall(ErrFrameTooLarge)},
			end:    "eof",
			faulty: 1,
			check: func(t *testing.T, calls []received) {
				if len(calls[0].payload) != 1024 || !strings.HasPrefix(oversized, calls[0].payload) {
					t.Errorf("handler got %d bytes, want the first 1024 of the frame", len(calls[0].payload))
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := startListener(t, tt.cfg, nil)
			c := dialClient(t, e.addr)
			checkCalls := tt.calls != nil || tt.check == nil
			for _, s := range tt.steps {
				switch {
				case s.bytewise:
					for i := range len(s.write) {
						c.write([]byte{s.write[i]})
					}
				case s.write != "":
					c.write([]byte(s.write))
				default:
					if code, id := c.ack(); code != s.code || id != s.id {
						t.Fatalf("ACK %s %s, want %s %s", code, id, s.code, s.id)
					}
				}
			}
			if tt.end != "" {
				if got := c.end(); got != tt.end {
					t.Errorf("connection ended with %s, want %s", got, tt.end)
				}
			} else {
				c.write([]byte(framed("LAST")))
				if code, id := c.ack(); code != "AA" || id != "LAST" {
					t.Errorf("connection no longer usable: ACK %s %s", code, id)
				}
				tt.calls = append(tt.calls, "LAST")
			}
			calls := e.h.calls()
			if checkCalls {
				if got := ids(calls); !slices.Equal(got, tt.calls) {
					t.Errorf("handler calls %q, want %q", got, tt.calls)
				}
			}
			if tt.check != nil && len(calls) > 0 {
				tt.check(t, calls)
			}
			if tt.end != "" {
				waitFor(t, "the connection to close", func() bool { return e.l.Stats().Open == 0 })
			}
			st := e.l.Stats()
			if st.JunkBytes != tt.junk || st.FaultyFrames != tt.faulty || st.Frames != uint64(len(calls)) {
				t.Errorf("stats %+v, want junk %d, faulty %d, frames %d", st, tt.junk, tt.faulty, len(calls))
			}
			if tt.checkLogs != "" && !strings.Contains(e.logs.String(), tt.checkLogs) {
				t.Errorf("log does not mention %q:\n%s", tt.checkLogs, e.logs)
			}
		})
	}
}

func len64(s string) uint64 { return uint64(len(s)) }

// Case 3: a frame that never ends is not dispatched; the connection is reset
// after the read timeout, and the next connection is served.
func TestListenerCase03OpenFrameResetAfterReadTimeout(t *testing.T) {
	e := startListener(t, ListenerConfig{ReadTimeout: 200 * time.Millisecond, IdleTimeout: time.Minute}, nil)
	c := dialClient(t, e.addr)
	c.write([]byte("\x0b" + string(testMessage("OPEN"))))
	start := time.Now()
	if got := c.end(); got != "reset" {
		t.Fatalf("connection ended with %s, want reset", got)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("reset after %v, want about the 200ms read timeout", d)
	}
	if calls := e.h.calls(); len(calls) != 0 {
		t.Errorf("open frame dispatched: %q", ids(calls))
	}
	c2 := dialClient(t, e.addr)
	c2.write([]byte(framed("NEXT")))
	if code, id := c2.ack(); code != "AA" || id != "NEXT" {
		t.Errorf("next connection: ACK %s %s", code, id)
	}
	if st := e.l.Stats(); st.FaultyFrames != 1 {
		t.Errorf("faulty frames %d, want 1", st.FaultyFrames)
	}
}

// Case 12: a connection idle past IdleTimeout is closed with a FIN or reset,
// as configured; one that keeps talking is not.
func TestListenerCase12IdleTimeout(t *testing.T) {
	for _, tt := range []struct {
		action IdleAction
		want   string
	}{{IdleClose, "eof"}, {IdleReset, "reset"}} {
		t.Run(tt.action.String(), func(t *testing.T) {
			e := startListener(t, ListenerConfig{IdleTimeout: 300 * time.Millisecond, IdleAction: tt.action}, nil)
			c := dialClient(t, e.addr)
			// Messages more often than the idle timeout keep it open.
			for i := range 4 {
				id := fmt.Sprintf("K%d", i)
				c.write([]byte(framed(id)))
				if code, got := c.ack(); code != "AA" || got != id {
					t.Fatalf("ACK %s %s", code, got)
				}
				time.Sleep(100 * time.Millisecond)
			}
			if got := c.end(); got != tt.want {
				t.Errorf("idle connection ended with %s, want %s", got, tt.want)
			}
			if !strings.Contains(e.logs.String(), "idle timeout") {
				t.Errorf("no idle timeout in the log:\n%s", e.logs)
			}
		})
	}
}

// Case 13: the (N+1)th connection is accepted and closed at once, logged and
// counted; once a connection closes there is room again.
func TestListenerCase13ConnectionLimit(t *testing.T) {
	e := startListener(t, ListenerConfig{MaxConnections: 2}, nil)
	var clients []*client
	for i := range 2 {
		c := dialClient(t, e.addr)
		id := fmt.Sprintf("C%d", i)
		c.write([]byte(framed(id)))
		if code, _ := c.ack(); code != "AA" {
			t.Fatalf("client %d: %s", i, code)
		}
		clients = append(clients, c)
	}
	extra := dialClient(t, e.addr)
	if got := extra.end(); got != "eof" {
		t.Errorf("refused connection ended with %s, want eof", got)
	}
	st := e.l.Stats()
	if st.Refused != 1 || st.Accepted != 2 || st.Open != 2 {
		t.Errorf("stats %+v, want 1 refused, 2 accepted, 2 open", st)
	}
	if !strings.Contains(e.logs.String(), "connection limit reached") {
		t.Errorf("refusal not logged:\n%s", e.logs)
	}
	clients[0].nc.Close()
	waitFor(t, "a connection to close", func() bool { return e.l.Stats().Open == 1 })
	c := dialClient(t, e.addr)
	c.write([]byte(framed("AGAIN")))
	if code, id := c.ack(); code != "AA" || id != "AGAIN" {
		t.Errorf("after a close: ACK %s %s", code, id)
	}
}

// Case 14: a sender that disconnects before its ACK is written still had its
// message handled once, and the listener carries on.
func TestListenerCase14SenderGoneBeforeAck(t *testing.T) {
	release := make(chan struct{})
	h := &recorder{respond: func(ctx context.Context, in *Inbound, n int) Response {
		if n == 1 {
			<-release
		}
		return Response{Reply: ackFor(in, "")}
	}}
	e := startListener(t, ListenerConfig{}, h)
	c := dialClient(t, e.addr)
	c.write([]byte(framed("GONE")))
	waitFor(t, "the message to reach the handler", func() bool { return len(e.h.calls()) == 1 })
	c.nc.Close()
	close(release)
	waitFor(t, "the connection to close", func() bool { return e.l.Stats().Open == 0 })
	if got := ids(e.h.calls()); !slices.Equal(got, []string{"GONE"}) {
		t.Errorf("handled %q, want GONE once", got)
	}
	c2 := dialClient(t, e.addr)
	c2.write([]byte(framed("NEXT")))
	if code, _ := c2.ack(); code != "AA" {
		t.Errorf("next connection: %s", code)
	}
}

// Case 16, listener side: in release 2 mode the commit acknowledgement frame
// (0x06 or 0x15) comes before the HL7 reply.
func TestListenerCase16CommitFrames(t *testing.T) {
	h := &recorder{respond: func(ctx context.Context, in *Inbound, n int) Response {
		return Response{Reply: ackFor(in, ""), Committed: n == 1}
	}}
	e := startListener(t, ListenerConfig{CommitACK: true}, h)
	c := dialClient(t, e.addr)
	for _, want := range []byte{CommitACK, CommitNAK} {
		c.write([]byte(framed("R2")))
		if p := c.frame(); len(p) != 1 || p[0] != want {
			t.Fatalf("commit frame %q, want %q", p, []byte{want})
		}
		if code, id := c.ack(); code != "AA" || id != "R2" {
			t.Errorf("ACK %s %s", code, id)
		}
	}
}

// Release is called for every response once the reply is taken.
func TestListenerReleasesReply(t *testing.T) {
	var released atomic.Int64
	h := &recorder{respond: func(ctx context.Context, in *Inbound, n int) Response {
		return Response{Reply: ackFor(in, ""), Release: func() { released.Add(1) }}
	}}
	e := startListener(t, ListenerConfig{}, h)
	c := dialClient(t, e.addr)
	for i := range 3 {
		c.write([]byte(framed(fmt.Sprint(i))))
		c.ack()
	}
	if n := released.Load(); n != 3 {
		t.Errorf("Release called %d times, want 3", n)
	}
}

// A panicking handler costs its connection, not the listener.
func TestListenerHandlerPanic(t *testing.T) {
	h := &recorder{respond: func(ctx context.Context, in *Inbound, n int) Response {
		if n == 1 {
			panic("boom: " + string(in.Payload))
		}
		return Response{Reply: ackFor(in, "")}
	}}
	e := startListener(t, ListenerConfig{}, h)
	c := dialClient(t, e.addr)
	c.write([]byte(framed("P1")))
	if got := c.end(); got != "reset" {
		t.Errorf("connection ended with %s, want reset", got)
	}
	c2 := dialClient(t, e.addr)
	c2.write([]byte(framed("P2")))
	if code, _ := c2.ack(); code != "AA" {
		t.Errorf("after a panic: %s", code)
	}
	if !strings.Contains(e.logs.String(), "handler panicked") {
		t.Errorf("panic not logged:\n%s", e.logs)
	}
}

// Shutdown lets the message being handled finish and its ACK go out, closes idle
// connections, and refuses new ones.
func TestListenerShutdownFinishesInFlight(t *testing.T) {
	entered := make(chan struct{})
	proceed := make(chan struct{})
	var handlerErr atomic.Value
	h := &recorder{respond: func(ctx context.Context, in *Inbound, n int) Response {
		close(entered)
		<-proceed
		if ctx.Err() != nil {
			handlerErr.Store(ctx.Err())
		}
		return Response{Reply: ackFor(in, "")}
	}}
	l, err := NewListener(ListenerConfig{Addr: "127.0.0.1:0"}, h, nil)
	if err != nil {
		t.Fatal(err)
	}
	h.t = t
	if err := l.Listen(); err != nil {
		t.Fatal(err)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- l.Serve(context.Background()) }()
	busy := dialClient(t, l.Addr().String())
	idle := dialClient(t, l.Addr().String())
	busy.write([]byte(framed("INFLIGHT")))
	<-entered
	waitFor(t, "both connections", func() bool { return l.Stats().Open == 2 })

	shutdownErr := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shutdownErr <- l.Shutdown(ctx)
	}()
	if got := idle.end(); got != "eof" {
		t.Errorf("idle connection ended with %s, want eof", got)
	}
	select {
	case err := <-shutdownErr:
		t.Fatalf("Shutdown returned %v while a message was in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(proceed)
	if code, id := busy.ack(); code != "AA" || id != "INFLIGHT" {
		t.Errorf("in-flight message answered %s %s", code, id)
	}
	if got := busy.end(); got != "eof" {
		t.Errorf("busy connection ended with %s, want eof", got)
	}
	if err := <-shutdownErr; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-serveErr; !errors.Is(err, ErrClosed) {
		t.Errorf("Serve returned %v, want ErrClosed", err)
	}
	if v := handlerErr.Load(); v != nil {
		t.Errorf("handler context cancelled during a graceful shutdown: %v", v)
	}
	if err := l.Listen(); !errors.Is(err, ErrClosed) {
		t.Errorf("Listen after Shutdown: %v, want ErrClosed", err)
	}
}

// When Shutdown's context ends first, handlers are cancelled and connections
// closed, and Shutdown says so.
func TestListenerShutdownDeadline(t *testing.T) {
	entered := make(chan struct{})
	h := &recorder{respond: func(ctx context.Context, in *Inbound, n int) Response {
		close(entered)
		<-ctx.Done()
		return Response{Reply: ackFor(in, "")}
	}}
	l, err := NewListener(ListenerConfig{Addr: "127.0.0.1:0"}, h, nil)
	if err != nil {
		t.Fatal(err)
	}
	h.t = t
	serveErr := make(chan error, 1)
	go func() { serveErr <- l.Serve(context.Background()) }()
	waitFor(t, "the listener to bind", func() bool { return l.Addr() != nil })
	c := dialClient(t, l.Addr().String())
	c.write([]byte(framed("STUCK")))
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := l.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: %v, want DeadlineExceeded", err)
	}
	select {
	case err := <-serveErr:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("Serve returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return once the handler was cancelled")
	}
}

// The end of Serve's context stops the listener as Shutdown does, and Serve
// returns nil once its connections are gone.
func TestListenerServeContext(t *testing.T) {
	l, err := NewListener(ListenerConfig{Addr: "127.0.0.1:0"}, &recorder{t: t}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	serveErr := make(chan error, 1)
	go func() { serveErr <- l.Serve(ctx) }()
	waitFor(t, "the listener to bind", func() bool { return l.Addr() != nil })
	c := dialClient(t, l.Addr().String())
	c.write([]byte(framed("X")))
	c.ack()
	cancel()
	if got := c.end(); got != "eof" {
		t.Errorf("connection ended with %s, want eof", got)
	}
	select {
	case err := <-serveErr:
		if err != nil {
			t.Errorf("Serve returned %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	if err := l.Serve(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Serve again: %v, want ErrClosed", err)
	}
}

func TestNewListenerValidation(t *testing.T) {
	_, err := NewListener(ListenerConfig{
		MaxConnections: -1,
		ReadTimeout:    -time.Second,
		IdleAction:     IdleAction(7),
		Frame:          FrameOptions{MaxFrameSize: -5},
		TLS:            TLSConfig{KeyFile: "key.pem"},
	}, nil, nil)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"address is empty", "max connections -1", "read timeout", "idle action IdleAction(7)",
		"max frame size -5", "without a certificate file", "no handler"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not report %q:\n%v", want, err)
		}
	}
}

// Many connections at once, each sending in turn: every message answered, on
// its own connection, in order.
func TestListenerManyConnections(t *testing.T) {
	const conns, perConn = 64, 30
	e := startListener(t, ListenerConfig{}, nil)
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			s, err := Dial(ctx, SenderConfig{Addr: e.addr, AckTimeout: 10 * time.Second})
			if err != nil {
				t.Error(err)
				return
			}
			defer s.Close()
			for j := range perConn {
				if _, err := s.Send(ctx, testMessage(fmt.Sprintf("C%dM%d", i, j))); err != nil {
					t.Errorf("conn %d message %d: %v", i, j, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if st := e.l.Stats(); st.Frames != conns*perConn || st.Accepted != conns {
		t.Errorf("stats %+v, want %d frames on %d connections", st, conns*perConn, conns)
	}
}

// The listener's steady state allocates nothing per message: reading the
// frame, calling the handler, framing and writing the reply. The handler here
// answers from a pool, and the client reuses its buffers, so the whole round
// trip (both goroutines) must come to zero.
func TestListenerAllocatesNothingPerMessage(t *testing.T) {
	if testing.CoverMode() != "" {
		t.Skip("coverage counters allocate")
	}
	// One connection, so one scratch buffer serves, without a sync.Pool: under the
	// race detector a pool drops items on purpose, which would allocate.
	l, err := NewListener(ListenerConfig{Addr: "127.0.0.1:0", IdleTimeout: time.Minute}, &oneConnAckHandler{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	serveErr := make(chan error, 1)
	go func() { serveErr <- l.Serve(ctx) }()
	defer func() {
		cancel()
		<-serveErr
	}()
	waitFor(t, "the listener to bind", func() bool { return l.Addr() != nil })
	c := dialClient(t, l.Addr().String())
	out := AppendFrame(nil, testMessage("ALLOC"))
	roundTrip := func() {
		if _, err := c.nc.Write(out); err != nil {
			t.Fatal(err)
		}
		if _, err := c.fr.ReadFrame(); err != nil {
			t.Fatal(err)
		}
	}
	for range 100 {
		roundTrip()
	}
	if allocs := testing.AllocsPerRun(500, roundTrip); allocs > 0.01 {
		t.Errorf("%.3f allocations per message, want 0", allocs)
	}
}

// BenchmarkListener measures messages per second through the listener: 64
// connections, each sending and waiting for its ACK in turn, against a handler
// that parses each message and builds its ACK.
func BenchmarkListener(b *testing.B) {
	const conns = 64
	h := ackHandler{}
	l, err := NewListener(ListenerConfig{Addr: "127.0.0.1:0"}, h, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := l.Listen(); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	serveErr := make(chan error, 1)
	go func() { serveErr <- l.Serve(ctx) }()
	defer func() {
		cancel()
		<-serveErr
	}()
	senders := make([]*Sender, conns)
	for i := range senders {
		s, err := Dial(ctx, SenderConfig{Addr: l.Addr().String()})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		senders[i] = s
	}
	msg := testMessage("BENCH")
	var next atomic.Int64
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for _, s := range senders {
		wg.Go(func() {
			// An uncancellable context spares Send its cancellation hook, so
			// the figures are the transport's own.
			for next.Add(1) <= int64(b.N) {
				if _, err := s.Send(context.Background(), msg); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// ackHandler answers AA from a pooled buffer, as a real handler would.
type ackHandler struct{}

// ackScratch is one handler call's memory; release is built once so that
// returning it allocates nothing.
type ackScratch struct {
	m       hl7v2.Message
	out     []byte
	release func()
}

var ackPool sync.Pool

func init() {
	// Set here, not in ackPool's declaration, which New would then refer to.
	ackPool.New = func() any {
		sc := new(ackScratch)
		sc.release = func() { ackPool.Put(sc) }
		return sc
	}
}

func (ackHandler) HandleMLLP(ctx context.Context, in *Inbound) Response {
	sc := ackPool.Get().(*ackScratch)
	sc.m.Parse(in.Payload)
	sc.out = hl7v2.AppendACK(sc.out[:0], &sc.m, &hl7v2.AckOptions{ControlID: "ACK"})
	return Response{Reply: sc.out, Release: sc.release}
}

// oneConnAckHandler answers AA from one buffer; it serves a single connection.
type oneConnAckHandler struct{ sc ackScratch }

func (h *oneConnAckHandler) HandleMLLP(ctx context.Context, in *Inbound) Response {
	h.sc.m.Parse(in.Payload)
	h.sc.out = hl7v2.AppendACK(h.sc.out[:0], &h.sc.m, &hl7v2.AckOptions{ControlID: "ACK"})
	return Response{Reply: h.sc.out}
}
