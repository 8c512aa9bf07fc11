package routes

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The crash and lock tests run this test binary again as a child process that
// holds a journal; childEnv selects what the child does, childDirEnv where.
const (
	childEnv    = "SPINEBRIDGE_JOURNAL_TEST_CHILD"
	childDirEnv = "SPINEBRIDGE_JOURNAL_TEST_DIR"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(journalChild(mode, os.Getenv(childDirEnv)))
	}
	os.Exit(m.Run())
}

// journalChild is the child process. "append" appends from several goroutines
// and prints "ID CONTROLID" after each Append returns, until it is killed;
// "hold" opens the journal, prints "open" and waits for its standard input to
// close. Either gives up after a minute so that a lost parent leaves nothing
// running.
func journalChild(mode, dir string) int {
	j, err := OpenLocal(dir, LocalOptions{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	timeout := time.AfterFunc(time.Minute, func() { os.Exit(3) })
	defer timeout.Stop()
	switch mode {
	case "hold":
		os.Stdout.WriteString("open\n")
		io.Copy(io.Discard, os.Stdin)
	case "append":
		var out sync.Mutex
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				for i := 0; ; i++ {
					rec := testRecord(i)
					rec.ControlID = fmt.Sprintf("W%d-%d", w, i)
					if err := j.Append(context.Background(), rec); err != nil {
						fmt.Fprintln(os.Stderr, err)
						os.Exit(4)
					}
					out.Lock()
					// One write per line, so the parent never reads half an ID
					// that was acknowledged.
					os.Stdout.WriteString(rec.ID.String() + " " + rec.ControlID + "\n")
					out.Unlock()
				}
			})
		}
		wg.Wait()
	default:
		fmt.Fprintf(os.Stderr, "unknown child mode %q\n", mode)
		return 2
	}
	if err := j.Close(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func startChild(t *testing.T, mode, dir string) (*exec.Cmd, *bufio.Reader, io.WriteCloser) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode, childDirEnv+"="+dir)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd, bufio.NewReader(stdout), stdin
}

// TestCrashDurability kills a process with SIGKILL while it appends, and checks
// that every record whose Append had returned is in the journal, once.
func TestCrashDurability(t *testing.T) {
	dir := t.TempDir()
	cmd, out, _ := startChild(t, "append", dir)

	acked := map[ID]string{}
	read := func() error {
		line, err := out.ReadString('\n')
		if err != nil {
			return err // a line cut short by the kill is not an acknowledgement
		}
		idText, cid, ok := strings.Cut(strings.TrimSuffix(line, "\n"), " ")
		id, perr := ParseID(idText)
		if !ok || perr != nil {
			return fmt.Errorf("child printed %q", line)
		}
		if _, dup := acked[id]; dup {
			return fmt.Errorf("child was given ID %d twice", id)
		}
		acked[id] = cid
		return nil
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(acked) < 2000 {
		if err := read(); err != nil {
			t.Fatalf("after %d acknowledged appends: %v", len(acked), err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("child acknowledged only %d appends in 30s", len(acked))
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for {
		err := read()
		if errors.Is(err, io.EOF) || errors.Is(err, os.ErrClosed) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	cmd.Wait()

	j, err := OpenLocal(dir, LocalOptions{})
	if err != nil {
		t.Fatalf("reopen after SIGKILL: %v", err)
	}
	defer closeQuietly(t, j)
	ctx := context.Background()
	stored := map[ID]int{}
	cids := map[string]int{}
	var last ID
	if err := j.List(ctx, Query{}, func(r *Record) bool {
		stored[r.ID]++
		cids[r.ControlID]++
		last = r.ID
		return true
	}); err != nil {
		t.Fatal(err)
	}
	for id, cid := range acked {
		if stored[id] != 1 {
			t.Errorf("acknowledged ID %d is stored %d times", id, stored[id])
			continue
		}
		if cids[cid] != 1 {
			t.Errorf("acknowledged record %s is stored %d times", cid, cids[cid])
		}
		rec, err := j.Get(ctx, id)
		if err != nil {
			t.Errorf("Get %d: %v", id, err)
		} else if rec.ControlID != cid {
			t.Errorf("ID %d holds %s, want %s", id, rec.ControlID, cid)
		}
	}
	// Numbering continues above everything recovered, acknowledged or not.
	if id := mustAppend(t, j, testRecord(0)); id <= last {
		t.Errorf("first ID after recovery is %d, want above %d", id, last)
	}
	t.Logf("%d appends acknowledged before SIGKILL, %d records recovered", len(acked), len(stored))
}

// TestOpenLockedAcrossProcesses opens a journal another process holds.
func TestOpenLockedAcrossProcesses(t *testing.T) {
	dir := t.TempDir()
	_, out, stdin := startChild(t, "hold", dir)
	if line, err := out.ReadString('\n'); err != nil || line != "open\n" {
		t.Fatalf("child: %q, %v", line, err)
	}
	for _, ro := range []bool{false, true} {
		j, err := OpenLocal(dir, LocalOptions{ReadOnly: ro})
		if !errors.Is(err, ErrLocked) {
			if err == nil {
				closeQuietly(t, j)
			}
			t.Errorf("OpenLocal (read-only %v) of a journal another process holds = %v, want ErrLocked", ro, err)
		}
	}
	stdin.Close()
	if _, err := out.ReadString('\n'); !errors.Is(err, io.EOF) {
		t.Fatalf("child did not exit: %v", err)
	}
	// Released by the child, the journal opens.
	var j *Local
	var err error
	for range 100 {
		if j, err = OpenLocal(dir, LocalOptions{}); !errors.Is(err, ErrLocked) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("open after the child closed: %v", err)
	}
	closeQuietly(t, j)
}
