// Package amqp connects the engine to RabbitMQ over AMQP 0-9-1: a destination
// that publishes deliveries to an exchange, and a consumer that takes raw HL7 v2
// messages from a queue into the intake.
//
// # Publishing
//
// A Publisher keeps one connection to the broker and a few channels on it, each
// in confirm mode. Many deliveries are published at once on the same channels;
// the broker acknowledges each publish (basic.ack) once it has taken
// responsibility for the message, which for a persistent message on a durable
// queue means it is on disk. The broker numbers the publishes on a channel from
// 1, so the publisher numbers them the same way and matches each confirm to the
// delivery waiting for it. Deliver returns nil only after that confirm.
//
// With mandatory set (the default) the broker hands back, with basic.return, a
// message no queue is bound to receive, and then acknowledges it anyway. A
// return names no delivery tag, so the publisher matches it by message-id to the
// oldest unconfirmed publish with that id; it reads returns and confirms in one
// goroutine per channel, in the order the broker sent them, so the return is
// always seen before the confirm it qualifies. Such a delivery fails with
// ErrUnroutable, which is retried: a binding may yet appear, and the dispatcher
// dead-letters the delivery when its retries run out.
//
// A negative confirm (basic.nack: a queue refused the message, for example at
// its length limit) fails with ErrNacked, and a channel or connection that closes
// before the confirm fails with ErrNotConfirmed; both are retried. In the second
// case the message may or may not have reached the broker, so a retry can
// publish it twice. Every attempt carries the same message-id, the delivery's
// ID, by which consumers can drop the copy.
//
// Each message carries, as properties: message-id (the delivery's ID, the same
// on every attempt), correlation-id (the journal id of the message it comes
// from), content-type, timestamp (when the engine received the message),
// app-id "spinebridge" and delivery-mode 2 (persistent) unless configured
// otherwise; and, as headers: x-spinebridge-route, x-spinebridge-destination,
// x-spinebridge-attempt, x-hl7-control-id (MSH-10) and x-hl7-message-type
// ("ADT^A01"), the last two when the message has them, with any static headers
// the configuration adds.
//
// The connection is made when first needed, not when the publisher is built, so
// that linting a routes file connects nowhere. When it drops, the publisher
// connects again after a pause that doubles from 100 ms to 30 s, drawn at random
// between half and all of that. A Deliver during an outage waits for the outcome
// of the next attempt to connect, or for its context, whichever comes first,
// and then fails with a retryable error that says why.
//
// # Consuming
//
// A Consumer reads raw HL7 v2 messages from a queue and hands each to a
// Receiver, the signature of the intake's Receive. It acknowledges the broker's
// delivery only once the intake has journaled the message. A message the intake
// refuses for good (AR or CR: not HL7 v2, no MSH-10, a version not accepted) is
// rejected without requeueing, journaled or not, so that the queue's
// dead-letter exchange, when it has one, catches it and it does not come round
// forever; the log says why, in the ACK's words. A message the journal could
// not take is given back to the queue after a pause, so the broker keeps it
// until the journal can. The consumer can declare its queue, durable, with a
// queue type and a dead-letter exchange, and Ready says whether it is
// consuming.
//
// # Secrets
//
// A broker URL may name a user but never a password. The password is read, at
// each connection, from a file or an environment variable, so that a rotated
// password applies at the next reconnect and linting needs no secrets. TLS
// certificates and keys are read at each connection too. Logs name the
// destination or queue and never carry message bodies or header values taken
// from messages.
package amqp
