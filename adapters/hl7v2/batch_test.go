package hl7v2_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
)

// fixtureFile reads a fixture from fixtures/hl7v2.
func fixtureFile(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "fixtures", "hl7v2", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// isViewOf reports whether part is a slice of whole's memory, not a copy.
func isViewOf(part, whole []byte) bool {
	off := cap(whole) - cap(part)
	return len(part) > 0 && off >= 0 && off+len(part) <= len(whole) && &whole[off] == &part[0]
}

// checkMessages checks that msgs are views of in, each a message that parses, in the
// order of their MSH-10 control ids, each ending with the terminator term.
func checkMessages(t *testing.T, in []byte, msgs [][]byte, term string, ids ...string) {
	t.Helper()
	if len(msgs) != len(ids) {
		t.Fatalf("got %d messages, want %d", len(msgs), len(ids))
	}
	for i, msg := range msgs {
		if !isViewOf(msg, in) {
			t.Errorf("message %d is not a view of the input", i+1)
		}
		if !bytes.HasPrefix(msg, []byte("MSH")) || !bytes.HasSuffix(msg, []byte("PV1|1|N"+term)) {
			t.Errorf("message %d = %q..%q, want MSH..PV1|1|N%q", i+1, msg[:min(len(msg), 8)], msg[max(0, len(msg)-8):], term)
		}
		m, err := hl7v2.Parse(msg)
		if err != nil {
			t.Fatalf("message %d: %v", i+1, err)
		}
		if got := m.Get(hl7v2.MustParsePath("MSH-10")).String(); got != ids[i] {
			t.Errorf("message %d: MSH-10 = %q, want %q", i+1, got, ids[i])
		}
		if got := m.Get(hl7v2.MustParsePath("PID-32")).String(); got != "NSTS01" {
			t.Errorf("message %d: PID-32 = %q, want NSTS01", i+1, got)
		}
	}
}

const (
	ctl1, ctl2, ctl3 = "ADT000000201", "ADT000000202", "ADT000000203"
)

func TestSplitBatchFile(t *testing.T) {
	in := fixtureFile(t, "batch_file.hl7")
	f, err := hl7v2.SplitBatch(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name     string
		seg      []byte
		wantText string
	}{
		{"file header", f.Header, "FHS|^~\\&|PAS|RX1|SPINEBRIDGE|NHSDIGITAL|20261121020000+0000||ADT_NIGHTLY_20261121|Nightly demographics|F0001"},
		{"file trailer", f.Trailer, "FTS|2|End of file"},
		{"batch 1 header", f.Batches[0].Header, "BHS|^~\\&|PAS|RX1|SPINEBRIDGE|NHSDIGITAL|20261121020000+0000||||B0001"},
		{"batch 1 trailer", f.Batches[0].Trailer, "BTS|2|Nightly batch 1"},
		{"batch 2 header", f.Batches[1].Header, "BHS|^~\\&|PAS|RX1|SPINEBRIDGE|NHSDIGITAL|20261121020000+0000||||B0002"},
		{"batch 2 trailer", f.Batches[1].Trailer, "BTS|1|Nightly batch 2"},
	} {
		if string(c.seg) != c.wantText {
			t.Errorf("%s = %q, want %q", c.name, c.seg, c.wantText)
		}
		if !isViewOf(c.seg, in) {
			t.Errorf("%s is not a view of the input", c.name)
		}
	}
	if len(f.Batches) != 2 {
		t.Fatalf("got %d batches, want 2", len(f.Batches))
	}
	checkMessages(t, in, f.Batches[0].Messages, "\r", ctl1, ctl2)
	checkMessages(t, in, f.Batches[1].Messages, "\r", ctl3)

	// The messages and batch segments, laid end to end, are the whole input.
	var joined []byte
	joined = append(append(joined, f.Header...), '\r')
	for _, b := range f.Batches {
		joined = append(append(joined, b.Header...), '\r')
		for _, m := range b.Messages {
			joined = append(joined, m...)
		}
		joined = append(append(joined, b.Trailer...), '\r')
	}
	joined = append(append(joined, f.Trailer...), '\r')
	if !bytes.Equal(joined, in) {
		t.Error("file parts do not add up to the input")
	}
}

// TestSplitBatchFraming splits the same file and messages with every framing that
// Message.Parse accepts.
func TestSplitBatchFraming(t *testing.T) {
	file := fixtureFile(t, "batch_file.hl7")
	plain := fixtureFile(t, "batch_no_headers.hl7")
	crlf := func(b []byte) []byte { return bytes.ReplaceAll(b, []byte("\r"), []byte("\r\n")) }
	lf := func(b []byte) []byte { return bytes.ReplaceAll(b, []byte("\r"), []byte("\n")) }
	// mixed ends the segments of each message CR, LF and CRLF in turn.
	mixed := func(b []byte) []byte {
		segs := bytes.SplitAfter(b, []byte("\r"))
		var out []byte
		for i, s := range segs {
			switch i % 3 {
			case 1:
				s = lf(s)
			case 2:
				s = crlf(s)
			}
			out = append(out, s...)
		}
		return out
	}
	bommed := func(b []byte) []byte { return append([]byte{0xEF, 0xBB, 0xBF}, b...) }
	blankLines := func(b []byte) []byte {
		return bytes.ReplaceAll(b, []byte("PV1|1|N\r"), []byte("PV1|1|N\r\r \t\r"))
	}
	for _, c := range []struct {
		name    string
		in      []byte
		batches int
		term    string // terminator of each message's last segment
	}{
		{"file CR", file, 2, "\r"},
		{"file LF", lf(file), 2, "\n"},
		{"file CRLF", crlf(file), 2, "\r\n"},
		{"file BOM", bommed(file), 2, "\r"},
		{"file blank segments", blankLines(file), 2, "\r"},
		{"file trailing NUL and spaces", append(bytes.Clone(file), "\r\n  \x00\x00"...), 2, "\r"},
		{"plain CR", plain, 1, "\r"},
		{"plain LF", lf(plain), 1, "\n"},
		{"plain CRLF", crlf(plain), 1, "\r\n"},
		{"plain BOM CRLF", bommed(crlf(plain)), 1, "\r\n"},
		{"plain blank segments", blankLines(plain), 1, "\r"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, err := hl7v2.SplitBatch(c.in)
			if err != nil {
				t.Fatal(err)
			}
			if len(f.Batches) != c.batches {
				t.Fatalf("got %d batches, want %d", len(f.Batches), c.batches)
			}
			msgs, err := hl7v2.SplitMessages(c.in)
			if err != nil {
				t.Fatal(err)
			}
			checkMessages(t, c.in, msgs, c.term, ctl1, ctl2, ctl3)
		})
	}

	t.Run("mixed", func(t *testing.T) {
		in := mixed(plain)
		msgs, err := hl7v2.SplitMessages(in)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) != 3 {
			t.Fatalf("got %d messages, want 3", len(msgs))
		}
		var joined []byte
		for _, m := range msgs {
			if _, err := hl7v2.Parse(m); err != nil {
				t.Error(err)
			}
			joined = append(joined, m...)
		}
		if !bytes.Equal(joined, in) {
			t.Error("messages do not add up to the input")
		}
	})

	t.Run("last segment unterminated", func(t *testing.T) {
		in := bytes.TrimSuffix(plain, []byte("\r"))
		msgs, err := hl7v2.SplitMessages(in)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) != 3 || !bytes.HasSuffix(msgs[2], []byte("PV1|1|N")) || !bytes.HasSuffix(msgs[1], []byte("PV1|1|N\r")) {
			t.Errorf("got %d messages, last ending %q", len(msgs), msgs[len(msgs)-1][max(0, len(msgs[len(msgs)-1])-4):])
		}
	})
}

func TestSplitBatchNoHeaders(t *testing.T) {
	in := fixtureFile(t, "batch_no_headers.hl7")
	f, err := hl7v2.SplitBatch(in)
	if err != nil {
		t.Fatal(err)
	}
	if f.Header != nil || f.Trailer != nil || len(f.Batches) != 1 || f.Batches[0].Header != nil || f.Batches[0].Trailer != nil {
		t.Fatalf("got %+v, want one batch without headers", f)
	}
	checkMessages(t, in, f.Batches[0].Messages, "\r", ctl1, ctl2, ctl3)
}

func TestSplitMessages(t *testing.T) {
	file := fixtureFile(t, "batch_file.hl7")
	single := fixtureFile(t, "charset_utf8.hl7")
	for _, c := range []struct {
		name string
		in   []byte
		want int
	}{
		{"one message", single, 1},
		{"several", fixtureFile(t, "batch_no_headers.hl7"), 3},
		{"batch file", file, 3},
		{"file of messages without batch headers", []byte("FHS|^~\\&\r" + string(single) + string(single) + "FTS|1\r"), 2},
		{"headerless batch then a batch", []byte(string(single) + "BHS|^~\\&\r" + string(single) + "BTS|1\r"), 2},
		{"empty batch", []byte("BHS|^~\\&|PAS\rBTS|0\r"), 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			msgs, err := hl7v2.SplitMessages(c.in)
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) != c.want {
				t.Fatalf("got %d messages, want %d", len(msgs), c.want)
			}
			for i, m := range msgs {
				if !isViewOf(m, c.in) {
					t.Errorf("message %d is not a view of the input", i+1)
				}
				if _, err := hl7v2.Parse(m); err != nil {
					t.Errorf("message %d: %v", i+1, err)
				}
			}
		})
	}
}

func TestSplitBatchCountMismatch(t *testing.T) {
	for _, c := range []struct {
		name         string
		in           []byte
		wantIndex    int
		wantLocation string
	}{
		{"BTS", fixtureFile(t, "batch_count_mismatch.hl7"), 13, "BTS[1]-1"},
		{"FTS", fixtureFile(t, "batch_fts_count_mismatch.hl7"), 21, "FTS-1"},
		{"BTS not a number", []byte("BHS|^~\\&\r" + string(fixtureFile(t, "charset_utf8.hl7")) + "BTS|one\r"), 7, "BTS[1]-1"},
		{"BTS with another separator", []byte("BHS|^~\\&\r" + string(fixtureFile(t, "charset_utf8.hl7")) + "BTS#1\r"), 7, "BTS[1]-1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, err := hl7v2.SplitBatch(c.in)
			if !errors.Is(err, hl7v2.ErrBatchCount) {
				t.Fatalf("err = %v, want ErrBatchCount", err)
			}
			var pe *hl7v2.ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("err %T is not a *ParseError", err)
			}
			if pe.Index != c.wantIndex || pe.Location.String() != c.wantLocation {
				t.Errorf("error at segment %d %s, want segment %d %s", pe.Index, pe.Location, c.wantIndex, c.wantLocation)
			}
			if got := string(c.in[pe.Offset-4 : pe.Offset-1]); got != c.wantLocation[:3] {
				t.Errorf("offset %d is in %q, want field 1 of %s", pe.Offset, got, c.wantLocation[:3])
			}
			if f == nil {
				t.Fatal("no File returned with the count mismatch")
			}
			msgs, err := hl7v2.SplitMessages(c.in)
			if !errors.Is(err, hl7v2.ErrBatchCount) {
				t.Errorf("SplitMessages err = %v, want ErrBatchCount", err)
			}
			n := 0
			for _, b := range f.Batches {
				n += len(b.Messages)
			}
			if n != len(msgs) || n == 0 {
				t.Fatalf("File holds %d messages, SplitMessages %d", n, len(msgs))
			}
			for i, m := range msgs {
				if _, err := hl7v2.Parse(m); err != nil {
					t.Errorf("message %d: %v", i+1, err)
				}
			}
		})
	}

	t.Run("counts read with the header's separator", func(t *testing.T) {
		in := []byte("FHS#^~\\&\rBHS#^~\\&\rMSH#^~\\&#PAS#RX1\rPID#1\rMSH#^~\\&#PAS#RX1\rBTS#2#two\rFTS#1\r")
		f, err := hl7v2.SplitBatch(in)
		if err != nil {
			t.Fatal(err)
		}
		if len(f.Batches) != 1 || len(f.Batches[0].Messages) != 2 {
			t.Fatalf("got %d batches", len(f.Batches))
		}
	})

	t.Run("empty or absent counts are not checked", func(t *testing.T) {
		for _, trailer := range []string{"BTS", "BTS|", "BTS||comment", "BTS| "} {
			in := []byte("BHS|^~\\&\rMSH|^~\\&|PAS\r" + trailer + "\r")
			if _, err := hl7v2.SplitBatch(in); err != nil {
				t.Errorf("%q: %v", trailer, err)
			}
		}
	})
}

func TestSplitBatchStructureErrors(t *testing.T) {
	msg := "MSH|^~\\&|PAS|RX1\rPID|1||9990000018^^^NHS^NH||BRONTË^ZOË\r"
	for _, c := range []struct {
		name      string
		in        string
		wantErr   error
		wantIndex int
		wantSeg   string
	}{
		{"BTS without BHS", string(fixtureFile(t, "batch_unmatched_trailer.hl7")), hl7v2.ErrBatch, 6, "BTS"},
		{"FTS without FHS", "BHS|^~\\&\r" + msg + "BTS|1\rFTS|1\r", hl7v2.ErrBatch, 5, "FTS"},
		{"FHS not first", msg + "FHS|^~\\&\r", hl7v2.ErrBatch, 3, "FHS"},
		{"FHS twice", "FHS|^~\\&\rFHS|^~\\&\r", hl7v2.ErrBatch, 2, "FHS"},
		{"segment before MSH", "PID|1||9990000018^^^NHS^NH\r" + msg, hl7v2.ErrNoHeader, 1, ""},
		{"segment after BHS", "FHS|^~\\&\rBHS|^~\\&\rEVN|A31\r" + msg, hl7v2.ErrBatch, 3, "EVN"},
		{"segment after BTS", "BHS|^~\\&\r" + msg + "BTS|1\rNTE|1\r", hl7v2.ErrBatch, 5, "NTE"},
		{"unreadable line before MSH", "ZOË BRONTË\r" + msg, hl7v2.ErrNoHeader, 1, ""},
		{"BHS inside a batch", "BHS|^~\\&\r" + msg + "BHS|^~\\&\r" + msg + "BTS|1\r", hl7v2.ErrBatch, 4, "BHS"},
		{"BTS twice", "BHS|^~\\&\r" + msg + "BTS|1\rBTS|1\r", hl7v2.ErrBatch, 5, "BTS"},
		{"MSH after FTS", "FHS|^~\\&\r" + msg + "FTS|1\r" + msg, hl7v2.ErrBatch, 5, "MSH"},
		{"BHS after FTS", "FHS|^~\\&\rFTS|0\rBHS|^~\\&\r", hl7v2.ErrBatch, 3, "BHS"},
		{"empty", "", hl7v2.ErrEmpty, 0, ""},
		{"only blank lines", "\xEF\xBB\xBF\r\n \r\x00", hl7v2.ErrEmpty, 0, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, err := hl7v2.SplitBatch([]byte(c.in))
			if !errors.Is(err, c.wantErr) {
				t.Fatalf("err = %v, want %v", err, c.wantErr)
			}
			if f != nil {
				t.Error("a File was returned with a structural error")
			}
			var pe *hl7v2.ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("err %T is not a *ParseError", err)
			}
			if pe.Index != c.wantIndex || pe.Segment != c.wantSeg {
				t.Errorf("error at segment %d %q, want %d %q", pe.Index, pe.Segment, c.wantIndex, c.wantSeg)
			}
			for _, value := range []string{"9990000018", "BRONT", "ZO"} {
				if strings.Contains(err.Error(), value) {
					t.Errorf("error %q shows a value from the message", err)
				}
			}
			if msgs, err := hl7v2.SplitMessages([]byte(c.in)); msgs != nil || !errors.Is(err, c.wantErr) {
				t.Errorf("SplitMessages = %d messages, %v", len(msgs), err)
			}
		})
	}
}

func FuzzSplitBatch(f *testing.F) {
	for _, name := range []string{"batch_file.hl7", "batch_count_mismatch.hl7", "batch_no_headers.hl7", "batch_unmatched_trailer.hl7", "charset_8859_1.hl7"} {
		f.Add(fixtureFile(f, name))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		file, err := hl7v2.SplitBatch(in)
		if err != nil && !errors.As(err, new(*hl7v2.ParseError)) {
			t.Fatalf("error %T is not a *ParseError", err)
		}
		if (file == nil) != (err != nil && !errors.Is(err, hl7v2.ErrBatchCount)) {
			t.Fatalf("File %v with error %v", file != nil, err)
		}
		if file == nil {
			return
		}
		for _, b := range file.Batches {
			for _, m := range b.Messages {
				if !bytes.HasPrefix(m, []byte("MSH")) || !isViewOf(m, in) {
					t.Fatalf("message %q is not a view of the input starting MSH", m)
				}
			}
		}
	})
}

func BenchmarkSplitMessages(b *testing.B) {
	in := fixtureFile(b, "batch_file.hl7")
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if msgs, err := hl7v2.SplitMessages(in); err != nil || len(msgs) != 3 {
			b.Fatal(len(msgs), err)
		}
	}
}
