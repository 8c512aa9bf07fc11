package hl7v2_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
)

// sameMemory reports whether a and b start at the same byte: one is not a copy.
func sameMemory(a, b []byte) bool { return len(a) > 0 && len(b) > 0 && &a[0] == &b[0] }

func TestDecodeTextCharsetNames(t *testing.T) {
	for _, c := range []struct {
		names []string // a name and its aliases
		src   string
		want  string
	}{
		{[]string{"", "ASCII", "ISO IR6", "ascii", " iso ir6 "}, "Bronte^Zoe", "Bronte^Zoe"},
		{[]string{"8859/1", "ISO IR100", "iso ir100"}, "Bront\xEB^Zo\xEB \xA4", "Brontë^Zoë ¤"},
		{[]string{"8859/2", "ISO IR101"}, "\xA3\xF3d\xBC", "Łódź"},
		{[]string{"8859/3", "ISO IR109"}, "\xA1", "Ħ"},
		{[]string{"8859/4", "ISO IR110"}, "\xA2", "ĸ"},
		{[]string{"8859/5", "ISO IR144"}, "\xB0", "А"},
		{[]string{"8859/6", "ISO IR127"}, "\xC7", "ا"},
		{[]string{"8859/7", "ISO IR126"}, "\xC1", "Α"},
		{[]string{"8859/8", "ISO IR138"}, "\xE0", "א"},
		{[]string{"8859/9", "ISO IR148"}, "\xF0", "ğ"},
		{[]string{"8859/15", " 8859/15\t"}, "\xA4 9.90 \xBD", "€ 9.90 œ"},
		{[]string{"UNICODE UTF-8", "UTF-8", "ISO IR192", "unicode utf-8", " Utf-8 "}, "Ó Briain^Seán", "Ó Briain^Seán"},
	} {
		for _, name := range c.names {
			got, err := hl7v2.DecodeText(nil, []byte(c.src), []byte(name))
			if err != nil || string(got) != c.want {
				t.Errorf("DecodeText(%q, %q) = %q, %v; want %q", c.src, name, got, err, c.want)
			}
		}
	}
}

func TestDecodeTextMismatch(t *testing.T) {
	const (
		latin1 = "Bront\xEB^Zo\xEB"
		utf8   = "Brontë^Zoë"
	)
	for _, c := range []struct {
		name, charset, src, want string
		wantErr                  error
	}{
		{"UTF-8 declared, Latin-1 bytes", "UNICODE UTF-8", latin1, utf8, hl7v2.ErrCharsetMismatch},
		{"UTF-8 declared, Windows-1252 bytes", "UTF-8", "O\x92Brien paid \x809.90", "O’Brien paid €9.90", hl7v2.ErrCharsetMismatch},
		{"UTF-8 declared, truncated sequence", "UTF-8", "Se\xC3", "SeÃ", hl7v2.ErrCharsetMismatch},
		{"ASCII declared, UTF-8 bytes", "ASCII", utf8, utf8, hl7v2.ErrCharsetMismatch},
		{"ASCII declared, Latin-1 bytes", "ISO IR6", latin1, utf8, hl7v2.ErrCharsetMismatch},
		{"undeclared, UTF-8 bytes", "", utf8, utf8, nil},
		{"undeclared, Latin-1 bytes", "", latin1, utf8, hl7v2.ErrCharsetMismatch},
		{"undeclared, ASCII", " ", "Bronte", "Bronte", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := hl7v2.DecodeText(make([]byte, 0, 64), []byte(c.src), []byte(c.charset))
			if string(got) != c.want || !errors.Is(err, c.wantErr) || (err == nil) != (c.wantErr == nil) {
				t.Errorf("got %q, %v; want %q, %v", got, err, c.want, c.wantErr)
			}
		})
	}
}

func TestDecodeTextUnknownCharset(t *testing.T) {
	for _, name := range []string{"UNICODE", "UNICODE UTF-16", "UNICODE UTF-32", "ISO IR87", "8859/16", "WINDOWS-1252", "UTF8"} {
		got, err := hl7v2.DecodeText(nil, []byte("Bronte"), []byte(name))
		if !errors.Is(err, hl7v2.ErrUnknownCharset) || got != nil {
			t.Errorf("%q: got %q, %v; want nil, ErrUnknownCharset", name, got, err)
			continue
		}
		if !strings.Contains(err.Error(), `"`+name+`"`) {
			t.Errorf("%q: error %q does not name the character set", name, err)
		}
	}
	long := strings.Repeat("X", 100)
	if _, err := hl7v2.DecodeText(nil, nil, []byte(long)); err == nil || strings.Contains(err.Error(), long) {
		t.Errorf("a long name is quoted whole: %v", err)
	}
}

func TestDecodeTextNoCopy(t *testing.T) {
	buf := make([]byte, 0, 64)
	for _, c := range []struct{ charset, src string }{
		{"", "9990000018^^^NHS^NH"},
		{"8859/1", "LEEDS CITY MEDICAL PRACTICE^^B86001"},
		{"UNICODE UTF-8", "Ó Briain^Seán"},
		{"", "Ó Briain^Seán"},
	} {
		src := []byte(c.src)
		got, err := hl7v2.DecodeText(buf, src, []byte(c.charset))
		if err != nil || !sameMemory(got, src) || len(got) != len(src) {
			t.Errorf("DecodeText(%q, %q) copied (err %v)", c.src, c.charset, err)
		}
	}
	// Decoding that does copy uses buf's memory.
	got, err := hl7v2.DecodeText(buf, []byte("Bront\xEB"), []byte("8859/1"))
	if err != nil || string(got) != "Brontë" || !sameMemory(got, buf[:1]) {
		t.Errorf("got %q, %v, in buf %v", got, err, sameMemory(got, buf[:1]))
	}
}

func TestCharset(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"8859/1 fixture", string(fixtureFile(t, "charset_8859_1.hl7")), "8859/1"},
		{"8859/15 fixture", string(fixtureFile(t, "charset_8859_15.hl7")), "8859/15"},
		{"UTF-8 fixture", string(fixtureFile(t, "charset_utf8.hl7")), "UNICODE UTF-8"},
		{"repeated", "MSH|^~\\&|PAS|RX1|||||ADT^A31|1|P|2.5.1||||||ASCII~ISO IR87\r", "ASCII"},
		{"absent", string(fixtureFile(t, "batch_no_headers.hl7")), ""},
	} {
		m, err := hl7v2.Parse([]byte(c.in))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := string(m.Charset()); got != c.want {
			t.Errorf("%s: Charset() = %q, want %q", c.name, got, c.want)
		}
	}
	if got := new(hl7v2.Message).Charset(); got != nil {
		t.Errorf("Charset of an empty Message = %q", got)
	}
}

func TestText(t *testing.T) {
	for _, c := range []struct {
		fixture, path, want string
		wantErr             error
	}{
		{"charset_8859_1.hl7", "PID-5.1", "Brontë", nil},
		{"charset_8859_1.hl7", "PID-5.2", "Zoë", nil},
		// \T\ is the subcomponent separator, \.br\ a line break and \XE9\ a Latin-1 é.
		{"charset_8859_1.hl7", "NTE-3", "Prefers Zoë & speaks Français\nCarer: Seán Ó Briain é", nil},
		{"charset_8859_1.hl7", "PID-3.1", "9990000018", nil},
		{"charset_8859_15.hl7", "PID-5", "Ó Briain^Seán^^^Mr", nil},
		{"charset_8859_15.hl7", "NTE-3", "Prescription charge €9.90 paid", nil},
		{"charset_utf8.hl7", "PID-5.1", "Ó Briain", nil},
		{"charset_utf8.hl7", "PID-5.2", "Seán", nil},
		{"charset_mismatch.hl7", "PID-5.1", "Brontë", hl7v2.ErrCharsetMismatch},
		{"charset_mismatch.hl7", "PID-5.2", "Zoë", hl7v2.ErrCharsetMismatch},
		{"charset_mismatch.hl7", "PID-3[1].1", "9990000018", nil},
		{"charset_mismatch.hl7", "PD1-3.3", "B86001", nil},
	} {
		t.Run(c.fixture+"/"+c.path, func(t *testing.T) {
			m, err := hl7v2.Parse(fixtureFile(t, c.fixture))
			if err != nil {
				t.Fatal(err)
			}
			v := m.Get(hl7v2.MustParsePath(c.path))
			got, err := m.Text(nil, v)
			if string(got) != c.want || !errors.Is(err, c.wantErr) || (err == nil) != (c.wantErr == nil) {
				t.Errorf("got %q, %v; want %q, %v", got, err, c.want, c.wantErr)
			}
			if !utf8.Valid(got) {
				t.Errorf("%q is not UTF-8", got)
			}
		})
	}
}

func TestTextNoCopy(t *testing.T) {
	m, err := hl7v2.Parse(fixtureFile(t, "charset_utf8.hl7"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 0, 64)
	for _, path := range []string{"PID-5.1", "PID-3.1", "PD1-3"} {
		v := m.Get(hl7v2.MustParsePath(path))
		got, err := m.Text(buf, v)
		if err != nil || !sameMemory(got, v.Bytes()) || len(got) != len(v.Bytes()) {
			t.Errorf("%s: Text copied %q (err %v)", path, got, err)
		}
	}
}

func TestTextWarnings(t *testing.T) {
	const head = "MSH|^~\\&|PAS|RX1|SPINEBRIDGE|NHSDIGITAL|20261121020000+0000||ADT^A31^ADT_A05|ADT000000305|P|2.5.1|||AL|NE|GBR|"
	for _, c := range []struct {
		name, charset, nte, want string
		wantErr                  error
	}{
		{"escaped Latin-1 byte in UTF-8", "UNICODE UTF-8", "Se\\XE1\\n", "Seán", hl7v2.ErrCharsetMismatch},
		{"escaped UTF-8 in UTF-8", "UNICODE UTF-8", "Se\\XC3A1\\n", "Seán", nil},
		{"unterminated escape", "8859/1", "Zo\xEB \\T", "Zoë \\T", hl7v2.ErrEscape},
		{"bad escape and mismatch: escape reported first", "UTF-8", "Zo\xEB \\Q\\", "Zoë \\Q\\", hl7v2.ErrEscape},
		{"undeclared, Latin-1", "", "Zo\xEB", "Zoë", hl7v2.ErrCharsetMismatch},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, err := hl7v2.Parse([]byte(head + c.charset + "\rNTE|1||" + c.nte + "\r"))
			if err != nil {
				t.Fatal(err)
			}
			got, err := m.Text(make([]byte, 0, 8), m.Get(hl7v2.MustParsePath("NTE-3")))
			if string(got) != c.want || !errors.Is(err, c.wantErr) || (err == nil) != (c.wantErr == nil) {
				t.Errorf("got %q, %v; want %q, %v", got, err, c.want, c.wantErr)
			}
		})
	}

	t.Run("unknown character set", func(t *testing.T) {
		m, err := hl7v2.Parse([]byte(head + "UNICODE UTF-16\rNTE|1||Bronte\r"))
		if err != nil {
			t.Fatal(err)
		}
		got, err := m.Text(nil, m.Get(hl7v2.MustParsePath("NTE-3")))
		if got != nil || !errors.Is(err, hl7v2.ErrUnknownCharset) {
			t.Errorf("got %q, %v; want nil, ErrUnknownCharset", got, err)
		}
	})
}

// TestTextAllocatesNothing holds Message.Text to its promise: with a buffer big
// enough, unescaping and decoding perform no heap allocation.
func TestTextAllocatesNothing(t *testing.T) {
	for _, c := range []struct{ fixture, path, want string }{
		{"charset_8859_1.hl7", "NTE-3", "Prefers Zoë & speaks Français\nCarer: Seán Ó Briain é"},
		{"charset_8859_1.hl7", "PID-5.1", "Brontë"},
		{"charset_mismatch.hl7", "PID-5.2", "Zoë"},
		{"charset_utf8.hl7", "PID-5.1", "Ó Briain"},
	} {
		m, err := hl7v2.Parse(fixtureFile(t, c.fixture))
		if err != nil {
			t.Fatal(err)
		}
		v := m.Get(hl7v2.MustParsePath(c.path))
		buf := make([]byte, 0, 4*len(v.Bytes()))
		var got []byte
		allocs := testing.AllocsPerRun(100, func() {
			got, _ = m.Text(buf, v)
		})
		if allocs != 0 {
			t.Errorf("%s %s: %v allocations per Text, want 0", c.fixture, c.path, allocs)
		}
		if string(got) != c.want {
			t.Errorf("%s %s: got %q, want %q", c.fixture, c.path, got, c.want)
		}
	}
}

func FuzzDecodeText(f *testing.F) {
	for _, name := range []string{"", "ASCII", "8859/1", "8859/15", "UNICODE UTF-8"} {
		f.Add([]byte("Bront\xEB^Zo\xEB \xA4 Ó Briain"), name)
	}
	f.Fuzz(func(t *testing.T, src []byte, charset string) {
		got, err := hl7v2.DecodeText(nil, src, []byte(charset))
		if errors.Is(err, hl7v2.ErrUnknownCharset) {
			return
		}
		if !utf8.Valid(got) {
			t.Fatalf("DecodeText(%q, %q) = %q, not UTF-8", src, charset, got)
		}
	})
}

func BenchmarkText(b *testing.B) {
	m, err := hl7v2.Parse(fixtureFile(b, "charset_8859_1.hl7"))
	if err != nil {
		b.Fatal(err)
	}
	v := m.Get(hl7v2.MustParsePath("NTE-3"))
	buf := make([]byte, 0, 4*len(v.Bytes()))
	b.ReportAllocs()
	b.SetBytes(int64(len(v.Bytes())))
	for b.Loop() {
		if _, err := m.Text(buf, v); err != nil {
			b.Fatal(err)
		}
	}
}
