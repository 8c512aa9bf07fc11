package amqp

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
)

// The tests talk to the RabbitMQ on this machine, as CI does; they fail, never
// skip, when it is not there.
const (
	brokerAddr = "127.0.0.1:5672"
	brokerURL  = "amqp://" + brokerAddr + "/"
)

// admin returns a channel for setting up and inspecting what a test uses.
func admin(t testing.TB) *amqp091.Channel {
	t.Helper()
	conn, err := amqp091.Dial("amqp://guest:guest@" + brokerAddr + "/")
	if err != nil {
		t.Fatalf("RabbitMQ is not reachable at %s as guest/guest (start it with `rabbitmq-server -detached`): %v", brokerAddr, err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// uniqueName names an exchange or queue for this test alone.
func uniqueName(t testing.TB, what string) string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	name := strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
	return "spinebridge-test-" + name + "-" + what + "-" + hex.EncodeToString(b[:])
}

// exchange declares a topic exchange deleted when the test ends.
func exchange(t testing.TB, ch *amqp091.Channel) string {
	t.Helper()
	name := uniqueName(t, "x")
	if err := ch.ExchangeDeclare(name, "topic", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := adminAgain(t).ExchangeDelete(name, false, false); err != nil {
			t.Errorf("delete exchange %s: %v", name, err)
		}
	})
	return name
}

// queue declares a queue, bound to exchange with key unless exchange is empty,
// and deleted when the test ends; should a run be killed before then, the
// broker deletes it after ten minutes unused.
func queue(t testing.TB, ch *amqp091.Channel, exchange, key string, args amqp091.Table) string {
	t.Helper()
	name := uniqueName(t, "q")
	all := amqp091.Table{"x-expires": int32(10 * time.Minute / time.Millisecond)}
	for k, v := range args {
		all[k] = v
	}
	if _, err := ch.QueueDeclare(name, true, false, false, false, all); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := adminAgain(t).QueueDelete(name, false, false, false); err != nil {
			t.Errorf("delete queue %s: %v", name, err)
		}
	})
	if exchange != "" {
		if err := ch.QueueBind(name, key, exchange, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	return name
}

// adminAgain is a fresh channel for clean-ups, which run after the test's own
// channels may have been closed by the broker.
func adminAgain(t testing.TB) *amqp091.Channel {
	conn, err := amqp091.Dial("amqp://guest:guest@" + brokerAddr + "/")
	if err != nil {
		t.Fatalf("RabbitMQ is not reachable at %s for clean-up: %v", brokerAddr, err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// drain takes every message now in q off it.
func drain(t testing.TB, ch *amqp091.Channel, q string) []amqp091.Delivery {
	t.Helper()
	var got []amqp091.Delivery
	for {
		d, ok, err := ch.Get(q, true)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return got
		}
		got = append(got, d)
	}
}

// depth is how many messages q holds, ready or not yet acknowledged.
func depth(t testing.TB, ch *amqp091.Channel, q string) int {
	t.Helper()
	info, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	return info.Messages
}

// testLog is a logger that writes to the test's log.
func testLog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// proxy stands between the code under test and the broker, so a test can cut
// connections at a chosen point of the stream. It forwards every byte until the
// total sent towards the broker reaches the next cut; there it forwards up to
// the cut exactly (mid-frame, as a dropped network would), closes every
// connection, and refuses the next refusals connection attempts before it
// forwards again.
type proxy struct {
	t        testing.TB
	ln       net.Listener
	refusals int

	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	sent     int64   // bytes forwarded towards the broker
	cuts     []int64 // where to cut, ascending
	refusing int     // connection attempts still to refuse
	cutDone  int     // cuts made
	refused  int     // connection attempts refused
	wg       sync.WaitGroup
}

func newProxy(t testing.TB, refusals int, cuts ...int64) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, ln: ln, refusals: refusals, conns: map[net.Conn]struct{}{}, cuts: cuts}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		ln.Close()
		p.closeAll()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) url() string { return "amqp://" + p.ln.Addr().String() + "/" }

func (p *proxy) stats() (cuts, refused int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cutDone, p.refused
}

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.refusing > 0 {
			p.refusing--
			p.refused++
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.mu.Unlock()
		b, err := net.DialTimeout("tcp", brokerAddr, 5*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[b] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Go(func() { p.toBroker(c, b) })
		p.wg.Go(func() {
			_, _ = io.Copy(c, b)
			c.Close()
			b.Close()
		})
	}
}

// toBroker copies client bytes to the broker, cutting where told.
func (p *proxy) toBroker(c, b net.Conn) {
	defer c.Close()
	defer b.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			p.mu.Lock()
			send, cut := int64(n), false
			if len(p.cuts) > 0 && p.sent+send >= p.cuts[0] {
				send, cut = p.cuts[0]-p.sent, true
				p.cuts = p.cuts[1:]
			}
			p.sent += send
			p.mu.Unlock()
			if _, werr := b.Write(buf[:send]); werr != nil {
				return
			}
			if cut {
				p.mu.Lock()
				p.cutDone++
				p.refusing = p.refusals
				p.mu.Unlock()
				p.closeAll()
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *proxy) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

// errorsIsAny reports whether err is any of targets.
func errorsIsAny(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}
