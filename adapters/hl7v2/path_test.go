package hl7v2_test

import (
	"errors"
	"testing"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
)

func TestParsePath(t *testing.T) {
	cases := []struct {
		in   string
		want hl7v2.Location
	}{
		{"PID", hl7v2.Location{Segment: "PID"}},
		{"OBX[2]", hl7v2.Location{Segment: "OBX", Occurrence: 2}},
		{"PID-5", hl7v2.Location{Segment: "PID", Field: 5}},
		{"PID-5.1", hl7v2.Location{Segment: "PID", Field: 5, Component: 1}},
		{"PID-3[2].1", hl7v2.Location{Segment: "PID", Field: 3, Repetition: 2, Component: 1}},
		{"OBX[3]-5", hl7v2.Location{Segment: "OBX", Occurrence: 3, Field: 5}},
		{"MSH-9.2", hl7v2.Location{Segment: "MSH", Field: 9, Component: 2}},
		{"ZPI-12[10].3.2", hl7v2.Location{Segment: "ZPI", Field: 12, Repetition: 10, Component: 3, Sub: 2}},
		{"Z01[12]-1", hl7v2.Location{Segment: "Z01", Occurrence: 12, Field: 1}},
	}
	for _, c := range cases {
		p, err := hl7v2.ParsePath(c.in)
		if err != nil {
			t.Errorf("ParsePath(%q): %v", c.in, err)
			continue
		}
		if p.Location != c.want {
			t.Errorf("ParsePath(%q) = %+v, want %+v", c.in, p.Location, c.want)
		}
		if p.String() != c.in {
			t.Errorf("ParsePath(%q).String() = %q", c.in, p.String())
		}
	}
}

func TestParsePathInvalid(t *testing.T) {
	for _, in := range []string{
		"", "PI", "pid-5", "PID-", "PID-0", "PID-5.", "PID-5.0", "PID-5..1", "PID[0]-5", "PID[]-5",
		"PID[1-5", "PID-3[2", "PID-3[2]x", "PID-5.1.1.1", "PID5", "PID-1234567", "PID -5", "1ID-5",
		"PID-5.1 ", "PID-05x",
	} {
		if _, err := hl7v2.ParsePath(in); !errors.Is(err, hl7v2.ErrPath) {
			t.Errorf("ParsePath(%q) err = %v, want ErrPath", in, err)
		}
	}
}

func TestMustParsePathPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("no panic")
		}
	}()
	hl7v2.MustParsePath("PID-")
}

func TestLookupOnAbsentParts(t *testing.T) {
	m, err := hl7v2.Parse(fixture(t, "adt_a01.hl7"))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"NK1-2", "PID[2]-3", "PID-3[3]", "PID-5.9", "PID-5.1.2", "PID-99", "PV1-3.1.2"} {
		v, err := m.Lookup(path)
		if err != nil || !v.IsEmpty() {
			t.Errorf("Lookup(%q) = %q, %v; want empty", path, v.Bytes(), err)
		}
	}
	if _, err := m.Lookup("PID-x"); !errors.Is(err, hl7v2.ErrPath) {
		t.Errorf("bad path err = %v", err)
	}
}

func TestLocationString(t *testing.T) {
	l := hl7v2.Location{Segment: "PID", Occurrence: 1, Field: 3, Repetition: 2, Component: 1, Sub: 4}
	if got := l.String(); got != "PID[1]-3[2].1.4" {
		t.Errorf("got %q", got)
	}
	if got := (hl7v2.Location{Segment: "ERR", Field: 1, Sub: 2}).String(); got != "ERR-1" {
		t.Errorf("sub without component: got %q", got)
	}
}
