package itk

import (
	"testing"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
)

// parseER7 parses converted ER7 and returns its segment count.
func parseER7(b []byte) (int, error) {
	m, err := hl7v2.Parse(b)
	if err != nil {
		return 0, err
	}
	return m.SegmentCount(), nil
}

func TestV2XMLToER7(t *testing.T) {
	tests := []struct{ name, xml, want string }{
		{"delimiters escaped",
			`<MSH><MSH.10>a|b^c~d\e&amp;f</MSH.10></MSH>`,
			"MSH|^~\\&||||||||a\\F\\b\\S\\c\\R\\d\\E\\e\\T\\f\r"},
		{"MSH.1 and MSH.2 replaced by the standard delimiters",
			`<MSH><MSH.1>#</MSH.1><MSH.2>$*@%</MSH.2><MSH.3><HD.1>APP</HD.1></MSH.3></MSH>`,
			"MSH|^~\\&|APP\r"},
		{"charset other than UTF-8 rewritten",
			`<MSH><MSH.18>8859/1</MSH.18></MSH>`,
			"MSH|^~\\&||||||||||||||||UNICODE UTF-8\r"},
		{"UTF-8 charset kept",
			`<MSH><MSH.18>UNICODE UTF-8</MSH.18></MSH>`,
			"MSH|^~\\&||||||||||||||||UNICODE UTF-8\r"},
		{"repetitions, components, subcomponents and gaps",
			`<MSH/><PID><PID.3><CX.1>1</CX.1><CX.4><HD.1>A</HD.1><HD.3>ISO</HD.3></CX.4></PID.3><PID.3><CX.1>2</CX.1></PID.3><PID.8>F</PID.8></PID>`,
			"MSH|^~\\&|\rPID|||1^^^A&&ISO~2|||||F\r"},
		{"CR and LF in values",
			"<MSH/><NTE><NTE.3>line 1&#13;&#10;line 2</NTE.3></NTE>",
			"MSH|^~\\&|\rNTE|||line 1\\X0D\\\\X0A\\line 2\r"},
		{"groups read through",
			`<MSH/><ORU_R01.PATIENT_RESULT><ORU_R01.PATIENT><PID><PID.1>1</PID.1></PID></ORU_R01.PATIENT><OBR><OBR.1>1</OBR.1></OBR></ORU_R01.PATIENT_RESULT>`,
			"MSH|^~\\&|\rPID|1\rOBR|1\r"},
		{"escape element",
			`<MSH/><NTE><NTE.3>a<escape V=".br"/>b<escape V="H"/>c<escape V="N"/></NTE.3></NTE>`,
			"MSH|^~\\&|\rNTE|||a\\.br\\b\\H\\c\\N\\\r"},
		{"empty elements keep their places",
			`<MSH/><PV1><PV1.2/><PV1.3><PL.1/><PL.2>B</PL.2></PV1.3></PV1>`,
			"MSH|^~\\&|\rPV1|||^B\r"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := `<MSG xmlns="urn:hl7-org:v2xml">` + tt.xml + `</MSG>`
			root, err := parseXML([]byte(doc), xmlLimits{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := appendER7(nil, root)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
			if _, err := parseER7(got); err != nil {
				t.Errorf("ER7 does not parse: %v", err)
			}
		})
	}
}
