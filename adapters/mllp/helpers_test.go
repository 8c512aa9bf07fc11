package mllp

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
)

// TestMain fails the package when a listener or connection goroutine outlives
// the tests: every one must be owned and waited for.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := leakedGoroutines(); leaked != "" {
			fmt.Fprintf(os.Stderr, "goroutines still running after the tests:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// leakedGoroutines returns the stacks of the package's goroutines still
// running, after giving them a moment to finish.
func leakedGoroutines() string {
	deadline := time.Now().Add(2 * time.Second)
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		var leaked []string
		for _, g := range strings.Split(string(buf[:n]), "\n\n") {
			if strings.Contains(g, "adapters/mllp.(*Listener)") || strings.Contains(g, "adapters/mllp.(*conn)") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 || time.Now().After(deadline) {
			return strings.Join(leaked, "\n\n")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// patientName is in every test message; it must never reach a log.
const patientName = "THOMPSON"

// testMessage returns an ADT^A01 with control id id.
func testMessage(id string) []byte {
	return []byte("MSH|^~\\&|PAS|RX1|SPINEBRIDGE|NHS|20261121093015+0000||ADT^A01^ADT_A01|" + id +
		"|P|2.5.1\rPID|1||9990000018^^^NHS^NH||" + patientName + "^ELEANOR\rPV1|1|I\r")
}

// logBuffer collects log output safely from many goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// received is one call of a recorder.
type received struct {
	payload string
	err     error
	conn    ConnInfo
}

// recorder is a Handler that records what it is given and answers with an ACK:
// AA for a message that parses, AE for one that does not or has a 0x0B in it, AR
// for an empty or oversized frame. respond, when set, answers instead.
type recorder struct {
	mu       sync.Mutex
	got      []received
	inFlight map[uint64]bool
	respond  func(ctx context.Context, in *Inbound, n int) Response
	t        *testing.T
}

func (r *recorder) HandleMLLP(ctx context.Context, in *Inbound) Response {
	r.mu.Lock()
	if r.inFlight == nil {
		r.inFlight = make(map[uint64]bool)
	}
	if r.inFlight[in.Conn.ID] {
		r.t.Errorf("connection %d: handler called again before it returned", in.Conn.ID)
	}
	r.inFlight[in.Conn.ID] = true
	r.got = append(r.got, received{string(in.Payload), in.Err, in.Conn})
	n := len(r.got)
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.inFlight, in.Conn.ID)
		r.mu.Unlock()
	}()
	if r.respond != nil {
		return r.respond(ctx, in, n)
	}
	return Response{Reply: ackFor(in, ""), Committed: true}
}

func (r *recorder) calls() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.got...)
}

// ackFor builds the ACK of in: code when given, otherwise as recorder documents.
func ackFor(in *Inbound, code hl7v2.AckCode) []byte {
	var m hl7v2.Message
	parseErr := m.Parse(in.Payload)
	if code == "" {
		switch {
		case errors.Is(in.Err, ErrFrameTooLarge), errors.Is(in.Err, ErrEmptyFrame):
			code = hl7v2.AR
		case in.Err != nil, parseErr != nil:
			code = hl7v2.AE
		default:
			code = hl7v2.AA
		}
	}
	return hl7v2.AppendACK(nil, &m, &hl7v2.AckOptions{Code: code, ControlID: "ACK", Text: "test"})
}

// testEnv is a listener serving on loopback for one test.
type testEnv struct {
	l    *Listener
	addr string
	h    *recorder
	logs *logBuffer
}

// startListener starts a listener with cfg (on a free loopback port unless cfg
// says otherwise) and stops it when the test ends.
func startListener(t *testing.T, cfg ListenerConfig, h *recorder) *testEnv {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if h == nil {
		h = &recorder{}
	}
	h.t = t
	logs := &logBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	l, err := NewListener(cfg, h, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Serve(ctx) }()
	t.Cleanup(func() {
		sctx, stop := context.WithTimeout(context.Background(), 5*time.Second)
		defer stop()
		if err := l.Shutdown(sctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, ErrClosed) {
				t.Errorf("Serve returned %v, want ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after Shutdown")
		}
		if l.Stats().Open != 0 {
			t.Errorf("%d connections still open after Shutdown", l.Stats().Open)
		}
		out := logs.String()
		if bytes.Contains([]byte(out), []byte(patientName)) {
			t.Errorf("a log holds payload bytes:\n%s", out)
		}
		if t.Failed() {
			t.Logf("listener log:\n%s", out)
		}
	})
	return &testEnv{l: l, addr: l.Addr().String(), h: h, logs: logs}
}

// client is a raw MLLP client for driving a listener byte by byte.
type client struct {
	t  *testing.T
	nc net.Conn
	fr *FrameReader
}

func dialClient(t *testing.T, addr string) *client {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &client{t: t, nc: nc, fr: NewFrameReader(nc, FrameOptions{})}
}

func dialTLSClient(t *testing.T, addr string, tc *tls.Config) *client {
	t.Helper()
	nc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, tc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &client{t: t, nc: nc, fr: NewFrameReader(nc, FrameOptions{})}
}

func (c *client) write(parts ...[]byte) {
	c.t.Helper()
	c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	for _, p := range parts {
		if _, err := c.nc.Write(p); err != nil {
			c.t.Fatalf("write: %v", err)
		}
	}
}

// frame reads one frame, failing the test after 5 s.
func (c *client) frame() []byte {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	p, err := c.fr.ReadFrame()
	if err != nil {
		c.t.Fatalf("read reply: %v", err)
	}
	return p
}

// ack reads an ACK and returns MSA-1 and MSA-2.
func (c *client) ack() (code, id string) {
	c.t.Helper()
	return msa(c.t, c.frame())
}

func msa(t *testing.T, ack []byte) (code, id string) {
	t.Helper()
	m, err := hl7v2.Parse(ack)
	if err != nil {
		t.Fatalf("reply %q: %v", ack, err)
	}
	seg, ok := m.Find("MSA", 1)
	if !ok {
		t.Fatalf("reply has no MSA: %q", ack)
	}
	return seg.Field(1).String(), seg.Field(2).String()
}

// end reads until the connection ends and says how: "eof", "reset" or the
// error. It then closes its side, as a sender would.
func (c *client) end() string {
	c.t.Helper()
	defer c.nc.Close()
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, err := c.fr.ReadFrame()
		switch {
		case err == nil || isAnswerable(err):
			continue
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			return "eof"
		case errors.Is(err, syscall.ECONNRESET):
			return "reset"
		}
		return err.Error()
	}
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// netPipe returns the two ends of a loopback TCP connection.
func netPipe(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := <-accepted
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// ids returns the control ids of the recorded calls, or the error for a call
// with one.
func ids(calls []received) []string {
	var out []string
	for _, c := range calls {
		if c.err != nil {
			out = append(out, fmt.Sprintf("err(%v)", c.err))
			continue
		}
		m, err := hl7v2.Parse([]byte(c.payload))
		if err != nil {
			out = append(out, "unparseable")
			continue
		}
		v, _ := m.Lookup("MSH-10")
		out = append(out, v.String())
	}
	return out
}
