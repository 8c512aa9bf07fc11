package mllp

import "errors"

// Sentinel errors; callers branch on them with errors.Is.
var (
	// ErrFrameTooLarge reports a frame whose payload is longer than
	// FrameOptions.MaxFrameSize. ReadFrame returns the payload's first 64 KiB (at
	// most MaxFrameSize) with it, and the stream stays in step.
	ErrFrameTooLarge = errors.New("mllp: frame larger than the maximum size")
	// ErrFrameTimeout reports a read deadline that passed inside a frame, after its
	// start block. It is returned joined with the underlying timeout error.
	ErrFrameTimeout = errors.New("mllp: frame not completed in time")
	// ErrJunk reports, in strict mode, a byte other than the start block where a
	// frame should begin. The stream is out of step after it.
	ErrJunk = errors.New("mllp: bytes before the start block")
	// ErrStartInPayload reports, in strict mode, a start block byte inside a
	// payload. ReadFrame returns the payload with it, and the stream stays in step.
	ErrStartInPayload = errors.New("mllp: start block inside the payload")
	// ErrMissingCR reports, in strict mode, an end block not followed by a carriage
	// return. The stream is out of step after it.
	ErrMissingCR = errors.New("mllp: end block not followed by a carriage return")
	// ErrEmptyFrame reports a frame with no payload (0x0B 0x1C 0x0D). ReadFrame
	// returns an empty payload with it, and the stream stays in step.
	ErrEmptyFrame = errors.New("mllp: empty frame")
	// ErrClosed reports use of a Listener after Shutdown or of a Sender after
	// Close. Serve returns it after Shutdown.
	ErrClosed = errors.New("mllp: closed")

	// ErrAckTimeout reports that no acknowledgement arrived within
	// SenderConfig.AckTimeout. The message may or may not have been received.
	ErrAckTimeout = errors.New("mllp: no acknowledgement in time")
	// ErrAckMismatch reports an acknowledgement whose MSA-2 is not the MSH-10 of
	// the message sent: it answers another message.
	ErrAckMismatch = errors.New("mllp: acknowledgement answers another message (MSA-2 is not the MSH-10 sent)")
	// ErrCommitNAK reports an MLLP release 2 negative commit acknowledgement
	// (0x15): the receiver did not store the message.
	ErrCommitNAK = errors.New("mllp: receiver did not commit the message (NAK)")
	// ErrUnexpectedReply reports a reply that is not what the exchange calls for:
	// not an HL7 message with an MSA segment, or, in commit mode, not a commit
	// acknowledgement.
	ErrUnexpectedReply = errors.New("mllp: unexpected reply")
	// ErrNoControlID reports a message without MSH-10, whose acknowledgement could
	// not be matched to it.
	ErrNoControlID = errors.New("mllp: message has no MSH-10 control id")
)

// AckError is an acknowledgement with a code other than AA or CA.
type AckError struct {
	// Code is MSA-1: AE, AR, CE, CR, or a code outside HL7 table 0008.
	Code string
	// Text is what the receiver said about the error: ERR-3.2, else MSA-3, else
	// ERR-1.4.2 (the v2.4 layout), unescaped. It is the receiver's own text, never a
	// field of the message sent.
	Text string
}

func (e *AckError) Error() string {
	if e.Text == "" {
		return "mllp: acknowledgement " + e.Code
	}
	return "mllp: acknowledgement " + e.Code + ": " + e.Text
}

// Retryable reports whether sending the message again may succeed: AE and CE say
// the receiver failed to process it, AR and CR (and unknown codes) that it never
// will.
func (e *AckError) Retryable() bool { return e.Code == "AE" || e.Code == "CE" }
