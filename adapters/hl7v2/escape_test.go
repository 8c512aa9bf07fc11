package hl7v2_test

import (
	"errors"
	"testing"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
)

func TestUnescape(t *testing.T) {
	d := hl7v2.DefaultDelimiters
	d7 := d
	d7.Truncation = '#'
	cases := []struct {
		d         hl7v2.Delimiters
		in, want  string
		formatted string // UnescapeFormatted; "" means same as want
		warn      bool
	}{
		{d, `plain text`, `plain text`, "", false},
		{d, `A\F\B\S\C\T\D\R\E\E\F`, `A|B^C&D~E\F`, "", false},
		{d, `line\.br\next`, "line\nnext", `line\.br\next`, false},
		{d, `\X0D0A\`, "\r\n", "", false},
		{d, `\X41c3a9\`, "A\xc3\xa9", "", false},
		{d, `\H\bold\N\`, `\H\bold\N\`, "", false},
		{d, `\C2842\x\M2442\y\ZLOCAL\`, `\C2842\x\M2442\y\ZLOCAL\`, "", false},
		{d, `\.sp2\ \.in+4\`, `\.sp2\ \.in+4\`, "", false},
		{d, `\P\`, `\P\`, "", true},
		{d7, `\P\`, `#`, "", false},
		{d, `SMITH\T`, `SMITH\T`, "", true},
		{d, `lone \`, `lone \`, "", true},
		{d, `\X4\`, `\X4\`, "", true},
		{d, `\XZZ\ok\F\`, `\XZZ\ok|`, "", true},
		{d, `\Q\`, `\Q\`, "", true},
		{d, `\\`, `\\`, "", true},
		{hl7v2.Delimiters{Field: '#', Component: '$', Repetition: '*', Escape: '@', Subcomponent: '%'}, `O@S@BRIAN@F@`, `O$BRIAN#`, "", false},
	}
	for _, c := range cases {
		got, err := c.d.Unescape(nil, []byte(c.in))
		if string(got) != c.want || (err != nil) != c.warn {
			t.Errorf("Unescape(%q) = %q, %v; want %q, warning %v", c.in, got, err, c.want, c.warn)
		}
		if err != nil && !errors.Is(err, hl7v2.ErrEscape) {
			t.Errorf("Unescape(%q) err = %v, want ErrEscape", c.in, err)
		}
		want := c.formatted
		if want == "" {
			want = c.want
		}
		if got, _ := c.d.UnescapeFormatted(nil, []byte(c.in)); string(got) != want {
			t.Errorf("UnescapeFormatted(%q) = %q, want %q", c.in, got, want)
		}
	}
}

// With no escape character the raw view comes back: no copy, no buffer used.
func TestUnescapeNoEscapeReturnsView(t *testing.T) {
	src := []byte("THOMPSON")
	got, err := hl7v2.DefaultDelimiters.Unescape(make([]byte, 0, 64), src)
	if err != nil || &got[0] != &src[0] {
		t.Errorf("Unescape copied a value with no escapes")
	}
}

func TestEscapeRoundTrip(t *testing.T) {
	d := hl7v2.DefaultDelimiters
	d.Truncation = '#'
	for _, in := range []string{"", "plain", `a|b^c&d~e\f#g`, "two\r\nlines", `\\||^^`, "£ sterling é"} {
		esc := d.AppendEscaped(nil, []byte(in))
		for _, c := range esc {
			if c == '|' || c == '^' || c == '&' || c == '~' || c == '#' || c == '\r' || c == '\n' {
				t.Errorf("AppendEscaped(%q) = %q still holds a delimiter", in, esc)
			}
		}
		back, err := d.Unescape(nil, esc)
		if err != nil || string(back) != in {
			t.Errorf("round trip of %q = %q, %v", in, back, err)
		}
	}
}

func TestUnescapeFixture(t *testing.T) {
	m, err := hl7v2.Parse(fixture(t, "escapes.hl7"))
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"PID-5.1":  "O^BRIEN",
		"PID-11.1": "FLAT 3|4 & ANNEX",
		"PID-13.1": "01382 555 0100~EXT 22",
		"NTE-3":    "Line one\nLine two\r\nhex break \\H\\bold\\N\\ normal \\C2842\\ \\M2442\\ \\ZLOCAL\\ \\ backslash",
	} {
		v, _ := m.Lookup(path)
		got, err := v.Unescape(nil)
		if err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", path, got, err, want)
		}
	}
	m, err = hl7v2.Parse(fixture(t, "escape_unterminated.hl7"))
	if err != nil {
		t.Fatal(err)
	}
	v, _ := m.Lookup("PID-5.1")
	if got, err := v.Unescape(nil); !errors.Is(err, hl7v2.ErrEscape) || string(got) != `SMITH\T` {
		t.Errorf("unterminated: %q, %v", got, err)
	}
}
