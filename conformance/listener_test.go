package conformance_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
	"github.com/spinebridge/spinebridge/adapters/mllp"
)

// The cases of the listener suite, numbered as in the listener conformance
// specification (MLLP framing, ACK semantics, encoding).

// accepted reports an accept ACK: AA in original mode, CA in enhanced mode (the
// shared fixtures ask for enhanced mode in MSH-15).
func accepted(ack string) bool { c := field(ack, "MSA", 1); return c == "AA" || c == "CA" }

// refused reports a reject ACK: AR, or CR in enhanced mode.
func refused(ack string) bool { c := field(ack, "MSA", 1); return c == "AR" || c == "CR" }

func TestCase01_WellFormedFrame(t *testing.T) {
	e := startEngine(t, "")
	c := dial(t, e.mllp)
	c.send(adt("C01", nil))
	ack := c.ack()
	if field(ack, "MSA", 1) != "AA" || field(ack, "MSA", 2) != "C01" {
		t.Fatalf("ACK %q", ack)
	}
	if _, err := c.readFrame(300 * time.Millisecond); err == nil {
		t.Error("a second reply for one message")
	}
	if recs := e.journal(url.Values{"control_id": {"C01"}}); len(recs) != 1 || recs[0].Status != "accepted" {
		t.Errorf("journal %+v, want one accepted record", recs)
	}
}

func TestCase02_NoCRAfterEndBlock(t *testing.T) {
	t.Run("lenient accepts at once", func(t *testing.T) {
		e := startEngine(t, "")
		c := dial(t, e.mllp)
		c.write([]byte("\x0b" + adt("C02", nil) + "\x1c"))
		if ack := c.ack(); field(ack, "MSA", 1) != "AA" {
			t.Fatalf("ACK %q", ack)
		}
		// The CR arriving late is inter-frame whitespace; the next frame works.
		c.write([]byte("\r"))
		c.send(adt("C02b", nil))
		if ack := c.ack(); field(ack, "MSA", 2) != "C02b" {
			t.Fatalf("ACK %q", ack)
		}
	})
	t.Run("strict rejects", func(t *testing.T) {
		e := startEngine(t, "mllp:\n  strict: true\n")
		c := dial(t, e.mllp)
		c.write([]byte("\x0b" + adt("C02s", nil) + "\x1cX"))
		if a, err := c.readFrame(2 * time.Second); err == nil && field(a, "MSA", 1) == "AA" {
			t.Fatalf("strict mode acknowledged a frame without CR: %q", a)
		}
		if recs := e.journal(url.Values{"control_id": {"C02s"}}); len(recs) != 0 {
			t.Errorf("journaled %+v", recs)
		}
	})
}

func TestCase03_OpenEnvelopeThenIdle(t *testing.T) {
	e := startEngine(t, "mllp:\n  read_timeout: 300ms\n")
	c := dial(t, e.mllp)
	c.write([]byte("\x0b" + adt("C03", nil)))
	if got := c.closedWithin(5 * time.Second); got != "reset" {
		t.Errorf("connection %s after the read timeout, want reset", got)
	}
	if recs := e.journal(url.Values{"control_id": {"C03"}}); len(recs) != 0 {
		t.Errorf("unfinished frame dispatched: %+v", recs)
	}
	c2 := dial(t, e.mllp)
	c2.send(adt("C03b", nil))
	if ack := c2.ack(); field(ack, "MSA", 1) != "AA" {
		t.Errorf("next connection: %q", ack)
	}
}

func TestCase04_JunkBeforeStartBlock(t *testing.T) {
	t.Run("lenient skips keep-alives and junk", func(t *testing.T) {
		e := startEngine(t, "")
		c := dial(t, e.mllp)
		c.write(append([]byte("\r\n\r\nZ"), frame(adt("C04", nil))...))
		if ack := c.ack(); field(ack, "MSA", 2) != "C04" || field(ack, "MSA", 1) != "AA" {
			t.Fatalf("ACK %q", ack)
		}
	})
	t.Run("strict closes on junk", func(t *testing.T) {
		e := startEngine(t, "mllp:\n  strict: true\n")
		c := dial(t, e.mllp)
		c.write(append([]byte("Z"), frame(adt("C04s", nil))...))
		if got := c.closedWithin(5 * time.Second); got == "open" {
			t.Error("strict mode kept a connection that sent junk")
		}
		if recs := e.journal(url.Values{"control_id": {"C04s"}}); len(recs) != 0 {
			t.Errorf("journaled %+v", recs)
		}
	})
}

func TestCase05_StartBlockInsidePayload(t *testing.T) {
	msg := strings.Replace(adt("C05", nil), "THOMPSON", "THOMP\x0bSON", 1)
	t.Run("lenient passes through", func(t *testing.T) {
		e := startEngine(t, "")
		c := dial(t, e.mllp)
		c.send(msg)
		if ack := c.ack(); field(ack, "MSA", 1) != "AA" {
			t.Fatalf("ACK %q", ack)
		}
	})
	t.Run("strict rejects with ERR", func(t *testing.T) {
		e := startEngine(t, "mllp:\n  strict: true\n")
		c := dial(t, e.mllp)
		c.send(msg)
		ack := c.ack()
		if field(ack, "MSA", 1) != "AR" || field(ack, "MSA", 2) != "C05" || !strings.Contains(ack, "\rERR|") {
			t.Fatalf("ACK %q", ack)
		}
	})
}

func TestCase06_EndBlockInsidePayload(t *testing.T) {
	e := startEngine(t, "")
	c := dial(t, e.mllp)
	head := adt("C06", nil)
	c.write([]byte("\x0b" + head + "\x1cTAIL|SHOULD|NOT|ARRIVE\r\x1c\r"))
	if ack := c.ack(); field(ack, "MSA", 2) != "C06" {
		t.Fatalf("ACK %q", ack)
	}
	if a, err := c.readFrame(500 * time.Millisecond); err == nil {
		t.Fatalf("the tail was answered: %q", a)
	}
	recs := e.journal(nil)
	if len(recs) != 1 {
		t.Fatalf("journal %+v, want only the head", recs)
	}
	if strings.Contains(e.show(recs[0].ID), "TAIL") {
		t.Error("the tail reached the journal")
	}
}

func TestCase07_FramesSplitAndJoined(t *testing.T) {
	e := startEngine(t, "")
	c := dial(t, e.mllp)
	c.write(append(frame(adt("C07a", nil)), frame(adt("C07b", nil))...))
	if a, b := c.ack(), c.ack(); field(a, "MSA", 2) != "C07a" || field(b, "MSA", 2) != "C07b" {
		t.Fatalf("ACKs %q, %q", a, b)
	}
	for _, by := range frame(adt("C07c", nil)) {
		c.write([]byte{by})
	}
	if a := c.ack(); field(a, "MSA", 2) != "C07c" {
		t.Fatalf("ACK %q", a)
	}
}

func TestCase08_PipelinedFramesAnsweredInOrder(t *testing.T) {
	e := startEngine(t, "")
	c := dial(t, e.mllp)
	var all []byte
	for i := range 20 {
		all = append(all, frame(adt(fmt.Sprintf("C08-%02d", i), nil))...)
	}
	c.write(all)
	for i := range 20 {
		if got, want := field(c.ack(), "MSA", 2), fmt.Sprintf("C08-%02d", i); got != want {
			t.Fatalf("ACK %d answers %s, want %s", i, got, want)
		}
	}
}

func TestCase09_EmptyFrame(t *testing.T) {
	e := startEngine(t, "")
	c := dial(t, e.mllp)
	c.write([]byte("\x0b\x1c\r"))
	if ack := c.ack(); field(ack, "MSA", 1) != "AR" || !strings.Contains(ack, "\rERR|") {
		t.Fatalf("ACK %q", ack)
	}
	c.send(adt("C09", nil))
	if ack := c.ack(); field(ack, "MSA", 1) != "AA" {
		t.Fatalf("connection did not survive: %q", ack)
	}
}

func TestCase10_PayloadNotStartingWithMSH(t *testing.T) {
	e := startEngine(t, "")
	c := dial(t, e.mllp)
	c.send("PID|1||9990000018^^^NHS^NH||THOMPSON\r")
	ack := c.ack()
	if field(ack, "MSA", 1) != "AE" || !strings.Contains(ack, "\rERR|") {
		t.Fatalf("not MSH: ACK %q", ack)
	}
	// A batch header takes the batch branch: per-message ACKs in a batch.
	c.send(fixture(t, "batch_file.hl7"))
	ack = c.ack()
	// The fixture asks for enhanced mode (MSH-15 AL), so each message gets CA.
	if !strings.HasPrefix(ack, "FHS|") || strings.Count(ack, "\rMSA|CA|") != 3 {
		t.Fatalf("batch: ACK %q", ack)
	}
}

func TestCase11_FrameOverMaximum(t *testing.T) {
	e := startEngine(t, "mllp:\n  max_frame_size: 65536\n")
	c := dial(t, e.mllp)
	big := adt("C11", nil) + "NTE|1||" + strings.Repeat("x", 4<<20) + "\r"
	go c.conn.Write(frame(big)) // the engine may close before all of it is read
	ack := c.ack()
	if field(ack, "MSA", 1) != "AR" || field(ack, "MSA", 2) != "C11" {
		t.Fatalf("ACK %q", ack)
	}
	if got := c.closedWithin(5 * time.Second); got == "open" {
		t.Error("connection kept open after an oversized frame")
	}
	if recs := e.journal(url.Values{"control_id": {"C11"}}); len(recs) != 0 {
		t.Errorf("oversized message journaled: %+v", recs)
	}
}

func TestCase12_IdleTimeout(t *testing.T) {
	for _, c := range []struct{ action, want string }{{"close", "eof"}, {"reset", "reset"}} {
		t.Run(c.action, func(t *testing.T) {
			e := startEngine(t, "mllp:\n  idle_timeout: 300ms\n  idle_action: "+c.action+"\n  keep_alive: 15s\n")
			cl := dial(t, e.mllp)
			cl.send(adt("C12", nil))
			cl.ack()
			if got := cl.closedWithin(5 * time.Second); got != c.want {
				t.Errorf("idle connection ended %s, want %s", got, c.want)
			}
		})
	}
}

func TestCase13_ConnectionLimit(t *testing.T) {
	e := startEngine(t, "mllp:\n  max_connections: 2\n")
	a, b := dial(t, e.mllp), dial(t, e.mllp)
	a.send(adt("C13a", nil))
	b.send(adt("C13b", nil))
	a.ack()
	b.ack()
	third := dial(t, e.mllp)
	if got := third.closedWithin(5 * time.Second); got == "open" {
		t.Fatal("third connection over a limit of 2 was kept")
	}
	a.conn.Close()
	time.Sleep(200 * time.Millisecond)
	d := dial(t, e.mllp)
	d.send(adt("C13d", nil))
	if ack := d.ack(); field(ack, "MSA", 1) != "AA" {
		t.Errorf("after a slot freed: %q", ack)
	}
}

func TestCase14_ClientGoneBeforeACK(t *testing.T) {
	e := startEngine(t, "")
	c := dial(t, e.mllp)
	c.send(adt("C14", nil))
	c.conn.Close()
	deadline := time.Now().Add(10 * time.Second)
	for len(e.journal(url.Values{"control_id": {"C14"}})) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	c2 := dial(t, e.mllp)
	c2.send(adt("C14", nil))
	if ack := c2.ack(); field(ack, "MSA", 1) != "AA" || field(ack, "MSA", 2) != "C14" {
		t.Fatalf("resend: %q", ack)
	}
	var accepted, dup int
	for _, r := range e.journal(url.Values{"control_id": {"C14"}}) {
		switch r.Status {
		case "accepted":
			accepted++
		case "duplicate":
			dup++
		}
	}
	if accepted != 1 || dup != 1 {
		t.Errorf("journal has %d accepted and %d duplicates, want 1 and 1", accepted, dup)
	}
}

func TestCase15_TLS(t *testing.T) {
	pki := newTestPKI(t)
	serverConf := func(cert, key, auth string) string {
		conf := fmt.Sprintf("mllp:\n  tls:\n    cert_file: %s\n    key_file: %s\n    client_auth: %s\n", cert, key, auth)
		if auth != "off" {
			conf += "    client_ca_file: " + pki.caFile + "\n"
		}
		return conf
	}
	sendTLS := func(t *testing.T, addr string, cfg *tls.Config) error {
		s, err := mllp.Dial(context.Background(), mllp.SenderConfig{Addr: addr, TLS: cfg, DialTimeout: 5 * time.Second, AckTimeout: 5 * time.Second})
		if err != nil {
			return err
		}
		defer s.Close()
		_, err = s.Send(context.Background(), []byte(adt("C15", nil)))
		return err
	}
	t.Run("plain client to TLS listener fails the handshake", func(t *testing.T) {
		e := startEngine(t, serverConf(pki.serverCert, pki.serverKey, "off"))
		c := dial(t, e.mllp)
		c.send(adt("C15p", nil))
		if a, err := c.readFrame(2 * time.Second); err == nil {
			t.Fatalf("answered in plain text: %q", a)
		}
		if recs := e.journal(nil); len(recs) != 0 {
			t.Errorf("journaled %+v", recs)
		}
	})
	t.Run("client that does not trust the server fails the handshake", func(t *testing.T) {
		e := startEngine(t, serverConf(pki.serverCert, pki.serverKey, "off"))
		if err := sendTLS(t, e.mllp, &tls.Config{MinVersion: tls.VersionTLS12}); err == nil {
			t.Error("a client without the CA completed the handshake")
		}
	})
	t.Run("expired server certificate is refused at start", func(t *testing.T) {
		conf := t.TempDir() + "/c.yaml"
		writeFile(t, conf, serverConf(pki.expiredCert, pki.expiredKey, "off"))
		out, err := exec.Command(binary, "serve", "--config", conf, "--data-dir", t.TempDir(),
			"--mllp-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "expired") {
			t.Errorf("serve with an expired certificate: %v\n%s", err, out)
		}
	})
	t.Run("mTLS off", func(t *testing.T) {
		e := startEngine(t, serverConf(pki.serverCert, pki.serverKey, "off"))
		if err := sendTLS(t, e.mllp, pki.client(false)); err != nil {
			t.Error(err)
		}
	})
	t.Run("mTLS optional", func(t *testing.T) {
		e := startEngine(t, serverConf(pki.serverCert, pki.serverKey, "optional"))
		for _, withCert := range []bool{false, true} {
			if err := sendTLS(t, e.mllp, pki.client(withCert)); err != nil {
				t.Errorf("client certificate %v: %v", withCert, err)
			}
		}
	})
	t.Run("mTLS required", func(t *testing.T) {
		e := startEngine(t, serverConf(pki.serverCert, pki.serverKey, "required"))
		if err := sendTLS(t, e.mllp, pki.client(false)); err == nil {
			t.Error("accepted a client without a certificate")
		}
		expired := pki.client(false)
		expired.Certificates = []tls.Certificate{pki.expiredClient}
		if err := sendTLS(t, e.mllp, expired); err == nil {
			t.Error("accepted a client with an expired certificate")
		}
		if err := sendTLS(t, e.mllp, pki.client(true)); err != nil {
			t.Errorf("client with a certificate: %v", err)
		}
	})
}

func TestCase16_MLLPRelease2CommitACK(t *testing.T) {
	e := startEngine(t, "mllp:\n  commit_ack: true\n")
	c := dial(t, e.mllp)
	c.send(adt("C16", nil))
	if commit := c.ack(); commit != "\x06" {
		t.Fatalf("first reply %q, want the commit ACK 0x06", commit)
	}
	if ack := c.ack(); field(ack, "MSA", 1) != "AA" {
		t.Fatalf("HL7 ACK %q", ack)
	}
	// The sender side: a NAK is retried, up to the limit.
	s, err := mllp.Dial(context.Background(), mllp.SenderConfig{Addr: e.mllp, CommitACK: true, AckTimeout: 5 * time.Second, Retries: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Send(context.Background(), []byte(adt("C16b", nil))); err != nil {
		t.Errorf("send with commit ACK: %v", err)
	}
}

func TestCase17_AAOnlyAfterDurableCommit(t *testing.T) {
	dataDir := t.TempDir()
	e := startEngineIn(t, dataDir, "")
	c := dial(t, e.mllp)
	c.send(adt("C17", nil))
	if ack := c.ack(); field(ack, "MSA", 1) != "AA" {
		t.Fatalf("ACK %q", ack)
	}
	e.kill()
	out, err := exec.Command(binary, "messages", "list", "--data-dir", dataDir, "--control-id", "C17", "--format", "json").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, []byte(`"control_id":"C17"`)) || !bytes.Contains(out, []byte(`"status":"accepted"`)) {
		t.Errorf("after kill -9 the journal has %q", out)
	}
}

func TestCase18_AckBeforeDurableRefusedAtLoad(t *testing.T) {
	for _, point := range []string{"received", "immediate"} {
		conf := t.TempDir() + "/c.yaml"
		writeFile(t, conf, "ack:\n  point: "+point+"\n")
		out, err := exec.Command(binary, "serve", "--config", conf, "--data-dir", t.TempDir(),
			"--mllp-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "before they are durable") {
			t.Errorf("ack point %s: %v\n%s", point, err, out)
		}
	}
}

func TestCase19_ParseFailure(t *testing.T) {
	bad := adt("C19", nil) + "pv2|junk\r"
	for _, c := range []struct{ yaml, want string }{{"", "AE"}, {"ack:\n  parse_error_code: AR\n", "AR"}} {
		t.Run(c.want, func(t *testing.T) {
			e := startEngine(t, c.yaml)
			cl := dial(t, e.mllp)
			cl.send(bad)
			ack := cl.ack()
			if field(ack, "MSA", 1) != c.want || field(ack, "MSA", 2) != "C19" {
				t.Fatalf("ACK %q", ack)
			}
			if !strings.Contains(ack, "\rERR|") || !strings.Contains(ack, "100^Segment sequence error^HL70357") {
				t.Errorf("ERR missing or wrong: %q", ack)
			}
		})
	}
}

func TestCase20_UnsupportedTypeVersionProcessingID(t *testing.T) {
	e := startEngine(t, "ack:\n  message_types: [ADT]\n  versions: [\"2.3\", \"2.4\", \"2.5\", \"2.5.1\"]\n")
	c := dial(t, e.mllp)
	for _, tc := range []struct {
		msh  map[int]string
		code string
	}{
		{map[int]string{9: "ORU^R01^ORU_R01"}, "200"},
		{map[int]string{12: "2.9"}, "203"},
		{map[int]string{11: "X"}, "202"},
	} {
		c.send(adt("C20", tc.msh))
		ack := c.ack()
		if field(ack, "MSA", 1) != "AR" || !strings.HasPrefix(field(ack, "ERR", 3), tc.code+"^") {
			t.Errorf("%v: ACK %q, want AR with ERR-3 %s", tc.msh, ack, tc.code)
		}
	}
}

func TestCase21_RefusedMessageGetsConfiguredCode(t *testing.T) {
	e := startEngine(t, "ack:\n  message_types: [ADT]\n  reject_text: \"Message Rejected.\"\n")
	c := dial(t, e.mllp)
	c.send(adt("C21", map[int]string{9: "SIU^S12", 12: "2.4"}))
	ack := c.ack()
	if field(ack, "MSA", 1) != "AR" || field(ack, "MSA", 3) != "Message Rejected." {
		t.Errorf("ACK %q", ack)
	}
	if recs := e.journal(url.Values{"control_id": {"C21"}}); len(recs) != 1 || recs[0].Status != "rejected" {
		t.Errorf("journal %+v", recs)
	}
}

func TestCase22_EnhancedMode(t *testing.T) {
	e := startEngine(t, "")
	c := dial(t, e.mllp)
	cases := []struct {
		msh15, msh16 string
		bad          bool
		want         string // "" for no reply
	}{
		{"AL", "NE", false, "CA"},
		{"NE", "AL", false, ""},
		{"ER", "AL", false, ""},
		{"ER", "AL", true, "CE"},
		{"SU", "NE", false, "CA"},
		{"SU", "NE", true, ""},
		{"", "AL", false, "CA"},
	}
	for i, tc := range cases {
		id := fmt.Sprintf("C22-%d", i)
		msg := adt(id, map[int]string{15: tc.msh15, 16: tc.msh16})
		if tc.bad {
			msg += "pv2|junk\r"
		}
		c.send(msg)
		got, err := c.readFrame(700 * time.Millisecond)
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("MSH-15 %s (bad %v): reply %q, want none", tc.msh15, tc.bad, got)
		case tc.want != "" && (err != nil || field(got, "MSA", 1) != tc.want):
			t.Errorf("MSH-15 %s (bad %v): reply %q, %v; want %s", tc.msh15, tc.bad, got, err, tc.want)
		}
	}
	// Accepted messages are durable whether or not an ACK was asked for.
	if recs := e.journal(url.Values{"status": {"accepted"}}); len(recs) != 5 {
		t.Errorf("%d accepted records, want 5", len(recs))
	}
}

func TestCase23_ACKEchoesHeader(t *testing.T) {
	e := startEngine(t, "")
	c := dial(t, e.mllp)
	c.send(fixture(t, "delims_custom.hl7"))
	ack := c.ack()
	if !strings.HasPrefix(ack, "MSH#$*@%#SPINEBRIDGE#X26#PAS#RX1#") {
		t.Errorf("ACK header %q", ack)
	}
	m, err := hl7v2.Parse([]byte(ack))
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{"MSH-9.1": "ACK", "MSH-9.2": "A01", "MSA-1": "AA", "MSA-2": "ADT000000109", "MSH-12": "2.5.1"} {
		if v, _ := m.Lookup(path); v.String() != want {
			t.Errorf("%s = %q, want %q", path, v.String(), want)
		}
	}
}

func TestCase24_SenderClassifiesACKs(t *testing.T) {
	for _, tc := range []struct {
		reply     string // MSA-1, or "mismatch"
		wantErr   bool
		retryable bool
		attempts  int
	}{
		{"AA", false, false, 1}, {"CA", false, false, 1},
		{"AE", true, true, 3}, {"CE", true, true, 3},
		{"AR", true, false, 1}, {"CR", true, false, 1},
		{"mismatch", true, false, 1},
	} {
		t.Run(tc.reply, func(t *testing.T) {
			srv := newScriptedReceiver(t, func(n int, controlID string) (string, bool) {
				if tc.reply == "mismatch" {
					return ackFor("OTHER", "AA"), true
				}
				return ackFor(controlID, tc.reply), true
			})
			s, err := mllp.Dial(context.Background(), mllp.SenderConfig{Addr: srv.addr, AckTimeout: 2 * time.Second, Retries: 2, Backoff: time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			_, err = s.Send(context.Background(), []byte(adt("C24", nil)))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v", err)
			}
			var ae *mllp.AckError
			if asAckErr(err, &ae) && ae.Retryable() != tc.retryable {
				t.Errorf("retryable = %v", ae.Retryable())
			}
			if got := srv.count(); got != tc.attempts {
				t.Errorf("%d attempts, want %d", got, tc.attempts)
			}
		})
	}
}

func TestCase25_SenderTimeoutRetriesWithoutDuplicates(t *testing.T) {
	// The receiver is slow only for the first attempt; the sender times out,
	// reconnects and resends; the engine's duplicate window answers the resend
	// without journaling the message twice.
	e := startEngine(t, "")
	proxy := newDelayingProxy(t, e.mllp, 1500*time.Millisecond)
	s, err := mllp.Dial(context.Background(), mllp.SenderConfig{Addr: proxy.addr, AckTimeout: 500 * time.Millisecond, Retries: 3, Backoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ack, err := s.Send(context.Background(), []byte(adt("C25", nil)))
	if err != nil || field(string(ack), "MSA", 1) != "AA" {
		t.Fatalf("send: %q, %v", ack, err)
	}
	time.Sleep(2 * time.Second) // let the delayed first attempt land
	accepted := 0
	for _, r := range e.journal(url.Values{"control_id": {"C25"}}) {
		if r.Status == "accepted" {
			accepted++
		}
	}
	if accepted != 1 {
		t.Errorf("%d accepted records for one message sent with retries", accepted)
	}
}

func TestCase26_HL7OverHTTP(t *testing.T) {
	post := func(t *testing.T, addr, msg string) (int, string, string) {
		resp, err := http.Post("http://"+addr+"/hl7v2", "application/hl7-v2; charset=UTF-8", strings.NewReader(msg))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(body)
	}
	t.Run("every ACK with 200 (default)", func(t *testing.T) {
		e := startEngine(t, "")
		status, ct, body := post(t, e.http, adt("C26", nil))
		if status != 200 || ct != "application/hl7-v2; charset=UTF-8" || field(body, "MSA", 1) != "AA" {
			t.Errorf("%d %q %q", status, ct, body)
		}
		status, _, body = post(t, e.http, adt("C26e", nil)+"pv2|junk\r")
		if status != 200 || field(body, "MSA", 1) != "AE" {
			t.Errorf("AE: %d %q", status, body)
		}
	})
	t.Run("legacy statuses", func(t *testing.T) {
		e := startEngine(t, "http:\n  error_status: true\nack:\n  message_types: [ADT]\n")
		if status, _, body := post(t, e.http, adt("C26x", nil)+"pv2|junk\r"); status != 400 || field(body, "MSA", 1) != "AE" {
			t.Errorf("AE: %d %q", status, body)
		}
		if status, _, body := post(t, e.http, adt("C26r", map[int]string{9: "ORU^R01"})); status != 500 || field(body, "MSA", 1) != "AR" {
			t.Errorf("AR: %d %q", status, body)
		}
	})
}

func TestCase27_CustomDelimitersEchoed(t *testing.T) {
	e := startEngine(t, "")
	c := dial(t, e.mllp)
	for name, prefix := range map[string]string{"delims_custom.hl7": "MSH#$*@%#", "delims_truncation.hl7": `MSH|^~\&#|`} {
		c.send(fixture(t, name))
		ack := c.ack()
		sep := prefix[3:4]
		if !strings.HasPrefix(ack, prefix) || !strings.Contains(ack, "MSA"+sep+"AA"+sep) && !strings.Contains(ack, "MSA"+sep+"CA"+sep) {
			t.Errorf("%s: ACK %q", name, ack)
		}
	}
}

func TestCase28_Escapes(t *testing.T) {
	e := startEngine(t, "")
	c := dial(t, e.mllp)
	raw := fixture(t, "escapes.hl7")
	c.send(raw)
	if ack := c.ack(); !accepted(ack) {
		t.Fatalf("ACK %q", ack)
	}
	recs := e.journal(url.Values{"control_id": {"ADT000000112"}})
	if len(recs) != 1 || recs[0].Size != len(raw) {
		t.Fatalf("journal %+v, want the message byte for byte (%d bytes)", recs, len(raw))
	}
	m, _ := hl7v2.Parse([]byte(raw))
	v, _ := m.Lookup("NTE-3")
	if got, _ := v.Unescape(nil); !strings.Contains(string(got), "Line one\nLine two\r\n") || !strings.Contains(string(got), `\H\bold\N\`) {
		t.Errorf("decoded NTE-3 %q", got)
	}
	if got, _ := v.Unescape(nil); !strings.Contains(string(got), `\C2842\ \M2442\ \ZLOCAL\`) {
		t.Errorf("character-set and local escapes not preserved: %q", got)
	}
	if got, _ := hl7v2.DefaultDelimiters.UnescapeFormatted(nil, []byte(`a\.br\b`)); string(got) != `a\.br\b` {
		t.Errorf("formatted text lost \\.br\\: %q", got)
	}
}

func TestCase29_UnterminatedEscapeTolerated(t *testing.T) {
	e := startEngine(t, "")
	c := dial(t, e.mllp)
	c.send(fixture(t, "escape_unterminated.hl7"))
	if ack := c.ack(); !accepted(ack) {
		t.Fatalf("ACK %q", ack)
	}
	m, _ := hl7v2.Parse([]byte(fixture(t, "escape_unterminated.hl7")))
	v, _ := m.Lookup("PID-5.1")
	if got, err := v.Unescape(nil); err == nil || string(got) != `SMITH\T` {
		t.Errorf("unterminated escape: %q, warning %v", got, err)
	}
}

func TestCase30_CharacterSets(t *testing.T) {
	e := startEngine(t, "")
	c := dial(t, e.mllp)
	for _, name := range []string{"charset_utf8.hl7", "charset_8859_1.hl7", "charset_8859_15.hl7", "charset_mismatch.hl7", "adt_a01.hl7"} {
		raw := fixture(t, name)
		c.send(raw)
		ack := c.ack()
		if !accepted(ack) {
			t.Errorf("%s: ACK %q", name, ack)
			continue
		}
		recs := e.journal(url.Values{"control_id": {field(raw, "MSH", 10)}})
		if len(recs) == 0 || recs[len(recs)-1].Size != len(raw) {
			t.Errorf("%s: journal %+v, want the bytes as sent", name, recs)
		}
	}
	m, _ := hl7v2.Parse([]byte(fixture(t, "charset_utf8.hl7")))
	v, _ := m.Lookup("PID-5.2")
	if got, err := m.Text(nil, v); err != nil || string(got) != "Seán" {
		t.Errorf("UTF-8 PID-5.2 = %q, %v", got, err)
	}
	m, _ = hl7v2.Parse([]byte(fixture(t, "charset_mismatch.hl7")))
	v, _ = m.Lookup("PID-5.1")
	if _, err := m.Text(nil, v); err == nil {
		t.Error("declared UTF-8 holding Latin-1 gave no warning")
	}
}

func TestCase31_SegmentTerminators(t *testing.T) {
	e := startEngine(t, "")
	c := dial(t, e.mllp)
	for _, name := range []string{"endings_lf.hl7", "endings_crlf.hl7", "endings_mixed.hl7"} {
		c.send(fixture(t, name))
		ack := c.ack()
		if !accepted(ack) || strings.Contains(ack, "\n") || !strings.HasSuffix(ack, "\r") {
			t.Errorf("%s: ACK %q, want an accept with CR endings only", name, ack)
		}
	}
}

func TestCase32_ZSegments(t *testing.T) {
	e := startEngine(t, "")
	c := dial(t, e.mllp)
	raw := fixture(t, "zsegments.hl7")
	c.send(raw)
	if ack := c.ack(); !accepted(ack) {
		t.Fatalf("ACK %q", ack)
	}
	recs := e.journal(url.Values{"control_id": {"ADT000000111"}})
	if len(recs) != 1 {
		t.Fatalf("journal %+v", recs)
	}
	shown := e.show(recs[0].ID)
	for _, seg := range []string{"ZPI|1|LEARNING DISABILITY FLAG^Y|INTERPRETER^POL", "ZEX|RX1|WARD 12^AMU|SIDE ROOM"} {
		if !strings.Contains(shown, seg) {
			t.Errorf("journal lost %q", seg)
		}
	}
	m, _ := hl7v2.Parse([]byte(raw))
	if v, _ := m.Lookup("ZPI-2.1"); v.String() != "LEARNING DISABILITY FLAG" {
		t.Errorf("ZPI-2.1 = %q", v.String())
	}
}

func TestCase33_Batches(t *testing.T) {
	e := startEngine(t, "")
	c := dial(t, e.mllp)
	c.send(fixture(t, "batch_file.hl7"))
	ack := c.ack()
	if !strings.HasPrefix(ack, "FHS|") || strings.Count(ack, "\rBHS|") != 2 || strings.Count(ack, "\rMSA|CA|") != 3 || !strings.HasSuffix(ack, "FTS|2\r") {
		t.Fatalf("batch ACK %q", ack)
	}
	for _, name := range []string{"batch_count_mismatch.hl7", "batch_fts_count_mismatch.hl7"} {
		c.send(fixture(t, name))
		ack := c.ack()
		if !refused(ack) || !strings.Contains(ack, "batch count mismatch") {
			t.Errorf("%s: ACK %q", name, ack)
		}
	}
	if n := len(e.journal(url.Values{"status": {"accepted"}})); n != 3 {
		t.Errorf("%d accepted records, want the 3 of the good batch only", n)
	}
}

func TestCase34_DuplicateAnsweredWithOriginalACK(t *testing.T) {
	e := startEngine(t, "ack:\n  duplicate_window: 1h\n")
	c := dial(t, e.mllp)
	c.send(adt("C34", nil))
	first := c.ack()
	c.send(adt("C34", nil))
	second := c.ack()
	if first != second {
		t.Errorf("resend answered %q, original %q", second, first)
	}
	statuses := map[string]int{}
	for _, r := range e.journal(url.Values{"control_id": {"C34"}}) {
		statuses[r.Status]++
	}
	if statuses["accepted"] != 1 || statuses["duplicate"] != 1 {
		t.Errorf("journal statuses %v", statuses)
	}
	// Another sender may reuse the control id: not a duplicate.
	c.send(adt("C34", map[int]string{3: "LIMS"}))
	if ack := c.ack(); ack == first || !accepted(ack) {
		t.Errorf("other sender: %q", ack)
	}
}

// TestEnhancedModeApplicationAcks goes with case 22: with ack.application:
// connection, a message whose MSH-16 asks for it gets its application ACK on
// the same connection after its CA, once it is routed and transformed, and
// `spinebridge send --app-acks` prints it; by default it is recorded in the
// message's journey instead.
func TestEnhancedModeApplicationAcks(t *testing.T) {
	e := startEngine(t, "ack:\n  application: connection\n")
	c := dial(t, e.mllp)
	c.send(adt("APP-1", map[int]string{15: "AL", 16: "AL"}))
	accept, err := c.readFrame(10 * time.Second)
	if err != nil || field(accept, "MSA", 1) != "CA" {
		t.Fatalf("accept ACK %q, %v; want CA", accept, err)
	}
	app, err := c.readFrame(30 * time.Second)
	if err != nil || field(app, "MSA", 1) != "AA" || field(app, "MSA", 2) != "APP-1" || field(app, "MSH", 15) != "" {
		t.Fatalf("application ACK %q, %v; want AA for APP-1 asking for no ACK itself", app, err)
	}
	// MSH-16 ER: a message processed without error gets none.
	c.send(adt("APP-2", map[int]string{15: "AL", 16: "ER"}))
	if got, err := c.readFrame(10 * time.Second); err != nil || field(got, "MSA", 1) != "CA" {
		t.Fatalf("accept ACK %q, %v; want CA", got, err)
	}
	if got, err := c.readFrame(700 * time.Millisecond); err == nil {
		t.Errorf("MSH-16 ER, processed: got %q, want no application ACK", got)
	}

	file := filepath.Join(t.TempDir(), "enhanced.hl7")
	writeFile(t, file, adt("APP-3", map[int]string{15: "AL", 16: "AL"})+"\n"+adt("APP-4", map[int]string{15: "AL", 16: "AL"}))
	out, err := exec.Command(binary, "send", "--addr", e.mllp, "--app-acks", "30s", file).CombinedOutput()
	if err != nil {
		t.Fatalf("send: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for _, want := range []string{"APP-3 CA", "APP-4 CA", "APP-3 AA application", "APP-4 AA application"} {
		if !slices.Contains(lines, want) {
			t.Errorf("send printed %q, want a line %q", out, want)
		}
	}

	// The default records it instead.
	r := startEngine(t, "")
	rc := dial(t, r.mllp)
	rc.send(adt("REC-1", map[int]string{15: "AL", 16: "AL"}))
	if got, err := rc.readFrame(10 * time.Second); err != nil || field(got, "MSA", 1) != "CA" {
		t.Fatalf("accept ACK %q, %v; want CA", got, err)
	}
	if got, err := rc.readFrame(700 * time.Millisecond); err == nil {
		t.Errorf("ack.application record sent %q on the connection", got)
	}
	recs := r.journal(url.Values{"control_id": {"REC-1"}})
	if len(recs) != 1 {
		t.Fatalf("%d records for REC-1", len(recs))
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(r.show(recs[0].ID), "application ACK AA recorded") {
		if time.Now().After(deadline) {
			t.Fatalf("journey of REC-1 has no recorded application ACK:\n%s", r.show(recs[0].ID))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Application acknowledgements still owed when the engine is killed are made by
// the next run: routing is held back (one delivery may be pending, and it
// cannot be delivered), so the messages after the first are acknowledged with
// CA and wait; after kill -9 (or SIGTERM) and a restart in which every
// destination works, each one's journey records its application ACK once.
//
// The outbox is synced in the background (every 100 ms), so what the restart
// finds depends on when the engine was killed: with its last writes lost,
// every message is routed again; with them kept (most likely after the pause),
// the first message's delivery to the stuck destination is still pending, and
// routing waits for it before reaching the others. SIGTERM keeps them for
// certain.
func TestApplicationAcksOwedAtKillAreRecordedAfterRestart(t *testing.T) {
	for _, tc := range []struct {
		name  string
		pause time.Duration // between the last CA and the signal
		sig   os.Signal
	}{
		{"kill at once", 0, os.Kill},
		{"kill after a pause", 500 * time.Millisecond, os.Kill},
		{"SIGTERM", 0, syscall.SIGTERM},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			dataDir := filepath.Join(dir, "data")
			// routes sends every message to dest; stuck is an MLLP destination
			// that refuses connections, or, once it works, a directory.
			routes := func(dest, stuck string) string {
				file := filepath.Join(dir, "routes-"+dest+".yaml")
				writeFile(t, file, fmt.Sprintf(`routes:
  - name: all
    when: "true"
    to: [%s]
destinations:
  stuck:
%s
  files:
    kind: file
    dir: %s
`, dest, stuck, filepath.Join(dir, "out")))
				return "routes:\n  file: " + file + "\ndelivery:\n  max_pending: 1\n  initial_backoff: 50ms\n  max_backoff: 100ms\n  max_attempts: 100000\n"
			}
			e := startEngineIn(t, dataDir, routes("stuck", "    kind: mllp\n    addr: "+closedAddr(t)+"\n    ack_timeout: 1s"))
			c := dial(t, e.mllp)
			ids := []string{"OWED-1", "OWED-2", "OWED-3", "OWED-4"}
			for _, id := range ids {
				c.send(adt(id, map[int]string{15: "AL", 16: "AL"}))
				if got, err := c.readFrame(10 * time.Second); err != nil || field(got, "MSA", 1) != "CA" {
					t.Fatalf("%s: accept ACK %q, %v; want CA", id, got, err)
				}
			}
			time.Sleep(tc.pause)
			e.stop(tc.sig)

			// A delivery to stuck kept from the first run must be able to
			// finish, or routing never reaches the messages behind it.
			e = startEngineIn(t, dataDir, routes("files", "    kind: file\n    dir: "+filepath.Join(dir, "out-stuck")))
			for _, id := range ids {
				recs := e.journal(url.Values{"control_id": {id}})
				if len(recs) != 1 {
					t.Fatalf("%d records for %s", len(recs), id)
				}
				var journey string
				for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
					journey = e.show(recs[0].ID)
					if strings.Contains(journey, "application ACK AA recorded") {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("journey of %s has no recorded application ACK:\n%s", id, journey)
					}
				}
				if n := strings.Count(journey, "application ACK"); n != 1 {
					t.Errorf("journey of %s has %d application ACKs:\n%s", id, n, journey)
				}
			}
			if tc.sig == syscall.SIGTERM && !strings.Contains(e.log.String(), `msg="routes: resuming deliveries from the last run"`) {
				t.Errorf("the restart did not resume the delivery to stuck:\n%s", e.log)
			}
		})
	}
}
