package mllp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Listener defaults.
const (
	defaultReadTimeout  = 30 * time.Second
	defaultWriteTimeout = 30 * time.Second
	// maxAcceptDelay caps the pause after an accept error such as running out of
	// file descriptors, which clears only when connections close.
	maxAcceptDelay = time.Second
)

// ConnInfo describes the connection a message arrived on.
type ConnInfo struct {
	Listener       string // ListenerConfig.Name
	ID             uint64 // unique within the listener, counting from 1
	Remote, Local  string // addresses, host:port
	TLS            bool
	PeerCommonName string // subject CN of the verified client certificate, if any
}

// Inbound is one message received by a Listener.
type Inbound struct {
	// Payload is the frame content; valid only during the Handle call.
	Payload []byte
	Conn    ConnInfo
	// Err is set when the frame itself was faulty but could still be answered:
	// ErrFrameTooLarge (Payload then holds only the first 64 KiB, enough for the
	// MSH, so the handler can build an AR from it; the listener closes the
	// connection after replying), ErrStartInPayload in strict mode, ErrEmptyFrame.
	Err error
}

// Response is what a Handler answers.
type Response struct {
	// Reply is the HL7 payload to frame and send back (an ACK); nil or empty
	// sends nothing.
	Reply []byte
	// Committed is for MLLP release 2: the listener sends 0x06 when true and 0x15
	// when false, before Reply. It is ignored otherwise.
	Committed bool
	// Close closes the connection after replying.
	Close bool
	// Release, when set, is called once the listener no longer needs Reply, so a
	// handler can answer from a pooled buffer. It is called for every Response,
	// whether or not anything was written.
	Release func()
	// Later, when set, is called once Reply has been written, with a function
	// that frames and sends a further message on the same connection (an
	// application acknowledgement). That function may be called from any
	// goroutine until the connection ends, after which it returns an error. A
	// reply that could not be written calls Later with nil.
	Later func(send func(msg []byte) error)
}

// Handler processes messages: sequentially per connection (so replies leave in
// order even when the sender pipelines), concurrently across connections.
//
// HandleMLLP must not keep in, or in.Payload, after it returns. Its context is
// cancelled only when Shutdown gives up waiting for it.
type Handler interface {
	HandleMLLP(ctx context.Context, in *Inbound) Response
}

// IdleAction is what happens to a connection idle past IdleTimeout.
type IdleAction int

// Idle actions.
const (
	// IdleClose closes the connection with a FIN, as a sender expects.
	IdleClose IdleAction = iota
	// IdleReset aborts the connection with a RST (SO_LINGER 0), which frees the
	// socket at once and which some senders need to notice the connection is gone.
	IdleReset
)

// String returns the action's configuration name: close or reset.
func (a IdleAction) String() string {
	switch a {
	case IdleClose:
		return "close"
	case IdleReset:
		return "reset"
	}
	return fmt.Sprintf("IdleAction(%d)", int(a))
}

// ListenerConfig configures a Listener.
type ListenerConfig struct {
	Name  string // for ConnInfo and logs, e.g. "mllp"; "mllp" when empty
	Addr  string // e.g. ":2575"
	TLS   TLSConfig
	Frame FrameOptions
	// MaxConnections is the number of connections served at once; 0 = unlimited.
	// The (N+1)th connection is accepted and closed at once, with a log line.
	MaxConnections int
	// ReadTimeout is the time allowed in a frame, from its start byte to its end;
	// on expiry nothing is dispatched and the connection is reset (RST). It also
	// bounds the TLS handshake. 30 s when zero.
	ReadTimeout time.Duration
	// IdleTimeout is the time allowed between frames; 0 = none.
	IdleTimeout time.Duration
	IdleAction  IdleAction
	// KeepAlive is the TCP keep-alive period; 0 = on with the operating system's
	// period, negative = off.
	KeepAlive time.Duration
	// CommitACK sends MLLP release 2 commit acknowledgements.
	CommitACK bool
	// WriteTimeout is the time allowed for writing a reply; 30 s when zero.
	WriteTimeout time.Duration
}

// validate checks c, applies its defaults and returns it with the TLS
// configuration it names, reporting every problem at once.
func (c ListenerConfig) validate() (ListenerConfig, *tls.Config, error) {
	var errs []error
	if c.Name == "" {
		c.Name = "mllp"
	}
	if c.Addr == "" {
		errs = append(errs, errors.New("mllp: listener address is empty"))
	}
	if err := c.Frame.validate(); err != nil {
		errs = append(errs, err)
	}
	if c.MaxConnections < 0 {
		errs = append(errs, fmt.Errorf("mllp: max connections %d: want 0 (unlimited) or more", c.MaxConnections))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"read timeout", c.ReadTimeout}, {"idle timeout", c.IdleTimeout}, {"write timeout", c.WriteTimeout}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("mllp: %s %v is negative", d.name, d.v))
		}
	}
	if c.IdleAction != IdleClose && c.IdleAction != IdleReset {
		errs = append(errs, fmt.Errorf("mllp: idle action %v: want close or reset", c.IdleAction))
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = defaultReadTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = defaultWriteTimeout
	}
	tc, err := c.TLS.Server()
	if err != nil {
		errs = append(errs, err)
	}
	return c, tc, errors.Join(errs...)
}

// ListenerStats are a Listener's counters, for tests and metrics.
type ListenerStats struct {
	Open              int64  // connections open now
	Accepted          uint64 // connections accepted and served
	Refused           uint64 // connections closed at once because MaxConnections were open
	HandshakeFailures uint64 // TLS handshakes that failed
	Frames            uint64 // frames passed to the handler, faulty ones included
	FaultyFrames      uint64 // frames passed with Inbound.Err, and frames dropped as unreadable
	JunkBytes         uint64 // bytes discarded before start blocks, inter-frame whitespace excepted
}

// listenerCounters are the atomic counters behind ListenerStats.
type listenerCounters struct {
	open                                                            atomic.Int64
	accepted, refused, handshakeFailures, frames, faulty, junkBytes atomic.Uint64
}

// Listener receives HL7 v2 messages over MLLP and answers them through a
// Handler. It serves each connection with one goroutine, which reads a frame,
// calls the handler and writes its reply before reading the next.
type Listener struct {
	cfg  ListenerConfig
	tls  *tls.Config
	h    Handler
	log  *slog.Logger
	stat listenerCounters

	// closing is set once, by Shutdown or by the end of Serve's context, and is
	// read by connections between messages.
	closing atomic.Bool
	nextID  atomic.Uint64
	wg      sync.WaitGroup // connection goroutines

	mu             sync.Mutex
	ln             net.Listener
	serving        bool
	shutdownCalled bool
	conns          map[*conn]struct{}
	drained        chan struct{} // closed once closing and no connection is left
	drainedClosed  bool
	stopAccepting  context.CancelFunc // ends Serve's accept loop and TLS handshakes
	cancelHandlers context.CancelFunc // cancels handlers' context when Shutdown gives up
}

// NewListener validates cfg and returns a Listener that passes messages to h and
// logs to log (nothing when nil). It binds nothing: Listen does.
func NewListener(cfg ListenerConfig, h Handler, log *slog.Logger) (*Listener, error) {
	cfg, tc, err := cfg.validate()
	if h == nil {
		err = errors.Join(err, errors.New("mllp: listener has no handler"))
	}
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Listener{
		cfg:     cfg,
		tls:     tc,
		h:       h,
		log:     log.With("listener", cfg.Name),
		conns:   make(map[*conn]struct{}),
		drained: make(chan struct{}),
	}, nil
}

// Listen binds the listener's address, so a caller learns the port (Addr) before
// serving and a bind failure is reported before anything starts.
func (l *Listener) Listen() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.listenLocked()
}

func (l *Listener) listenLocked() error {
	if l.closing.Load() {
		return ErrClosed
	}
	if l.ln != nil {
		return fmt.Errorf("mllp: already listening on %s", l.ln.Addr())
	}
	lc := net.ListenConfig{}
	switch ka := l.cfg.KeepAlive; {
	case ka < 0:
		lc.KeepAlive = -1
	case ka > 0:
		lc.KeepAliveConfig = net.KeepAliveConfig{Enable: true, Idle: ka, Interval: ka, Count: -1}
	default:
		// On, with the system's timings: negative fields leave them untouched.
		lc.KeepAliveConfig = net.KeepAliveConfig{Enable: true, Idle: -1, Interval: -1, Count: -1}
	}
	ln, err := lc.Listen(context.Background(), "tcp", l.cfg.Addr)
	if err != nil {
		return fmt.Errorf("mllp: listen: %w", err)
	}
	l.ln = ln
	return nil
}

// Addr returns the address the listener is bound to, or nil before Listen.
func (l *Listener) Addr() net.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln == nil {
		return nil
	}
	return l.ln.Addr()
}

// Serve accepts connections until ctx is done or Shutdown is called, serving
// each with a goroutine of its own; it binds first if Listen has not been called.
//
// Once stopped, Serve waits for every connection to finish the message it is
// handling, as Shutdown describes, and returns when all have closed: nil after
// ctx is done, ErrClosed after Shutdown, or the error that stopped accepting.
// Handlers are not cancelled when ctx is done, so a message being handled is
// still answered; Shutdown bounds the wait.
func (l *Listener) Serve(ctx context.Context) error {
	l.mu.Lock()
	if l.closing.Load() {
		l.mu.Unlock()
		return ErrClosed
	}
	if l.serving {
		l.mu.Unlock()
		return errors.New("mllp: listener is already serving")
	}
	if l.ln == nil {
		if err := l.listenLocked(); err != nil {
			l.mu.Unlock()
			return err
		}
	}
	l.serving = true
	ln := l.ln
	stopCtx, stopAccepting := context.WithCancel(ctx)
	handlerCtx, cancelHandlers := context.WithCancel(context.WithoutCancel(ctx))
	l.stopAccepting, l.cancelHandlers = stopAccepting, cancelHandlers
	l.mu.Unlock()
	defer cancelHandlers()

	// The watcher turns the end of ctx into the same orderly stop as Shutdown.
	var watcher sync.WaitGroup
	watcher.Go(func() {
		<-stopCtx.Done()
		l.beginClose(false)
	})

	err := l.acceptLoop(stopCtx, handlerCtx, ln)
	l.beginClose(false)
	watcher.Wait()
	l.wg.Wait()

	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.shutdownCalled {
		return ErrClosed
	}
	return nil
}

// acceptLoop accepts connections until the listener closes, returning the
// error that stopped it otherwise.
func (l *Listener) acceptLoop(stopCtx, handlerCtx context.Context, ln net.Listener) error {
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if l.closing.Load() {
				return nil
			}
			if !isTemporaryAcceptError(err) {
				l.log.Error("mllp: accept failed; no longer accepting", "err", err)
				return fmt.Errorf("mllp: accept: %w", err)
			}
			delay = min(max(2*delay, 5*time.Millisecond), maxAcceptDelay)
			l.log.Warn("mllp: accept failed; retrying", "err", err, "retry_in", delay)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-stopCtx.Done():
				t.Stop()
			}
			continue
		}
		delay = 0
		if limit := l.cfg.MaxConnections; limit > 0 && l.stat.open.Load() >= int64(limit) {
			l.stat.refused.Add(1)
			l.log.Warn("mllp: connection refused: connection limit reached",
				"remote", nc.RemoteAddr().String(), "limit", limit)
			nc.Close()
			continue
		}
		c := l.newConn(nc)
		if !l.register(c) {
			nc.Close()
			return nil
		}
		l.wg.Go(func() { l.serveConn(stopCtx, handlerCtx, c) })
	}
}

// isTemporaryAcceptError reports an accept error that clears by itself, such as
// running out of file descriptors.
func isTemporaryAcceptError(err error) bool {
	return isTimeout(err) ||
		errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) ||
		errors.Is(err, syscall.ECONNABORTED)
}

// register records c as open, unless the listener is closing.
func (l *Listener) register(c *conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closing.Load() {
		return false
	}
	l.conns[c] = struct{}{}
	l.stat.open.Add(1)
	l.stat.accepted.Add(1)
	return true
}

// unregister forgets c, closing drained when it was the last connection of a
// closing listener.
func (l *Listener) unregister(c *conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.conns, c)
	l.stat.open.Add(-1)
	l.checkDrainedLocked()
}

func (l *Listener) checkDrainedLocked() {
	if l.closing.Load() && len(l.conns) == 0 && !l.drainedClosed {
		l.drainedClosed = true
		close(l.drained)
	}
}

// beginClose stops accepting and asks every connection to stop after the
// message it is handling: reads waiting for a frame are interrupted now.
func (l *Listener) beginClose(shutdown bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if shutdown {
		l.shutdownCalled = true
	}
	if l.closing.Load() {
		return
	}
	l.closing.Store(true)
	if l.ln != nil {
		l.ln.Close()
	}
	if l.stopAccepting != nil {
		l.stopAccepting()
	}
	for c := range l.conns {
		c.interrupt()
	}
	l.checkDrainedLocked()
}

// Shutdown stops accepting, lets each connection finish the message it is
// handling and write its reply, then closes connections; bounded by ctx. When
// ctx ends first, Shutdown cancels the handlers' context, closes every
// connection and returns an error wrapping ctx.Err().
func (l *Listener) Shutdown(ctx context.Context) error {
	l.beginClose(true)
	select {
	case <-l.drained:
		return nil
	case <-ctx.Done():
	}
	l.mu.Lock()
	if l.cancelHandlers != nil {
		l.cancelHandlers()
	}
	n := len(l.conns)
	for c := range l.conns {
		c.raw.Close()
	}
	l.mu.Unlock()
	l.log.Warn("mllp: shutdown deadline passed; closed connections still busy", "connections", n)
	return fmt.Errorf("mllp: shutdown: %w", ctx.Err())
}

// Stats returns the listener's counters.
func (l *Listener) Stats() ListenerStats {
	s := &l.stat
	return ListenerStats{
		Open:              s.open.Load(),
		Accepted:          s.accepted.Load(),
		Refused:           s.refused.Load(),
		HandshakeFailures: s.handshakeFailures.Load(),
		Frames:            s.frames.Load(),
		FaultyFrames:      s.faulty.Load(),
		JunkBytes:         s.junkBytes.Load(),
	}
}
