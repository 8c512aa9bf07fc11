package mllp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
)

// Framing bytes.
const (
	StartBlock     byte = 0x0B // VT, opens a frame
	EndBlock       byte = 0x1C // FS, closes a frame, followed by CarriageReturn
	CarriageReturn byte = 0x0D // CR, the last byte of a frame
	CommitACK      byte = 0x06 // MLLP release 2: the message is committed
	CommitNAK      byte = 0x15 // MLLP release 2: the message is not committed
)

const (
	// defaultMaxFrameSize is the payload limit when FrameOptions leaves it zero.
	defaultMaxFrameSize = 16 << 20
	// maxFrameSizeLimit bounds MaxFrameSize so buffer arithmetic cannot overflow
	// and one frame cannot claim an unreasonable share of memory.
	maxFrameSizeLimit = 1 << 30
	// readBufferSize is the buffer a reader starts with: one read of it takes in
	// dozens of typical messages, and most frames fit in it whole.
	readBufferSize = 64 << 10
	// truncatedSize is how much of an oversized payload is kept: enough for any
	// real MSH segment, so the receiver can still build an acknowledgement.
	truncatedSize = 64 << 10
	// shrinkAbove is the buffer size past which a reader gives memory back once
	// the large frame that needed it has been read, so a connection does not hold
	// megabytes for the rest of its life because of one large message.
	shrinkAbove = 1 << 20
	// maxEmptyReads bounds the io.Reader calls that return no bytes and no error
	// before the reader gives up, as bufio does.
	maxEmptyReads = 100
)

// errBufferFull reports a frame that outgrew the reader's buffer. The size
// arithmetic in ReadFrame rules it out; it guards against a mistake there
// turning into a loop that never ends.
var errBufferFull = errors.New("mllp: internal error: frame buffer full")

// FrameOptions set how frames are read.
type FrameOptions struct {
	// MaxFrameSize is the largest payload accepted, in bytes: 16 MiB when zero,
	// and at most 1 GiB.
	MaxFrameSize int
	// Strict refuses input that breaks the framing rules instead of tolerating it
	// as most engines do; see the package documentation.
	Strict bool
}

// maxFrameSize returns the payload limit o sets.
func (o FrameOptions) maxFrameSize() int {
	if o.MaxFrameSize <= 0 {
		return defaultMaxFrameSize
	}
	return min(o.MaxFrameSize, maxFrameSizeLimit)
}

// validate reports an out-of-range MaxFrameSize.
func (o FrameOptions) validate() error {
	if o.MaxFrameSize < 0 || o.MaxFrameSize > maxFrameSizeLimit {
		return fmt.Errorf("mllp: max frame size %d: want 0 (16 MiB) to %d bytes", o.MaxFrameSize, maxFrameSizeLimit)
	}
	return nil
}

// FrameReader reads MLLP frames from a stream, reusing one buffer: a payload is
// valid until the next ReadFrame. Once its buffer has grown to the frames it
// reads, ReadFrame does not allocate.
//
// A FrameReader is not safe for concurrent use.
type FrameReader struct {
	rd     io.Reader
	buf    []byte // len(buf) is the buffer's whole size
	r, w   int    // buf[r:w] holds bytes read from rd and not yet consumed
	rerr   error  // an error rd returned along with bytes, held for the next read
	max    int    // payload limit
	strict bool

	// inFrame is true from a start block to the end of its frame, so that the
	// listener's reader can tell a read inside a frame (ReadTimeout) from one
	// between frames (IdleTimeout).
	inFrame bool
	// junk counts the bytes discarded before start blocks, inter-frame
	// whitespace excepted, for the listener's statistics and warnings.
	junk uint64
}

// NewFrameReader returns a FrameReader reading from r with the options o.
func NewFrameReader(r io.Reader, o FrameOptions) *FrameReader {
	return &FrameReader{rd: r, max: o.maxFrameSize(), strict: o.Strict}
}

// reset points fr at a new stream, keeping its buffer.
func (fr *FrameReader) reset(r io.Reader) {
	fr.rd, fr.r, fr.w, fr.rerr, fr.inFrame = r, 0, 0, nil, false
}

// ReadFrame reads the next frame and returns its payload, which is valid until
// the next call. At the end of the stream between frames it returns io.EOF; a
// stream that ends inside a frame gives io.ErrUnexpectedEOF, and a read deadline
// that passes inside one gives ErrFrameTimeout.
//
// A frame that is faulty but complete comes back with its payload, possibly
// empty or truncated, and ErrEmptyFrame, ErrFrameTooLarge or, in strict mode,
// ErrStartInPayload: the stream is still in step and reading may go on. After
// ErrJunk or ErrMissingCR (strict mode only) it is not. After a read error inside
// a frame, calling ReadFrame again (once a deadline has been moved, say) resumes
// that frame, unless it was an oversized one, whose kept bytes are then lost.
func (fr *FrameReader) ReadFrame() ([]byte, error) {
	fr.inFrame = false
	if len(fr.buf) > shrinkAbove && fr.w-fr.r <= readBufferSize {
		nb := make([]byte, readBufferSize)
		fr.w = copy(nb, fr.buf[fr.r:fr.w])
		fr.r, fr.buf = 0, nb
	}
	for {
		found, err := fr.skipToStart()
		if found {
			break
		}
		if err != nil {
			return nil, err
		}
		if err := fr.fill(); err != nil {
			if err == io.EOF {
				return nil, io.EOF
			}
			return nil, fmt.Errorf("mllp: read frame: %w", err)
		}
	}
	// buf[r] is the start block. It stays in the buffer until the frame is
	// complete, so a frame interrupted by a read error can be resumed.
	fr.inFrame = true
	scanned := 0 // payload bytes known to hold no end block
	for {
		p := fr.r + 1
		if i := bytes.IndexByte(fr.buf[p+scanned:fr.w], EndBlock); i >= 0 {
			return fr.endFrame(p + scanned + i)
		}
		scanned = fr.w - p
		if scanned > fr.max {
			return fr.discardOversized()
		}
		if err := fr.fill(); err != nil {
			return nil, frameError(err)
		}
	}
}

// skipToStart consumes the bytes before the next start block and reports
// whether it found one, at buf[r].
func (fr *FrameReader) skipToStart() (bool, error) {
	for fr.r < fr.w {
		c := fr.buf[fr.r]
		switch {
		case c == StartBlock:
			return true, nil
		case fr.strict:
			fr.r++
			fr.junk++
			return false, ErrJunk
		case c == '\r' || c == '\n' || c == ' ' || c == '\t':
			// Keep-alives and the CR of a frame whose end block came alone.
		default:
			fr.junk++
		}
		fr.r++
	}
	return false, nil
}

// endFrame finishes the frame whose start block is at buf[r] and whose end block
// is at buf[e].
func (fr *FrameReader) endFrame(e int) ([]byte, error) {
	p := fr.r + 1
	n := e - p
	if n > fr.max {
		// The whole oversized frame arrived in the buffer at once.
		keep := fr.keep()
		fr.r = e + 1
		fr.skipCR()
		fr.inFrame = false
		return fr.buf[p : p+keep : p+keep], ErrFrameTooLarge
	}
	if fr.strict {
		// The CR must be seen before the frame counts as complete. Room for it is
		// assured: the buffer may grow to MaxFrameSize+3 bytes, and the frame from
		// its start block through its end block takes at most MaxFrameSize+2.
		for fr.r+n+2 >= fr.w {
			if err := fr.fill(); err != nil {
				return nil, frameError(err)
			}
		}
		p = fr.r + 1
		e = p + n
		if fr.buf[e+1] != CarriageReturn {
			fr.r = e + 1
			fr.inFrame = false
			return nil, ErrMissingCR
		}
		fr.r = e + 2
	} else {
		// The frame is complete at the end block. A CR already here is taken with
		// it; one still in flight is skipped later as inter-frame whitespace, so a
		// sender that never sends it is answered without waiting for it.
		fr.r = e + 1
		fr.skipCR()
	}
	fr.inFrame = false
	payload := fr.buf[p:e:e]
	switch {
	case n == 0:
		return payload, ErrEmptyFrame
	case fr.strict && bytes.IndexByte(payload, StartBlock) >= 0:
		return payload, ErrStartInPayload
	}
	return payload, nil
}

// discardOversized is called once a frame's payload has passed the limit with no
// end block in sight. It keeps the payload's first bytes at the front of the
// buffer and reads the rest into the space after them, throwing it away, until
// the end block.
func (fr *FrameReader) discardOversized() ([]byte, error) {
	keep := fr.keep()
	copy(fr.buf, fr.buf[fr.r+1:fr.r+1+keep])
	if len(fr.buf) < keep+readBufferSize {
		// Reading the rest a few bytes at a time would be slow; this stays within
		// the bound the package documents (MaxFrameSize plus 64 KiB).
		nb := make([]byte, keep+readBufferSize)
		copy(nb, fr.buf[:keep])
		fr.buf = nb
	}
	if err := fr.rerr; err != nil {
		// The stream failed right after the bytes that crossed the limit.
		fr.r, fr.w, fr.rerr = 0, 0, nil
		return nil, frameError(err)
	}
	for {
		n, err := fr.read(fr.buf[keep:])
		if i := bytes.IndexByte(fr.buf[keep:keep+n], EndBlock); i >= 0 {
			fr.r, fr.w = keep+i+1, keep+n
			fr.rerr = err
			fr.skipCR()
			fr.inFrame = false
			return fr.buf[:keep:keep], ErrFrameTooLarge
		}
		if err != nil {
			fr.r, fr.w = 0, 0
			return nil, frameError(err)
		}
	}
}

// keep is how much of an oversized payload is returned.
func (fr *FrameReader) keep() int { return min(truncatedSize, fr.max) }

// skipCR consumes a CR at buf[r], if one is there.
func (fr *FrameReader) skipCR() {
	if fr.r < fr.w && fr.buf[fr.r] == CarriageReturn {
		fr.r++
	}
}

// bufLimit is the size the buffer may grow to: a whole frame of MaxFrameSize
// with its three framing bytes, and never less than one read's worth.
func (fr *FrameReader) bufLimit() int { return max(fr.max+3, readBufferSize) }

// fill reads more bytes into buf[w:], first sliding the unconsumed bytes to the
// front and, when they fill the buffer, growing it up to bufLimit.
func (fr *FrameReader) fill() error {
	if err := fr.rerr; err != nil {
		fr.rerr = nil
		return err
	}
	if fr.buf == nil {
		fr.buf = make([]byte, readBufferSize)
	}
	if fr.r > 0 {
		fr.w = copy(fr.buf, fr.buf[fr.r:fr.w])
		fr.r = 0
	}
	if fr.w == len(fr.buf) {
		size := min(2*len(fr.buf), fr.bufLimit())
		if size <= len(fr.buf) {
			return errBufferFull
		}
		nb := make([]byte, size)
		copy(nb, fr.buf[:fr.w])
		fr.buf = nb
	}
	n, err := fr.read(fr.buf[fr.w:])
	fr.w += n
	if n > 0 {
		fr.rerr = err
		return nil
	}
	return err
}

// read reads into p, retrying a reader that returns neither bytes nor an error.
func (fr *FrameReader) read(p []byte) (int, error) {
	for range maxEmptyReads {
		n, err := fr.rd.Read(p)
		if n < 0 || n > len(p) {
			return 0, errors.New("mllp: reader returned an invalid count")
		}
		if n > 0 || err != nil {
			return n, err
		}
	}
	return 0, io.ErrNoProgress
}

// frameError describes an error met inside a frame.
func frameError(err error) error {
	if err == io.EOF {
		return fmt.Errorf("mllp: read frame: %w", io.ErrUnexpectedEOF)
	}
	if isTimeout(err) {
		return fmt.Errorf("%w: %w", ErrFrameTimeout, err)
	}
	return fmt.Errorf("mllp: read frame: %w", err)
}

// isTimeout reports whether err is a deadline that passed.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// AppendFrame appends payload framed as 0x0B payload 0x1C 0x0D to dst and
// returns the extended slice. payload must not contain 0x1C, which would end the
// frame early at the receiver.
func AppendFrame(dst, payload []byte) []byte {
	dst = append(dst, StartBlock)
	dst = append(dst, payload...)
	return append(dst, EndBlock, CarriageReturn)
}
