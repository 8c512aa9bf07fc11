package transforms

import (
	"testing"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
)

// TestNativeMatchesVM: an expression compiled to closures gives what
// expr-lang's VM gives for it, in a segment and in a data-type map's value.
func TestNativeMatchesVM(t *testing.T) {
	c, m := readyConverter(t, "EVN|A01|202601011200|202601011200^S||C08^Woolfson|2026010112\r"+
		"PID|1||123^^^^MR||DOE^JANE||19700101|F|||1 High St^^LEEDS||||||||||||Zoë\r")
	evn, _ := m.Find("EVN", 1)
	pid, _ := m.Find("PID", 1)
	for _, tc := range []struct {
		src     string
		seg     hl7v2.Segment
		boolean bool
		want    nval
	}{
		{`len(Get("2")) >= 12`, evn, true, nval{b: true}},
		{`len(Get("2")) >= 13`, evn, true, nval{b: false}},
		{`IsInstant("2")`, evn, true, nval{b: true}},
		{`IsInstant("3")`, evn, true, nval{b: true}},          // a TS's degree of precision is not part of it
		{`IsInstant("6")`, evn, true, nval{b: false}},         // hours only
		{`IsInstant("4")`, evn, true, nval{b: false}},         // empty
		{`IsInstant("5")`, evn, true, nval{b: false}},         // not a date
		{`len(Get("PID-23")) == 3`, evn, true, nval{b: true}}, // characters, not bytes
		{`len(filter([Has("3"), Has("2"), Has("5")], #)) == 2`, pid, true, nval{b: true}},
		{`len(filter([Has("3"), Has("2")], #)) < 1`, pid, true, nval{b: false}},
		{`len(Get("5.1") + "X") != 4`, pid, true, nval{b: false}},
		{`Get("8") in ["M", "F"]`, pid, true, nval{b: true}},
		{`Get("8") in ["M", "U"]`, pid, true, nval{b: false}},
		{`Get("7") matches "^[0-9]{8}$"`, pid, true, nval{b: true}},
		{`Get("5.1") matches "^doe"`, pid, true, nval{b: false}},
		{`(Get("5.2") + "!") matches "^J.*!$"`, pid, true, nval{b: true}},
		{`Get("5.2")`, pid, false, nval{s: "JANE"}},
		{`"app:" + replace(Get("11.1") + (Has("11.3") ? "@" + Get("11.3") : ""), " ", "%20")`, pid, false, nval{s: "app:1%20High%20St@LEEDS"}},
	} {
		p := (&compiler{}).compileExpr("test", tc.src, tc.boolean, false)
		if p == nil || p.native == nil {
			t.Errorf("%s: not compiled to closures", tc.src)
			continue
		}
		f := frame{seg: tc.seg}
		env := c.prepare(&f, nil, p)
		native := p.native(env)
		out, err := c.vm.Run(p.vm, c.prepare(&f, nil, p))
		if err != nil {
			t.Fatalf("%s: VM: %v", tc.src, err)
		}
		var vm nval
		switch v := out.(type) {
		case bool:
			vm.b = v
		case string:
			vm.s = v
		}
		if native != tc.want || vm != tc.want {
			t.Errorf("%s: closures %+v, VM %+v, want %+v", tc.src, native, vm, tc.want)
		}
	}
}

// TestEnvFollowsFrame: the environment keeps its copy of a frame only while
// conditions run in that frame; the next frame's conditions read their own
// segment, and a frame without an id is never mistaken for the last one.
func TestEnvFollowsFrame(t *testing.T) {
	c, m := readyConverter(t, "PID|1||111^^^^MR\rPID|2||222^^^^MR\r")
	first, _ := m.Find("PID", 1)
	second, _ := m.Find("PID", 2)
	p := (&compiler{}).compileExpr("test", `Get("3.1")`, false, false)
	f1, f2 := c.newFrame(frame{seg: first}), c.newFrame(frame{seg: second})
	for i, tc := range []struct {
		f    frame
		want string
	}{{f1, "111"}, {f1, "111"}, {f2, "222"}, {frame{seg: first}, "111"}, {frame{seg: second}, "222"}, {f2, "222"}} {
		if got := p.native(c.prepare(&tc.f, nil, p)).s; got != tc.want {
			t.Errorf("run %d: Get(\"3.1\") = %q, want %q", i, got, tc.want)
		}
	}
}

// readyConverter parses an ADT^A01 of the segments after its MSH and returns
// a converter set up to run expressions in it.
func readyConverter(t *testing.T, segments string) (*Converter, *hl7v2.Message) {
	t.Helper()
	m, err := hl7v2.Parse([]byte("MSH|^~\\&|A|B|C|D|20260101||ADT^A01|1|P|2.5\r" + segments))
	if err != nil {
		t.Fatal(err)
	}
	c := loadDefault(t).NewConverter(Options{})
	c.reset(m)
	return c, m
}

func TestReadsContext(t *testing.T) {
	for src, want := range map[string]bool{
		`Has("3") && Get("1") != ""`:              false,
		`Get(".") == Value`:                       false,
		`Segment == "RXA"`:                        true,
		`Get(".") == Get("RXA-27")`:               true,
		`IsInstant("PR1-5")`:                      true,
		`Has("1." + Value)`:                       true, // a path computed at run time
		`upper(Get("2")) in ["BED", "ROOM", "X"]`: false,
	} {
		if got := readsContext(src, true); got != want {
			t.Errorf("readsContext(%s) = %v, want %v", src, got, want)
		}
	}
}
