package routes

import (
	"context"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
)

func newTestIntake(t *testing.T, cfg IntakeConfig) (*Intake, *Local) {
	t.Helper()
	j, err := OpenLocal(t.TempDir(), LocalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close(context.Background()) })
	in, err := NewIntake(cfg, j, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return in, j
}

func intakeMsg(controlID, extraMSH string) []byte {
	return []byte("MSH|^~\\&|PAS|RX1|SB|X26|20261121||ADT^A01^ADT_A01|" + controlID + "|P|2.4" + extraMSH +
		"\rPID|1||RX1A1^^^RX1^MR~9990000018^^^NHS^NH||THOMPSON^ELEANOR\r")
}

func receive(t *testing.T, in *Intake, payload []byte) (Reply, *hl7v2.Message) {
	t.Helper()
	r, release := in.Receive(context.Background(), Arrival{Payload: payload, Peer: "127.0.0.1:1"})
	defer release()
	var m *hl7v2.Message
	if r.Ack != nil {
		var err error
		if m, err = hl7v2.Parse(append([]byte(nil), r.Ack...)); err != nil {
			t.Fatalf("ACK does not parse: %v", err)
		}
	}
	return r, m
}

func TestIntakeRecordsHeaderFields(t *testing.T) {
	in, j := newTestIntake(t, IntakeConfig{Listener: "mllp"})
	r, ack := receive(t, in, intakeMsg("M1", ""))
	if !r.Committed || r.Code != hl7v2.AA || r.ID == 0 {
		t.Fatalf("reply %+v", r)
	}
	if v, _ := ack.Lookup("MSA-2"); v.String() != "M1" {
		t.Errorf("MSA-2 = %q", v.String())
	}
	rec, err := j.Get(context.Background(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := Record{Listener: "mllp", Peer: "127.0.0.1:1", Sender: "PAS|RX1", ControlID: "M1", Type: "ADT", Trigger: "A01",
		Version: "2.4", NHSNumber: "9990000018", Status: StatusAccepted, AckCode: "AA"}
	got := *rec
	got.ID, got.Received, got.Ack, got.Raw = 0, time.Time{}, nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("record %+v\nwant   %+v", got, want)
	}
	if string(rec.Raw) != string(intakeMsg("M1", "")) || !strings.HasPrefix(string(rec.Ack), "MSH|^~\\&|SB|X26|PAS|RX1|") {
		t.Errorf("raw or ACK not kept: %q", rec.Ack)
	}
}

// A journal that cannot write never yields a positive ACK: the sender must keep
// the message and send it again.
func TestIntakeJournalFailureIsNotAcknowledged(t *testing.T) {
	in, j := newTestIntake(t, IntakeConfig{Listener: "mllp"})
	j.Close(context.Background())
	for _, tc := range []struct {
		extra string
		want  hl7v2.AckCode
	}{{"", hl7v2.AE}, {"|||AL|NE", hl7v2.CE}} {
		r, ack := receive(t, in, intakeMsg("M2", tc.extra))
		if r.Committed || r.Code != tc.want {
			t.Errorf("MSH-15/16 %q: reply %+v, want %s and not committed", tc.extra, r, tc.want)
		}
		// A v2.4 sender reads the error code in ERR-1.4.
		if v, _ := ack.Lookup("ERR-1.4.1"); v.String() != "207" {
			t.Errorf("ERR-1.4.1 = %q, want 207", v.String())
		}
	}
}

func TestIntakeEnhancedModeReplies(t *testing.T) {
	in, _ := newTestIntake(t, IntakeConfig{Listener: "mllp"})
	for _, tc := range []struct {
		msh15   string
		bad     bool
		wantAck bool
		code    hl7v2.AckCode
	}{
		{"AL", false, true, hl7v2.CA}, {"NE", false, false, hl7v2.CA}, {"ER", false, false, hl7v2.CA},
		{"ER", true, true, hl7v2.CE}, {"SU", false, true, hl7v2.CA}, {"SU", true, false, hl7v2.CE},
	} {
		msg := intakeMsg("E-"+tc.msh15, "|||"+tc.msh15+"|AL")
		if tc.bad {
			msg = append(msg, "pv1|x\r"...)
		}
		r, _ := receive(t, in, msg)
		if (r.Ack != nil) != tc.wantAck || r.Code != tc.code {
			t.Errorf("MSH-15 %s bad %v: ack sent %v code %s; want %v %s", tc.msh15, tc.bad, r.Ack != nil, r.Code, tc.wantAck, tc.code)
		}
	}
}

func TestIntakeDuplicateWindow(t *testing.T) {
	in, _ := newTestIntake(t, IntakeConfig{Listener: "mllp", DuplicateWindow: time.Hour})
	first, _ := receive(t, in, intakeMsg("D1", ""))
	firstAck := append([]byte(nil), first.Ack...)
	second, _ := receive(t, in, intakeMsg("D1", ""))
	if string(second.Ack) != string(firstAck) || second.ID != first.ID {
		t.Errorf("duplicate answered %q (id %d), original %q (id %d)", second.Ack, second.ID, firstAck, first.ID)
	}
	off, _ := newTestIntake(t, IntakeConfig{Listener: "mllp"})
	a, _ := receive(t, off, intakeMsg("D2", ""))
	b, _ := receive(t, off, intakeMsg("D2", ""))
	if a.ID == b.ID {
		t.Error("with no duplicate window a resend was not journaled anew")
	}
}

func TestIntakeConfigValidate(t *testing.T) {
	err := IntakeConfig{AckPoint: "received", ParseErrorCode: "XX", DuplicateWindow: -1}.Validate()
	for _, want := range []string{"before they are durable", `parse error code "XX"`, "negative"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to say %q", err, want)
		}
	}
	if _, err := NewIntake(IntakeConfig{AckPoint: AckProcessed}, nil, nil); err == nil || !strings.Contains(err.Error(), "needs a processor") {
		t.Errorf("ack point processed with nothing to process: %v", err)
	}
}

// BenchmarkIntakeReceive is the engine's per-message path, parse to durable
// journal write and ACK, from 64 concurrent connections' worth of goroutines (as
// the listener drives it), so that commits are shared as in service.
func BenchmarkIntakeReceive(b *testing.B) {
	j, err := OpenLocal(b.TempDir(), LocalOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close(context.Background())
	in, err := NewIntake(IntakeConfig{Listener: "mllp"}, j, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	msg := intakeMsg("B000000000", "")
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	b.SetParallelism(32)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r, release := in.Receive(context.Background(), Arrival{Payload: msg})
			if !r.Committed {
				b.Fatal("not committed")
			}
			release()
		}
	})
}
