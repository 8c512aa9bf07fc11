// Package mllp carries HL7 version 2 messages over TCP with the Minimal Lower
// Layer Protocol: a frame reader and writer, a listener that receives messages
// and answers them, and a sender that sends them and checks their
// acknowledgements.
//
// # Framing
//
// TCP delivers a stream of bytes with no message boundaries, and an HL7 v2
// message has no length field and no terminator of its own: its segments end in
// carriage returns, the last one included. MLLP marks where each message starts
// and ends by wrapping it in a block:
//
//	0x0B  payload  0x1C 0x0D
//	 VT            FS   CR
//	start block    end block
//
// The start block is the vertical tab (0x0B) and the end block the file separator
// (0x1C) followed by a carriage return (0x0D). The payload is the message, sent
// as it is, in its own character set; neither block byte may occur in it. That
// holds for ASCII, the ISO 8859 sets and UTF-8, whose multibyte sequences never
// contain a byte below 0x80, but not for UTF-16 or UTF-32, which MLLP cannot
// carry.
//
// A receiver reads until the start block, collects the payload until the end
// block and answers with an acknowledgement (an HL7 ACK message) in a frame of
// its own on the same connection. A sender usually waits for each ACK before it
// sends the next message, but one may pipeline, sending message N+1 before ACK N
// arrives, so replies go back in the order the messages came.
//
// Release 2 of MLLP adds commit acknowledgements: for every message the receiver
// first sends a frame whose payload is the single byte 0x06 (ACK: the message is
// safely stored) or 0x15 (NAK: it is not, send it again). The HL7 ACK, when there
// is one, follows in a frame of its own.
//
// # What senders actually send
//
// Legacy systems do not all follow the framing to the letter. Some send CR or LF
// bytes between frames as keep-alives, some leave out the CR after 0x1C, some
// leave a stray byte on the wire after a failed send. FrameOptions.Strict chooses
// how such input is read. The lenient default (the behaviour of most integration
// engines) skips CR, LF, tab and space between frames, discards other bytes
// before a start block, ends a frame at 0x1C without waiting for the CR, and
// passes a 0x0B inside a payload through. Strict reading (the behaviour of HAPI)
// refuses every byte before a start block with ErrJunk and a missing CR with
// ErrMissingCR, after which the stream cannot be trusted and the listener closes
// the connection; a 0x0B inside a payload is reported with ErrStartInPayload so
// the receiver can answer AE.
//
// In both modes a 0x1C inside a message ends the frame early: the bytes after it
// cannot be told from junk, so they are discarded up to the next start block and
// never read as a message of their own.
//
// # Limits
//
// A frame's payload is at most FrameOptions.MaxFrameSize bytes (16 MiB by
// default). The bytes of a larger frame past the first 64 KiB, enough for the MSH
// segment an answer needs, are read and thrown away as they arrive, so one
// connection never holds more than about MaxFrameSize plus 64 KiB, and a
// listener never more than that times ListenerConfig.MaxConnections.
//
// A listener limits the time from a start block to the end of its frame
// (ReadTimeout: a sender that opens a frame and stalls is reset), the time
// between frames (IdleTimeout) and the time to write a reply (WriteTimeout), and
// the number of connections it serves at once.
//
// # Using the package
//
// FrameReader reads frames from any io.Reader into one reused buffer, and
// AppendFrame frames a payload into a caller's buffer; neither allocates once
// warm. A Listener accepts connections, plain or TLS, reads frames with one
// goroutine per connection and passes each message to a Handler, whose Response
// it frames and writes back. A Sender sends messages and classifies their
// acknowledgements, retrying those that may succeed on a second attempt.
//
// Logs name connections by listener, id and address and never contain payload
// bytes or field values, which may be patient data.
package mllp
