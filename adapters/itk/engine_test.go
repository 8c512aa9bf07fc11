package itk

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/spinebridge/spinebridge/routes"
)

// engineJournal is the Journal the engine wires: the v2 intake and the local
// journal behind it.
type engineJournal struct {
	*routes.Intake
	routes.Journal
}

func (j engineJournal) ReceiveV2(ctx context.Context, a routes.Arrival) (routes.Reply, func()) {
	return j.Intake.Receive(ctx, a)
}

// TestWithEngineJournal runs both fixtures through the real intake and local
// journal: the ADT is journaled as ER7 with its ITK metadata, a resend is a
// duplicate answered OK, and the CDA is journaled as a document.
func TestWithEngineJournal(t *testing.T) {
	local, err := routes.OpenLocal(t.TempDir(), routes.LocalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close(context.Background())
	in, err := routes.NewIntake(routes.IntakeConfig{Listener: Listener, DuplicateWindow: time.Hour}, local, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	h := newTestHandler(t, Config{}, engineJournal{in, local})
	mustOK(t, post(h, fixture(t, adtFixture)))
	mustOK(t, post(h, fixture(t, adtFixture)))
	mustOK(t, post(h, fixture(t, cdaFixture)))

	var recs []*routes.Record
	if err := local.List(context.Background(), routes.Query{}, func(r *routes.Record) bool {
		recs = append(recs, r)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 {
		t.Fatalf("%d records, want 3", len(recs))
	}
	adt, dup, cda := recs[0], recs[1], recs[2]
	if adt.Status != routes.StatusAccepted || adt.ControlID != "ITK0000123" || adt.NHSNumber != "9434765919" || adt.Format != routes.FormatHL7v2 {
		t.Errorf("ADT record %+v", adt)
	}
	if string(adt.Raw) != string(fixture(t, "adt_a01_v2xml.er7")) {
		t.Error("the ADT is not journaled as the converted ER7")
	}
	if m, ok := MetaOf(adt); !ok || m.TrackingID != "5C6D7E8F-9A0B-4C1D-8E2F-3A4B5C6D7E8F" {
		t.Errorf("ADT meta %+v, %v", m, ok)
	}
	if dup.Status != routes.StatusDuplicate {
		t.Errorf("resend status %s, want duplicate", dup.Status)
	}
	if cda.Format != routes.FormatCDA || cda.NHSNumber != "9434765919" || cda.Received.IsZero() {
		t.Errorf("CDA record %+v", cda)
	}
	if _, _, err := new(CDATransformer).Transform(nil, cda); err != nil {
		t.Errorf("the journaled CDA does not transform: %v", err)
	}
}

// deadlineJournal reports whether the handler gave it a deadline.
type deadlineJournal struct {
	fakeJournal
	deadline time.Time
}

func (j *deadlineJournal) Append(ctx context.Context, rec *routes.Record) error {
	j.deadline, _ = ctx.Deadline()
	return j.fakeJournal.Append(ctx, rec)
}

func TestHandlerDeadline(t *testing.T) {
	j := &deadlineJournal{}
	before := time.Now()
	mustOK(t, post(newTestHandler(t, Config{Timeout: time.Hour}, j), fixture(t, cdaFixture)))
	if j.deadline.IsZero() || j.deadline.Before(before.Add(time.Hour)) || j.deadline.After(time.Now().Add(time.Hour)) {
		t.Errorf("the journal's deadline %v is not the request's Timeout", j.deadline)
	}
	j2 := &fakeJournal{appendErr: context.DeadlineExceeded}
	if f := mustFault(t, post(newTestHandler(t, Config{}, j2), fixture(t, cdaFixture))); f.Code != CodeRetryable {
		t.Errorf("a journal that ran out of time: code %d, want 2100", f.Code)
	}
}

func TestConfigValidate(t *testing.T) {
	err := Config{MaxBodySize: -1, MaxDepth: -1, Timeout: -1, TimestampWindow: -1, Services: []string{"SendCDADocument"}}.Validate()
	if err == nil {
		t.Fatal("a bad config was accepted")
	}
	if n := len(err.(interface{ Unwrap() []error }).Unwrap()); n != 5 {
		t.Errorf("%d problems reported, want all 5: %v", n, err)
	}
	if _, err := NewHandler(Config{Timeout: -1}, &fakeJournal{}, nil); err == nil {
		t.Error("NewHandler accepted a bad config")
	}
	h := newTestHandler(t, Config{Services: []string{"urn:nhs-itk:services:201005:admitPatient-v1-0"}}, &fakeJournal{})
	if f := mustFault(t, post(h, fixture(t, cdaFixture))); f.Code != CodeNotRetryable {
		t.Errorf("a service left out of Services: code %d, want 2200", f.Code)
	}
}
