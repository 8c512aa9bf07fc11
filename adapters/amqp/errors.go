package amqp

import "errors"

// Sentinel errors; callers branch on them with errors.Is. None of them is
// Permanent: each names a failure that a later attempt may not meet.
var (
	// ErrUnroutable reports a mandatory message the broker returned because no
	// queue is bound for its routing key. It is retried because a binding may
	// appear; the dispatcher dead-letters the delivery when its retries run out.
	ErrUnroutable = errors.New("amqp: no queue is bound for the routing key (message returned)")
	// ErrNacked reports a negative confirm: the broker did not take the message,
	// for example because a queue is at its length limit and refuses publishes.
	ErrNacked = errors.New("amqp: broker refused the message (negative confirm)")
	// ErrNotConfirmed reports a channel or connection that closed before the
	// broker confirmed the message. It may or may not have arrived.
	ErrNotConfirmed = errors.New("amqp: channel closed before the broker confirmed the message; it may or may not have arrived")
	// ErrConfirmTimeout reports a publish the broker did not confirm within
	// confirm_timeout. It may or may not have arrived.
	ErrConfirmTimeout = errors.New("amqp: no confirm from the broker in time; the message may or may not have arrived")
	// ErrNotConnected reports that there is no connection to the broker: the
	// attempt to connect failed, or the context ended before one was made.
	ErrNotConnected = errors.New("amqp: not connected to the broker")
	// ErrBlocked reports that the broker has blocked publishing connections, as it
	// does when it runs short of memory or disk.
	ErrBlocked = errors.New("amqp: broker is blocking publishers")
	// ErrClosed reports use of a Publisher after Close.
	ErrClosed = errors.New("amqp: publisher closed")
)
