package hl7v2_test

import (
	"errors"
	"testing"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
	"github.com/spinebridge/spinebridge/fixtures"
)

func fixture(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := fixtures.HL7v2.ReadFile("hl7v2/" + name)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func lookup(t *testing.T, m *hl7v2.Message, path string) string {
	t.Helper()
	v, err := m.Lookup(path)
	if err != nil {
		t.Fatalf("Lookup(%q): %v", path, err)
	}
	return string(v.Bytes())
}

// The same five segments, framed every way a sender may frame them, index alike.
func TestParseFraming(t *testing.T) {
	for _, name := range []string{
		"adt_a01.hl7", "endings_lf.hl7", "endings_crlf.hl7", "endings_mixed.hl7", "bom.hl7",
		"trailing_junk.hl7", "no_final_terminator.hl7", "empty_segments.hl7",
	} {
		t.Run(name, func(t *testing.T) {
			m, err := hl7v2.Parse(fixture(t, name))
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for i := range m.SegmentCount() {
				ids = append(ids, string(m.Segment(i).ID()))
			}
			if got, want := fmtIDs(ids), "MSH EVN PID PD1 PV1"; got != want {
				t.Fatalf("segments = %s, want %s", got, want)
			}
			for path, want := range map[string]string{
				"MSH-9.1":    "ADT",
				"MSH-9.2":    "A01",
				"PID-3.1":    "9990000018",
				"PID-3[1].4": "NHS",
				"PID-3[2].1": "RX1A123456",
				"PID-5.1":    "THOMPSON",
				"PID-32":     "NSTS01",
				"PD1-3.3":    "B86001",
				"PV1-3.3":    "BED 4",
				"PV1-7.2":    "JONES",
			} {
				if got := lookup(t, m, path); got != want {
					t.Errorf("%s = %q, want %q", path, got, want)
				}
			}
			// The last segment never carries its terminator or the trailing junk.
			if last := m.Segment(m.SegmentCount() - 1).Bytes(); string(last[len(last)-3:]) != "^DR" {
				t.Errorf("last segment ends %q", last[len(last)-5:])
			}
		})
	}
}

func fmtIDs(ids []string) string {
	s := ""
	for i, id := range ids {
		if i > 0 {
			s += " "
		}
		s += id
	}
	return s
}

func TestParseMSHFields(t *testing.T) {
	m, err := hl7v2.Parse(fixture(t, "adt_a01.hl7"))
	if err != nil {
		t.Fatal(err)
	}
	msh, ok := m.Find("MSH", 1)
	if !ok {
		t.Fatal("no MSH")
	}
	cases := map[int]string{1: "|", 2: `^~\&`, 3: "PAS", 4: "RX1", 9: "ADT^A01^ADT_A01", 10: "ADT000000101", 12: "2.5.1", 18: "UNICODE UTF-8", 19: "EN", 20: ""}
	for n, want := range cases {
		if got := msh.Field(n).String(); got != want {
			t.Errorf("MSH-%d = %q, want %q", n, got, want)
		}
	}
	// MSH-2 is not split on its own delimiters.
	if got := lookup(t, m, "MSH-2.2"); got != "" {
		t.Errorf("MSH-2.2 = %q, want empty", got)
	}
	if got := lookup(t, m, "MSH-2"); got != `^~\&` {
		t.Errorf("MSH-2 = %q", got)
	}
	if n := msh.FieldCount(); n != 19 {
		t.Errorf("MSH FieldCount = %d, want 19", n)
	}
}

func TestParseCustomDelimiters(t *testing.T) {
	m, err := hl7v2.Parse(fixture(t, "delims_custom.hl7"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := m.Delimiters(), (hl7v2.Delimiters{Field: '#', Component: '$', Repetition: '*', Escape: '@', Subcomponent: '%'}); got != want {
		t.Fatalf("delimiters = %+v, want %+v", got, want)
	}
	for path, want := range map[string]string{
		"MSH-1": "#", "MSH-2": "$*@%", "MSH-9.2": "A01", "PID-3[2].1": "RX1A123456",
		"PID-3[1].5": "NH", "PID-5.2": "SEAN", "PID-11.3": "YORK",
	} {
		if got := lookup(t, m, path); got != want {
			t.Errorf("%s = %q, want %q", path, got, want)
		}
	}
	family, _ := m.Lookup("PID-5.1")
	got, err := family.Unescape(nil)
	if err != nil || string(got) != "O$BRIAN" {
		t.Errorf("PID-5.1 unescaped = %q, %v; want O$BRIAN", got, err)
	}
}

func TestParseTruncationCharacter(t *testing.T) {
	m, err := hl7v2.Parse(fixture(t, "delims_truncation.hl7"))
	if err != nil {
		t.Fatal(err)
	}
	d := m.Delimiters()
	if d.Truncation != '#' || d.Subcomponent != '&' {
		t.Fatalf("delimiters = %+v", d)
	}
	if got := lookup(t, m, "MSH-2"); got != `^~\&#` {
		t.Errorf("MSH-2 = %q", got)
	}
	if got := lookup(t, m, "MSH-12"); got != "2.7" {
		t.Errorf("MSH-12 = %q", got)
	}
	family, _ := m.Lookup("PID-5.1")
	if got, _ := family.Unescape(nil); string(got) != "WOLFESCHLEGEL#" {
		t.Errorf("PID-5.1 unescaped = %q", got)
	}
	if got := string(d.AppendEncodingCharacters(nil)); got != `^~\&#` {
		t.Errorf("AppendEncodingCharacters = %q", got)
	}
}

func TestParseZSegments(t *testing.T) {
	m, err := hl7v2.Parse(fixture(t, "zsegments.hl7"))
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"ZPI-2.1": "LEARNING DISABILITY FLAG", "ZPI-3.2": "POL", "ZEX-2.2": "AMU", "ZEX-3": "SIDE ROOM",
		"ZEX": "ZEX|RX1|WARD 12^AMU|SIDE ROOM",
	} {
		if got := lookup(t, m, path); got != want {
			t.Errorf("%s = %q, want %q", path, got, want)
		}
	}
	if s := m.Segment(3); !s.Is("ZPI") {
		t.Errorf("segment 3 is %s, want ZPI in place after PID", s.ID())
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		file  string
		err   error
		index int
		msh   bool // MSH still readable for an ACK
	}{
		{"malformed_segment_id.hl7", hl7v2.ErrSegmentID, 4, true},
		{"malformed_truncated_msh.hl7", hl7v2.ErrDelimiters, 1, false},
		{"malformed_no_msh.hl7", hl7v2.ErrNoHeader, 1, false},
		{"malformed_delimiters.hl7", hl7v2.ErrDelimiters, 1, false},
		{"malformed_empty.hl7", hl7v2.ErrEmpty, 0, false},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			data := fixture(t, c.file)
			m, err := hl7v2.Parse(data)
			if !errors.Is(err, c.err) {
				t.Fatalf("err = %v, want %v", err, c.err)
			}
			var pe *hl7v2.ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("err %T is not a *ParseError", err)
			}
			if pe.Index != c.index {
				t.Errorf("Index = %d, want %d", pe.Index, c.index)
			}
			if _, ok := m.Find("MSH", 1); ok != c.msh {
				t.Errorf("MSH readable = %v, want %v", ok, c.msh)
			}
			if c.msh && lookup(t, m, "MSH-10") != "ADT000000114" {
				t.Errorf("MSH-10 not readable after a later error")
			}
		})
	}
}

// Error text must say where, never what: values may be patient data.
func TestParseErrorTextHasNoValues(t *testing.T) {
	data := []byte("MSH|^~\\&|A|B|C|D|20260101||ADT^A01|X1|P|2.5\rPID|1||9990000018^^^NHS^NH||SMITH^JOHN\rsmith|9990000018\r")
	_, err := hl7v2.Parse(data)
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, leak := range []string{"smith", "9990000018", "SMITH"} {
		if contains(msg, leak) {
			t.Errorf("error %q leaks %q", msg, leak)
		}
	}
	if want := "hl7v2: segment 3 at byte 83: invalid segment id"; msg != want {
		t.Errorf("error = %q, want %q", msg, want)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func TestRepetitionsAndComponents(t *testing.T) {
	m, err := hl7v2.Parse([]byte("MSH|^~\\&|A|B|C|D|20260101||ORU^R01|X1|P|2.5\rOBX|1|CE|a~b^c&d&e~~f||\"\"\r"))
	if err != nil {
		t.Fatal(err)
	}
	obx, _ := m.Find("OBX", 1)
	f := obx.Field(3)
	if f.Reps() != 4 {
		t.Errorf("Reps = %d, want 4", f.Reps())
	}
	r2 := f.Rep(2)
	if r2.Comps() != 2 || r2.Comp(2).Subs() != 3 || r2.Comp(2).Sub(3).String() != "e" {
		t.Errorf("rep 2 = %q comps %d", r2.Bytes(), r2.Comps())
	}
	if !f.Rep(3).IsEmpty() || f.Rep(4).String() != "f" || !f.Rep(5).IsEmpty() {
		t.Errorf("reps 3..5 = %q %q %q", f.Rep(3).Bytes(), f.Rep(4).Bytes(), f.Rep(5).Bytes())
	}
	if !obx.Field(5).IsNull() || obx.Field(4).IsNull() {
		t.Errorf("IsNull wrong for OBX-4/OBX-5")
	}
	if obx.FieldCount() != 5 {
		t.Errorf("FieldCount = %d, want 5", obx.FieldCount())
	}
	if !obx.Field(6).IsEmpty() || obx.Field(6).Rep(1).Comp(1).Sub(1).Bytes() != nil {
		t.Errorf("absent field is not empty")
	}
	// Reading a later segment first, then an earlier one further, keeps both right.
	if got := lookup(t, m, "OBX-3[2].2.1"); got != "c" {
		t.Errorf("OBX-3[2].2.1 = %q", got)
	}
	if got := lookup(t, m, "MSH-12"); got != "2.5" {
		t.Errorf("MSH-12 = %q", got)
	}
	if got := lookup(t, m, "OBX-5"); got != `""` {
		t.Errorf("OBX-5 = %q", got)
	}
	if got := lookup(t, m, "MSH-10"); got != "X1" {
		t.Errorf("MSH-10 = %q", got)
	}
}

func TestSegmentOccurrences(t *testing.T) {
	m, err := hl7v2.Parse(fixture(t, "bench/oru_r01_50obx.hl7"))
	if err != nil {
		t.Fatal(err)
	}
	if n := m.Count("OBX"); n != 50 {
		t.Fatalf("Count(OBX) = %d", n)
	}
	k := 0
	for s := range m.All("OBX") {
		k++
		if got := s.Field(1).String(); got != itoa(k) {
			t.Errorf("OBX %d has OBX-1 %q", k, got)
		}
		if p := "OBX[" + itoa(k) + "]-1"; lookup(t, m, p) != itoa(k) {
			t.Errorf("%s wrong", p)
		}
	}
	if _, ok := m.Find("OBX", 51); ok {
		t.Error("OBX[51] found")
	}
	if got := lookup(t, m, "OBX[51]-5"); got != "" {
		t.Errorf("OBX[51]-5 = %q", got)
	}
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

// A Message reused for messages of different shapes gives each its own answers.
func TestParseReuse(t *testing.T) {
	var m hl7v2.Message
	for range 2 {
		for _, name := range []string{"bench/oru_r01_50obx.hl7", "delims_custom.hl7", "adt_a01.hl7"} {
			if err := m.Parse(fixture(t, name)); err != nil {
				t.Fatal(err)
			}
			if got := lookup(t, &m, "PID-3.1"); got != "9990000018" && got != "9990000026" {
				t.Errorf("%s: PID-3.1 = %q", name, got)
			}
		}
	}
}

// TestAppendRepsAndComps holds the one-pass forms to what Rep and Comp return,
// on every level a value can be read at.
func TestAppendRepsAndComps(t *testing.T) {
	m, err := hl7v2.Parse([]byte("MSH|^~\\&|A|B|C|D|20260101||ORU^R01|X1|P|2.5\rOBX|1|CE|a~b^c&d&e~~f^|x^|\r"))
	if err != nil {
		t.Fatal(err)
	}
	obx, _ := m.Find("OBX", 1)
	var values []hl7v2.Value
	for n := 1; n <= 7; n++ {
		f := obx.Field(n)
		values = append(values, f, f.Comp(2), f.Comp(2).Sub(1))
		for r := 1; r <= f.Reps(); r++ {
			values = append(values, f.Rep(r))
		}
	}
	var got []hl7v2.Value
	for _, v := range values {
		got = v.AppendReps(got[:0])
		if len(got) != v.Reps() {
			t.Errorf("%q: AppendReps gave %d, Reps %d", v.Bytes(), len(got), v.Reps())
		}
		for i, p := range got {
			if string(p.Bytes()) != string(v.Rep(i+1).Bytes()) || p.Comps() != v.Rep(i+1).Comps() {
				t.Errorf("%q: rep %d = %q, Rep gives %q", v.Bytes(), i+1, p.Bytes(), v.Rep(i+1).Bytes())
			}
		}
		got = v.AppendComps(got[:0])
		if len(got) != v.Comps() {
			t.Errorf("%q: AppendComps gave %d, Comps %d", v.Bytes(), len(got), v.Comps())
		}
		for i, p := range got {
			if string(p.Bytes()) != string(v.Comp(i+1).Bytes()) || p.Subs() != v.Comp(i+1).Subs() {
				t.Errorf("%q: comp %d = %q, Comp gives %q", v.Bytes(), i+1, p.Bytes(), v.Comp(i+1).Bytes())
			}
		}
	}
	dst := make([]hl7v2.Value, 0, 8)
	f := obx.Field(3)
	if n := testing.AllocsPerRun(100, func() { dst = f.Rep(2).AppendComps(f.AppendReps(dst[:0])) }); n != 0 {
		t.Errorf("AppendReps and AppendComps allocate %.0f times", n)
	}
}

func TestSegmentLocate(t *testing.T) {
	m, err := hl7v2.Parse([]byte("MSH#*!$%#APP#FAC#####ADT*A01#1#P#2.5.1\r" +
		"PID#1\r" +
		"PID#2##111*a*b!9990000018***NHS%x*NH#\r"))
	if err != nil {
		t.Fatal(err)
	}
	msh, pid := m.Segment(0), m.Segment(2)
	nhs := pid.Field(3).Rep(2)
	for _, c := range []struct {
		seg  hl7v2.Segment
		v    hl7v2.Value
		want string
	}{
		{msh, msh.Field(3), "MSH[1]-3"},
		{msh, msh.Field(2), "MSH[1]-2"},
		{msh, msh.Field(9).Comp(2), "MSH[1]-9[1].2"},
		{pid, pid.Field(3), "PID[2]-3"},
		{pid, nhs, "PID[2]-3[2]"},
		{pid, nhs.Comp(4), "PID[2]-3[2].4"},
		{pid, nhs.Comp(4).Sub(2), "PID[2]-3[2].4.2"},
		{pid, nhs.Comp(5), "PID[2]-3[2].5"},
		{pid, pid.Field(3).Comp(3), "PID[2]-3[1].3"},
	} {
		loc, ok := c.seg.Locate(c.v)
		if !ok || loc.String() != c.want {
			t.Errorf("Locate(%q) = %v, %v; want %s", c.v.Bytes(), loc, ok, c.want)
		}
	}
	// Empty values, values of another segment and copies have no place.
	for _, v := range []hl7v2.Value{pid.Field(2), m.Segment(1).Field(1), pid.Field(9)} {
		if loc, ok := pid.Locate(v); ok {
			t.Errorf("Locate(%q) = %v, want none", v.Bytes(), loc)
		}
	}
	if loc, ok := (hl7v2.Segment{}).Locate(msh.Field(3)); ok {
		t.Errorf("zero Segment located %v", loc)
	}
}
