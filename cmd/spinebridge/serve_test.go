package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/spinebridge/spinebridge/adapters/mllp"
)

// server is a running `spinebridge serve` started by a test.
type server struct {
	cmd        *exec.Cmd
	mllpAddr   string
	adminAddr  string
	httpAddr   string
	stderr     *lockedBuffer
	exited     chan struct{}
	exitStatus int
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var servingLine = regexp.MustCompile(`msg="spinebridge serving" mllp=(\S+) admin=(\S+) http=(\S+)`)

// startServer starts the binary's serve command on loopback ports chosen by the
// system and waits until it says where it listens.
func startServer(t *testing.T, bin, dataDir string, args ...string) *server {
	t.Helper()
	all := append([]string{"serve", "--data-dir", dataDir, "--mllp-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, args...)
	cmd := exec.Command(bin, all...)
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, stderr: &lockedBuffer{}, exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	found := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(s.stderr, line)
			if m := servingLine.FindStringSubmatch(line); m != nil {
				found <- m
			}
		}
		io.Copy(s.stderr, pipe)
	}()
	go func() {
		cmd.Wait()
		s.exitStatus = cmd.ProcessState.ExitCode()
		close(s.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-s.exited
	})
	select {
	case m := <-found:
		s.mllpAddr, s.adminAddr, s.httpAddr = m[1], m[2], m[3]
	case <-s.exited:
		t.Fatalf("serve exited before listening:\n%s", s.stderr)
	case <-time.After(20 * time.Second):
		t.Fatalf("serve did not start:\n%s", s.stderr)
	}
	return s
}

// stop sends sig and waits for the process to end.
func (s *server) stop(t *testing.T, sig os.Signal) int {
	t.Helper()
	s.cmd.Process.Signal(sig)
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not stop on %v:\n%s", sig, s.stderr)
	}
	return s.exitStatus
}

// journalControlIDs lists the journal of dataDir with the real binary and returns
// how many times each control id appears among accepted messages.
func journalControlIDs(t *testing.T, bin, dataDir string) map[string]int {
	t.Helper()
	out, err := exec.Command(bin, "messages", "list", "--data-dir", dataDir, "--limit", "0", "--format", "json").Output()
	if err != nil {
		t.Fatalf("messages list: %v", err)
	}
	counts := map[string]int{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var m messageJSON
		if err := dec.Decode(&m); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("messages list output: %v", err)
		}
		if m.Status == "accepted" {
			counts[m.ControlID]++
		}
	}
	return counts
}

// testMessage is a small ADT^A01 with the given control id.
func testMessage(controlID string) []byte {
	return []byte("MSH|^~\\&|PAS|RX1|SPINEBRIDGE|X26|20261121093015+0000||ADT^A01^ADT_A01|" + controlID +
		"|P|2.4\rEVN|A01|20261121093000\rPID|1||9990000018^^^NHS^NH||THOMPSON^ELEANOR||19580314|F\rPV1|1|I\r")
}

// Every message that got a positive ACK survives kill -9, exactly once, even with
// other messages still in flight when the process dies.
func TestServeCrashKeepsEveryAckedMessage(t *testing.T) {
	bin := buildBinary(t)
	dataDir := t.TempDir()
	srv := startServer(t, bin, dataDir)

	const conns, target = 8, 400
	var (
		mu    sync.Mutex
		acked []string
		count atomic.Int64
		wg    sync.WaitGroup
	)
	killed := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := mllp.Dial(ctx, mllp.SenderConfig{Addr: srv.mllpAddr, AckTimeout: 10 * time.Second})
			if err != nil {
				t.Errorf("dial: %v", err)
				return
			}
			defer s.Close()
			for i := 0; ; i++ {
				id := fmt.Sprintf("C%dN%d", c, i)
				if _, err := s.Send(ctx, testMessage(id)); err != nil {
					return // the server was killed
				}
				mu.Lock()
				acked = append(acked, id)
				mu.Unlock()
				if count.Add(1) == target {
					srv.cmd.Process.Signal(syscall.SIGKILL)
					close(killed)
				}
			}
		}()
	}
	select {
	case <-killed:
	case <-time.After(60 * time.Second):
		t.Fatalf("only %d messages acknowledged:\n%s", count.Load(), srv.stderr)
	}
	<-srv.exited
	wg.Wait()

	counts := journalControlIDs(t, bin, dataDir)
	mu.Lock()
	defer mu.Unlock()
	if len(acked) < target {
		t.Fatalf("%d acknowledged, want at least %d", len(acked), target)
	}
	for _, id := range acked {
		if n := counts[id]; n != 1 {
			t.Errorf("acknowledged message %s is in the journal %d times", id, n)
		}
	}
	t.Logf("%d messages acknowledged before kill -9; all %d in the journal after restart", len(acked), len(acked))

	// The engine starts again on the recovered journal and goes on accepting.
	srv = startServer(t, bin, dataDir)
	s, err := mllp.Dial(ctx, mllp.SenderConfig{Addr: srv.mllpAddr, AckTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Send(ctx, testMessage("AFTER-RESTART")); err != nil {
		t.Fatalf("send after restart: %v", err)
	}
	// A message acknowledged before the crash, sent again, is a duplicate.
	ack, err := s.Send(ctx, testMessage(acked[0]))
	if err != nil {
		t.Fatalf("resend: %v", err)
	}
	if !bytes.Contains(ack, []byte("MSA|AA|"+acked[0])) {
		t.Errorf("resend answered %q", ack)
	}
}

// SIGTERM lets in-flight messages finish and closes the journal cleanly.
func TestServeGracefulShutdown(t *testing.T) {
	bin := buildBinary(t)
	dataDir := t.TempDir()
	srv := startServer(t, bin, dataDir)
	resp, err := http.Get("http://" + srv.adminAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/readyz = %d", resp.StatusCode)
	}
	out, err := exec.Command(bin, "send", "--addr", srv.mllpAddr, fixturePath("batch_file.hl7")).CombinedOutput()
	if err != nil {
		t.Fatalf("send: %v\n%s", err, out)
	}
	// The fixture asks for enhanced mode (MSH-15 AL): accept ACKs are CA.
	if got := strings.Count(string(out), " CA\n"); got != 3 {
		t.Errorf("send printed %q, want three CA lines", out)
	}
	if code := srv.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("exit status %d after SIGTERM:\n%s", code, srv.stderr)
	}
	if !strings.Contains(srv.stderr.String(), "spinebridge stopped") {
		t.Errorf("no clean stop in the log:\n%s", srv.stderr)
	}
	if n := len(journalControlIDs(t, bin, dataDir)); n != 3 {
		t.Errorf("%d messages journaled, want 3", n)
	}
}

// A client we did not write, mllp_send from Debian's python3-hl7, gets its ACK.
func TestServeInteropMLLPSend(t *testing.T) {
	mllpSend, err := exec.LookPath("mllp_send")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("mllp_send is missing in CI: .ci/setup installs python3-hl7")
		}
		t.Skip("mllp_send not installed (apt-get install python3-hl7, or run make test)")
	}
	bin := buildBinary(t)
	srv := startServer(t, bin, t.TempDir())
	host, port, _ := strings.Cut(srv.mllpAddr, ":")
	out, err := exec.Command(mllpSend, "--loose", "-p", port, "-f", fixturePath("batch_no_headers.hl7"), host).CombinedOutput()
	if err != nil {
		t.Fatalf("mllp_send: %v\n%s", err, out)
	}
	// The fixture asks for enhanced mode (MSH-15 AL): accept ACKs are CA.
	acks := strings.Count(string(out), "MSA|CA|")
	if acks != 3 {
		t.Errorf("mllp_send got %d CA acknowledgements, want 3:\n%s", acks, out)
	}
}

// Configuration problems are all reported at once and stop serve from starting.
func TestServeConfigErrors(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(conf, []byte("ack:\n  point: received\n  parse_error_code: XX\nmllp:\n  idle_action: sulk\n"), 0o644)
	code, _, errOut := runCLI(t, "", "serve", "--config", conf, "--data-dir", t.TempDir())
	if code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	for _, want := range []string{`"received" would acknowledge messages before they are durable`, `parse error code "XX"`, `mllp.idle_action "sulk"`} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
}
