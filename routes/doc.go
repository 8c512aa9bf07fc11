// Package routes moves every received message from the moment it is accepted to
// the destinations that want it: the routing table that picks a message's routes,
// the journal that keeps the message, the dispatcher that carries it along its
// routes, and the delivery queues, retries, dead letters and acknowledgement
// policy around them.
//
// The journal is built; the routing table, the dispatcher and the delivery
// queues are not yet.
//
// # The journal
//
// A Journal keeps every message the engine received, exactly as it arrived, with
// the metadata needed to find it again: where it came from (listener, peer,
// MSH-3/MSH-4), what it is (MSH-9, MSH-12, MSH-10), whom it is about (the NHS
// number from PID-3), its status and the ACK that answered it. The engine's
// promise to a sender rests on it: a positive ACK leaves only after Append has
// returned, and Append returns only once the record would survive a crash of the
// process or the machine. Records are numbered by ID in append order; IDs are
// never reused, so an ID printed in a log or sent as an AMQP message-id names one
// message for good.
//
// Local is the embedded journal: one directory on local disk, no server. It keeps
// records in Pebble, an LSM store whose write-ahead log is fsynced before Append
// returns. Concurrent Appends are gathered into one commit (group commit), so the
// cost of an fsync is shared by every message that arrived while the previous one
// ran. docs/architecture.md records why Pebble and what it measured.
package routes
