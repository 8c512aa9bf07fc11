package routes

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// ID identifies a journal record. IDs increase in append order, are unique in one
// journal and are never reused, not even after a crash. Zero is never an ID. An ID
// is printed in decimal.
type ID uint64

// String formats id in decimal.
func (id ID) String() string { return strconv.FormatUint(uint64(id), 10) }

// ParseID reads an ID in decimal, as String prints it. Signs, spaces and zero are
// refused.
func ParseID(s string) (ID, error) {
	if s == "" || s[0] < '0' || s[0] > '9' {
		return 0, fmt.Errorf("journal: id %q: %w", s, ErrBadID)
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("journal: id %q: %w", s, ErrBadID)
	}
	return ID(n), nil
}

// Status is where a journaled message stands. It is an open set: the constants
// below are the ones the intake writes, and later stages add their own (routed,
// delivered, dead-letter) without a change to the journal.
type Status string

// Statuses written by the intake.
const (
	// StatusReceived is a message stored before it was judged; Append uses it
	// when a record has no status.
	StatusReceived Status = "received"
	// StatusAccepted is a message acknowledged with AA or CA.
	StatusAccepted Status = "accepted"
	// StatusRejected is a message refused with AR or CR.
	StatusRejected Status = "rejected"
	// StatusError is a message answered with AE or CE, or one whose processing
	// failed after it was stored.
	StatusError Status = "error"
	// StatusDuplicate is a resent message answered with its original's ACK and
	// not processed again.
	StatusDuplicate Status = "duplicate"
)

// Record is one journaled message and what is known about it.
type Record struct {
	ID       ID        // assigned by Append
	Received time.Time // when it arrived, UTC; Append sets it when zero
	Listener string    // the listener that received it, e.g. "mllp"
	Peer     string    // the remote address it came from
	// Sender is MSH-3 and MSH-4 as they stand, joined as "APP|FACILITY": the first
	// half of the duplicate key, the second being ControlID.
	Sender    string
	ControlID string // MSH-10
	Type      string // MSH-9.1
	Trigger   string // MSH-9.2
	Version   string // MSH-12.1
	NHSNumber string // from PID-3, when present
	Status    Status
	AckCode   string // MSA-1 of the ACK sent, or to be sent, for it
	Ack       []byte // the ACK itself, so that a resend can be answered with it
	Raw       []byte // the message exactly as received
	// Format is what Raw holds: FormatHL7v2 (also when empty) or FormatCDA.
	Format string
}

// Formats of a record's Raw.
const (
	FormatHL7v2 = ""    // HL7 v2 in its ER7 encoding (an ITK v2 XML payload is stored converted)
	FormatCDA   = "cda" // an HL7 CDA document, as XML
)

// Query filters List. Zero fields match everything; a record must match every
// field that is set.
type Query struct {
	ControlID string
	NHSNumber string
	Status    Status
	Since     time.Time // received at or after
	Until     time.Time // received before
	// Limit caps the records passed to List's fn; zero means no cap.
	Limit int
	// Descending lists the newest (highest ID) first.
	Descending bool
}

// Journal is where every received message is kept. Implementations are safe for
// concurrent use.
type Journal interface {
	// Append stores rec durably, assigning rec.ID and, when it is zero,
	// rec.Received. It returns only once the record would survive a crash.
	// Concurrent Appends share commits. Append copies what it needs: rec's
	// slices may be reused once it returns.
	Append(ctx context.Context, rec *Record) error
	// Get returns the record with the given id, or ErrNotFound (ErrRemoved
	// when retention removed it).
	Get(ctx context.Context, id ID) (*Record, error)
	// List calls fn with each record that matches q, in ID order, or newest first
	// when q.Descending. It stops when fn returns false. Each record passed to fn
	// is fn's to keep.
	List(ctx context.Context, q Query, fn func(*Record) bool) error
	// FindControlID returns the latest record from sender with the given MSH-10
	// received at or after since, or ErrNotFound when there is none.
	FindControlID(ctx context.Context, sender, controlID string, since time.Time) (*Record, error)
	// SetStatus changes a record's status durably; ErrNotFound when there is no
	// such record.
	SetStatus(ctx context.Context, id ID, s Status) error
	// SetAnswer is SetStatus for a record whose ACK processing changed after
	// it was journaled: it also sets its AckCode, unless ackCode is empty.
	// The ACK sent is kept in the record's journey (EventAck).
	SetAnswer(ctx context.Context, id ID, s Status, ackCode string) error
	// Close waits for the operations under way, then releases the journal. It
	// gives up waiting when ctx ends. Calls after the first return ErrClosed.
	Close(ctx context.Context) error
}

// Errors callers branch on with errors.Is. The journal returns them wrapped,
// with "journal: " and the operation in front.
var (
	// ErrNotFound reports that no record matches.
	ErrNotFound = errors.New("record not found")
	// ErrClosed reports a call on a journal that is closed or closing.
	ErrClosed = errors.New("journal closed")
	// ErrLocked reports a journal directory already open, in this process or
	// another.
	ErrLocked = errors.New("directory in use by another journal")
	// ErrReadOnly reports a write to a journal opened read-only.
	ErrReadOnly = errors.New("journal opened read-only")
	// ErrCorrupt reports stored data the journal cannot read: a bad encoding or
	// a layout version it does not know.
	ErrCorrupt = errors.New("corrupt journal data")
	// ErrBadID reports text that is not a journal id.
	ErrBadID = errors.New("not a journal id")
	// ErrRemoved reports a record the journal's retention removed: it was
	// older than the retention and nothing needed it any more. It is also
	// ErrNotFound, so callers that only ask whether a record is there need
	// not tell the two apart.
	ErrRemoved = fmt.Errorf("%w: removed by the journal's retention", ErrNotFound)
)
