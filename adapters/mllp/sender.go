package mllp

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
)

// Sender defaults.
const (
	defaultDialTimeout = 10 * time.Second
	defaultAckTimeout  = 30 * time.Second
	defaultBackoff     = time.Second
	// maxBackoff caps the pause between attempts, however many there are.
	maxBackoff = time.Minute
	// maxAckText bounds the receiver's text kept in an AckError, which ends up in
	// logs.
	maxAckText = 200
)

// SenderConfig configures a Sender.
type SenderConfig struct {
	Addr string      // host:port of the receiver
	TLS  *tls.Config // nil for plain TCP; ServerName defaults to Addr's host
	// DialTimeout bounds connecting, TLS handshake included; 10 s when zero.
	DialTimeout time.Duration
	// AckTimeout bounds each attempt from writing the message to reading its
	// acknowledgement; 30 s when zero.
	AckTimeout time.Duration
	// CommitACK expects an MLLP release 2 commit acknowledgement (0x06 or 0x15)
	// before the HL7 acknowledgement.
	CommitACK bool
	// Retries is how many times a message is sent again after a failure that may
	// pass: AE or CE, a NAK, no acknowledgement in time, a lost connection.
	Retries int
	// Backoff is the pause before the first retry; each later one doubles it, up to
	// a minute, and each is drawn at random between half and all of that so that
	// senders do not retry in step. 1 s when zero.
	Backoff time.Duration
	// Frame sets how replies are read.
	Frame FrameOptions
	// OnLateAck, when set, is given each acknowledgement of a message sent
	// earlier on the connection that arrives while another is awaited (or
	// during AwaitLate): an application acknowledgement (MSH-16), sent once
	// the receiver has processed that message. ack is valid only during the
	// call. Without it, such a reply is ErrAckMismatch.
	OnLateAck func(controlID string, ack []byte)
}

// validate checks c and applies its defaults, reporting every problem at once.
func (c SenderConfig) validate() (SenderConfig, error) {
	var errs []error
	if c.Addr == "" {
		errs = append(errs, errors.New("mllp: sender address is empty"))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"dial timeout", c.DialTimeout}, {"ack timeout", c.AckTimeout}, {"backoff", c.Backoff}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("mllp: %s %v is negative", d.name, d.v))
		}
	}
	if c.Retries < 0 {
		errs = append(errs, fmt.Errorf("mllp: retries %d is negative", c.Retries))
	}
	if err := c.Frame.validate(); err != nil {
		errs = append(errs, err)
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = defaultDialTimeout
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = defaultAckTimeout
	}
	if c.Backoff == 0 {
		c.Backoff = defaultBackoff
	}
	return c, errors.Join(errs...)
}

// Sender is an MLLP client: it sends HL7 v2 messages over one connection, one at
// a time, and checks each acknowledgement. It reconnects when the connection is
// lost or can no longer be trusted.
//
// A Sender is safe for concurrent use, but sends one message at a time; Send
// calls from several goroutines wait for each other.
type Sender struct {
	cfg SenderConfig

	mu     sync.Mutex // serializes Send and Close
	closed bool
	conn   net.Conn // nil when disconnected
	fr     FrameReader
	out    []byte        // the framed message
	sent   hl7v2.Message // the message being sent, for MSH-10
	ack    hl7v2.Message // its acknowledgement
	// earlier holds the control ids sent on this connection, the latest
	// maxEarlier, whose late acknowledgements OnLateAck is given.
	earlier  map[string]struct{}
	earlierQ []string
}

// maxEarlier bounds the control ids a Sender remembers for late
// acknowledgements.
const maxEarlier = 4096

// remember notes id as sent on this connection.
func (s *Sender) remember(id []byte) {
	if s.cfg.OnLateAck == nil {
		return
	}
	if s.earlier == nil {
		s.earlier = map[string]struct{}{}
	}
	if len(s.earlierQ) == maxEarlier {
		delete(s.earlier, s.earlierQ[0])
		s.earlierQ = s.earlierQ[1:]
	}
	s.earlier[string(id)] = struct{}{}
	s.earlierQ = append(s.earlierQ, string(id))
}

// late passes a reply that acknowledges an earlier message to OnLateAck and
// reports whether it was one.
func (s *Sender) late(p []byte, msa hl7v2.Segment) bool {
	if s.cfg.OnLateAck == nil {
		return false
	}
	id := string(msa.Field(2).Bytes())
	if _, ok := s.earlier[id]; !ok {
		return false
	}
	s.cfg.OnLateAck(id, p)
	return true
}

// AwaitLate reads the connection until d has passed, handing each late
// acknowledgement to OnLateAck, or until done returns true (it is asked
// after each). A sender keeps no connection open between Sends unless the
// last one succeeded, so it returns at once without one.
func (s *Sender) AwaitLate(ctx context.Context, d time.Duration, done func() bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.conn == nil || s.cfg.OnLateAck == nil {
		return nil
	}
	nc := s.conn
	nc.SetDeadline(time.Now().Add(d))
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	for !done() {
		p, err := s.fr.ReadFrame()
		if err != nil {
			s.disconnect()
			if ctx.Err() != nil {
				return fmt.Errorf("mllp: awaiting acknowledgements: %w", ctx.Err())
			}
			if isTimeout(err) {
				return nil
			}
			return fmt.Errorf("mllp: awaiting acknowledgements: %w", err)
		}
		s.ack.Parse(p)
		msa, ok := s.ack.Find("MSA", 1)
		if !ok || !s.late(p, msa) {
			s.disconnect()
			return fmt.Errorf("%w: a reply to no message sent on this connection", ErrUnexpectedReply)
		}
	}
	return nil
}

var _ io.Closer = (*Sender)(nil)

// Dial validates cfg and connects to cfg.Addr.
func Dial(ctx context.Context, cfg SenderConfig) (*Sender, error) {
	cfg, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	s := &Sender{cfg: cfg}
	s.fr = FrameReader{max: cfg.Frame.maxFrameSize(), strict: cfg.Frame.Strict}
	if err := s.connect(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// connect opens a new connection.
func (s *Sender) connect(ctx context.Context) error {
	d := &net.Dialer{Timeout: s.cfg.DialTimeout}
	var (
		nc  net.Conn
		err error
	)
	if s.cfg.TLS != nil {
		nc, err = (&tls.Dialer{NetDialer: d, Config: s.cfg.TLS}).DialContext(ctx, "tcp", s.cfg.Addr)
	} else {
		nc, err = d.DialContext(ctx, "tcp", s.cfg.Addr)
	}
	if err != nil {
		return &transientError{fmt.Errorf("mllp: dial %s: %w", s.cfg.Addr, err)}
	}
	s.conn = nc
	s.fr.reset(nc)
	return nil
}

// disconnect drops the connection, whose stream can no longer be trusted to
// line replies up with messages.
func (s *Sender) disconnect() {
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
	// Nothing sent on the old connection can be answered on the next.
	clear(s.earlier)
	s.earlierQ = s.earlierQ[:0]
}

// Send sends one HL7 message and waits for its acknowledgement; returns the ACK
// payload, valid until the next Send. It checks the reply: MSA-2 must equal the
// sent MSH-10 (else ErrAckMismatch); AA/CA → nil error; AE/CE → *AckError with
// Retryable() true, and Send retries (reconnecting if needed) up to cfg.Retries
// with backoff; AR/CR → *AckError, not retried; timeout → ErrAckTimeout
// (retryable, reconnects before retrying since a late ACK could otherwise be
// taken for the next message's); in CommitACK mode a NAK is retried the same
// way.
//
// A lost connection is retried as a timeout is. When an *AckError is returned
// the ACK payload comes with it. A message containing 0x1C, which cannot be
// framed, is refused.
func (s *Sender) Send(ctx context.Context, msg []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if bytes.IndexByte(msg, EndBlock) >= 0 {
		// The receiver would end the frame there and take the rest for junk.
		return nil, errors.New("mllp: message contains the end block byte 0x1C")
	}
	id, err := s.controlID(msg)
	if err != nil {
		return nil, err
	}
	s.out = AppendFrame(s.out[:0], msg)
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if err := sleep(ctx, s.backoff(attempt)); err != nil {
				return nil, fmt.Errorf("mllp: send: %w", err)
			}
		}
		ack, err := s.exchange(ctx, id)
		if err == nil || ctx.Err() != nil || !isRetryable(err) {
			return ack, err
		}
		if attempt == s.cfg.Retries {
			if attempt > 0 {
				err = fmt.Errorf("mllp: gave up after %d attempts: %w", attempt+1, err)
			}
			return ack, err
		}
	}
}

// controlID returns MSH-10 of msg.
func (s *Sender) controlID(msg []byte) ([]byte, error) {
	// A message that fails to parse past its MSH can still be sent: judging it is
	// the receiver's job.
	s.sent.Parse(msg)
	msh, ok := s.sent.Find("MSH", 1)
	if !ok {
		return nil, ErrNoControlID
	}
	id := msh.Field(10).Bytes()
	if len(id) == 0 {
		return nil, ErrNoControlID
	}
	return id, nil
}

// exchange makes one attempt: it writes the framed message and reads and checks
// the replies.
func (s *Sender) exchange(ctx context.Context, id []byte) ([]byte, error) {
	if s.conn == nil {
		if err := s.connect(ctx); err != nil {
			return nil, err
		}
	}
	deadline := time.Now().Add(s.cfg.AckTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	nc := s.conn
	nc.SetDeadline(deadline)
	// Cancelling ctx must end a read that is waiting for the receiver. Once that
	// has fired, it may yet move the deadline of a later exchange, so the
	// connection is not used again. A context that cannot be cancelled needs
	// none of this, which spares an allocation per message.
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
		defer func() {
			if !stop() {
				s.disconnect()
			}
		}()
	}

	if _, err := nc.Write(s.out); err != nil {
		s.disconnect()
		return nil, s.ioError(ctx, "write message", err)
	}
	if s.cfg.CommitACK {
		p, err := s.fr.ReadFrame()
		if err != nil {
			s.disconnect()
			return nil, s.ioError(ctx, "read commit acknowledgement", err)
		}
		if len(p) != 1 || p[0] != CommitACK && p[0] != CommitNAK {
			s.disconnect()
			return nil, fmt.Errorf("%w: expected a commit acknowledgement (0x06 or 0x15)", ErrUnexpectedReply)
		}
		if p[0] == CommitNAK {
			// Whether an HL7 reply follows a NAK differs between receivers; a new
			// connection leaves nothing of this exchange to be misread as the next.
			s.disconnect()
			return nil, ErrCommitNAK
		}
	}
	var p []byte
	var msa hl7v2.Segment
	for {
		var err error
		p, err = s.fr.ReadFrame()
		if err != nil {
			s.disconnect()
			if isAnswerable(err) {
				return nil, fmt.Errorf("%w: %w", ErrUnexpectedReply, err)
			}
			return nil, s.ioError(ctx, "read acknowledgement", err)
		}
		s.ack.Parse(p)
		var ok bool
		msa, ok = s.ack.Find("MSA", 1)
		if !ok {
			s.disconnect()
			return nil, fmt.Errorf("%w: no MSA segment", ErrUnexpectedReply)
		}
		if bytes.Equal(msa.Field(2).Bytes(), id) {
			break
		}
		if !s.late(p, msa) {
			s.disconnect()
			return p, ErrAckMismatch
		}
	}
	s.remember(id)
	code := msa.Field(1).Bytes()
	switch string(code) {
	case "AA", "CA":
		return p, nil
	case "":
		return p, fmt.Errorf("%w: MSA-1 is empty", ErrUnexpectedReply)
	}
	return p, &AckError{Code: string(code), Text: ackText(&s.ack, msa)}
}

// ioError describes a failed read or write. Which deadline passed decides the
// error: the caller's (ctx) ends Send, AckTimeout is retried.
func (s *Sender) ioError(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("mllp: %s: %w", op, ctx.Err())
	}
	if isTimeout(err) {
		return ErrAckTimeout
	}
	return &transientError{fmt.Errorf("mllp: %s: %w", op, err)}
}

// ackText returns what the receiver said about an error: ERR-3.2 (v2.5 and
// later), else MSA-3, else ERR-1.4.2 (v2.4 and earlier), unescaped and cut short.
func ackText(m *hl7v2.Message, msa hl7v2.Segment) string {
	v := msa.Field(3)
	if err, ok := m.Find("ERR", 1); ok {
		if t := err.Field(3).Comp(2); !t.IsEmpty() {
			v = t
		} else if v.IsEmpty() {
			v = err.Field(1).Comp(4).Sub(2)
		}
	}
	b, _ := v.Unescape(nil)
	if len(b) > maxAckText {
		b = b[:maxAckText]
	}
	return string(b)
}

// backoff returns the pause before the given retry (attempt 1 is the first).
func (s *Sender) backoff(attempt int) time.Duration {
	d := s.cfg.Backoff
	for i := 1; i < attempt && d < maxBackoff; i++ {
		d *= 2
	}
	d = min(d, maxBackoff)
	return d/2 + rand.N(d/2+1)
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// transientError is a connection failure, worth another attempt on a new
// connection.
type transientError struct{ err error }

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

// isRetryable reports whether another attempt at a message may succeed.
func isRetryable(err error) bool {
	var ae *AckError
	if errors.As(err, &ae) {
		return ae.Retryable()
	}
	var te *transientError
	return errors.Is(err, ErrAckTimeout) || errors.Is(err, ErrCommitNAK) || errors.As(err, &te)
}

// Close closes the connection. It waits for a Send in progress; cancel that
// Send's context to end it sooner. Send after Close returns ErrClosed.
func (s *Sender) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	if err != nil {
		return fmt.Errorf("mllp: close: %w", err)
	}
	return nil
}
