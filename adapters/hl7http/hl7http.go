// Package hl7http receives HL7 v2 messages over HTTP, as "HL7 over HTTP" (the
// profile HAPI introduced) defines it: the sender POSTs one message in the ER7
// encoding as the request body, and the receiver answers with the acknowledgement
// as the response body.
//
// The profile returns every acknowledgement with HTTP 200, AE and AR included,
// since the ACK itself carries the outcome; that is the default here. Some older
// receivers answered AE and AR with 4xx and 5xx statuses instead; ErrorStatus
// turns that on for senders written against them.
package hl7http

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
)

// Receiver takes one message and returns its ACK and MSA-1 code. release is called
// once the ACK has been written.
type Receiver interface {
	ReceiveHTTP(ctx context.Context, payload []byte, peer string) (ack []byte, code string, release func())
}

// Config configures a Handler.
type Config struct {
	// MaxBodySize is the largest message accepted, in bytes; 16 MiB when zero.
	MaxBodySize int64
	// ErrorStatus answers AE and CE with 400 and AR and CR with 500, as some older
	// receivers did, instead of 200 for every ACK.
	ErrorStatus bool
}

// contentTypes are the media types accepted for ER7: the profile's own, and those
// senders written before it commonly use.
var contentTypes = map[string]bool{
	"application/hl7-v2":       true,
	"x-application/hl7-v2+er7": true,
	"application/x-hl7":        true,
	"application/edi-hl7":      true,
	"text/plain":               true,
}

// Handler is an http.Handler receiving HL7 v2 messages.
type Handler struct {
	cfg Config
	rcv Receiver
	log *slog.Logger
}

var _ http.Handler = (*Handler)(nil)

// NewHandler returns a Handler passing messages to r.
func NewHandler(cfg Config, r Receiver, log *slog.Logger) *Handler {
	if cfg.MaxBodySize <= 0 {
		cfg.MaxBodySize = 16 << 20
	}
	return &Handler{cfg: cfg, rcv: r, log: log}
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST an HL7 v2 message", http.StatusMethodNotAllowed)
		return
	}
	mediaType, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || !contentTypes[mediaType] {
		http.Error(w, "Content-Type must be application/hl7-v2", http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodySize))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			http.Error(w, "message too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "could not read the message", http.StatusBadRequest)
		return
	}
	ack, code, release := h.rcv.ReceiveHTTP(r.Context(), body, r.RemoteAddr)
	defer release()
	charset := params["charset"]
	if charset == "" {
		charset = "UTF-8"
	}
	w.Header().Set("Content-Type", mime.FormatMediaType("application/hl7-v2", map[string]string{"charset": charset}))
	w.WriteHeader(h.status(code))
	if _, err := w.Write(ack); err != nil {
		h.log.Warn("hl7http: ACK not delivered", "peer", r.RemoteAddr, "err", err)
	}
}

// status is the HTTP status for an ACK code.
func (h *Handler) status(code string) int {
	if !h.cfg.ErrorStatus {
		return http.StatusOK
	}
	switch strings.ToUpper(code) {
	case "AE", "CE":
		return http.StatusBadRequest
	case "AR", "CR":
		return http.StatusInternalServerError
	}
	return http.StatusOK
}
