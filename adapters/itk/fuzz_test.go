package itk

import (
	"errors"
	"testing"
)

// FuzzDecode feeds the request decoder arbitrary bytes, seeded with the two
// valid fixtures, a few negative ones and the hostile documents. It must
// never panic; whatever it refuses, it refuses with an *Error; whatever it
// accepts has an envelope whose payloads decode or are refused cleanly too.
func FuzzDecode(f *testing.F) {
	for _, name := range []string{
		cdaFixture, adtFixture, "xxe.xml", "billion_laughs.xml",
		"invalid/1000-de-manifest-count-items.xml", "invalid/1000-wsa-action-service.xml", "invalid/1000-v2xml-depth.xml",
	} {
		f.Add(fixture(f, name))
	}
	lim := Limits{MaxSize: 1 << 20, MaxDepth: 64}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := Decode(body, lim)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Decode refused with %T, not an *Error: %v", err, err)
			}
			return
		}
		if req.Envelope == nil {
			t.Fatal("Decode accepted a request without an envelope")
		}
		if _, err := req.contents(lim.xml()); err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("a payload was refused with %T, not an *Error: %v", err, err)
			}
		}
	})
}

// FuzzV2XML checks the v2 XML converter on payload-shaped input: when it
// converts, the result is ER7 the HL7 v2 parser reads with the same number of
// segments as the converter wrote.
func FuzzV2XML(f *testing.F) {
	f.Add([]byte(`<ADT_A01 xmlns="urn:hl7-org:v2xml"><MSH><MSH.9><MSG.1>ADT</MSG.1></MSH.9><MSH.10>1</MSH.10></MSH><PID><PID.5><XPN.1><FN.1>A|B^C~D\E&amp;F</FN.1></XPN.1></PID.5></PID></ADT_A01>`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		root, err := parseXML(doc, xmlLimits{maxSize: 1 << 20, maxDepth: 64})
		if err != nil {
			return
		}
		er7, err := appendER7(nil, root)
		if err != nil {
			return
		}
		segs := 0
		for _, c := range er7 {
			if c == '\r' {
				segs++
			}
		}
		m, err := parseER7(er7)
		if err != nil {
			t.Fatalf("converted ER7 does not parse: %v\n%q", err, er7)
		}
		if m != segs {
			t.Fatalf("the parser found %d segments, the converter wrote %d\n%q", m, segs, er7)
		}
	})
}
