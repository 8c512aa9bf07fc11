package transforms

import (
	"encoding/json"
	"testing"
)

func TestAppendJSONIsAlwaysValidJSON(t *testing.T) {
	for _, in := range []string{"plain", `quote " and \ backslash`, "line\nbreak\ttab\x01ctl", "café ☕", "bad \xff\xfe utf-8"} {
		for _, out := range [][]byte{appendJSONString(nil, in), appendJSONBytes(nil, []byte(in))} {
			var back string
			if err := json.Unmarshal(out, &back); err != nil {
				t.Errorf("%q -> %s: not JSON: %v", in, out, err)
				continue
			}
			want := in
			if in == "bad \xff\xfe utf-8" {
				want = "bad \uFFFD\uFFFD utf-8"
			}
			if back != want {
				t.Errorf("%q -> %s reads back as %q", in, out, back)
			}
		}
	}
}
