package routes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
)

// AckPoint is when a listener acknowledges a message.
type AckPoint string

// Acknowledgement points. There is deliberately none before the durable write:
// a positive ACK is a promise that the message will not be lost.
const (
	// AckDurable acknowledges once the message is in the journal, durably.
	AckDurable AckPoint = "durable"
	// AckProcessed acknowledges once the message has also been processed.
	AckProcessed AckPoint = "processed"
)

// AppAckMode is what becomes of the application acknowledgements (MSH-16) of
// messages in enhanced mode, made once each message is processed.
type AppAckMode string

// Application acknowledgement modes.
const (
	// AppAckRecord records each in its message's journey (messages show) and
	// sends nothing.
	AppAckRecord AppAckMode = "record"
	// AppAckConnection also sends each back on the connection its message came
	// on, after the accept acknowledgement. Where there is no connection to send
	// on (HTTP, ITK, a connection since closed) it is only recorded.
	AppAckConnection AppAckMode = "connection"
)

// IntakeConfig is the acknowledgement policy of one listener.
type IntakeConfig struct {
	// Listener names the listener in journal records and logs.
	Listener string
	// AckPoint is when the ACK leaves; AckDurable when empty. A point before the
	// durable write is refused by Validate.
	AckPoint AckPoint
	// DuplicateWindow is how long a sender's MSH-10 is remembered: a message with
	// the same MSH-3/4 and MSH-10 within it is not processed again and is answered
	// with the original ACK. Zero turns duplicate detection off.
	DuplicateWindow time.Duration
	// Versions are the MSH-12 versions accepted; others get AR with ERR code 203.
	// Empty accepts every 2.x version.
	Versions []string
	// ProcessingIDs are the MSH-11 processing ids accepted; others get AR with
	// ERR code 202. Empty accepts P, T and D.
	ProcessingIDs []string
	// MessageTypes are the MSH-9.1 types accepted; others get AR with ERR code 200.
	// Empty accepts every type.
	MessageTypes []string
	// ParseErrorCode answers a message that cannot be parsed: AE (default, as
	// HAPI does) or AR.
	ParseErrorCode hl7v2.AckCode
	// RejectText is the MSA-3 / ERR-8 text of a refused message.
	RejectText string
	// Zone is the zone of the ACK's MSH-7; Europe/London when nil.
	Zone *time.Location
	// Processor, when set, is given each accepted message once it is journaled
	// and before its ACK leaves; an error turns the ACK into AE. It decides
	// itself whether to wait for processing (AckProcessed here or on a route)
	// or to return at once. Required for AckProcessed, and for application
	// acknowledgements, which are made from its Processed.
	Processor Processor
	// AppAcks is what becomes of application acknowledgements; AppAckRecord
	// when empty.
	AppAcks AppAckMode
	// AppAckWait bounds how long an application acknowledgement waits for its
	// message to be processed; 10 minutes when zero. Routing holds back while
	// deliveries pile up, so a message can wait minutes in a backlog; past
	// this the acknowledgement is not made and the journey says so (the
	// message is still processed).
	AppAckWait time.Duration
}

// Processor processes a journaled message: routing, transforming, delivering.
type Processor interface {
	// Process is called before the ACK leaves; see IntakeConfig.Processor.
	Process(ctx context.Context, rec *Record) error
	// Processed waits until rec is routed and transformed: nil when that
	// succeeded, ErrUnrouted when no route takes it, else the failure.
	Processed(ctx context.Context, rec *Record) error
	// Note adds events to their messages' journeys.
	Note(ctx context.Context, events ...Event) error
	// Events returns a message's journey, as Note left it.
	Events(ctx context.Context, id ID) ([]Event, error)
}

// Validate reports every problem with c at once.
func (c IntakeConfig) Validate() error {
	var errs []error
	switch c.AckPoint {
	case "", AckDurable, AckProcessed:
	default:
		errs = append(errs, fmt.Errorf("ack point %q would acknowledge messages before they are durable; use %q or %q", c.AckPoint, AckDurable, AckProcessed))
	}
	switch c.ParseErrorCode {
	case "", hl7v2.AE, hl7v2.AR:
	default:
		errs = append(errs, fmt.Errorf("parse error code %q: must be AE or AR", c.ParseErrorCode))
	}
	if c.DuplicateWindow < 0 {
		errs = append(errs, errors.New("duplicate window must not be negative"))
	}
	switch c.AppAcks {
	case "", AppAckRecord, AppAckConnection:
	default:
		errs = append(errs, fmt.Errorf("application acks %q: must be %q or %q", c.AppAcks, AppAckRecord, AppAckConnection))
	}
	return errors.Join(errs...)
}

// Intake is the front of the engine: it takes a received HL7 v2 message, decides
// whether to accept it, writes it to the journal and builds the acknowledgement.
// It is safe for concurrent use; the listener calls it from one goroutine per
// connection.
type Intake struct {
	cfg     IntakeConfig
	journal Journal
	log     *slog.Logger

	seed    maphash.Seed
	keyLock [64]sync.Mutex // serialises duplicate check and append per sender and MSH-10
	scratch sync.Pool      // *intakeScratch

	idPrefix string        // first part of the ACK control ids of this process
	idSeq    atomic.Uint64 // second part
}

// intakeScratch is the per-message working memory, reused across messages.
type intakeScratch struct {
	msg   hl7v2.Message
	ack   []byte
	cid   []byte
	batch []byte // the acknowledgement batch of a batch
}

// NewIntake returns an intake writing to j.
func NewIntake(cfg IntakeConfig, j Journal, log *slog.Logger) (*Intake, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("intake: %w", err)
	}
	if cfg.AckPoint == AckProcessed && cfg.Processor == nil {
		return nil, errors.New(`intake: ack point "processed" needs a processor to wait for`)
	}
	if cfg.AckPoint == "" {
		cfg.AckPoint = AckDurable
	}
	if cfg.AppAcks == "" {
		cfg.AppAcks = AppAckRecord
	}
	if cfg.AppAckWait <= 0 {
		cfg.AppAckWait = defaultAppAckWait
	}
	if cfg.ParseErrorCode == "" {
		cfg.ParseErrorCode = hl7v2.AE
	}
	if len(cfg.ProcessingIDs) == 0 {
		cfg.ProcessingIDs = []string{"P", "T", "D"}
	}
	if cfg.RejectText == "" {
		cfg.RejectText = "Message rejected"
	}
	if cfg.Zone == nil {
		zone, err := time.LoadLocation("Europe/London")
		if err != nil {
			return nil, fmt.Errorf("intake: load zone Europe/London: %w", err)
		}
		cfg.Zone = zone
	}
	in := &Intake{cfg: cfg, journal: j, log: log, seed: maphash.MakeSeed()}
	// Control ids must differ across restarts as well as within a run: the start
	// time in base 36 makes the first part, a counter the rest, 20 characters at
	// most (the v2.3 limit of MSH-10).
	in.idPrefix = "SB" + strconv.FormatInt(time.Now().UnixMilli(), 36)
	in.scratch.New = func() any { return &intakeScratch{ack: make([]byte, 0, 512), cid: make([]byte, 0, 24)} }
	return in, nil
}

// Arrival is one message as a listener received it.
type Arrival struct {
	Payload []byte // the message; valid only during Receive
	Peer    string // remote address
	// FrameErr is set when the transport found the frame faulty but answerable
	// (too large, empty, a start byte inside): the message is refused with AR and,
	// since what arrived is not the message as sent, not journaled.
	FrameErr error
}

// Reply is the intake's answer to an Arrival.
type Reply struct {
	Ack       []byte // the ACK to send; nil when the sender asked for none; valid until release
	Committed bool   // the message is durable in the journal (MLLP release 2 commit)
	ID        ID     // its journal id, when journaled
	Code      hl7v2.AckCode
	// Later, when set, must be called once Ack has been written (or at once
	// when nothing is written), with a function that sends a message back on
	// the connection the arrival came on, or nil where there is none. It starts
	// the application acknowledgement of a message in enhanced mode, in the
	// background, and returns at once.
	Later func(send func(msg []byte) error)
}

// Receive decides on one message, journals it, and returns the acknowledgement.
// The returned Ack is valid until release is called.
func (in *Intake) Receive(ctx context.Context, a Arrival) (r Reply, release func()) {
	sc := in.scratch.Get().(*intakeScratch)
	release = func() { in.scratch.Put(sc) }
	if a.FrameErr == nil && isBatch(a.Payload) {
		return in.receiveBatch(ctx, a, sc), release
	}
	return in.receive(ctx, a, sc), release
}

// isBatch reports whether b starts with a batch or file header.
func isBatch(b []byte) bool {
	b = bytes.TrimLeft(bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")), "\r\n \t")
	return bytes.HasPrefix(b, []byte("FHS")) || bytes.HasPrefix(b, []byte("BHS"))
}

// receiveBatch takes every message of an HL7 batch (FHS, BHS ... BTS, FTS) as if
// each had arrived alone, and answers with a batch of their ACKs, in order. A batch
// whose structure or counts are wrong may have lost messages on the way, so it is
// refused whole, with one AR, and nothing is journaled.
func (in *Intake) receiveBatch(ctx context.Context, a Arrival, sc *intakeScratch) Reply {
	file, err := hl7v2.SplitBatch(a.Payload)
	if err != nil {
		return in.refuseBatch(a, sc, err)
	}
	sc.batch = sc.batch[:0]
	if file.Header != nil {
		sc.batch = appendBatchHeader(sc.batch, "FHS", file.Header, in.cfg.Zone)
	}
	reply := Reply{Committed: true, Code: hl7v2.AA}
	for _, b := range file.Batches {
		if b.Header != nil || file.Header != nil {
			sc.batch = appendBatchHeader(sc.batch, "BHS", b.Header, in.cfg.Zone)
		}
		for _, msg := range b.Messages {
			r := in.receive(ctx, Arrival{Payload: msg, Peer: a.Peer}, sc)
			reply.Later = thenLater(reply.Later, r.Later)
			sc.batch = append(sc.batch, r.Ack...)
			reply.Committed = reply.Committed && r.Committed
			if r.Code != hl7v2.AA && r.Code != hl7v2.CA {
				reply.Code = r.Code
			}
		}
		if b.Header != nil || file.Header != nil {
			sc.batch = append(sc.batch, "BTS|"...)
			sc.batch = strconv.AppendInt(sc.batch, int64(len(b.Messages)), 10)
			sc.batch = append(sc.batch, '\r')
		}
	}
	if file.Header != nil {
		sc.batch = append(sc.batch, "FTS|"...)
		sc.batch = strconv.AppendInt(sc.batch, int64(len(file.Batches)), 10)
		sc.batch = append(sc.batch, '\r')
	}
	reply.Ack = sc.batch
	return reply
}

// appendBatchHeader appends the FHS or BHS that heads an acknowledgement batch:
// sender and receiver swapped from the inbound header, and the inbound batch control
// id (field 11) as the reference (field 12). The ACK batch uses the standard
// delimiters, as the ACKs inside it echo each message's own.
func appendBatchHeader(dst []byte, id string, inbound []byte, zone *time.Location) []byte {
	var f [13][]byte
	if len(inbound) > 4 {
		sep := inbound[3]
		// Field n of a header is part n-1 after the split, field 1 being the separator.
		for i, part := range bytes.Split(inbound[4:], []byte{sep}) {
			if i+2 < len(f) {
				f[i+2] = part
			}
		}
	}
	dst = append(dst, id...)
	dst = append(dst, `|^~\&`...)
	for _, n := range [...]int{5, 6, 3, 4} {
		dst = append(dst, '|')
		dst = append(dst, f[n]...)
	}
	dst = append(dst, '|')
	dst = time.Now().In(zone).AppendFormat(dst, "20060102150405-0700")
	dst = append(dst, "|||||"...)
	dst = append(dst, f[11]...)
	return append(dst, '\r')
}

// refuseBatch answers a malformed batch with one AR, built from the first MSH found
// in it when there is one.
func (in *Intake) refuseBatch(a Arrival, sc *intakeScratch, err error) Reply {
	first := a.Payload
	if i := bytes.Index(first, []byte("MSH")); i >= 0 {
		first = first[i:]
	}
	sc.msg.Parse(first)
	// AckErrorFor gives the sentinel's text and the place; a batch that does not
	// add up is a segment sequence error, whatever it means for a lone message.
	e := hl7v2.AckErrorFor(err)
	e.Code = hl7v2.CodeSegmentSequence
	v := verdict{code: hl7v2.AR, status: StatusRejected, nerr: 1, text: "batch refused: " + e.Diagnostic}
	if isEnhanced(&sc.msg) {
		v.code = hl7v2.CR
	}
	v.errs[0] = e
	in.log.Warn("intake: batch refused", "listener", in.cfg.Listener, "peer", a.Peer, "err", err)
	sc.ack = in.buildACK(sc, &sc.msg, v)
	return Reply{Ack: sc.ack, Code: v.code}
}

// verdict is what the checks decided before journaling.
type verdict struct {
	code   hl7v2.AckCode
	status Status
	errs   [maxAckErrors]hl7v2.AckError
	nerr   int
	text   string
}

func (in *Intake) receive(ctx context.Context, a Arrival, sc *intakeScratch) Reply {
	m := &sc.msg
	parseErr := m.Parse(a.Payload)
	enhanced := isEnhanced(m)
	v := in.judge(m, parseErr, a.FrameErr, enhanced)

	rec := &Record{
		Received: time.Now().UTC(),
		Listener: in.cfg.Listener,
		Peer:     a.Peer,
		Status:   v.status,
		Raw:      a.Payload,
	}
	fillHeader(rec, m)

	if v.status == StatusAccepted && in.cfg.DuplicateWindow > 0 && rec.ControlID != "" {
		lock := &in.keyLock[maphash.String(in.seed, rec.Sender+"\x00"+rec.ControlID)%uint64(len(in.keyLock))]
		lock.Lock()
		defer lock.Unlock()
		orig, err := in.journal.FindControlID(ctx, rec.Sender, rec.ControlID, rec.Received.Add(-in.cfg.DuplicateWindow))
		switch {
		case err == nil:
			return in.answerDuplicate(ctx, rec, orig)
		case !errors.Is(err, ErrNotFound):
			in.log.Error("intake: duplicate check failed", "listener", in.cfg.Listener, "control_id", rec.ControlID, "err", err)
			return in.failed(m, sc, enhanced)
		}
	}

	sc.ack = in.buildACK(sc, m, v)
	if a.FrameErr != nil {
		in.log.Warn("intake: frame refused", "listener", in.cfg.Listener, "peer", a.Peer, "control_id", rec.ControlID, "err", a.FrameErr)
		return Reply{Ack: sc.ack, Code: v.code}
	}
	rec.AckCode = string(v.code)
	rec.Ack = sc.ack
	if err := in.journal.Append(ctx, rec); err != nil {
		in.log.Error("intake: journal write failed", "listener", in.cfg.Listener, "control_id", rec.ControlID, "err", err)
		return in.failed(m, sc, enhanced)
	}
	// The processor decides whether this message waits for processing: the
	// listener's point or its route's may say so.
	var later func(func([]byte) error)
	if v.status == StatusAccepted && in.cfg.Processor != nil {
		if enhanced {
			if when := appAckType(m); when != "NE" {
				later = in.appAck(rec, when)
			}
		}
		if err := in.cfg.Processor.Process(ctx, rec); err != nil {
			// The message is durable, so the sender must not resend it: answer
			// with an application error rather than a commit failure.
			v = in.processingFailed(rec, err, errorCode(enhanced))
			sc.ack = in.buildACK(sc, m, v)
			// The record holds the ACK of the durable write: keep the one
			// sent, so that the journal tells what the sender was told.
			if err := in.journal.SetAnswer(ctx, rec.ID, StatusError, string(v.code)); err != nil {
				in.log.Error("intake: status update failed", "id", uint64(rec.ID), "err", err)
			}
			if wantsAck(m, enhanced, v.code) {
				ev := Event{MessageID: rec.ID, Kind: EventAck, Detail: string(sc.ack)}
				if err := in.cfg.Processor.Note(ctx, ev); err != nil {
					in.log.Error("intake: recording the ACK sent failed", "id", uint64(rec.ID), "err", err)
				}
			}
		}
	}
	in.log.Debug("intake: message received", "listener", in.cfg.Listener, "id", uint64(rec.ID), "control_id", rec.ControlID, "type", rec.Type, "trigger", rec.Trigger, "ack", string(v.code))
	ack := sc.ack
	if !wantsAck(m, enhanced, v.code) {
		ack = nil
	}
	return Reply{Ack: ack, Committed: true, ID: rec.ID, Code: v.code, Later: later}
}

// processingFailed is the verdict for a durable message whose processing
// failed with err: code with the rejection's ERR segments when a route
// rejected it, else with a plain "processing failed".
func (in *Intake) processingFailed(rec *Record, err error, code hl7v2.AckCode) verdict {
	if re, ok := errors.AsType[*RejectedError](err); ok {
		in.log.Warn("intake: message rejected", "listener", in.cfg.Listener, "id", uint64(rec.ID), "control_id", rec.ControlID, "issues", re.kinds())
		return rejection(re, code)
	}
	in.log.Error("intake: processing failed", "listener", in.cfg.Listener, "id", uint64(rec.ID), "err", err)
	v := verdict{code: code, status: StatusError, text: "processing failed", nerr: 1}
	v.errs[0] = hl7v2.AckError{Code: hl7v2.CodeApplicationInternalError, Diagnostic: "processing failed"}
	return v
}

// thenLater returns a Later that runs a and then b; either may be nil.
func thenLater(a, b func(func([]byte) error)) func(func([]byte) error) {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	return func(send func([]byte) error) { a(send); b(send) }
}

// judge applies the acceptance checks and returns the ACK code and status.
func (in *Intake) judge(m *hl7v2.Message, parseErr, frameErr error, enhanced bool) verdict {
	reject := func(code hl7v2.ErrorCode, field int, diag string) verdict {
		v := verdict{code: hl7v2.AR, status: StatusRejected, text: in.cfg.RejectText, nerr: 1}
		if enhanced {
			v.code = hl7v2.CR
		}
		v.errs[0] = hl7v2.AckError{Code: code, Diagnostic: diag, Location: hl7v2.Location{Segment: "MSH", Field: field}}
		if field == 0 {
			v.errs[0].Location = hl7v2.Location{}
		}
		return v
	}
	switch {
	case frameErr != nil:
		return reject(hl7v2.CodeApplicationInternalError, 0, "frame refused: "+frameErr.Error())
	case parseErr != nil:
		v := verdict{code: in.cfg.ParseErrorCode, status: StatusError, nerr: 1, text: "message could not be parsed"}
		if enhanced && v.code == hl7v2.AE {
			v.code = hl7v2.CE
		} else if enhanced {
			v.code = hl7v2.CR
		}
		if v.code == hl7v2.AR || v.code == hl7v2.CR {
			v.status = StatusRejected
		}
		v.errs[0] = hl7v2.AckErrorFor(parseErr)
		return v
	}
	msh := m.Segment(0)
	if len(msh.Field(10).Bytes()) == 0 {
		return reject(hl7v2.CodeRequiredFieldMissing, 10, "MSH-10 message control id is empty")
	}
	if typ := msh.Field(9).Comp(1).Bytes(); len(typ) == 0 {
		return reject(hl7v2.CodeRequiredFieldMissing, 9, "MSH-9 message type is empty")
	} else if len(in.cfg.MessageTypes) > 0 && !containsBytes(in.cfg.MessageTypes, typ) {
		return reject(hl7v2.CodeUnsupportedMessageType, 9, "message type not accepted by this listener")
	}
	if pid := msh.Field(11).Comp(1).Bytes(); !containsBytes(in.cfg.ProcessingIDs, pid) {
		return reject(hl7v2.CodeUnsupportedProcessingID, 11, "processing id not accepted by this listener")
	}
	ver := msh.Field(12).Comp(1).Bytes()
	if len(in.cfg.Versions) > 0 && !containsBytes(in.cfg.Versions, ver) || len(in.cfg.Versions) == 0 && !isV2Version(ver) {
		return reject(hl7v2.CodeUnsupportedVersionID, 12, "version not accepted by this listener")
	}
	code := hl7v2.AA
	if enhanced {
		code = hl7v2.CA
	}
	return verdict{code: code, status: StatusAccepted}
}

// answerDuplicate answers a resent message with the ACK its original got, and
// records the resend, which is not processed again.
func (in *Intake) answerDuplicate(ctx context.Context, rec *Record, orig *Record) Reply {
	rec.Status = StatusDuplicate
	rec.AckCode = orig.AckCode
	rec.Ack = in.ackSent(ctx, orig)
	if err := in.journal.Append(ctx, rec); err != nil {
		// The original is durable, so the answer stands; only the audit line is lost.
		in.log.Warn("intake: could not record a duplicate", "listener", in.cfg.Listener, "original", uint64(orig.ID), "err", err)
	}
	in.log.Info("intake: duplicate answered with the original ACK", "listener", in.cfg.Listener, "original", uint64(orig.ID), "control_id", rec.ControlID)
	return Reply{Ack: rec.Ack, Committed: true, ID: orig.ID, Code: hl7v2.AckCode(orig.AckCode)}
}

// ackSent returns the ACK rec was answered with. Only processing, which
// leaves its record in error, replaces the ACK journaled with a record, and
// it notes the one sent in the journey through the processor.
func (in *Intake) ackSent(ctx context.Context, rec *Record) []byte {
	if rec.Status != StatusError || in.cfg.Processor == nil {
		return rec.Ack
	}
	evs, err := in.cfg.Processor.Events(ctx, rec.ID)
	if err != nil {
		in.log.Warn("intake: could not read a journey", "id", uint64(rec.ID), "err", err)
		return rec.Ack
	}
	ack, _ := AckSent(rec, evs)
	return ack
}

// AckSent returns the ACK the sender of rec got, given its journey evs: the
// one journaled with it, or the one processing sent in its place (the last
// EventAck), and whether it was replaced.
func AckSent(rec *Record, evs []Event) (ack []byte, replaced bool) {
	for _, ev := range slices.Backward(evs) {
		if ev.Kind == EventAck {
			return []byte(ev.Detail), true
		}
	}
	return rec.Ack, false
}

// failed answers a message the engine could not store: not committed, so the
// sender keeps it and tries again.
func (in *Intake) failed(m *hl7v2.Message, sc *intakeScratch, enhanced bool) Reply {
	v := verdict{code: errorCode(enhanced), status: StatusError, nerr: 1, text: "message not stored; send again"}
	v.errs[0] = hl7v2.AckError{Code: hl7v2.CodeApplicationInternalError, Diagnostic: "journal unavailable"}
	sc.ack = in.buildACK(sc, m, v)
	return Reply{Ack: sc.ack, Committed: false, Code: v.code}
}

func errorCode(enhanced bool) hl7v2.AckCode {
	if enhanced {
		return hl7v2.CE
	}
	return hl7v2.AE
}

// buildACK builds the ACK for m into the scratch buffer.
func (in *Intake) buildACK(sc *intakeScratch, m *hl7v2.Message, v verdict) []byte {
	sc.cid = append(sc.cid[:0], in.idPrefix...)
	sc.cid = strconv.AppendUint(sc.cid, in.idSeq.Add(1), 36)
	o := hl7v2.AckOptions{
		Code:      v.code,
		ControlID: string(sc.cid),
		Time:      time.Now().In(in.cfg.Zone),
		Text:      v.text,
		Errors:    v.errs[:v.nerr],
	}
	return hl7v2.AppendACK(sc.ack[:0], m, &o)
}

// isEnhanced reports whether the sender asked for enhanced acknowledgement mode,
// by filling MSH-15 or MSH-16.
func isEnhanced(m *hl7v2.Message) bool {
	msh, ok := m.Find("MSH", 1)
	return ok && (!msh.Field(15).IsEmpty() || !msh.Field(16).IsEmpty())
}

// wantsAck reports whether the sender wants the accept acknowledgement code: in
// original mode always; in enhanced mode as MSH-15 says (AL always, NE never, ER
// on error only, SU on success only; empty means always).
func wantsAck(m *hl7v2.Message, enhanced bool, code hl7v2.AckCode) bool {
	if !enhanced {
		return true
	}
	msh, _ := m.Find("MSH", 1)
	switch string(msh.Field(15).Bytes()) {
	case "NE":
		return false
	case "ER":
		return code != hl7v2.CA
	case "SU":
		return code == hl7v2.CA
	}
	return true
}

// fillHeader copies the identifying MSH and PID fields into rec.
func fillHeader(rec *Record, m *hl7v2.Message) {
	msh, ok := m.Find("MSH", 1)
	if !ok {
		return
	}
	rec.Sender = string(msh.Field(3).Bytes()) + "|" + string(msh.Field(4).Bytes())
	rec.ControlID = string(msh.Field(10).Bytes())
	rec.Type = string(msh.Field(9).Comp(1).Bytes())
	rec.Trigger = string(msh.Field(9).Comp(2).Bytes())
	rec.Version = string(msh.Field(12).Comp(1).Bytes())
	rec.NHSNumber = nhsNumber(m)
}

// nhsNumber returns the NHS number in PID-3: the repetition whose assigning
// authority (CX.4) is NHS or whose identifier type (CX.5) is NH.
func nhsNumber(m *hl7v2.Message) string {
	pid, ok := m.Find("PID", 1)
	if !ok {
		return ""
	}
	f := pid.Field(3)
	for r := 1; r <= f.Reps(); r++ {
		rep := f.Rep(r)
		if string(rep.Comp(4).Comp(1).Bytes()) == "NHS" || string(rep.Comp(5).Bytes()) == "NH" {
			return string(rep.Comp(1).Bytes())
		}
	}
	return ""
}

func containsBytes(list []string, b []byte) bool {
	return slices.Contains(list, string(b))
}

// isV2Version reports whether v looks like an HL7 v2 version id: "2." and digits.
func isV2Version(v []byte) bool {
	if len(v) < 3 || v[0] != '2' || v[1] != '.' {
		return false
	}
	for _, c := range v[2:] {
		if (c < '0' || c > '9') && c != '.' {
			return false
		}
	}
	return true
}
