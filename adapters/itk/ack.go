package itk

import (
	"errors"
	"fmt"
	"time"
)

// Services, interactions and profiles of the acknowledgements.
const (
	ServiceInfrastructureAck     = "urn:nhs-itk:services:201005:SendInfrastructureAck-v1-0"
	ServiceBusinessAck           = "urn:nhs-itk:services:201005:SendBusinessAck-v1-0"
	InteractionInfrastructureAck = "urn:nhs-itk:interaction:ITKInfrastructureAcknowledgement-v1-0"
	InteractionBusinessAck       = "urn:nhs-itk:interaction:ITKBusinessAcknowledgement-v1-0"
	profileInfrastructureAck     = "urn:nhs-en:profile:ITKInfrastructureAcknowledgement-v1-0"
	profileBusinessAck           = "urn:nhs-en:profile:ITKBusinessAcknowledgement-v1-0"
	oidInteractionID             = "2.16.840.1.113883.2.1.3.2.4.12"
)

// AckOptions are this receiver's side of the acknowledgements it sends.
type AckOptions struct {
	// Identity is this receiver's audit identity URI, e.g.
	// urn:nhs-uk:identity:ods:X26. Required.
	Identity string
	// Address is this receiver's address URI, the acknowledgement's sender
	// address; when empty, the address the message was sent to
	// (Meta.Recipient).
	Address string
	// Time is when the acknowledgement is made; it is written into it, so an
	// acknowledgement built twice from the same inputs is the same bytes.
	Time time.Time
}

// ErrorInfo is one error an infrastructure NACK reports.
type ErrorInfo struct {
	Code       string // e.g. "DE0012", or a toolkit code such as "1000"
	CodeSystem string // CodeSystemDE or CodeSystemToolkit; CodeSystemDE when empty
	Text       string
	Diagnostic string // optional; never a value from the message
}

// ErrorInfoFor is the NACK error for a refusal.
func ErrorInfoFor(e *Error) ErrorInfo {
	info := ErrorInfo{Code: fmt.Sprint(int(e.Code)), CodeSystem: CodeSystemToolkit, Text: errorText(e.Code), Diagnostic: diagnostic(e, 0)}
	if e.DECode != "" {
		info.Code, info.CodeSystem = e.DECode, CodeSystemDE
	}
	return info
}

// ErrNoAckAddress reports metadata an acknowledgement cannot be built from:
// no sender address to send it to, or no tracking id to refer to.
var ErrNoAckAddress = errors.New("itk: the message has no sender address or tracking id to acknowledge")

func (o AckOptions) check(m Meta) (senderAddress string, err error) {
	if m.SenderAddress == "" || m.TrackingID == "" {
		return "", ErrNoAckAddress
	}
	if o.Identity == "" {
		return "", errors.New("itk: acknowledgement options need this receiver's identity")
	}
	if o.Time.IsZero() {
		return "", errors.New("itk: acknowledgement options need a time")
	}
	addr := o.Address
	if addr == "" {
		addr = m.Recipient
	}
	if addr == "" {
		return "", errors.New("itk: acknowledgement options need this receiver's address")
	}
	return addr, nil
}

// ackEnvelope is a Distribution Envelope with one payload, addressed back to
// the original sender. kind names the acknowledgement in its ids, so an
// infrastructure and a business ack of one message differ.
func ackEnvelope(m Meta, o AckOptions, from, kind, service, interaction, profile string, payload *xmlElem) []byte {
	pid := "uuid_" + nameUUID(kind, "payload", m.TrackingID, m.PayloadID)
	de := el("itk:DistributionEnvelope", ns("itk", nsITK),
		el("itk:header", at("service", service), at("trackingid", nameUUID(kind, m.TrackingID, m.PayloadID)),
			el("itk:addresslist", el("itk:address", at("uri", m.SenderAddress))),
			el("itk:auditIdentity", el("itk:id", at("uri", o.Identity))),
			el("itk:manifest", at("count", "1"),
				el("itk:manifestitem", at("id", pid), at("mimetype", "text/xml"), at("profileid", profile))),
			el("itk:senderAddress", at("uri", from)),
			el("itk:handlingSpecification",
				el("itk:spec", at("key", SpecInteraction), at("value", interaction)))),
		el("itk:payloads", at("count", "1"), el("itk:payload", at("id", pid), payload)))
	return appendElement([]byte("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"), de, nil)
}

// BuildInfrastructureAck builds the infrastructure acknowledgement of the
// message m describes: result OK when errs is empty, else Failure with each
// error. It is a Distribution Envelope to send to m.SenderAddress, through
// AckDestination. The same inputs always give the same bytes, ids included,
// so a replayed acknowledgement is recognisably the same one.
func BuildInfrastructureAck(m Meta, errs []ErrorInfo, o AckOptions) ([]byte, error) {
	from, err := o.check(m)
	if err != nil {
		return nil, err
	}
	result := "OK"
	if len(errs) > 0 {
		result = "Failure"
	}
	items := []any{at("timestamp", xsDateTime(o.Time)), at("serviceRef", m.Service), at("trackingIdRef", m.TrackingID), at("result", result),
		el("itk:reportingIdentity", el("itk:id", at("uri", o.Identity)))}
	if len(errs) > 0 {
		var infos []*xmlElem
		for i, e := range errs {
			cs := e.CodeSystem
			if cs == "" {
				cs = CodeSystemDE
			}
			parts := []any{
				el("itk:ErrorID", nameUUID("infrastructure-ack", "error", m.TrackingID, m.PayloadID, fmt.Sprint(i))),
				el("itk:ErrorCode", at("codeSystem", cs), e.Code),
				el("itk:ErrorText", e.Text),
			}
			if e.Diagnostic != "" {
				parts = append(parts, el("itk:ErrorDiagnosticText", e.Diagnostic))
			}
			infos = append(infos, el("itk:errorInfo", parts...))
		}
		items = append(items, el("itk:errors", infos))
	}
	resp := el("itk:InfrastructureResponse", items...)
	return ackEnvelope(m, o, from, "infrastructure-ack", ServiceInfrastructureAck, InteractionInfrastructureAck, profileInfrastructureAck, resp), nil
}

// Business acknowledgement type codes (acknowledgedBy3/@typeCode).
const (
	BusinessAccept = "AA" // the document was accepted by the application
	BusinessError  = "AE" // an application error
	BusinessReject = "AR" // the document was rejected
)

// BuildBusinessAck builds the business acknowledgement of the message m
// describes, an HL7 v3 BusinessResponseMessage in a Distribution Envelope to
// send to m.SenderAddress: typeCode is BusinessAccept, BusinessError or
// BusinessReject; the acknowledgement points at the tracking id
// (acknowledgedBy3) and at the document (acknowledgedBy2, from
// m.DocumentID, or the payload id when there is none). Like
// BuildInfrastructureAck it is deterministic.
func BuildBusinessAck(m Meta, typeCode string, o AckOptions) ([]byte, error) {
	from, err := o.check(m)
	if err != nil {
		return nil, err
	}
	switch typeCode {
	case BusinessAccept, BusinessError, BusinessReject:
	default:
		return nil, fmt.Errorf("itk: business ack type code %q: must be AA, AE or AR", typeCode)
	}
	doc := m.DocumentID
	if doc.Root == "" {
		doc = Identifier{Root: bareUUID(m.PayloadID)}
	}
	docID := el("hl7:id", at("root", doc.Root))
	if doc.Extension != "" {
		docID.attrs = append(docID.attrs, at("extension", doc.Extension))
	}
	interaction := m.Interaction
	if interaction == "" {
		interaction = m.Service
	}
	entity := func(name, typeCode, addr string) *xmlElem {
		return el(name, at("typeCode", typeCode),
			el("hl7:entity", at("classCode", "ENT"), at("determinerCode", "INSTANCE"),
				el("hl7:id", at("root", AddressTypeOID), at("extension", addr))))
	}
	msg := el("hl7:BusinessResponseMessage", ns("hl7", nsHL7v3),
		el("hl7:id", at("root", nameUUID("business-ack", "message", m.TrackingID, m.PayloadID))),
		el("hl7:creationTime", at("value", o.Time.UTC().Format("20060102150405"))),
		el("hl7:interactionId", at("root", oidInteractionID), at("extension", interaction)),
		el("hl7:acknowledgedBy3", at("typeCode", typeCode),
			el("hl7:conveyingTransmission", el("hl7:id", at("root", m.TrackingID)))),
		entity("hl7:communicationFunction1", "SND", from),
		entity("hl7:communicationFunction", "RCV", m.SenderAddress),
		el("hl7:controlActEvent1", at("classCode", "CACT"), at("moodCode", "EVN"),
			el("hl7:author", at("typeCode", "AUT"),
				el("hl7:AgentSystemSDS", at("classCode", "AGNT"),
					el("hl7:agentSystemSDS", at("classCode", "DEV"), at("determinerCode", "INSTANCE"),
						el("hl7:id", at("root", IdentityTypeOID), at("extension", o.Identity)))))),
		el("hl7:acknowledgedBy2", at("typeCode", typeCode),
			el("hl7:conveyingTransmission", docID)))
	return ackEnvelope(m, o, from, "business-ack", ServiceBusinessAck, InteractionBusinessAck, profileBusinessAck, msg), nil
}
