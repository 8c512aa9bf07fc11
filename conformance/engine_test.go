package conformance_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// The listener suite drives the real spinebridge binary over loopback, as a
// legacy system would, one engine per case with the configuration the case needs.

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "spinebridge-conformance")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "spinebridge")
	if out, err := exec.Command("go", "build", "-o", binary, "../cmd/spinebridge").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build spinebridge: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// engine is one running `spinebridge serve`.
type engine struct {
	t       *testing.T
	cmd     *exec.Cmd
	mllp    string
	admin   string
	http    string
	dataDir string
	log     *syncBuffer
	exited  chan struct{}
	status  int // exit status, once exited is closed
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var serving = regexp.MustCompile(`msg="spinebridge serving" mllp=(\S+) admin=(\S+) http=(\S+)`)

// startEngine starts serve with the YAML configuration given (may be empty).
func startEngine(t *testing.T, yaml string) *engine {
	t.Helper()
	return startEngineIn(t, t.TempDir(), yaml)
}

func startEngineIn(t *testing.T, dataDir, yaml string) *engine {
	t.Helper()
	conf := filepath.Join(t.TempDir(), "spinebridge.yaml")
	if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "serve", "--config", conf, "--data-dir", dataDir,
		"--mllp-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
	// The default routes write under ./out: keep that inside the test's data.
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	cmd.Dir = dataDir
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	e := &engine{t: t, cmd: cmd, dataDir: dataDir, log: &syncBuffer{}, exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	found := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			fmt.Fprintln(e.log, sc.Text())
			if m := serving.FindStringSubmatch(sc.Text()); m != nil {
				found <- m
			}
		}
	}()
	go func() { cmd.Wait(); e.status = cmd.ProcessState.ExitCode(); close(e.exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-e.exited
		if t.Failed() {
			t.Logf("engine log:\n%s", e.log)
		}
	})
	select {
	case m := <-found:
		e.mllp, e.admin, e.http = m[1], m[2], m[3]
	case <-e.exited:
		t.Fatalf("engine exited at start:\n%s", e.log)
	case <-time.After(20 * time.Second):
		t.Fatalf("engine did not start:\n%s", e.log)
	}
	return e
}

// kill stops the engine with SIGKILL.
func (e *engine) kill() { e.stop(os.Kill) }

// stop sends sig and returns the exit status once the engine has ended.
func (e *engine) stop(sig os.Signal) int {
	e.t.Helper()
	e.cmd.Process.Signal(sig)
	select {
	case <-e.exited:
	case <-time.After(30 * time.Second):
		e.t.Fatalf("engine did not stop on %v:\n%s", sig, e.log)
	}
	return e.status
}

// journalAfterStop lists the journal in dataDir with the binary's own `messages
// list`, as an operator would once the engine has stopped.
func journalAfterStop(t *testing.T, dataDir string) []record {
	t.Helper()
	out, err := exec.Command(binary, "messages", "list", "--data-dir", dataDir, "--limit", "0", "--format", "json").Output()
	if err != nil {
		t.Fatalf("messages list: %v", err)
	}
	var recs []record
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var r record
		if err := dec.Decode(&r); err == io.EOF {
			return recs
		} else if err != nil {
			t.Fatalf("messages list output: %v", err)
		}
		recs = append(recs, r)
	}
}

// fixturePath is the path of a shared fixture, for commands that read files.
func fixturePath(name string) string { return filepath.Join("..", "fixtures", "hl7v2", name) }

// record is one journal entry as the admin API lists it.
type record struct {
	ID        string `json:"id"`
	Status    string `json:"status"`
	AckCode   string `json:"ack_code"`
	ControlID string `json:"control_id"`
	Type      string `json:"type"`
	NHSNumber string `json:"nhs_number"`
	Size      int    `json:"size"`
}

// journal lists the engine's journal through the admin API.
func (e *engine) journal(query url.Values) []record {
	e.t.Helper()
	if query == nil {
		query = url.Values{}
	}
	query.Set("limit", "0")
	resp, err := http.Get("http://" + e.admin + "/messages?" + query.Encode())
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		body, _ := io.ReadAll(resp.Body)
		e.t.Fatalf("GET /messages: %d %s", resp.StatusCode, body)
	}
	var out []record
	dec := json.NewDecoder(resp.Body)
	for {
		var r record
		if err := dec.Decode(&r); err == io.EOF {
			return out
		} else if err != nil {
			e.t.Fatal(err)
		}
		out = append(out, r)
	}
}

// raw returns the journaled bytes of record id, as `messages show` prints them.
func (e *engine) show(id string) string {
	e.t.Helper()
	resp, err := http.Get("http://" + e.admin + "/messages/" + id)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// client is a raw MLLP connection, so cases can send exactly the bytes they mean.
type client struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &client{t: t, conn: conn, r: bufio.NewReader(conn)}
}

func (c *client) write(b []byte) {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// send frames and writes one message.
func (c *client) send(msg string) { c.t.Helper(); c.write(frame(msg)) }

func frame(msg string) []byte { return []byte("\x0b" + msg + "\x1c\r") }

// readFrame reads one reply frame's payload within d.
func (c *client) readFrame(d time.Duration) (string, error) {
	c.conn.SetReadDeadline(time.Now().Add(d))
	for {
		b, err := c.r.ReadByte()
		if err != nil {
			return "", err
		}
		if b == 0x0b {
			break
		}
	}
	payload, err := c.r.ReadBytes(0x1c)
	if err != nil {
		return "", err
	}
	if cr, err := c.r.ReadByte(); err != nil || cr != '\r' {
		return "", fmt.Errorf("frame not ended by CR: %v", err)
	}
	return string(payload[:len(payload)-1]), nil
}

// ack reads one reply and returns it, failing the case when none comes.
func (c *client) ack() string {
	c.t.Helper()
	a, err := c.readFrame(10 * time.Second)
	if err != nil {
		c.t.Fatalf("no ACK: %v", err)
	}
	return a
}

// closedWithin reports how the connection ended within d: "eof" (closed),
// "reset", or "open" if it did not end.
func (c *client) closedWithin(d time.Duration) string {
	c.conn.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c.r)
	var ne net.Error
	switch {
	case err == nil:
		return "eof"
	case errors.As(err, &ne) && ne.Timeout():
		return "open"
	case strings.Contains(err.Error(), "reset"):
		return "reset"
	}
	return "error: " + err.Error()
}

// field returns a field of an HL7 message by segment id and HL7 field number,
// for assertions on ACKs.
func field(msg, seg string, n int) string {
	for _, s := range strings.FieldsFunc(msg, func(r rune) bool { return r == '\r' || r == '\n' }) {
		if !strings.HasPrefix(s, seg) || len(s) < 4 {
			continue
		}
		sep := string(s[3])
		parts := strings.Split(s, sep)
		if seg == "MSH" || seg == "BHS" || seg == "FHS" {
			if n == 1 {
				return sep
			}
			n--
		}
		if n < len(parts) {
			return parts[n]
		}
		return ""
	}
	return ""
}

// adt returns an ADT^A01 with the given control id and MSH overrides applied as
// MSH field number -> value.
func adt(controlID string, msh map[int]string) string {
	f := map[int]string{3: "PAS", 4: "RX1", 5: "SPINEBRIDGE", 6: "X26", 7: "20261121093015+0000", 9: "ADT^A01^ADT_A01", 10: controlID, 11: "P", 12: "2.5.1"}
	for k, v := range msh {
		f[k] = v
	}
	last := 12
	for k := range f {
		last = max(last, k)
	}
	var b strings.Builder
	b.WriteString(`MSH|^~\&`)
	for n := 3; n <= last; n++ {
		b.WriteString("|" + f[n])
	}
	b.WriteString("\rEVN|A01|20261121093000\rPID|1||9990000018^^^NHS^NH||THOMPSON^ELEANOR||19580314|F\rPV1|1|I\r")
	return b.String()
}

// fixture returns a shared fixture's text.
func fixture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(fixturePath(name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
