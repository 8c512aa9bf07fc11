package routes

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
	"github.com/spinebridge/spinebridge/transforms"
)

// The kinds a routes file names are the mapping engine's, and fit the byte a
// pending delivery keeps them in beside its validate flag.
func TestIssueKindsAreTheConvertersKinds(t *testing.T) {
	var engine []string
	for _, k := range transforms.IssueKinds {
		engine = append(engine, string(k))
	}
	if !slices.Equal(IssueKindNames, engine) {
		t.Errorf("routes know %v, the converter reports %v", IssueKindNames, engine)
	}
	if len(IssueKindNames) > 7 {
		t.Errorf("%d kinds do not fit in a delivery's flag byte", len(IssueKindNames))
	}
	var all IssueKinds
	for _, n := range IssueKindNames {
		k, ok := ParseIssueKind(n)
		if !ok || all&k != 0 {
			t.Fatalf("kind %q: %b, %v", n, k, ok)
		}
		all |= k
	}
	if got := all.String(); got != strings.Join(IssueKindNames, ", ") {
		t.Errorf("String() = %q", got)
	}
}

func TestPendingDeliveryKeepsItsRejections(t *testing.T) {
	for _, p := range []PendingDelivery{
		{MessageID: 7, Route: "pds", Destination: "d", Transform: "fhir", Validate: true, Reject: 1<<0 | 1<<4},
		{MessageID: 8, Route: "pds", Destination: "d", Transform: "fhir", Reject: 1 << 2},
		{MessageID: 9, Route: "pds", Destination: "d", Transform: "fhir", Validate: true},
	} {
		got, rest, err := decodePending(deliveryKey(kindPending, &p), encodePending(nil, &p))
		if err != nil || len(rest) != 0 || got.Validate != p.Validate || got.Reject != p.Reject {
			t.Errorf("%+v came back as %+v (%d bytes left, %v)", p, got, len(rest), err)
		}
	}
}

func TestTableReadsReject(t *testing.T) {
	tab, err := LoadTable([]string{writeTable(t, map[string]string{"r.yaml": `
routes:
  - name: pds
    when: "true"
    transform: patient
    reject: [nhs-number, incomplete]
    to: [pds]
    continue: true
  - name: one
    when: "true"
    transform: patient
    reject: value
    ack: processed
    to: [pds]
destinations:
  pds: {kind: fhir, url: "https://pds.example"}
`})}, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer tab.Close()
	if r := tab.Routes[0]; r.Reject.String() != "nhs-number, incomplete" || r.Ack != AckProcessed {
		t.Errorf("route pds: reject %q, ack %q", r.Reject, r.Ack)
	}
	if r := tab.Routes[1]; r.Reject.String() != "value" {
		t.Errorf("route one: reject %q", r.Reject)
	}
	if !tab.Routing().HoldsAcks() {
		t.Error("a table that rejects does not hold ACKs")
	}

	_, err = LoadTable([]string{writeTable(t, map[string]string{"r.yaml": `
routes:
  - name: a
    when: "true"
    transform: patient
    reject: [nhs-numbr, value]
    to: []
  - name: b
    when: "true"
    reject: [value]
    to: []
  - name: c
    when: "true"
    transform: patient
    reject: [value]
    ack: durable
    to: []
  - name: d
    when: "true"
    transform: patient
    reject: {value: true}
    to: []
`})}, testOptions())
	got := tableErrors(t, err)
	for i, want := range []string{
		`r.yaml:6:14: routes[0].reject[0]: unknown issue kind "nhs-numbr"; did you mean "nhs-number"?`,
		`r.yaml:8:5: routes[1]: reject: needs a transform; issues are what a transform finds`,
		`r.yaml:12:5: routes[2]: reject: answers with an AE, so the ACK must wait for the transform: use ack: processed, or leave ack: out`,
		`r.yaml:21:13: routes[3].reject: expected a single value`,
	} {
		if i >= len(got) || !strings.HasSuffix(got[i], want) {
			t.Errorf("error %d: want …%s\nall: %q", i, want, got)
		}
	}
}

// recorders is a destination kind whose destinations are recorders, kept by
// name for the test to look at.
type recorders map[string]*recorder

func (rs recorders) factory(name string, _ *yaml.Node) (Destination, error) {
	r := newRecorder(nil)
	rs[name] = r
	return r, nil
}

// TestRouteRejectsOnTheIssuesItNames runs messages through the listener's
// intake, a routing table and the mapping engine: a route that rejects on
// nhs-number answers a message whose NHS number fails its check with an AE
// pointing at PID-3, and delivers nothing; a route that does not delivers it,
// with the issue as a warning in its journey.
func TestRouteRejectsOnTheIssuesItNames(t *testing.T) {
	set, err := transforms.Default("")
	if err != nil {
		t.Fatal(err)
	}
	dests := recorders{}
	tab, err := LoadTable([]string{writeTable(t, map[string]string{"r.yaml": `
routes:
  - name: pds
    when: msg.Type == "ADT"
    transform: fhir
    reject: [nhs-number]
    to: [pds]
    continue: true
  - name: archive
    when: "true"
    transform: fhir
    to: [archive]
destinations:
  pds: {kind: rec}
  archive: {kind: rec}
`})}, TableOptions{Kinds: map[string]DestinationFactory{"rec": dests.factory}, Transformers: MappingTransformers(set, transforms.Options{})})
	if err != nil {
		t.Fatal(err)
	}
	j, _ := openTest(t)
	d, _ := startDispatcher(t, DispatcherConfig{Store: j, Routing: tab.Routing(), Transformers: MappingTransformers(set, transforms.Options{})})
	in, err := NewIntake(IntakeConfig{Listener: "mllp", Processor: d, DuplicateWindow: time.Hour}, j, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	good, release := in.Receive(ctx, Arrival{Payload: hl7Message("G1", "9990000018", 200), Peer: "p"})
	release()
	if good.Code != hl7v2.AA {
		t.Fatalf("a message with a good NHS number got %s: %q", good.Code, good.Ack)
	}

	bad, release := in.Receive(ctx, Arrival{Payload: hl7Message("B1", "9990000019", 200), Peer: "p"})
	ack := string(bad.Ack)
	release()
	if bad.Code != hl7v2.AE {
		t.Fatalf("a message with a bad NHS number got %s: %q", bad.Code, ack)
	}
	for _, want := range []string{
		"\rMSA|AE|B1\r",
		// v2.5.1: ERR-2 the place, ERR-3 the code, ERR-7 and ERR-8 the texts.
		"\rERR||PID^1^3^1^1|102^Data type error^HL70357|E|||NHS number fails its Modulus 11 check|message rejected: NHS number fails its Modulus 11 check",
	} {
		if !strings.Contains(ack, want) {
			t.Errorf("the AE lacks %q:\n%s", want, strings.ReplaceAll(ack, "\r", "\n"))
		}
	}
	if strings.Contains(ack, "9990000019") {
		t.Error("the AE quotes the NHS number")
	}

	// The journal tells what the sender was told.
	if rec, err := j.Get(ctx, bad.ID); err != nil || rec.AckCode != "AE" || rec.Status != StatusError {
		t.Errorf("journaled as %+v, %v", rec, err)
	}
	if evs, err := j.Events(ctx, bad.ID); err != nil || !slices.ContainsFunc(evs, func(ev Event) bool {
		return ev.Kind == EventAck && ev.Detail == ack
	}) {
		t.Errorf("the AE sent is not in the journey: %+v, %v", evs, err)
	}

	// A resend is answered as the original was: with the AE, not the AA
	// journaled before processing.
	again, release := in.Receive(ctx, Arrival{Payload: hl7Message("B1", "9990000019", 200), Peer: "p"})
	if again.Code != hl7v2.AE || string(again.Ack) != ack || again.ID != bad.ID {
		t.Errorf("the resend got %s for %d: %q", again.Code, again.ID, again.Ack)
	}
	release()

	waitFor(t, "both messages archived and the good one at PDS", func() bool {
		return len(dests["archive"].delivered()) == 2 && len(dests["pds"].delivered()) == 1
	})
	if got := dests["pds"].delivered()[0].ControlID; got != "G1" {
		t.Errorf("PDS was sent %s", got)
	}
	var dead []DeadLetter
	waitFor(t, "the rejected delivery dead-lettered", func() bool {
		dead = dead[:0]
		err := j.DeadLetters(ctx, "pds", func(dl DeadLetter) bool { dead = append(dead, dl); return true })
		return err == nil && len(dead) == 1
	})
	if r := dead[0].Reason; dead[0].MessageID != bad.ID || !strings.Contains(r, "rejected: PID[1]-3[1].1: NHS number fails its Modulus 11 check") {
		t.Errorf("dead letter of %d: %s", dead[0].MessageID, r)
	}

	var warnings []Event
	waitFor(t, "the archive's warning in the journey", func() bool {
		evs, err := j.Events(ctx, bad.ID)
		if err != nil {
			t.Fatal(err)
		}
		warnings = warnings[:0]
		for _, ev := range evs {
			if ev.Kind == EventWarning {
				warnings = append(warnings, ev)
			}
		}
		return len(warnings) > 0
	})
	if len(warnings) != 1 || warnings[0].Route != "archive" || !strings.HasPrefix(warnings[0].Detail, "nhs-number: PID[1]-3[1].1: NHS number fails") {
		t.Errorf("warnings: %+v", warnings)
	}
	if evs, _ := j.Events(ctx, good.ID); slices.ContainsFunc(evs, func(ev Event) bool { return ev.Kind == EventWarning }) {
		t.Errorf("the good message has warnings: %+v", evs)
	}
}
