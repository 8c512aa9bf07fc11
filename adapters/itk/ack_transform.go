package itk

import (
	"errors"

	"github.com/spinebridge/spinebridge/routes"
)

// InfrastructureAckTransformer makes the infrastructure acknowledgement of an
// ITK record: a route that names it, delivering to an itk-ack destination,
// sends the acknowledgement the sender's handling specification asked for. The
// message was journaled, so the acknowledgement is a positive one.
type InfrastructureAckTransformer struct {
	// Identity is this receiver's audit identity URI, e.g.
	// urn:nhs-uk:identity:ods:X26.
	Identity string
}

var _ routes.Transformer = InfrastructureAckTransformer{}

// ErrNoAckRequested reports a record whose sender asked for no infrastructure
// acknowledgement (or that did not arrive by ITK).
var ErrNoAckRequested = errors.New("itk: the sender asked for no infrastructure acknowledgement")

// Transform builds the acknowledgement of rec.
func (t InfrastructureAckTransformer) Transform(dst []byte, rec *routes.Record) ([]byte, string, error) {
	m, ok := MetaOf(rec)
	if !ok || !m.InfAckRequested {
		return dst, "", ErrNoAckRequested
	}
	ack, err := BuildInfrastructureAck(m, nil, AckOptions{Identity: t.Identity, Time: rec.Received})
	if err != nil {
		return dst, "", err
	}
	return append(dst, ack...), routes.ContentTypeXML, nil
}

// BusinessAckTransformer makes the business acknowledgement of an ITK record
// whose sender asked for one: an acceptance, since the message was journaled
// and the route naming this transform takes it. A route that sends it after
// the routes delivering the document (continue: true on those) reports their
// acceptance in the order the sender expects.
type BusinessAckTransformer struct {
	Identity string // this receiver's audit identity URI
}

var _ routes.Transformer = BusinessAckTransformer{}

// ErrNoBusinessAckRequested reports a record whose sender asked for no
// business acknowledgement (or that did not arrive by ITK).
var ErrNoBusinessAckRequested = errors.New("itk: the sender asked for no business acknowledgement")

// Transform builds the business acknowledgement of rec.
func (t BusinessAckTransformer) Transform(dst []byte, rec *routes.Record) ([]byte, string, error) {
	m, ok := MetaOf(rec)
	if !ok || !m.BusAckRequested {
		return dst, "", ErrNoBusinessAckRequested
	}
	ack, err := BuildBusinessAck(m, BusinessAccept, AckOptions{Identity: t.Identity, Time: rec.Received})
	if err != nil {
		return dst, "", err
	}
	return append(dst, ack...), routes.ContentTypeXML, nil
}
