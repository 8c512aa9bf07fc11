package conformance_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestEngineRetentionRemovesDeliveredMessagesAndKeepsDeadLetters runs the
// engine with a retention of a few seconds. Delivered messages go once older
// than it: the admin API and `messages show` say they were removed by
// retention, not that they never existed, and their segment file goes once
// the newest message is in a newer one. A message whose delivery was given up
// on stays, and the retention's log line says why, until an operator discards
// the dead letter.
func TestEngineRetentionRemovesDeliveredMessagesAndKeepsDeadLetters(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	// A port nothing listens on: deliveries to it fail and are dead-lettered.
	closed := closedAddr(t)
	routesFile := filepath.Join(dir, "routes.yaml")
	writeFile(t, routesFile, fmt.Sprintf(`routes:
  - name: lab
    when: msg.Get("MSH-3") == "LAB"
    to: [gone]
  - name: kept
    when: "true"
    to: [files]
destinations:
  files:
    kind: file
    dir: ./out
  gone:
    kind: mllp
    addr: %s
`, closed))
	conf := fmt.Sprintf(`routes:
  file: %s
journal:
  retention: 3s
ack:
  duplicate_window: 2s
delivery:
  max_attempts: 1
`, routesFile)
	e := startEngineIn(t, data, conf)
	c := dial(t, e.mllp)
	for i := range 3 {
		c.send(adt(fmt.Sprintf("RET%d", i), nil))
		if a := c.ack(); !strings.Contains(a, "MSA|AA|") {
			t.Fatalf("ACK %q", a)
		}
	}
	removed := func(id string) bool { return strings.Contains(e.show(id), "removed by the journal's retention") }
	waitUntil(t, 30*time.Second, "message 1 removed by retention", func() bool { return removed("1") })
	if got := e.show("99"); !strings.Contains(got, "no such message") {
		t.Errorf("show of an ID never given out: %q", got)
	}
	waitUntil(t, 30*time.Second, "messages 2 and 3 removed by retention", func() bool { return removed("3") })
	if code := e.stop(os.Interrupt); code != 0 {
		t.Fatalf("engine exit %d", code)
	}
	out, err := exec.Command(binary, "messages", "show", "2", "--data-dir", data).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "message 2 was removed from the journal by its retention") {
		t.Errorf("messages show 2 after stopping: %v\n%s", err, out)
	}
	// The newest message's segment stays, even with no message left in it.
	seg1 := filepath.Join(data, "journal", "segments", "000001.log")
	if _, err := os.Stat(seg1); err != nil {
		t.Fatalf("segment 1, the newest message's: %v", err)
	}

	// The next run writes to segment 2: segment 1 goes. A message whose
	// delivery was given up on stays past the retention, and keeps its
	// segment.
	e = startEngineIn(t, data, conf)
	c = dial(t, e.mllp)
	c.send(adt("RETLAB", map[int]string{3: "LAB"}))
	c.ack()
	c.send(adt("RET9", nil))
	c.ack()
	waitUntil(t, 30*time.Second, "segment 1 removed", func() bool {
		_, err := os.Stat(seg1)
		return os.IsNotExist(err)
	})
	waitUntil(t, 30*time.Second, "message 5 removed by retention", func() bool { return removed("5") })
	waitUntil(t, 30*time.Second, "a retention pass that kept the dead letter", func() bool {
		return strings.Contains(e.log.String(), "kept_dead_letters=1")
	})
	if got := e.show("4"); !strings.Contains(got, "RETLAB") {
		t.Errorf("the dead-lettered message is gone:\n%s", got)
	}
	if _, err := os.Stat(filepath.Join(data, "journal", "segments", "000002.log")); err != nil {
		t.Errorf("segment 2, holding the dead letter's message: %v", err)
	}

	// Discarded by an operator, the dead letter no longer keeps its message.
	out, err = exec.Command(binary, "messages", "dead-letters", "--discard", "--data-dir", data, "--admin-addr", e.admin).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "1 dead letters discarded") {
		t.Fatalf("messages dead-letters --discard: %v\n%s", err, out)
	}
	waitUntil(t, 30*time.Second, "the discarded dead letter's message removed", func() bool { return removed("4") })
}
