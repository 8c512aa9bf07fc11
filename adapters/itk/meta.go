package itk

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"net/url"
	"strings"

	"github.com/spinebridge/spinebridge/routes"
)

// Meta is the ITK side of a journaled message: what its acknowledgements and
// its FHIR Provenance need to know, and nothing of its content.
//
// The journal keeps it in Record.Peer, as "itk:" + the remote address + "?" +
// the fields as a URL query (svc, tid, mid, pid, int, from, to, audit, inf,
// bus, doc, docx). Peer is the one field the intake lets a listener set for an
// HL7 v2 message, so v2 and CDA records carry it the same way; Meta.Peer
// writes it and ParseMeta reads it back.
type Meta struct {
	Remote        string // the sender's network address
	Service       string // the Distribution Envelope's service
	TrackingID    string
	MessageID     string // wsa:MessageID of the request
	PayloadID     string // the payload's id within the envelope
	Interaction   string // the interaction handling specification
	SenderAddress string // where acknowledgements go
	Recipient     string // the first address of the address list: this receiver, as addressed
	AuditIdentity string
	// InfAckRequested and BusAckRequested say which acknowledgements the
	// sender asked for.
	InfAckRequested bool
	BusAckRequested bool
	DocumentID      Identifier // a CDA document's ClinicalDocument/id
}

const peerScheme = "itk:"

// Peer writes m as a journal record's Peer.
func (m Meta) Peer() string {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("svc", m.Service)
	set("tid", m.TrackingID)
	set("mid", m.MessageID)
	set("pid", m.PayloadID)
	set("int", m.Interaction)
	set("from", m.SenderAddress)
	set("to", m.Recipient)
	set("audit", m.AuditIdentity)
	set("doc", m.DocumentID.Root)
	set("docx", m.DocumentID.Extension)
	if m.InfAckRequested {
		q.Set("inf", "1")
	}
	if m.BusAckRequested {
		q.Set("bus", "1")
	}
	return peerScheme + m.Remote + "?" + q.Encode()
}

// ParseMeta reads what Meta.Peer wrote. ok is false for a peer that is not an
// ITK one (an MLLP sender's address, say).
func ParseMeta(peer string) (m Meta, ok bool) {
	rest, ok := strings.CutPrefix(peer, peerScheme)
	if !ok {
		return Meta{}, false
	}
	remote, query, _ := strings.Cut(rest, "?")
	q, err := url.ParseQuery(query)
	if err != nil {
		return Meta{}, false
	}
	return Meta{
		Remote:          remote,
		Service:         q.Get("svc"),
		TrackingID:      q.Get("tid"),
		MessageID:       q.Get("mid"),
		PayloadID:       q.Get("pid"),
		Interaction:     q.Get("int"),
		SenderAddress:   q.Get("from"),
		Recipient:       q.Get("to"),
		AuditIdentity:   q.Get("audit"),
		InfAckRequested: q.Get("inf") == "1",
		BusAckRequested: q.Get("bus") == "1",
		DocumentID:      Identifier{Root: q.Get("doc"), Extension: q.Get("docx")},
	}, true
}

// MetaOf returns the ITK metadata of a journal record; ok is false for a
// record that did not arrive over ITK.
func MetaOf(rec *routes.Record) (Meta, bool) {
	if rec.Listener != Listener {
		return Meta{}, false
	}
	return ParseMeta(rec.Peer)
}

// Listener is the name ITK records carry in Record.Listener.
const Listener = "itk"

// metaFor is the metadata of one payload of req.
func metaFor(req *Request, remote string, c *content) Meta {
	env := req.Envelope
	m := Meta{
		Remote:          remote,
		Service:         env.Service,
		TrackingID:      env.TrackingID,
		MessageID:       req.Header.MessageID,
		PayloadID:       c.id,
		Interaction:     env.Spec(SpecInteraction),
		SenderAddress:   env.SenderAddress,
		AuditIdentity:   env.AuditIdentity.URI,
		InfAckRequested: env.InfAckRequested(),
		BusAckRequested: env.BusAckRequested(),
	}
	if len(env.Addresses) > 0 {
		m.Recipient = env.Addresses[0].URI
	}
	if c.cda != nil {
		m.DocumentID = c.cda.ID
	}
	return m
}

// nameUUID is a name-based UUID of parts (RFC 9562 version 5 layout over
// SHA-256, as the mapping engine makes resource ids), in upper case as ITK
// recommends: the same parts always give the same id.
func nameUUID(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	var id [16]byte
	copy(id[:], h.Sum(nil))
	id[6] = id[6]&0x0f | 0x50
	id[8] = id[8]&0x3f | 0x80
	return formatUUID(id)
}

// newUUID is a random (version 4) UUID in upper case.
func newUUID() string {
	var id [16]byte
	_, _ = rand.Read(id[:])
	id[6] = id[6]&0x0f | 0x40
	id[8] = id[8]&0x3f | 0x80
	return formatUUID(id)
}

func formatUUID(id [16]byte) string {
	return fmt.Sprintf("%X-%X-%X-%X-%X", id[0:4], id[4:6], id[6:8], id[8:10], id[10:16])
}
