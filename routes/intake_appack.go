package routes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
)

// defaultAppAckWait is IntakeConfig.AppAckWait when it is zero.
const defaultAppAckWait = 10 * time.Minute

// appAckType is MSH-16, the conditions for an application acknowledgement:
// AL always, NE never, ER on error only, SU on success only. Empty in enhanced
// mode means AL, as an empty MSH-15 does for the accept acknowledgement.
func appAckType(m *hl7v2.Message) string {
	msh, _ := m.Find("MSH", 1)
	switch t := string(msh.Field(16).Bytes()); t {
	case "NE", "ER", "SU":
		return t
	}
	return "AL"
}

// appAck returns the Later of an accepted message in enhanced mode that asks
// for application acknowledgements: it copies what it needs of rec, whose
// slices the listener reuses.
func (in *Intake) appAck(rec *Record, when string) func(send func([]byte) error) {
	cp := *rec
	cp.Raw, cp.Ack = bytes.Clone(rec.Raw), nil
	return func(send func([]byte) error) {
		go in.applicationAck(context.Background(), time.Now().Add(in.cfg.AppAckWait), &cp, when, send)
	}
}

// applicationAck waits for rec to be processed and makes its application
// acknowledgement: AA when every route it matches transformed it, AR when no
// route takes it, AE when routing or a transform failed. MSH-16 says whether
// the sender wants it; when it does, it is sent on the connection (with
// AppAckConnection and a connection to send on) and recorded in the journey
// either way. It waits until deadline at most; a message not processed by
// then gets none, and its journey says so. When stop ends first (the engine is
// stopping) nothing is recorded, and the next run makes it (ResumeAppAcks). It
// reports whether it recorded one.
func (in *Intake) applicationAck(stop context.Context, deadline time.Time, rec *Record, when string, send func([]byte) error) (noted bool) {
	ctx, cancel := context.WithDeadline(stop, deadline)
	defer cancel()
	note := func(detail string) {
		ev := Event{MessageID: rec.ID, Kind: EventAppAck, Detail: detail}
		if err := in.cfg.Processor.Note(context.WithoutCancel(ctx), ev); err != nil {
			in.log.Warn("intake: could not record an application acknowledgement", "id", uint64(rec.ID), "err", err)
			return
		}
		noted = true
	}
	err := in.cfg.Processor.Processed(ctx, rec)
	// Only the wait for routing ends in the context's error: a message routed
	// by the deadline is processed even when its transforms end after it, and
	// one whose transform failed gets its AE.
	if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		if stop.Err() != nil {
			return
		}
		note(fmt.Sprintf("not made: the message was not processed within %v", in.cfg.AppAckWait))
		return
	}
	v := verdict{code: hl7v2.AA, status: StatusAccepted}
	switch {
	case errors.Is(err, ErrUnrouted):
		v = verdict{code: hl7v2.AR, status: StatusRejected, text: in.cfg.RejectText, nerr: 1}
		v.errs[0] = hl7v2.AckError{Code: hl7v2.CodeUnsupportedMessageType, Diagnostic: ErrUnrouted.Error()}
	case err != nil:
		if re, ok := errors.AsType[*RejectedError](err); ok {
			v = rejection(re, hl7v2.AE)
			break
		}
		v = verdict{code: hl7v2.AE, status: StatusError, text: "processing failed", nerr: 1}
		v.errs[0] = hl7v2.AckError{Code: hl7v2.CodeApplicationInternalError, Diagnostic: "processing failed"}
	}
	if when == "ER" && v.code == hl7v2.AA || when == "SU" && v.code != hl7v2.AA {
		return // not wanted: MSH-16 asks only for the other outcome
	}
	reason := ""
	if err != nil {
		reason = ": " + boundedError(err)
	}

	sc := in.scratch.Get().(*intakeScratch)
	defer in.scratch.Put(sc)
	if err := sc.msg.Parse(rec.Raw); err != nil {
		// It parsed when it arrived; a record that no longer does is damaged.
		note(fmt.Sprintf("not made: the stored message does not parse: %v", err))
		return
	}
	ack := in.buildACK(sc, &sc.msg, v)
	switch {
	case in.cfg.AppAcks != AppAckConnection:
		note(string(v.code) + " recorded" + reason)
	case send == nil:
		note(string(v.code) + " recorded, not sent: no connection to send it on" + reason)
	default:
		if err := send(ack); err != nil {
			in.log.Warn("intake: application acknowledgement not sent", "id", uint64(rec.ID), "err", err)
			note(string(v.code) + " recorded, not sent: " + err.Error() + reason)
			return
		}
		note(string(v.code) + " sent on the connection" + reason)
	}
	return noted
}

// resumeMargin is how far before the routing cursor ResumeAppAcks looks. A
// message's application acknowledgement is recorded once its transforms have
// run, moments after routing; the records routed just before a run stopped may
// still have been waiting for theirs.
const resumeMargin = 10_000

// AppAckBacklog is what ResumeAppAcks reads: records in ID order, their
// journeys, and where routing has reached. Local is one.
type AppAckBacklog interface {
	Read(ctx context.Context, from ID, limit int, fn func(*Record) bool) error
	Events(ctx context.Context, id ID) ([]Event, error)
	Cursor(ctx context.Context) (ID, error)
}

// ResumeAppAcks makes the application acknowledgements an earlier run owed and
// never recorded: a run that stops (a crash, a kill, a shutdown while messages
// waited for processing) leaves them owed. They are those of the messages up to
// ID last, routed at most resumeMargin records before the cursor or not yet
// routed, that one of intakes accepted in enhanced mode with an MSH-16 asking
// for one, and whose journey has none. The connection each would have gone
// back on is gone, so each is recorded, in ID order as routing reaches them.
// Their waits began together, when the pass began, and so end together: each
// waits until its intake's AppAckWait after the start of the pass, as
// messages that arrived together would, so that the pass takes about one wait
// however many are owed. Those routing has not reached by then are recorded
// as not made. It returns how many it recorded, and stops when ctx ends.
func ResumeAppAcks(ctx context.Context, j AppAckBacklog, last ID, intakes ...*Intake) (int, error) {
	began := time.Now()
	byListener := make(map[string]*Intake, len(intakes))
	for _, in := range intakes {
		if in.cfg.Processor != nil {
			byListener[in.cfg.Listener] = in
		}
	}
	cursor, err := j.Cursor(ctx)
	if err != nil {
		return 0, fmt.Errorf("resume application acks: %w", err)
	}
	type owed struct {
		in   *Intake
		rec  *Record
		when string
	}
	var (
		msg  hl7v2.Message
		made int
	)
	from := ID(1)
	if cursor > resumeMargin {
		from = cursor - resumeMargin
	}
	for from <= last {
		var batch []owed
		start := from
		err := j.Read(ctx, from, 256, func(rec *Record) bool {
			from = rec.ID + 1
			if rec.ID > last {
				return false
			}
			in := byListener[rec.Listener]
			if in == nil || rec.Status != StatusAccepted || rec.Format != FormatHL7v2 || msg.Parse(rec.Raw) != nil || !isEnhanced(&msg) {
				return true
			}
			if when := appAckType(&msg); when != "NE" {
				batch = append(batch, owed{in, rec, when})
			}
			return true
		})
		if err != nil {
			return made, fmt.Errorf("resume application acks: %w", err)
		}
		if from == start {
			break // the journal holds no record from here on
		}
		for _, o := range batch {
			events, err := j.Events(ctx, o.rec.ID)
			if err != nil {
				return made, fmt.Errorf("resume application acks: %w", err)
			}
			if slices.ContainsFunc(events, func(e Event) bool { return e.Kind == EventAppAck }) {
				continue
			}
			if o.in.applicationAck(ctx, began.Add(o.in.cfg.AppAckWait), o.rec, o.when, nil) {
				made++
			}
			if ctx.Err() != nil {
				return made, ctx.Err()
			}
		}
	}
	return made, nil
}
