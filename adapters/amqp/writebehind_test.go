package amqp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Concurrent writers' bytes all arrive, each write whole and in the order the
// writes were made, however they were gathered.
func TestWriteBehindKeepsEveryWriteWholeAndInOrder(t *testing.T) {
	client, server := net.Pipe()
	w := newWriteBehind(client)
	var (
		mu    sync.Mutex
		order bytes.Buffer // what was written, in the order Write was called
		wg    sync.WaitGroup
	)
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				msg := fmt.Sprintf("<%d.%d:%s>", g, i, bytes.Repeat([]byte{'x'}, i%50))
				mu.Lock()
				order.WriteString(msg)
				_, err := w.Write([]byte(msg))
				mu.Unlock()
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(server)
		got <- b
	}()
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b, order.Bytes()) {
		t.Fatalf("read %d bytes, written %d, not the same", len(b), order.Len())
	}
}

// A write that fails closes the connection (so its reader sees the end) and
// every later Write returns the error.
func TestWriteBehindFailureEndsTheConnection(t *testing.T) {
	client, server := net.Pipe()
	w := newWriteBehind(client)
	server.Close()
	w.Write([]byte("lost"))
	deadline := time.Now().Add(5 * time.Second)
	var err error
	for err == nil && time.Now().Before(deadline) {
		_, err = w.Write([]byte("more"))
		time.Sleep(time.Millisecond)
	}
	if err == nil {
		t.Fatal("writes still accepted after the connection failed")
	}
	if _, rerr := client.Read(make([]byte, 1)); rerr == nil {
		t.Error("the connection is still open for reading")
	}
	if cerr := w.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) && !errors.Is(cerr, io.ErrClosedPipe) {
		t.Errorf("Close: %v", cerr)
	}
}

// Close writes what was gathered before closing; a peer that never reads
// does not hold it for ever.
func TestWriteBehindCloseDrainsThenGivesUp(t *testing.T) {
	client, server := net.Pipe()
	w := newWriteBehind(client)
	w.Write([]byte("connection.close"))
	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(server)
		got <- b
	}()
	w.Close()
	if b := <-got; string(b) != "connection.close" {
		t.Errorf("peer read %q", b)
	}

	client, server = net.Pipe() // nobody reads server
	defer server.Close()
	w = newWriteBehind(client)
	w.Write([]byte("stuck"))
	start := time.Now()
	w.Close()
	if d := time.Since(start); d > writeBehindDrain+5*time.Second {
		t.Errorf("Close took %v", d)
	}
}
