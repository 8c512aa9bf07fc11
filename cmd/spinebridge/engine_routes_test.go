package main

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
	"github.com/spinebridge/spinebridge/routes"
)

// noRoutes is a routing table that declares no destination.
type noRoutes struct{}

func (noRoutes) Match(_ *routes.Record, _ *hl7v2.Message, dst []routes.Match) ([]routes.Match, error) {
	return dst, nil
}
func (noRoutes) Destination(string) routes.Destination { return nil }
func (noRoutes) Concurrency(string) int                { return 0 }
func (noRoutes) HoldsAcks() bool                       { return false }
func (noRoutes) Close() error                          { return nil }

// POST /dead-letters/replay answers 409 with the reason when dead letters are
// for a destination the table in force does not declare, and leaves them.
func TestAdminReplayDeadLettersOfAnUnconfiguredDestination(t *testing.T) {
	ctx := context.Background()
	j, err := routes.OpenLocal(filepath.Join(t.TempDir(), "journal"), routes.LocalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close(ctx)
	rec := &routes.Record{
		Received: time.Now().UTC(), Listener: "mllp", Sender: "PAS|RX1", ControlID: "C1",
		Type: "ADT", Trigger: "A01", Status: routes.StatusAccepted, AckCode: "AA",
		Raw: []byte("MSH|^~\\&|PAS|RX1|SB|X26|20261121||ADT^A01|C1|P|2.4\r"),
	}
	if err := j.Append(ctx, rec); err != nil {
		t.Fatal(err)
	}
	p := routes.PendingDelivery{MessageID: rec.ID, Route: "adt", Destination: "pds", Key: "k", Attempts: 1}
	if err := j.Routed(ctx, rec.ID+1, []routes.PendingDelivery{p}, nil); err != nil {
		t.Fatal(err)
	}
	if err := j.Settle(ctx, &p, routes.DeadLettered, routes.Event{Detail: `destination "pds" is no longer configured`}); err != nil {
		t.Fatal(err)
	}
	d, err := routes.NewDispatcher(routes.DispatcherConfig{Store: j, Routing: noRoutes{}, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	rt := &routing{dispatcher: d, store: j, log: slog.New(slog.DiscardHandler)}
	mux := http.NewServeMux()
	rt.handle(mux)

	w := httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/dead-letters/replay?destination=pds", nil))
	body := w.Body.String()
	if w.Code != http.StatusConflict || !strings.Contains(body, "0 dead letters sent again") ||
		!strings.Contains(body, `destination "pds" is not configured: its 1 dead letters stay`) {
		t.Errorf("replay: %d %q; want 409 saying pds is not configured", w.Code, body)
	}
	n := 0
	if err := j.DeadLetters(ctx, "", func(routes.DeadLetter) bool { n++; return true }); err != nil || n != 1 {
		t.Errorf("%d dead letters after the refused replay (err %v), want 1", n, err)
	}
}
