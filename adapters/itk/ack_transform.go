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
