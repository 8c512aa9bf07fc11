package itk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
	"github.com/spinebridge/spinebridge/routes"
)

// Services offered when Config.Services is empty: the document services and
// the ITK HL7 v2 ADT services that carry an envelope.
var KnownServices = []string{
	"urn:nhs-itk:services:201005:SendCDADocument-v2-0",
	"urn:nhs-itk:services:201005:SendNHS111Report-v2-0",
	"urn:nhs-itk:services:201005:sendDistEnvelope",
	"urn:nhs-itk:services:201005:admitPatient-v1-0",
	"urn:nhs-itk:services:201005:transferPatientUpdateMaster-v1-0",
	"urn:nhs-itk:services:201005:dischargePatientUpdateMaster-v1-0",
	"urn:nhs-itk:services:201005:updatePatientUpdateMaster-v1-0",
	"urn:nhs-itk:services:201005:registerOutpatientUpdateMaster-v1-0",
}

// Config configures a Handler. The zero value works: every limit has a default.
type Config struct {
	// MaxBodySize is the largest request accepted, in bytes, and the largest a
	// payload may decode or decompress to; 16 MiB when zero.
	MaxBodySize int64
	// MaxDepth is the deepest element nesting accepted; 100 when zero.
	MaxDepth int
	// Timeout bounds one request, from reading its body to the journal's
	// answer; 30 seconds when zero.
	Timeout time.Duration
	// TimestampWindow is how far the sender's clock may be from this one: a
	// request is refused when now is before its wsu:Created or after its
	// wsu:Expires by more than this. 5 minutes when zero.
	TimestampWindow time.Duration
	// Services are the service URNs accepted; KnownServices when empty.
	// Another service is refused with 2200.
	Services []string
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if c.MaxBodySize < 0 {
		errs = append(errs, errors.New("max body size must not be negative"))
	}
	if c.MaxDepth < 0 {
		errs = append(errs, errors.New("max depth must not be negative"))
	}
	if c.Timeout < 0 {
		errs = append(errs, errors.New("timeout must not be negative"))
	}
	if c.TimestampWindow < 0 {
		errs = append(errs, errors.New("timestamp window must not be negative"))
	}
	for _, s := range c.Services {
		if !strings.HasPrefix(s, "urn:") {
			errs = append(errs, fmt.Errorf("service %q is not a URN", s))
		}
	}
	return errors.Join(errs...)
}

// Journal is where the Handler puts what it receives.
type Journal interface {
	// ReceiveV2 journals an HL7 v2 message (converted to ER7) exactly as the
	// MLLP listener's are: checks, duplicate detection, ACK code. It is
	// (*routes.Intake).Receive.
	ReceiveV2(ctx context.Context, a routes.Arrival) (routes.Reply, func())
	// Append journals any other payload durably. It is routes.Journal.Append.
	Append(ctx context.Context, rec *routes.Record) error
}

// Handler is an http.Handler receiving ITK 2.x requests: SOAP 1.1 POSTs of a
// Distribution Envelope. It answers SimpleMessageResponse "OK" once every
// payload is durable in the journal, and a SOAP fault otherwise.
type Handler struct {
	cfg      Config
	lim      xmlLimits
	journal  Journal
	log      *slog.Logger
	services []string
}

var _ http.Handler = (*Handler)(nil)

// NewHandler returns a Handler journaling to j.
func NewHandler(cfg Config, j Journal, log *slog.Logger) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("itk: %w", err)
	}
	if cfg.MaxBodySize == 0 {
		cfg.MaxBodySize = 16 << 20
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.TimestampWindow == 0 {
		cfg.TimestampWindow = 5 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{cfg: cfg, journal: j, log: log, services: cfg.Services}
	h.lim = Limits{MaxSize: int(cfg.MaxBodySize), MaxDepth: cfg.MaxDepth}.xml()
	if len(h.services) == 0 {
		h.services = KnownServices
	}
	return h, nil
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST a SOAP 1.1 request carrying an ITK Distribution Envelope", http.StatusMethodNotAllowed)
		return
	}
	mediaType, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mediaType != "text/xml" {
		// application/soap+xml is SOAP 1.2, which ITK does not use.
		http.Error(w, "Content-Type must be text/xml (SOAP 1.1)", http.StatusUnsupportedMediaType)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.Timeout)
	defer cancel()
	// A deadline the connection enforces, so a slow sender cannot hold the
	// handler past Timeout; a server that cannot set one still has ctx.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(h.cfg.Timeout))

	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		h.fault(w, r, "", Errors{invalid("utf-8", "", "", "the request must be UTF-8 (WS-STD-01)", ErrEncoding)})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodySize))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			h.fault(w, r, "", Errors{invalid("size-limit", "", "", fmt.Sprintf("the request is larger than %d bytes", h.cfg.MaxBodySize), ErrTooLarge)})
			return
		}
		h.fault(w, r, "", Errors{invalid("read", "", "", "the request body could not be read", ErrMalformed)})
		return
	}
	root, err := parseXML(body, h.lim)
	if err != nil {
		h.fault(w, r, "", err)
		return
	}
	req, err := decodeRequest(root)
	relatesTo := ""
	if req != nil {
		relatesTo = req.Header.MessageID
	}
	if err == nil {
		err = h.check(req, r.Header.Get("SOAPAction"))
	}
	if err != nil {
		h.fault(w, r, relatesTo, err)
		return
	}
	contents, err := req.contents(h.lim)
	if err != nil {
		h.fault(w, r, relatesTo, err)
		return
	}
	for i := range contents {
		if err := h.store(ctx, req, r.RemoteAddr, &contents[i]); err != nil {
			h.fault(w, r, relatesTo, err)
			return
		}
	}
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	if _, err := w.Write(buildResponse(req, "OK", h.cfg.Now())); err != nil {
		h.log.Warn("itk: response not delivered", "peer", r.RemoteAddr, "tracking_id", req.Envelope.TrackingID, "err", err)
	}
}

// check applies the rules that need the clock or the configuration.
func (h *Handler) check(req *Request, soapAction string) error {
	var c checker
	now := h.cfg.Now()
	const ts = "/soap:Envelope/soap:Header/wsse:Security/wsu:Timestamp"
	if now.Before(req.Header.Created.Add(-h.cfg.TimestampWindow)) {
		c.fail("wsu-timestamp-window", "", ts+"/wsu:Created", "wsu:Created is in the future")
	}
	if now.After(req.Header.Expires.Add(h.cfg.TimestampWindow)) {
		c.fail("wsu-timestamp-window", "", ts+"/wsu:Expires", "the message has expired")
	}
	if a := strings.Trim(soapAction, `"`); a != "" && a != req.Header.Action {
		c.fail("soap-action", "", "/soap:Envelope/soap:Header/wsa:Action", "the SOAPAction HTTP header must equal wsa:Action")
	}
	if !slices.Contains(h.services, req.Envelope.Service) {
		c.errs = append(c.errs, &Error{Code: CodeNotRetryable, Fault: FaultServer, DECode: "DE0002", Rule: "service-offered",
			Path: "/soap:Envelope/soap:Body/itk:DistributionEnvelope/itk:header/@service", Text: "this receiver does not offer the service", Err: ErrUnsupported})
	}
	return c.err()
}

// store journals one payload and returns nil only once it is durable.
func (h *Handler) store(ctx context.Context, req *Request, remote string, c *content) error {
	meta := metaFor(req, remote, c)
	switch c.kind {
	case kindV2:
		reply, release := h.journal.ReceiveV2(ctx, routes.Arrival{Payload: c.raw, Peer: meta.Peer()})
		defer release()
		h.log.Info("itk: v2 message received", "tracking_id", meta.TrackingID, "payload_id", c.id, "id", uint64(reply.ID), "ack", string(reply.Code))
		return v2Outcome(reply)
	case kindCDA:
		rec := &routes.Record{
			Listener:  Listener,
			Peer:      meta.Peer(),
			Format:    routes.FormatCDA,
			Type:      "CDA",
			Trigger:   c.cda.Type.Code,
			ControlID: meta.TrackingID,
			Sender:    req.Envelope.SenderAddress + "|" + req.Envelope.AuditIdentity.URI,
			NHSNumber: c.cda.Patient.NHSNumber,
			Raw:       c.raw,
			Status:    routes.StatusAccepted,
		}
		if rec.Trigger == "" {
			rec.Trigger = req.Envelope.Service
		}
		if err := h.journal.Append(ctx, rec); err != nil {
			h.log.Error("itk: journal write failed", "tracking_id", meta.TrackingID, "payload_id", c.id, "err", err)
			return &Error{Code: CodeRetryable, Fault: FaultServer, Rule: "journal", Text: "the message could not be stored; send it again", Err: fmt.Errorf("%w: %w", ErrNotStored, err)}
		}
		h.log.Info("itk: document received", "tracking_id", meta.TrackingID, "payload_id", c.id, "id", uint64(rec.ID))
		return nil
	}
	return &Error{Code: CodeNotRetryable, Fault: FaultServer, Rule: "payload-kind", Text: "the payload kind is not supported", Err: ErrUnsupported}
}

// v2Outcome turns the intake's ACK code into the request's outcome: AA and CA
// succeed; AE and CE are retryable when the message was not stored, and final
// when it was (it failed after); AR and CR are the sender's to fix (1000) unless
// the intake refused what it does not take (a message type, processing id or
// version: 2200).
func v2Outcome(r routes.Reply) error {
	switch r.Code {
	case hl7v2.AA, hl7v2.CA:
		return nil
	case hl7v2.AE, hl7v2.CE:
		if !r.Committed {
			return &Error{Code: CodeRetryable, Fault: FaultServer, Rule: "journal", Text: "the message could not be stored; send it again", Err: ErrNotStored}
		}
		return &Error{Code: CodeNotRetryable, Fault: FaultServer, Rule: "v2-intake", Text: "the HL7 v2 message was stored but could not be processed", Err: ErrPayload}
	}
	code := ackErrorCode(r.Ack)
	if code >= 200 && code < 300 && code != int(hl7v2.CodeApplicationInternalError) {
		return &Error{Code: CodeNotRetryable, Fault: FaultServer, Rule: "v2-intake", Text: "the HL7 v2 intake does not accept this message (table 0357 code " + strconv.Itoa(code) + ")", Err: ErrUnsupported}
	}
	text := "the HL7 v2 intake refused the message"
	if code > 0 {
		text += " (table 0357 code " + strconv.Itoa(code) + ")"
	}
	return invalid("v2-intake", "DE0012", "", text, ErrPayload)
}

// ackErrorCode is the table 0357 code of an ACK's first ERR segment: ERR-3.1
// (v2.5 and later) or ERR-1.4.1 (before); 0 when there is none.
func ackErrorCode(ack []byte) int {
	if len(ack) == 0 {
		return 0
	}
	m, err := hl7v2.Parse(ack)
	if err != nil && m.SegmentCount() == 0 {
		return 0
	}
	for _, p := range []string{"ERR-3.1", "ERR-1.4.1"} {
		if v, err := m.Lookup(p); err == nil && !v.IsEmpty() {
			if n, err := strconv.Atoi(v.String()); err == nil {
				return n
			}
		}
	}
	return 0
}

// fault answers with the SOAP fault for err, with HTTP 500 as SOAP 1.1 asks.
func (h *Handler) fault(w http.ResponseWriter, r *http.Request, relatesTo string, err error) {
	e := First(err)
	more := 0
	var es Errors
	if errors.As(err, &es) {
		more = len(es) - 1
	}
	level := slog.LevelInfo
	if e.Fault == FaultServer {
		level = slog.LevelWarn
	}
	h.log.Log(r.Context(), level, "itk: request refused", "peer", r.RemoteAddr, "message_id", relatesTo, "code", int(e.Code), "rule", e.Rule, "path", e.Path, "more", more)
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.WriteHeader(http.StatusInternalServerError)
	if _, err := w.Write(buildFault(relatesTo, e, more, h.cfg.Now())); err != nil {
		h.log.Warn("itk: fault not delivered", "peer", r.RemoteAddr, "err", err)
	}
}
