package mllp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// frame is one result of ReadFrame.
type frame struct {
	payload string
	err     error
}

func (f frame) String() string { return fmt.Sprintf("{%q %v}", f.payload, f.err) }

// readAll reads frames from r until an error that leaves the stream out of step.
func readAll(r io.Reader, o FrameOptions) (frames []frame, junk uint64, end error) {
	fr := NewFrameReader(r, o)
	for {
		p, err := fr.ReadFrame()
		if err != nil && !isAnswerable(err) {
			return frames, fr.junk, err
		}
		frames = append(frames, frame{string(p), err})
	}
}

// chunkings deliver the same input in different reads: the results of reading
// must not depend on how the bytes arrive.
var chunkings = []struct {
	name string
	wrap func(io.Reader) io.Reader
}{
	{"whole", func(r io.Reader) io.Reader { return r }},
	{"byte_at_a_time", iotest.OneByteReader},
	{"half_reads", iotest.HalfReader},
	{"eof_with_data", iotest.DataErrReader},
}

// TestFrameReaderCases runs the framing listener cases against the reader alone,
// each with every chunking of its input.
func TestFrameReaderCases(t *testing.T) {
	big := strings.Repeat("x", 20)
	tests := []struct {
		name   string
		o      FrameOptions
		in     string
		want   []frame
		end    error // the error that ends reading
		junk   uint64
		strict bool
	}{
		{name: "case01_well_formed", in: "\x0bMSH|1\x1c\r",
			want: []frame{{"MSH|1", nil}}, end: io.EOF},
		{name: "case02_lenient_missing_cr", in: "\x0bA\x1c\x0bB\x1c\r\x0bC\x1c",
			want: []frame{{"A", nil}, {"B", nil}, {"C", nil}}, end: io.EOF},
		{name: "case02_lenient_late_cr_is_whitespace", in: "\x0bA\x1c\r\r\n\x0bB\x1c\r",
			want: []frame{{"A", nil}, {"B", nil}}, end: io.EOF},
		{name: "case02_strict_missing_cr", o: FrameOptions{Strict: true}, in: "\x0bA\x1c\x0bB\x1c\r",
			end: ErrMissingCR},
		{name: "case02_strict_with_cr", o: FrameOptions{Strict: true}, in: "\x0bA\x1c\r\x0bB\x1c\r",
			want: []frame{{"A", nil}, {"B", nil}}, end: io.EOF},
		{name: "case03_stream_ends_inside_frame", in: "\x0bMSH|1\x1c\r\x0bMSH|2",
			want: []frame{{"MSH|1", nil}}, end: io.ErrUnexpectedEOF},
		{name: "case04_lenient_keepalive_whitespace", in: "\r\n \t\x0bA\x1c\r\n\r\n\x0bB\x1c\r\r",
			want: []frame{{"A", nil}, {"B", nil}}, end: io.EOF},
		{name: "case04_lenient_junk_discarded", in: "xyz\x0bA\x1c\r!\r\x0bB\x1c\r",
			want: []frame{{"A", nil}, {"B", nil}}, end: io.EOF, junk: 4},
		{name: "case04_strict_junk", o: FrameOptions{Strict: true}, in: "x\x0bA\x1c\r",
			end: ErrJunk, junk: 1},
		{name: "case04_strict_whitespace_is_junk", o: FrameOptions{Strict: true}, in: "\x0bA\x1c\r\n\x0bB\x1c\r",
			want: []frame{{"A", nil}}, end: ErrJunk, junk: 1},
		{name: "case05_lenient_start_in_payload", in: "\x0bA\x0bB\x1c\r",
			want: []frame{{"A\x0bB", nil}}, end: io.EOF},
		{name: "case05_strict_start_in_payload", o: FrameOptions{Strict: true}, in: "\x0bA\x0bB\x1c\r\x0bC\x1c\r",
			want: []frame{{"A\x0bB", ErrStartInPayload}, {"C", nil}}, end: io.EOF},
		{name: "case06_end_in_payload_tail_is_junk", in: "\x0bMSH|A\x1cPID|tail\r\x0bMSH|B\x1c\r",
			want: []frame{{"MSH|A", nil}, {"MSH|B", nil}}, end: io.EOF, junk: 8},
		{name: "case06_strict_end_in_payload", o: FrameOptions{Strict: true}, in: "\x0bMSH|A\x1cPID|tail\r\x0bMSH|B\x1c\r",
			end: ErrMissingCR},
		{name: "case07_two_frames", in: "\x0bMSH|1\x1c\r\x0bMSH|2\x1c\r",
			want: []frame{{"MSH|1", nil}, {"MSH|2", nil}}, end: io.EOF},
		{name: "case09_empty_frame", in: "\x0b\x1c\r\x0bA\x1c\r",
			want: []frame{{"", ErrEmptyFrame}, {"A", nil}}, end: io.EOF},
		{name: "case09_strict_empty_frame", o: FrameOptions{Strict: true}, in: "\x0b\x1c\r\x0bA\x1c\r",
			want: []frame{{"", ErrEmptyFrame}, {"A", nil}}, end: io.EOF},
		{name: "case11_too_large", o: FrameOptions{MaxFrameSize: 8}, in: "\x0b" + big + "\x1c\r\x0bA\x1c\r",
			want: []frame{{big[:8], ErrFrameTooLarge}, {"A", nil}}, end: io.EOF},
		{name: "case11_exactly_the_limit", o: FrameOptions{MaxFrameSize: 8, Strict: true}, in: "\x0b" + big[:8] + "\x1c\r",
			want: []frame{{big[:8], nil}}, end: io.EOF},
	}
	for _, tt := range tests {
		for _, ch := range chunkings {
			t.Run(tt.name+"/"+ch.name, func(t *testing.T) {
				frames, junk, end := readAll(ch.wrap(strings.NewReader(tt.in)), tt.o)
				if !equalFrames(frames, tt.want) {
					t.Errorf("frames = %v, want %v", frames, tt.want)
				}
				if !errors.Is(end, tt.end) {
					t.Errorf("ended with %v, want %v", end, tt.end)
				}
				if junk != tt.junk {
					t.Errorf("junk = %d bytes, want %d", junk, tt.junk)
				}
			})
		}
	}
}

func equalFrames(a, b []frame) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].payload != b[i].payload || !errors.Is(a[i].err, b[i].err) {
			return false
		}
	}
	return true
}

// timeoutErr is a deadline error as a net.Conn returns it.
type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// scriptReader returns its steps in turn: a chunk of bytes, or an error.
type scriptReader struct{ steps []any }

func (s *scriptReader) Read(p []byte) (int, error) {
	if len(s.steps) == 0 {
		return 0, io.EOF
	}
	step := s.steps[0]
	s.steps = s.steps[1:]
	if err, ok := step.(error); ok {
		return 0, err
	}
	return copy(p, step.(string)), nil
}

// A deadline inside a frame is ErrFrameTimeout; between frames it is not. The
// frame can be resumed after either.
func TestFrameReaderTimeout(t *testing.T) {
	fr := NewFrameReader(&scriptReader{steps: []any{
		timeoutErr{}, "\x0bMSH|1", timeoutErr{}, "\x1c\r",
	}}, FrameOptions{})
	_, err := fr.ReadFrame()
	if !isTimeout(err) || errors.Is(err, ErrFrameTimeout) {
		t.Fatalf("idle timeout: err = %v, want a timeout that is not ErrFrameTimeout", err)
	}
	_, err = fr.ReadFrame()
	if !errors.Is(err, ErrFrameTimeout) || !isTimeout(err) {
		t.Fatalf("in-frame timeout: err = %v, want ErrFrameTimeout joined with the timeout", err)
	}
	p, err := fr.ReadFrame()
	if err != nil || string(p) != "MSH|1" {
		t.Fatalf("resumed frame = %q, %v; want MSH|1", p, err)
	}
}

// lazyReader produces 0x0B, n payload bytes, 0x1C 0x0D and then tail, without
// holding them in memory.
type lazyReader struct {
	n, sent int
	tail    string
	fr      *FrameReader // observed at each read
	maxBuf  int
}

func (l *lazyReader) Read(p []byte) (int, error) {
	if l.fr != nil {
		l.maxBuf = max(l.maxBuf, cap(l.fr.buf))
	}
	total := 1 + l.n + 2 + len(l.tail)
	if l.sent == total {
		return 0, io.EOF
	}
	i := 0
	for ; i < len(p) && l.sent < total; i++ {
		switch pos := l.sent; {
		case pos == 0:
			p[i] = StartBlock
		case pos <= l.n:
			k := copy(p[i:min(len(p), i+l.n+1-pos)], filler[:])
			l.sent += k
			i += k - 1
			continue
		case pos == l.n+1:
			p[i] = EndBlock
		case pos == l.n+2:
			p[i] = CarriageReturn
		default:
			p[i] = l.tail[pos-l.n-3]
		}
		l.sent++
	}
	return i, nil
}

// filler is the payload byte of lazyReader, in bulk.
var filler = [4 << 10]byte(bytes.Repeat([]byte{'A'}, 4<<10))

// Case 11: a 64 MiB frame against a 1 MiB limit is discarded as it streams past:
// the buffer never passes the limit by more than a read's worth, nothing like the
// frame is allocated, the first 64 KiB come back with ErrFrameTooLarge, and the
// next frame reads normally.
func TestFrameReaderCase11MemoryBounded(t *testing.T) {
	const limit = 1 << 20
	src := &lazyReader{n: 64 << 20, tail: "\x0bMSH|next\x1c\r"}
	fr := NewFrameReader(src, FrameOptions{MaxFrameSize: limit})
	src.fr = fr

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	p, err := fr.ReadFrame()
	runtime.ReadMemStats(&after)

	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("err = %v, want ErrFrameTooLarge", err)
	}
	if len(p) != truncatedSize || bytes.Count(p, []byte{'A'}) != len(p) {
		t.Errorf("payload: %d bytes, want the first %d of the frame", len(p), truncatedSize)
	}
	if bound := limit + 128<<10; src.maxBuf > bound || cap(fr.buf) > bound {
		t.Errorf("buffer reached %d bytes (now %d), want at most %d", src.maxBuf, cap(fr.buf), bound)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
		t.Errorf("reading the frame allocated %d bytes; want it discarded, not buffered", alloc)
	}
	p, err = fr.ReadFrame()
	if err != nil || string(p) != "MSH|next" {
		t.Fatalf("next frame = %q, %v", p, err)
	}
	// The memory the large frame needed is given back.
	if _, err := fr.ReadFrame(); err != io.EOF {
		t.Fatalf("end: %v, want io.EOF", err)
	}
	if len(fr.buf) > shrinkAbove {
		t.Errorf("buffer still %d bytes after the large frame", len(fr.buf))
	}
}

// A frame larger than the initial buffer but within the limit is read whole.
func TestFrameReaderGrowsForLargeFrame(t *testing.T) {
	for _, strict := range []bool{false, true} {
		src := &lazyReader{n: 3 << 20, tail: "\x0bB\x1c\r"}
		fr := NewFrameReader(iotest.HalfReader(src), FrameOptions{MaxFrameSize: 3 << 20, Strict: strict})
		p, err := fr.ReadFrame()
		if err != nil || len(p) != 3<<20 {
			t.Fatalf("strict=%v: %d bytes, %v; want %d bytes", strict, len(p), err, 3<<20)
		}
		if p, err := fr.ReadFrame(); err != nil || string(p) != "B" {
			t.Fatalf("strict=%v: next frame %q, %v", strict, p, err)
		}
	}
}

func TestAppendFrame(t *testing.T) {
	got := AppendFrame([]byte("x"), []byte("MSH|1"))
	if want := "x\x0bMSH|1\x1c\r"; string(got) != want {
		t.Errorf("AppendFrame = %q, want %q", got, want)
	}
}

// cycleReader serves the same bytes over and over without allocating.
type cycleReader struct {
	data []byte
	off  int
}

func (c *cycleReader) Read(p []byte) (int, error) {
	n := copy(p, c.data[c.off:])
	c.off = (c.off + n) % len(c.data)
	return n, nil
}

// fixtureFrames returns the fixture messages, each framed.
func fixtureFrames(tb testing.TB) (msgs [][]byte, stream []byte) {
	tb.Helper()
	names, err := filepath.Glob("../../fixtures/hl7v2/*.hl7")
	if err != nil || len(names) == 0 {
		tb.Fatalf("no fixtures: %v", err)
	}
	for _, name := range names {
		b, err := os.ReadFile(name)
		if err != nil {
			tb.Fatal(err)
		}
		msgs = append(msgs, b)
		stream = AppendFrame(stream, b)
	}
	return msgs, stream
}

func TestFrameReaderAllocatesNothing(t *testing.T) {
	_, stream := fixtureFrames(t)
	fr := NewFrameReader(&cycleReader{data: stream}, FrameOptions{})
	for range 100 { // warm: the buffer exists
		if _, err := fr.ReadFrame(); err != nil {
			t.Fatal(err)
		}
	}
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := fr.ReadFrame(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("ReadFrame allocates %v times per frame, want 0", allocs)
	}
	out := make([]byte, 0, len(stream))
	allocs = testing.AllocsPerRun(100, func() { out = AppendFrame(out[:0], stream[1:100]) })
	if allocs != 0 {
		t.Errorf("AppendFrame into a buffer with room allocates %v times, want 0", allocs)
	}
}

func BenchmarkFrameReader(b *testing.B) {
	data, err := os.ReadFile("../../fixtures/hl7v2/bench/adt_a01.hl7")
	if err != nil {
		b.Fatal(err)
	}
	var stream []byte
	for range 32 {
		stream = AppendFrame(stream, data)
	}
	fr := NewFrameReader(&cycleReader{data: stream}, FrameOptions{})
	b.ReportAllocs()
	b.SetBytes(int64(len(data) + 3))
	for b.Loop() {
		if _, err := fr.ReadFrame(); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzFrameReader(f *testing.F) {
	msgs, stream := fixtureFrames(f)
	for _, m := range msgs {
		f.Add(AppendFrame(nil, m), false, uint16(0))
	}
	f.Add(stream, false, uint16(0))
	f.Add(stream, true, uint16(512))
	for _, junk := range []string{
		"", "\x0b", "\x1c", "\r\n", "junk\x0bMSH|1\x1c\r", "\x0bA\x1c\x0bB\x1c\r", "\x0b\x1c\r",
		"\x0bA\x0bB\x1c\r", "\x0bMSH|A\x1cPID\r\x0bB\x1c\r", "\x0b" + strings.Repeat("Z", 300) + "\x1c\r",
		"\x1c\r\x0b\x0b\x1c\x1c\r\r", "\x0bMSH|open frame",
	} {
		f.Add([]byte(junk), false, uint16(100))
		f.Add([]byte(junk), true, uint16(100))
	}
	f.Fuzz(func(t *testing.T, data []byte, strict bool, size uint16) {
		limit := 1 + int(size)%4096
		o := FrameOptions{MaxFrameSize: limit, Strict: strict}

		// Arbitrary input: no panic, no payload over the limit, and an end.
		fr := NewFrameReader(iotest.HalfReader(bytes.NewReader(data)), o)
		for i := 0; ; i++ {
			p, err := fr.ReadFrame()
			if len(p) > limit {
				t.Fatalf("payload of %d bytes, limit %d", len(p), limit)
			}
			if err != nil && !isAnswerable(err) {
				break
			}
			if i > len(data) {
				t.Fatalf("%d frames from %d bytes", i, len(data))
			}
		}

		// Round trip: any payload without an end block comes back as it was sent.
		payload := bytes.ReplaceAll(data, []byte{EndBlock}, nil)
		payload = payload[:min(len(payload), limit)]
		framed := AppendFrame(AppendFrame(nil, payload), payload)
		fr = NewFrameReader(iotest.OneByteReader(bytes.NewReader(framed)), o)
		var want error
		switch {
		case len(payload) == 0:
			want = ErrEmptyFrame
		case strict && bytes.IndexByte(payload, StartBlock) >= 0:
			want = ErrStartInPayload
		}
		for range 2 {
			p, err := fr.ReadFrame()
			if !bytes.Equal(p, payload) || !errors.Is(err, want) || (err != nil) != (want != nil) {
				t.Fatalf("round trip: got %q, %v; want %q, %v", p, err, payload, want)
			}
		}
		if _, err := fr.ReadFrame(); err != io.EOF {
			t.Fatalf("after round trip: %v, want io.EOF", err)
		}
	})
}

// A read deadline set on a real connection surfaces as ErrFrameTimeout inside a
// frame.
func TestFrameReaderDeadlineOnConn(t *testing.T) {
	a, b := netPipe(t)
	fr := NewFrameReader(a, FrameOptions{})
	a.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	go b.Write([]byte("\x0bMSH|partial"))
	_, err := fr.ReadFrame()
	if !errors.Is(err, ErrFrameTimeout) {
		t.Fatalf("err = %v, want ErrFrameTimeout", err)
	}
}
