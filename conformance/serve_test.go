package conformance_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/spinebridge/spinebridge/adapters/mllp"
)

// Beyond the numbered cases: the engine as a whole process, killed, stopped and
// spoken to by a client we did not write.

// Every message that got a positive ACK survives kill -9, exactly once, even with
// other messages still in flight when the process dies.
func TestServeCrashKeepsEveryAckedMessage(t *testing.T) {
	dataDir := t.TempDir()
	e := startEngineIn(t, dataDir, "")

	acked := sendUntilKilled(t, e, 8, 400)

	counts := map[string]int{}
	for _, r := range journalAfterStop(t, dataDir) {
		if r.Status == "accepted" {
			counts[r.ControlID]++
		}
	}
	for _, id := range acked {
		if n := counts[id]; n != 1 {
			t.Errorf("acknowledged message %s is in the journal %d times", id, n)
		}
	}
	t.Logf("%d messages acknowledged before kill -9; all %d in the journal after restart", len(acked), len(acked))

	// The engine starts again on the recovered journal and goes on accepting.
	ctx := context.Background()
	e = startEngineIn(t, dataDir, "")
	s, err := mllp.Dial(ctx, mllp.SenderConfig{Addr: e.mllp, AckTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Send(ctx, []byte(adt("AFTER-RESTART", nil))); err != nil {
		t.Fatalf("send after restart: %v", err)
	}
	// A message acknowledged before the crash, sent again, is a duplicate.
	ack, err := s.Send(ctx, []byte(adt(acked[0], nil)))
	if err != nil {
		t.Fatalf("resend: %v", err)
	}
	if !bytes.Contains(ack, []byte("MSA|AA|"+acked[0])) {
		t.Errorf("resend answered %q", ack)
	}
}

// SIGTERM lets in-flight messages finish and closes the journal cleanly.
func TestServeGracefulShutdown(t *testing.T) {
	dataDir := t.TempDir()
	e := startEngineIn(t, dataDir, "")
	resp, err := http.Get("http://" + e.admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/readyz = %d", resp.StatusCode)
	}
	out, err := exec.Command(binary, "send", "--addr", e.mllp, fixturePath("batch_file.hl7")).CombinedOutput()
	if err != nil {
		t.Fatalf("send: %v\n%s", err, out)
	}
	// The fixture asks for enhanced mode (MSH-15 AL): accept ACKs are CA.
	if got := strings.Count(string(out), " CA\n"); got != 3 {
		t.Errorf("send printed %q, want three CA lines", out)
	}
	if code := e.stop(syscall.SIGTERM); code != 0 {
		t.Errorf("exit status %d after SIGTERM:\n%s", code, e.log)
	}
	if !strings.Contains(e.log.String(), "spinebridge stopped") {
		t.Errorf("no clean stop in the log:\n%s", e.log)
	}
	if n := len(journalAfterStop(t, dataDir)); n != 3 {
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
	e := startEngine(t, "")
	host, port, _ := strings.Cut(e.mllp, ":")
	out, err := exec.Command(mllpSend, "--loose", "-p", port, "-f", fixturePath("batch_no_headers.hl7"), host).CombinedOutput()
	if err != nil {
		t.Fatalf("mllp_send: %v\n%s", err, out)
	}
	// The fixture asks for enhanced mode (MSH-15 AL): accept ACKs are CA.
	if acks := strings.Count(string(out), "MSA|CA|"); acks != 3 {
		t.Errorf("mllp_send got %d CA acknowledgements, want 3:\n%s", acks, out)
	}
}

// A file destination in append mode, killed with -9 while messages arrive and
// deliveries are being appended: after a restart every acknowledged message
// is in the archive, each line is one whole message (a record torn by the
// kill was cut back), and a message appears twice at most, when its delivery
// was written but not yet counted as done at the kill.
func TestServeAppendArchiveSurvivesKill(t *testing.T) {
	dir := t.TempDir()
	archive := filepath.Join(dir, "out", "archive.hl7")
	routesFile := writeArchiveRoutes(t, dir, "append: true", "name: archive.hl7")
	conf := "routes:\n  file: " + routesFile + "\n"
	dataDir := filepath.Join(dir, "data")
	e := startEngineIn(t, dataDir, conf)

	acked := sendUntilKilled(t, e, 8, 600)
	before, _ := os.ReadFile(archive)

	// The restarted engine delivers what the killed one had not.
	startEngineIn(t, dataDir, conf)
	var lines map[string]int
	deadline := time.Now().Add(60 * time.Second)
	for {
		lines = archiveLines(t, archive)
		missing := 0
		for _, id := range acked {
			if lines[id] == 0 {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d acknowledged messages not in the archive after restart", missing, len(acked))
		}
		time.Sleep(100 * time.Millisecond)
	}
	twice := 0
	for id, n := range lines {
		if n > 2 {
			t.Errorf("%s is in the archive %d times", id, n)
		}
		if n == 2 {
			twice++
		}
	}
	t.Logf("%d acknowledged before kill -9, %d lines in the archive then; after restart all in it, %d of them twice",
		len(acked), bytes.Count(before, []byte("\n")), twice)
}

// archiveLines reads an appended archive of HL7 v2 messages and counts its
// lines by MSH-10, failing on a line that is not one whole message.
func archiveLines(t *testing.T, path string) map[string]int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	got := map[string]int{}
	for i, line := range strings.SplitAfter(string(b), "\n") {
		if line == "" {
			continue
		}
		if !strings.HasPrefix(line, "MSH|") || !strings.HasSuffix(line, "\r\n") {
			t.Fatalf("line %d of the archive is not one whole message: %.60q", i+1, line)
		}
		got[field(line, "MSH", 10)]++
	}
	return got
}

// sendUntilKilled sends ADT messages over conns connections until target of
// them are acknowledged, kills the engine with -9 at that moment, and returns
// the control ids of every message acknowledged, those in flight at the kill
// that were answered included.
func sendUntilKilled(t *testing.T, e *engine, conns, target int) []string {
	t.Helper()
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
		wg.Go(func() {
			s, err := mllp.Dial(ctx, mllp.SenderConfig{Addr: e.mllp, AckTimeout: 10 * time.Second})
			if err != nil {
				t.Errorf("dial: %v", err)
				return
			}
			defer s.Close()
			for i := 0; ; i++ {
				id := fmt.Sprintf("C%dN%d", c, i)
				if _, err := s.Send(ctx, []byte(adt(id, nil))); err != nil {
					return // the engine was killed
				}
				mu.Lock()
				acked = append(acked, id)
				mu.Unlock()
				if count.Add(1) == int64(target) {
					e.cmd.Process.Signal(syscall.SIGKILL)
					close(killed)
				}
			}
		})
	}
	select {
	case <-killed:
	case <-time.After(60 * time.Second):
		t.Fatalf("only %d messages acknowledged:\n%s", count.Load(), e.log)
	}
	<-e.exited
	wg.Wait()
	if len(acked) < target {
		t.Fatalf("%d acknowledged, want at least %d", len(acked), target)
	}
	return acked
}
