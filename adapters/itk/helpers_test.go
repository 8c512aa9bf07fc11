package itk

import (
	"bytes"
	"context"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
	"github.com/spinebridge/spinebridge/routes"
)

var update = flag.Bool("update", false, "rewrite the golden files and the negative fixtures")

const fixtureDir = "../../fixtures/itk"

// fixedNow is inside the timestamp window of every fixture.
var fixedNow = time.Date(2026, 11, 21, 9, 31, 0, 0, time.UTC)

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtureDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// golden compares got with the file, or rewrites it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join(fixtureDir, name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from what the code produces (run with -update after checking):\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

// fakeJournal records what the handler stores. ReceiveV2 answers with code
// (AA by default) and Append fails with appendErr.
type fakeJournal struct {
	mu        sync.Mutex
	code      hl7v2.AckCode
	committed bool
	ack       []byte
	appendErr error
	arrivals  []routes.Arrival
	records   []*routes.Record
}

func (j *fakeJournal) ReceiveV2(ctx context.Context, a routes.Arrival) (routes.Reply, func()) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.arrivals = append(j.arrivals, routes.Arrival{Payload: bytes.Clone(a.Payload), Peer: a.Peer})
	code, committed := j.code, j.committed
	if code == "" {
		code, committed = hl7v2.AA, true
	}
	return routes.Reply{Code: code, Committed: committed, Ack: j.ack, ID: routes.ID(len(j.arrivals))}, func() {}
}

func (j *fakeJournal) Append(ctx context.Context, rec *routes.Record) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.appendErr != nil {
		return j.appendErr
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	c := *rec
	c.Raw = bytes.Clone(rec.Raw)
	c.ID = routes.ID(len(j.records) + 1)
	rec.ID = c.ID
	j.records = append(j.records, &c)
	return nil
}

func newTestHandler(t testing.TB, cfg Config, j Journal) *Handler {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return fixedNow }
	}
	h, err := NewHandler(cfg, j, nil)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// post sends body to h as a SOAP 1.1 request.
func post(h http.Handler, body []byte) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "/itk", bytes.NewReader(body))
	r.Header.Set("Content-Type", "text/xml; charset=utf-8")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// mustFault parses a fault response and returns it.
func mustFault(t *testing.T, w *httptest.ResponseRecorder) *Fault {
	t.Helper()
	if w.Code != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500; body:\n%s", w.Code, w.Body)
	}
	resp, err := ParseResponse(w.Body.Bytes(), Limits{})
	if err != nil {
		t.Fatalf("fault not readable: %v\n%s", err, w.Body)
	}
	if resp.Fault == nil {
		t.Fatalf("not a fault:\n%s", w.Body)
	}
	return resp.Fault
}

func mustOK(t *testing.T, w *httptest.ResponseRecorder) {
	t.Helper()
	if w.Code != http.StatusOK {
		t.Fatalf("status %d, want 200; body:\n%s", w.Code, w.Body)
	}
	resp, err := ParseResponse(w.Body.Bytes(), Limits{})
	if err != nil {
		t.Fatalf("response not readable: %v\n%s", err, w.Body)
	}
	if resp.Fault != nil || !strings.HasPrefix(resp.Text, "OK") {
		t.Fatalf("not OK:\n%s", w.Body)
	}
}
