package amqp

import (
	"errors"
	"net"
	"sync"
	"time"
)

// writeBehind is the broker connection under the AMQP library, gathering what
// is written to it so that many publishes go out in one system call.
//
// The library flushes after every publish while holding the connection's
// lock, so with writes going straight to the socket each publish cost a
// system call of its own (a tenth of the engine's CPU at 5,000 deliveries/s)
// and held every other publisher back while it ran. Here Write copies the
// bytes and returns; one goroutine writes whatever has gathered, and whatever
// gathers while that write is in the kernel goes out in the next one. Nothing
// waits on a timer, so a lone publish goes out at once.
//
// Publishing stays safe: a publish counts as delivered only when the broker
// confirms it, and bytes that die in this buffer die the way bytes in the
// kernel's send buffer do when a connection breaks, unconfirmed. The first
// failed write closes the connection, so the library's reader sees it end and
// the publisher reconnects; later Writes return that error.
type writeBehind struct {
	net.Conn

	mu      sync.Mutex
	more    *sync.Cond // signalled when bytes are gathered, the writer idles, or the conn closes
	buf     []byte     // gathered, not yet handed to the socket
	spare   []byte     // the buffer last written, reused for the next gathering
	writing bool       // the writer is in a system call
	err     error      // the first write error, or errClosed
	done    chan struct{}
}

// writeBehindMax bounds the bytes gathered: Write waits for the writer beyond
// it, as a full socket buffer would make it wait.
const writeBehindMax = 4 << 20

// writeBehindDrain bounds how long Close waits for gathered bytes to be
// written (the library's connection.close among them).
const writeBehindDrain = 2 * time.Second

var errClosed = errors.New("connection closed")

func newWriteBehind(c net.Conn) *writeBehind {
	w := &writeBehind{Conn: c, done: make(chan struct{})}
	w.more = sync.NewCond(&w.mu)
	go w.run()
	return w
}

// Write gathers p for the writer. It returns the first error the writer met.
func (w *writeBehind) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.err == nil && len(w.buf) > 0 && len(w.buf)+len(p) > writeBehindMax {
		w.more.Wait()
	}
	if w.err != nil {
		return 0, w.err
	}
	w.buf = append(w.buf, p...)
	w.more.Broadcast()
	return len(p), nil
}

// run writes what gathers until the connection fails or closes.
func (w *writeBehind) run() {
	defer close(w.done)
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		for w.err == nil && len(w.buf) == 0 {
			w.more.Wait()
		}
		if len(w.buf) == 0 || w.err != nil && !errors.Is(w.err, errClosed) {
			return
		}
		out := w.buf
		w.buf, w.writing = w.spare[:0], true
		w.mu.Unlock()
		_, err := w.Conn.Write(out)
		w.mu.Lock()
		w.spare, w.writing = out[:0], false
		if err != nil {
			if w.err == nil || errors.Is(w.err, errClosed) {
				w.err = err
			}
			w.buf = nil
			w.Conn.Close()
		}
		w.more.Broadcast()
	}
}

// Close writes what has gathered, for a while, then closes the connection.
func (w *writeBehind) Close() error {
	w.mu.Lock()
	if w.err == nil {
		w.err = errClosed
	}
	w.more.Broadcast()
	w.mu.Unlock()
	// The writer ends once the gathered bytes are out or a write fails; a
	// broker that stops reading is cut off by the deadline.
	w.Conn.SetWriteDeadline(time.Now().Add(writeBehindDrain))
	<-w.done
	return w.Conn.Close()
}
