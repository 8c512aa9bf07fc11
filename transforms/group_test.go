package transforms

import (
	"slices"
	"strings"
	"testing"
)

// TestGroupMergesOnlyIntoItsOwnGroup: an into: entry with follows: and group:
// merges only into a resource its own group built (from the segment opening
// the group or one after it); when that group built none it does nothing,
// rather than merging into another group's resource or starting its own.
// An IN2 describes the insured of its IN1: with two insurance groups, the
// first insured by a spouse and the second by the patient, the second IN2 is
// nobody's RelatedPerson.
func TestGroupMergesOnlyIntoItsOwnGroup(t *testing.T) {
	set, err := Load(Layer{FS: files(map[string]string{
		"segments/IN1-Insured.yaml": "segment: IN1\nresource: RelatedPerson\nname: IN1-Insured\nrules:\n  - {from: \"16\", to: name, map: XPN-Name}\n",
		"segments/IN2-Insured.yaml": "segment: IN2\nresource: RelatedPerson\nname: IN2-Insured\nrules:\n  - {from: \"2\", to: \"identifier[+].value\"}\n",
		"messages/adt.yaml": "structure: ADT\nmessages: [ADT]\nresources:\n" +
			"  - {map: PID-Patient, name: patient}\n" +
			"  - {map: IN1-Insured, name: insured, when: 'Get(\"17\") != \"SEL\"'}\n" +
			"  - {map: IN2-Insured, into: insured, follows: [IN1], group: true}\n",
	})})
	if err != nil {
		t.Fatal(err)
	}
	b, _, out := convertWith(t, set, []byte("MSH|^~\\&|A|B|C|D|20260101||ADT^A08|1|P|2.5\rPID|1||123||DOE^JANE\r"+
		"IN1|1|||||||||||||||DOE^JOHN|SPO\rIN2||111-11-1111\r"+
		"IN1|2|||||||||||||||DOE^JANE|SEL\rIN2||222-22-2222\r"), Options{Bundle: Collection, KeepIncomplete: true})
	if got := b.at("RelatedPerson", "identifier.value"); !slices.Equal(got, []string{"111-11-1111"}) {
		t.Errorf("insured identifiers %q, want only the first group's: %s", got, out)
	}
	if n := len(b.all("RelatedPerson")); n != 1 {
		t.Errorf("%d RelatedPerson, want 1: %s", n, out)
	}
	if _, err := Load(Layer{FS: files(map[string]string{
		"messages/adt.yaml": "structure: ADT\nmessages: [ADT]\nresources:\n  - {map: PID-Patient, name: patient, group: true}\n",
	})}); err == nil || !strings.Contains(err.Error(), "group: is for into: entries with follows:") {
		t.Errorf("group: without into: and follows: loaded: %v", err)
	}
}
