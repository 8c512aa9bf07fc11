package mllp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"runtime/debug"
	"sync"
	"time"
)

const (
	// closeLinger bounds how long a closing connection waits for the peer to
	// close its side.
	closeLinger = 500 * time.Millisecond
	// maxLingerBytes bounds what a closing connection reads and discards.
	maxLingerBytes = 1 << 20
)

// errStopping is what a connection's reads return once the listener is closing.
var errStopping = errors.New("mllp: listener is shutting down")

// conn is one connection of a Listener and everything its goroutine reuses from
// message to message, so that the steady state allocates nothing.
type conn struct {
	l   *Listener
	raw net.Conn // the TCP connection, which resets are made on
	rw  net.Conn // raw, or the TLS connection over it
	fr  FrameReader
	in  Inbound
	out []byte // reply frames being written
	log *slog.Logger

	// wmu serialises writes: the connection's replies, and messages sent later
	// from other goroutines (Response.Later), which must not interleave.
	wmu   sync.Mutex
	ended bool               // the connection is closing: send refuses; guarded by wmu
	send  func([]byte) error // c.sendLater, bound once

	// mu orders this goroutine's deadline changes against interrupt, so that a
	// deadline set for the next read cannot undo the one Shutdown sets.
	mu sync.Mutex
	// armed says the read deadline has been set for the current wait, and
	// armedInFrame for which kind of wait.
	armed, armedInFrame bool
	deadline            time.Time // the read deadline in force

	opened time.Time
	frames uint64
	reset  bool   // end with RST rather than FIN
	linger bool   // the peer may still be sending: see closeGracefully
	reason string // why the connection ended, for the log
}

func (l *Listener) newConn(nc net.Conn) *conn {
	c := &conn{l: l, raw: nc, rw: nc, opened: time.Now()}
	c.fr = FrameReader{rd: c, max: l.cfg.Frame.maxFrameSize(), strict: l.cfg.Frame.Strict}
	c.in.Conn = ConnInfo{
		Listener: l.cfg.Name,
		ID:       l.nextID.Add(1),
		Remote:   nc.RemoteAddr().String(),
		Local:    nc.LocalAddr().String(),
	}
	c.log = l.log.With("conn", c.in.Conn.ID, "remote", c.in.Conn.Remote)
	c.send = c.sendLater
	return c
}

// errConnEnded is what a late send returns once the connection has ended.
var errConnEnded = errors.New("mllp: connection closed")

// sendLater frames msg and writes it, after whatever reply is being written.
func (c *conn) sendLater(msg []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.ended {
		return errConnEnded
	}
	c.rw.SetWriteDeadline(time.Now().Add(c.l.cfg.WriteTimeout))
	if _, err := c.rw.Write(AppendFrame(nil, msg)); err != nil {
		return fmt.Errorf("mllp: write: %w", err)
	}
	return nil
}

// Read reads from the connection for the frame reader, first setting the read
// deadline for what the reader is waiting for: the rest of a frame
// (ReadTimeout) or the next one (IdleTimeout).
func (c *conn) Read(p []byte) (int, error) {
	inFrame := c.fr.inFrame
	c.mu.Lock()
	if c.l.closing.Load() {
		c.mu.Unlock()
		return 0, errStopping
	}
	if !c.armed || c.armedInFrame != inFrame {
		var d time.Time
		if inFrame {
			d = time.Now().Add(c.l.cfg.ReadTimeout)
		} else if c.l.cfg.IdleTimeout > 0 {
			d = time.Now().Add(c.l.cfg.IdleTimeout)
		}
		if !d.Equal(c.deadline) {
			c.raw.SetReadDeadline(d)
			c.deadline = d
		}
		c.armed, c.armedInFrame = true, inFrame
	}
	c.mu.Unlock()
	return c.rw.Read(p)
}

// interrupt ends a read in progress, or the next one, because the listener is
// closing. The caller holds l.mu.
func (c *conn) interrupt() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.raw.SetReadDeadline(time.Unix(1, 0))
}

// serveConn serves c until it ends, then closes it.
func (l *Listener) serveConn(stopCtx, handlerCtx context.Context, c *conn) {
	defer l.endConn(c)
	if l.tls != nil && !c.handshake(stopCtx) {
		return
	}
	c.log.Info("mllp: connection opened", "local", c.in.Conn.Local, "tls", c.in.Conn.TLS, "peer_cn", c.in.Conn.PeerCommonName)
	for {
		if l.closing.Load() {
			c.reason, c.linger = "listener shutting down", true
			return
		}
		payload, err := c.fr.ReadFrame()
		if n := c.fr.junk; n > 0 {
			c.fr.junk = 0
			l.stat.junkBytes.Add(n)
			c.log.Warn("mllp: discarded bytes outside frames", "bytes", n)
		}
		if err != nil && !isAnswerable(err) {
			c.endOnReadError(err)
			return
		}
		c.frames++
		l.stat.frames.Add(1)
		if err != nil {
			l.stat.faulty.Add(1)
			c.log.Warn("mllp: faulty frame", "err", err, "bytes", len(payload))
		}
		c.in.Payload, c.in.Err = payload, err
		resp, ok := c.handle(handlerCtx)
		c.in.Payload, c.in.Err = nil, nil
		if !ok {
			c.reason, c.reset = "handler panicked", true
			return
		}
		wrote := c.reply(&resp)
		if resp.Later != nil {
			if wrote {
				resp.Later(c.send)
			} else {
				resp.Later(nil)
			}
		}
		if !wrote {
			return
		}
		if errors.Is(err, ErrFrameTooLarge) {
			c.reason, c.linger = "frame too large", true
			return
		}
		if resp.Close {
			c.reason, c.linger = "closed by handler", true
			return
		}
		// The idle time starts again from the reply.
		c.armed = false
	}
}

// isAnswerable reports a faulty frame that is still passed to the handler.
func isAnswerable(err error) bool {
	return errors.Is(err, ErrEmptyFrame) || errors.Is(err, ErrFrameTooLarge) || errors.Is(err, ErrStartInPayload)
}

// handshake runs the TLS handshake, bounded by the read timeout, and records its
// outcome in c.in.Conn.
func (c *conn) handshake(ctx context.Context) bool {
	tc := tls.Server(c.raw, c.l.tls)
	c.rw = tc
	ctx, cancel := context.WithTimeout(ctx, c.l.cfg.ReadTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		c.l.stat.handshakeFailures.Add(1)
		c.log.Warn("mllp: TLS handshake failed", "err", err)
		c.reason = "TLS handshake failed"
		return false
	}
	st := tc.ConnectionState()
	c.in.Conn.TLS = true
	if len(st.PeerCertificates) > 0 {
		c.in.Conn.PeerCommonName = st.PeerCertificates[0].Subject.CommonName
	}
	return true
}

// handle calls the handler, turning a panic into a logged error so that one bad
// message does not take down every other connection.
func (c *conn) handle(ctx context.Context) (resp Response, ok bool) {
	defer func() {
		if p := recover(); p != nil {
			// Only a runtime error's text is known to hold no message data.
			desc := fmt.Sprintf("value of type %T", p)
			if re, isRuntime := p.(runtime.Error); isRuntime {
				desc = re.Error()
			}
			c.log.Error("mllp: handler panicked; resetting the connection", "panic", desc, "stack", string(debug.Stack()))
			ok = false
		}
	}()
	return c.l.h.HandleMLLP(ctx, &c.in), true
}

// reply frames and writes resp, reporting whether the connection is still
// usable.
func (c *conn) reply(resp *Response) bool {
	out := c.out[:0]
	if c.l.cfg.CommitACK {
		ack := CommitNAK
		if resp.Committed {
			ack = CommitACK
		}
		out = append(out, StartBlock, ack, EndBlock, CarriageReturn)
	}
	if len(resp.Reply) > 0 {
		out = AppendFrame(out, resp.Reply)
	}
	if resp.Release != nil {
		resp.Release()
	}
	if cap(out) <= shrinkAbove {
		c.out = out
	} else {
		c.out = nil
	}
	if len(out) == 0 {
		return true
	}
	c.wmu.Lock()
	c.rw.SetWriteDeadline(time.Now().Add(c.l.cfg.WriteTimeout))
	_, err := c.rw.Write(out)
	c.wmu.Unlock()
	if err != nil {
		c.log.Warn("mllp: writing reply failed", "err", err)
		c.reason = "write failed"
		c.reset = isTimeout(err)
		return false
	}
	return true
}

// endOnReadError records why reading stopped and how the connection is to end.
func (c *conn) endOnReadError(err error) {
	l := c.l
	switch {
	case l.closing.Load():
		c.reason, c.linger = "listener shutting down", true
	case errors.Is(err, io.EOF):
		c.reason = "closed by peer"
	case errors.Is(err, ErrFrameTimeout):
		// A sender stalled inside a frame: nothing is dispatched, and the reset
		// tells it at once that the message was not taken (Camel's "open envelope
		// with reset").
		l.stat.faulty.Add(1)
		c.log.Warn("mllp: frame not completed within the read timeout; resetting", "timeout", l.cfg.ReadTimeout)
		c.reason, c.reset = "frame timeout", true
	case isTimeout(err):
		c.log.Info("mllp: idle timeout", "timeout", l.cfg.IdleTimeout, "action", l.cfg.IdleAction)
		c.reason = "idle timeout"
		c.reset, c.linger = l.cfg.IdleAction == IdleReset, l.cfg.IdleAction == IdleClose
	case errors.Is(err, ErrJunk), errors.Is(err, ErrMissingCR):
		l.stat.faulty.Add(1)
		c.log.Warn("mllp: framing error in strict mode; closing", "err", err)
		c.reason, c.linger = "framing error", true
	case errors.Is(err, io.ErrUnexpectedEOF):
		l.stat.faulty.Add(1)
		c.log.Warn("mllp: connection closed by peer inside a frame")
		c.reason = "closed by peer inside a frame"
	default:
		c.log.Warn("mllp: read failed", "err", err)
		c.reason = "read failed"
	}
}

// endConn closes c and forgets it.
func (l *Listener) endConn(c *conn) {
	c.wmu.Lock()
	c.ended = true
	c.wmu.Unlock()
	switch {
	case c.reset:
		if tc, ok := c.raw.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		c.raw.Close()
	case c.linger:
		c.closeGracefully()
	default:
		c.rw.Close()
	}
	c.log.Info("mllp: connection closed", "reason", c.reason, "frames", c.frames,
		"duration", time.Since(c.opened).Round(time.Millisecond))
	l.unregister(c)
}

// closeGracefully closes c when the peer may still be sending: it sends FIN
// after the replies already written, then reads and discards what arrives until
// the peer closes too or closeLinger passes. Closing a socket with unread input
// would make the kernel send RST instead, and a RST can destroy a reply the peer
// has not read yet, such as the AR to an oversized frame.
func (c *conn) closeGracefully() {
	tcp, ok := c.raw.(*net.TCPConn)
	if !ok {
		c.rw.Close()
		return
	}
	deadline := time.Now().Add(closeLinger)
	if tc, ok := c.rw.(*tls.Conn); ok {
		// close_notify, so the peer knows the TLS stream ended where it should.
		tc.SetWriteDeadline(deadline)
		tc.CloseWrite()
	}
	tcp.CloseWrite()
	c.mu.Lock()
	tcp.SetReadDeadline(deadline)
	c.mu.Unlock()
	scratch := c.fr.buf
	if len(scratch) == 0 {
		scratch = make([]byte, 4<<10)
	}
	for discarded := 0; discarded < maxLingerBytes; {
		n, err := tcp.Read(scratch)
		discarded += n
		if err != nil {
			break
		}
	}
	tcp.Close()
}
