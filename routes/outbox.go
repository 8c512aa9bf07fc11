package routes

import (
	"context"
	"time"
)

// Outbox is the durable state of routing and delivery, kept beside the journal:
// how far the dispatcher has routed, the deliveries still to make, the dead
// letters, the replays asked for, and every message's journey. Local implements
// it in the same store as the records, so that a record and the deliveries
// routed from it can never disagree after a crash.
//
// Writes to the outbox need not be synced: everything in it can be rebuilt from
// the journal, which is. A crash that loses the last outbox writes makes the
// dispatcher route the same records again, and a delivery whose success was
// lost is made again; deliveries are at least once, and their IDs are stable so
// that destinations can tell.
type Outbox interface {
	// Cursor returns the ID of the next record to route: every record below it
	// has been routed and its deliveries stored.
	Cursor(ctx context.Context) (ID, error)
	// Read calls fn with each record whose ID is at least from, in ID order,
	// stopping after limit records or when fn returns false.
	Read(ctx context.Context, from ID, limit int, fn func(*Record) bool) error
	// Routed stores, as one write, the deliveries and events routing produced and
	// moves the cursor to next.
	Routed(ctx context.Context, next ID, pending []PendingDelivery, events []Event) error
	// Settle ends or reschedules a delivery: Delivered and DeadLettered remove it
	// from the pending set (a dead letter is kept with its reason), Retrying
	// stores its attempt count. ev is stored with it.
	Settle(ctx context.Context, p *PendingDelivery, outcome Outcome, ev Event) error
	// Pending calls fn with every delivery not yet settled, in ID order.
	Pending(ctx context.Context, fn func(PendingDelivery) bool) error
	// DeadLetters calls fn with each dead letter, oldest message first;
	// destination "" lists them all.
	DeadLetters(ctx context.Context, destination string, fn func(DeadLetter) bool) error
	// Revive makes the dead letters given pending again with their attempts reset
	// and returns them.
	Revive(ctx context.Context, letters []DeadLetter, ev Event) ([]PendingDelivery, error)
	// RequestReplay asks for message id to be routed again; the dispatcher takes
	// requests with Replays, now or at its next start.
	RequestReplay(ctx context.Context, id ID) error
	// Replays returns the replays asked for and not yet done.
	Replays(ctx context.Context) ([]ID, error)
	// Replayed stores what routing a replayed message produced and removes its
	// request.
	Replayed(ctx context.Context, id ID, pending []PendingDelivery, events []Event) error
	// Events returns the journey of message id, oldest first.
	Events(ctx context.Context, id ID) ([]Event, error)
	// Note adds events to their messages' journeys.
	Note(ctx context.Context, events []Event) error
	// Appended returns a channel that receives after records are appended.
	Appended() <-chan struct{}
}

// PendingDelivery is a delivery stored and not yet settled. Its body is not
// stored: it is made again from the record by the route's transform, which is
// deterministic, so a replay after a mapping is fixed uses the fixed mapping.
type PendingDelivery struct {
	MessageID   ID
	Route       string
	Destination string
	Key         string // the ordering key
	Transform   string // "" delivers the original bytes
	Validate    bool
	Reject      IssueKinds // the transform's issues that refuse the message
	Attempts    int        // attempts made so far
	LastError   string     // the last attempt's failure, when it failed
	NotBefore   time.Time  // no attempt before this; zero means now
}

// DeliveryID is the delivery's lasting name, Delivery.ID.
func (p *PendingDelivery) DeliveryID() string {
	return p.MessageID.String() + "." + p.Route + "." + p.Destination
}

// DeadLetter is a delivery given up on.
type DeadLetter struct {
	PendingDelivery
	Reason string
	At     time.Time
}

// Outcome is how a delivery attempt ended.
type Outcome string

// Outcomes of Settle.
const (
	Delivered    Outcome = "delivered"
	Retrying     Outcome = "retrying"
	DeadLettered Outcome = "dead-letter"
)

// Event is one step of a message's journey.
type Event struct {
	MessageID   ID // the record it belongs to; not stored, the key holds it
	At          time.Time
	Kind        EventKind
	Route       string // routed, attempt
	Destination string // attempt
	Attempt     int
	Outcome     Outcome
	Detail      string // what went wrong; never a field value
	Duration    time.Duration
}

// EventKind names a step of a journey.
type EventKind string

// Event kinds.
const (
	EventRouted     EventKind = "routed"    // Route matched; one event per route
	EventUnrouted   EventKind = "unrouted"  // no route matched
	EventAttempt    EventKind = "attempt"   // a delivery attempt and its outcome
	EventReplay     EventKind = "replay"    // a replay was asked for
	EventRevived    EventKind = "revived"   // a dead letter was sent again
	EventDiscarded  EventKind = "discarded" // a dead letter given up on; its message then goes with retention
	EventRouteError EventKind = "route-error"
	// EventWarning is an issue the route's transform met and delivered with
	// (see Route.Reject); Detail is its kind and text.
	EventWarning EventKind = "warning"
	// EventAck is the ACK sent in place of the one journaled with the
	// message, when processing changed it (AE for a failed or rejected
	// message); Detail is the ACK.
	EventAck EventKind = "ack"
	// EventAppAck is the application acknowledgement (MSH-16) of a message in
	// enhanced mode: its code, and whether it was sent or only recorded.
	EventAppAck EventKind = "application-ack"
)
