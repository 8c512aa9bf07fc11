package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spinebridge/spinebridge/routes"
)

// `messages show` of a message the journal's retention removed says so, and
// tells it from an ID the journal never gave out.
func TestMessagesShowRemovedByRetention(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	dir := filepath.Join(data, "journal")
	j, err := routes.OpenLocal(dir, routes.LocalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, age := range []time.Duration{48 * time.Hour, time.Minute} {
		rec := &routes.Record{
			Received: time.Now().Add(-age).UTC(), Listener: "mllp", Sender: "PAS|RX1", ControlID: fmt.Sprintf("C%d", i+1),
			Type: "ADT", Trigger: "A01", Status: routes.StatusAccepted, AckCode: "AA",
			Raw: []byte("MSH|^~\\&|PAS|RX1|SB|X26|20261121||ADT^A01|C1|P|2.4\r"),
		}
		if err := j.Append(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Routed(ctx, 3, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// The pass at open removes the message two days old.
	j, err = routes.OpenLocal(dir, routes.LocalOptions{Retention: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := j.Get(ctx, 1)
		if errors.Is(err, routes.ErrRemoved) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("message 1 not removed by the pass at open: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := j.Close(ctx); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		id, want string
		code     int
	}{
		{"1", "messages show: message 1 was removed from the journal by its retention (journal.retention)", 1},
		{"7", "messages show: no message 7 in the journal", 1},
		{"2", "", 0},
	} {
		code, out, errOut := runCLI(t, "", "messages", "show", tc.id, "--data-dir", data)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("show %s: exit %d, out %q, err %q; want exit %d and %q", tc.id, code, out, errOut, tc.code, tc.want)
		}
	}
}

func TestDeadLettersReplayAndDiscardTogether(t *testing.T) {
	code, _, errOut := runCLI(t, "", "messages", "dead-letters", "--replay", "--discard", "--data-dir", t.TempDir())
	if code != 2 || !strings.Contains(errOut, "--replay and --discard together") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

// A message refused on a queue was never routed and its ACK went nowhere:
// messages show says so rather than "not routed yet" and "ack sent".
func TestMessagesShowRefusedFromAQueue(t *testing.T) {
	var out strings.Builder
	showMessage(&out, &routes.Record{
		ID: 2, Listener: "lims-results", Peer: "amqp://lims-results", Status: routes.StatusRejected,
		AckCode: "AR", Raw: []byte("not hl7"), Ack: []byte("MSH|^~\\&|SPINEBRIDGE||||20261121||ACK|X|P|2.5.1\rMSA|AR|"),
	}, nil)
	for _, want := range []string{
		"none: only accepted messages are routed, and this one is rejected",
		"ack (not sent; it settled the queue's delivery):",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("messages show lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "not routed yet") || strings.Contains(out.String(), "ack sent") {
		t.Errorf("messages show:\n%s", out.String())
	}
}
