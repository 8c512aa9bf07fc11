// Package routes moves every received message from the moment it is accepted to
// the destinations that want it: the routing table that picks a message's routes,
// the journal that keeps the message, the dispatcher that carries it along its
// routes, and the delivery queues, retries, dead letters and acknowledgement
// policy around them.
//
// A message's way through the package: an Intake judges it, writes it to the
// Journal and builds its ACK; the Dispatcher reads the journal in ID order,
// matches each accepted record against the routing Table, stores one pending
// delivery per destination in the Outbox, and hands the deliveries to their
// destinations' queues, which transform (Transformer), deliver (Destination),
// retry, and dead-letter. A Reloader replaces the Table when its files change.
//
// # The routing table
//
// A table is YAML (table.go describes the format): ordered routes, each with a
// when expression over the message (expr-lang, compiled once against Env),
// a transform, the destinations it delivers to, an ordering key, and whether
// later routes are tried too; and the destinations by name, each built by the
// factory of its kind. Every error is reported at once, as path:line:col.
// Test cases beside the table (*_test.yaml, cases.go) say which routes a
// message takes and what its transforms must state.
//
// # Delivery
//
// Each destination has a queue per ordering key: only a key's oldest delivery
// is attempted, so one key's messages arrive in journal order, and a key held
// back by a failing delivery holds back only itself. A failure is retried with
// exponential backoff and jitter, as long as the destination asks
// (RetryAfter), until the attempt limit; a Permanent failure, the limit, or a
// destination the table in force no longer declares (NotConfiguredError)
// dead-letters the delivery with its reason. Dead letters and whole messages
// can be sent again (ReviveDeadLetters, Replay). Every step is an Event of the
// message's journey. Delivery is at least once: the outbox lives in the
// journal's store, a delivery's outcome is stored after its attempt, and a
// delivery's ID is the same on every attempt, so destinations can tell a
// repeat.
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
