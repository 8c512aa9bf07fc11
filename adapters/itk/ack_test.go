package itk

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spinebridge/spinebridge/routes"
)

func ackMeta(t *testing.T) Meta {
	t.Helper()
	m, ok := MetaOf(cdaRecord(t))
	if !ok {
		t.Fatal("no meta")
	}
	return m
}

var ackOpts = AckOptions{Identity: "urn:nhs-uk:identity:ods:X26", Time: time.Date(2026, 11, 21, 9, 31, 5, 0, time.UTC)}

func TestBuildInfrastructureAck(t *testing.T) {
	m := ackMeta(t)
	ok, err := BuildInfrastructureAck(m, nil, ackOpts)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "ack_infrastructure_ok.xml", ok)
	nack, err := BuildInfrastructureAck(m, []ErrorInfo{
		ErrorInfoFor(invalid("de-payload-manifest", "DE0012", "/itk:payloads/itk:payload[1]/@id", "the payload id must be the id of a manifest item", ErrRule)),
		{Code: "2200", CodeSystem: CodeSystemToolkit, Text: "Processing error, not retryable"},
	}, ackOpts)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "ack_infrastructure_failure.xml", nack)

	for name, ack := range map[string][]byte{"OK": ok, "Failure": nack} {
		env, err := DecodeEnvelope(ack, Limits{})
		if err != nil {
			t.Fatalf("%s: the ack breaks the envelope rules: %v", name, err)
		}
		if env.Service != ServiceInfrastructureAck || env.Addresses[0].URI != m.SenderAddress || env.SenderAddress != m.Recipient ||
			env.AuditIdentity.URI != ackOpts.Identity || env.Spec(SpecInteraction) != InteractionInfrastructureAck || env.InfAckRequested() {
			t.Errorf("%s: envelope %+v", name, env)
		}
		s := string(ack)
		for _, want := range []string{`trackingIdRef="` + m.TrackingID + `"`, `serviceRef="` + m.Service + `"`, `result="` + name + `"`, `timestamp="2026-11-21T09:31:05Z"`} {
			if !strings.Contains(s, want) {
				t.Errorf("%s: lacks %s", name, want)
			}
		}
	}
	if !strings.Contains(string(nack), `<itk:ErrorCode codeSystem="2.16.840.1.113883.2.1.3.2.4.17.516">DE0012</itk:ErrorCode>`) {
		t.Error("the NACK lacks the DE error code")
	}
	again, _ := BuildInfrastructureAck(m, nil, ackOpts)
	if !bytes.Equal(again, ok) {
		t.Error("the same inputs built a different ack")
	}
	if bus, _ := BuildBusinessAck(m, BusinessAccept, ackOpts); bytes.Contains(bus, []byte(`trackingid="`+envTrackingID(t, ok)+`"`)) {
		t.Error("the business and infrastructure acks share a tracking id")
	}
}

func envTrackingID(t *testing.T, ack []byte) string {
	env, err := DecodeEnvelope(ack, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return env.TrackingID
}

func TestBuildBusinessAck(t *testing.T) {
	m := ackMeta(t)
	ack, err := BuildBusinessAck(m, BusinessAccept, ackOpts)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "ack_business.xml", ack)
	env, err := DecodeEnvelope(ack, Limits{})
	if err != nil {
		t.Fatalf("the ack breaks the envelope rules: %v", err)
	}
	if env.Service != ServiceBusinessAck || env.Manifest[0].ProfileID != "urn:nhs-en:profile:ITKBusinessAcknowledgement-v1-0" {
		t.Errorf("envelope %+v", env)
	}
	s := string(ack)
	for _, want := range []string{
		`<hl7:acknowledgedBy3 typeCode="AA"><hl7:conveyingTransmission><hl7:id root="` + m.TrackingID + `"/>`,
		`<hl7:acknowledgedBy2 typeCode="AA"><hl7:conveyingTransmission><hl7:id root="C0A81F2E-5D4B-4A3C-9E8F-7D6C5B4A3921"/>`,
		`<hl7:interactionId root="2.16.840.1.113883.2.1.3.2.4.12" extension="` + m.Interaction + `"/>`,
		`<hl7:creationTime value="20261121093105"/>`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("lacks %s", want)
		}
	}
	if _, err := BuildBusinessAck(m, "OK", ackOpts); err == nil {
		t.Error("type code OK accepted")
	}
}

func TestAckNeedsAddress(t *testing.T) {
	m := ackMeta(t)
	m.SenderAddress = ""
	if _, err := BuildInfrastructureAck(m, nil, ackOpts); !errors.Is(err, ErrNoAckAddress) {
		t.Errorf("err %v, want ErrNoAckAddress", err)
	}
	if _, err := BuildBusinessAck(ackMeta(t), BusinessAccept, AckOptions{Time: ackOpts.Time}); err == nil {
		t.Error("an ack without this receiver's identity was built")
	}
}

func TestInfrastructureAckTransformer(t *testing.T) {
	m := Meta{Remote: "10.0.0.1:1234", Service: "urn:nhs-itk:services:201005:SendCDADocument-v2-0", TrackingID: "7D6F23E0-AE1A-11DB-9808-B18E1E0994CD",
		SenderAddress: "urn:nhs-uk:addressing:ods:RX1", Recipient: "urn:nhs-uk:addressing:ods:X26", AuditIdentity: "urn:nhs-uk:identity:ods:RX1", InfAckRequested: true}
	rec := &routes.Record{Listener: Listener, Peer: m.Peer(), Received: time.Date(2026, 11, 21, 9, 30, 0, 0, time.UTC)}
	tr := InfrastructureAckTransformer{Identity: "urn:nhs-uk:identity:ods:X26"}
	out, ctype, err := tr.Transform(nil, rec)
	if err != nil || ctype != routes.ContentTypeXML {
		t.Fatalf("Transform: %q, %v", ctype, err)
	}
	for _, want := range []string{"7D6F23E0-AE1A-11DB-9808-B18E1E0994CD", "ITKInfrastructureAcknowledgement", "urn:nhs-uk:addressing:ods:RX1"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the acknowledgement lacks %q:\n%s", want, out)
		}
	}
	m.InfAckRequested = false
	rec.Peer = m.Peer()
	if _, _, err := tr.Transform(nil, rec); !errors.Is(err, ErrNoAckRequested) {
		t.Errorf("no acknowledgement asked for: %v", err)
	}
}

func TestBusinessAckTransformer(t *testing.T) {
	m := Meta{Remote: "10.0.0.1:1234", Service: "urn:nhs-itk:services:201005:SendCDADocument-v2-0", TrackingID: "7D6F23E0-AE1A-11DB-9808-B18E1E0994CD",
		PayloadID: "uuid_2A4C6E80-1B3D-4F57-9A1C-3E5F7A9B1C2D", SenderAddress: "urn:nhs-uk:addressing:ods:RX1", Recipient: "urn:nhs-uk:addressing:ods:X26",
		AuditIdentity: "urn:nhs-uk:identity:ods:RX1", BusAckRequested: true}
	rec := &routes.Record{Listener: Listener, Peer: m.Peer(), Received: time.Date(2026, 11, 21, 9, 30, 0, 0, time.UTC)}
	tr := BusinessAckTransformer{Identity: "urn:nhs-uk:identity:ods:X26"}
	out, _, err := tr.Transform(nil, rec)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ITKBusinessAcknowledgement", `typeCode="AA"`, "7D6F23E0-AE1A-11DB-9808-B18E1E0994CD"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the acknowledgement lacks %q:\n%s", want, out)
		}
	}
	m.BusAckRequested = false
	rec.Peer = m.Peer()
	if _, _, err := tr.Transform(nil, rec); !errors.Is(err, ErrNoBusinessAckRequested) {
		t.Errorf("no acknowledgement asked for: %v", err)
	}
}
