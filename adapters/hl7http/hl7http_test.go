package hl7http

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// fakeReceiver answers with a fixed code and records what it was given.
type fakeReceiver struct {
	code     string
	got      []byte
	released bool
}

func (f *fakeReceiver) ReceiveHTTP(_ context.Context, payload []byte, _ string) ([]byte, string, func()) {
	f.got = append([]byte(nil), payload...)
	return []byte("MSH|^~\\&|||||||ACK^A01^ACK|1|P|2.5\rMSA|" + f.code + "|X1\r"), f.code, func() { f.released = true }
}

const msg = "MSH|^~\\&|PAS|RX1|SB|X26|20261121||ADT^A01|X1|P|2.5\rPID|1||9990000018^^^NHS^NH\r"

func TestHandler(t *testing.T) {
	cases := []struct {
		name        string
		errorStatus bool
		method      string
		contentType string
		code        string
		body        string
		wantStatus  int
		wantCharset string
	}{
		{"accept", false, "POST", "application/hl7-v2; charset=UTF-8", "AA", msg, 200, "UTF-8"},
		{"error answered 200 by default", false, "POST", "application/hl7-v2", "AE", msg, 200, "UTF-8"},
		{"reject answered 200 by default", false, "POST", "application/hl7-v2", "AR", msg, 200, "UTF-8"},
		{"error as 400 in legacy mode", true, "POST", "application/hl7-v2", "AE", msg, 400, "UTF-8"},
		{"reject as 500 in legacy mode", true, "POST", "application/hl7-v2", "AR", msg, 500, "UTF-8"},
		{"commit error as 400 in legacy mode", true, "POST", "application/hl7-v2", "CE", msg, 400, "UTF-8"},
		{"accept is 200 in legacy mode", true, "POST", "application/hl7-v2", "CA", msg, 200, "UTF-8"},
		{"older media type, Latin-1", false, "POST", "x-application/hl7-v2+er7; charset=ISO-8859-1", "AA", msg, 200, "ISO-8859-1"},
		{"not POST", false, "GET", "application/hl7-v2", "AA", "", 405, ""},
		{"wrong media type", false, "POST", "application/json", "AA", "{}", 415, ""},
		{"no media type", false, "POST", "", "AA", msg, 415, ""},
		{"too large", false, "POST", "application/hl7-v2", "AA", strings.Repeat("x", 2048), 413, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rcv := &fakeReceiver{code: c.code}
			h := NewHandler(Config{ErrorStatus: c.errorStatus, MaxBodySize: 1024}, rcv, slog.New(slog.DiscardHandler))
			req := httptest.NewRequest(c.method, "/hl7v2", strings.NewReader(c.body))
			if c.contentType != "" {
				req.Header.Set("Content-Type", c.contentType)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != c.wantStatus {
				t.Fatalf("status %d, want %d (%s)", rec.Code, c.wantStatus, rec.Body)
			}
			if c.wantCharset == "" {
				if rcv.got != nil {
					t.Error("refused request reached the receiver")
				}
				return
			}
			if string(rcv.got) != c.body || !rcv.released {
				t.Errorf("receiver got %q, released %v", rcv.got, rcv.released)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/hl7-v2; charset="+c.wantCharset {
				t.Errorf("Content-Type %q", ct)
			}
			body, _ := io.ReadAll(rec.Body)
			if !strings.Contains(string(body), "MSA|"+c.code+"|X1") {
				t.Errorf("body %q", body)
			}
		})
	}
}

func TestHandlerOverRealHTTP(t *testing.T) {
	rcv := &fakeReceiver{code: "AA"}
	srv := httptest.NewServer(NewHandler(Config{}, rcv, slog.New(slog.DiscardHandler)))
	defer srv.Close()
	resp, err := http.Post(srv.URL, "application/hl7-v2", strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(body), "MSA|AA|X1") {
		t.Errorf("%d %q", resp.StatusCode, body)
	}
}
