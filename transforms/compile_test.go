package transforms

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
)

// A minimal valid set that each case below breaks in one place.
var goodFiles = map[string]string{
	"tables/sex.yaml":             "table: sex\nmap: {F: female, M: male}\n",
	"datatypes/XPN-Name.yaml":     "datatype: XPN\nfhir: HumanName\nname: XPN-Name\nrules:\n  - {from: \"1.1\", to: family}\n  - {from: \"2\", to: given}\n",
	"segments/PID-Patient.yaml":   "segment: PID\nresource: Patient\nrules:\n  - {from: \"5\", to: name, map: XPN-Name}\n  - {from: \"8\", to: gender, table: sex}\n  - {from: \"7\", to: birthDate}\n",
	"messages/adt.yaml":           "structure: ADT\nmessages: [ADT]\nresources:\n  - {map: PID-Patient, name: patient}\n",
	"segments/PV1-Encounter.yaml": "segment: PV1\nresource: Encounter\nrules:\n  - {value: finished, to: status}\n",
}

func files(change map[string]string) fstest.MapFS {
	fsys := fstest.MapFS{}
	for name, text := range goodFiles {
		fsys[name] = &fstest.MapFile{Data: []byte(text)}
	}
	for name, text := range change {
		if text == "" {
			delete(fsys, name)
			continue
		}
		fsys[name] = &fstest.MapFile{Data: []byte(text)}
	}
	return fsys
}

func TestLoadGoodSet(t *testing.T) {
	if _, err := Load(Layer{FS: files(nil)}); err != nil {
		t.Fatal(err)
	}
}

func TestLoadErrorsNameFileAndLine(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change map[string]string
		want   []string
	}{
		{"shared without an identity", map[string]string{
			"segments/PV1-Encounter.yaml": "segment: PV1\nresource: Encounter\nshared: true\nrules:\n  - {value: finished, to: status}\n",
		}, []string{"segments/PV1-Encounter.yaml:1:", "shared: true needs an identity"}},
		{"a map's condition that is no boolean", map[string]string{
			"segments/PV1-Encounter.yaml": "segment: PV1\nresource: Encounter\nwhen: 'Get(\"2\")'\nrules:\n  - {value: finished, to: status}\n",
		}, []string{"segments/PV1-Encounter.yaml:1:"}},
		{"a data-type map's identity that is no component path", map[string]string{
			"datatypes/XPN-Name.yaml": "datatype: XPN\nfhir: HumanName\nname: XPN-Name\nidentity: [\"1.x\"]\nrules:\n  - {from: \"1.1\", to: family}\n",
		}, []string{"datatypes/XPN-Name.yaml:1:", `identity "1.x"`}},
		{"identity_when without an identity, and one that is no boolean", map[string]string{
			"datatypes/XPN-Name.yaml":         "datatype: XPN\nfhir: HumanName\nname: XPN-Name\nidentity_when: 'Has(\"1\")'\nrules:\n  - {from: \"1.1\", to: family}\n",
			"datatypes/XCN-Practitioner.yaml": "datatype: XCN\nfhir: Practitioner\nname: XCN-Practitioner\nidentity: [\"1\"]\nidentity_when: 'Get(\"1\")'\nrules:\n  - {from: \"1\", to: identifier.value}\n",
		}, []string{"datatypes/XPN-Name.yaml:1:", "identity_when needs an identity", "datatypes/XCN-Practitioner.yaml:1:"}},
		{"misspelt element", map[string]string{
			"segments/PID-Patient.yaml": "segment: PID\nresource: Patient\nrules:\n  - {from: \"7\", to: birthdate}\n",
		}, []string{"segments/PID-Patient.yaml:4:", `"birthdate"`, "birthDate"}},
		{"choice without its type", map[string]string{
			"segments/PID-Patient.yaml": "segment: PID\nresource: Patient\nrules:\n  - {from: \"30\", to: deceased}\n",
		}, []string{"segments/PID-Patient.yaml:4:", "deceasedBoolean"}},
		{"scalar into a complex element", map[string]string{
			"segments/PID-Patient.yaml": "segment: PID\nresource: Patient\nrules:\n  - {from: \"5\", to: name}\n",
		}, []string{"segments/PID-Patient.yaml:4:", "HumanName", "map"}},
		{"map of the wrong type", map[string]string{
			"segments/PID-Patient.yaml": "segment: PID\nresource: Patient\nrules:\n  - {from: \"5\", to: address, map: XPN-Name}\n",
		}, []string{"segments/PID-Patient.yaml:4:", "builds a HumanName", "Address"}},
		{"unknown map", map[string]string{
			"segments/PID-Patient.yaml": "segment: PID\nresource: Patient\nrules:\n  - {from: \"5\", to: name, map: XPN-Nmae}\n",
		}, []string{"segments/PID-Patient.yaml:4:", `no data-type map "XPN-Nmae"`}},
		{"table gives a code the element refuses", map[string]string{
			"tables/sex.yaml": "table: sex\nmap: {F: female, M: mail}\n",
		}, []string{"segments/PID-Patient.yaml:5:", `"mail"`, "male, female"}},
		{"constant code the element refuses", map[string]string{
			"segments/PV1-Encounter.yaml": "segment: PV1\nresource: Encounter\nrules:\n  - {value: done, to: status}\n",
		}, []string{"segments/PV1-Encounter.yaml:4:", `"done"`}},
		{"hex into an element that is no base64Binary", map[string]string{
			"segments/PID-Patient.yaml": "segment: PID\nresource: Patient\nrules:\n  - {from: \"7\", to: birthDate, as: hex}\n",
		}, []string{"segments/PID-Patient.yaml:4:", "base64Binary", "date"}},
		{"a near path with an occurrence", map[string]string{
			"segments/PID-Patient.yaml": "segment: PID\nresource: Patient\nrules:\n  - {from: \">PD1[2]-3\", to: birthDate}\n",
		}, []string{"segments/PID-Patient.yaml:4:", "takes no [n]"}},
		{"misspelt key", map[string]string{
			"segments/PID-Patient.yaml": "segment: PID\nresource: Patient\nrules:\n  - {form: \"7\", to: birthDate}\n",
		}, []string{"segments/PID-Patient.yaml:4:", `unknown key "form"`}},
		{"bad expression", map[string]string{
			"segments/PID-Patient.yaml": "segment: PID\nresource: Patient\nrules:\n  - {from: \"7\", to: birthDate, when: 'Hsa(\"7\")'}\n",
		}, []string{"segments/PID-Patient.yaml:4:", "Hsa"}},
		{"expression of the wrong type", map[string]string{
			"segments/PID-Patient.yaml": "segment: PID\nresource: Patient\nrules:\n  - {from: \"7\", to: birthDate, when: 'Get(\"7\")'}\n",
		}, []string{"segments/PID-Patient.yaml:4:", "bool"}},
		{"reference to an unknown name", map[string]string{
			"messages/adt.yaml": "structure: ADT\nmessages: [ADT]\nresources:\n  - {map: PID-Patient, name: patient}\n  - {map: PV1-Encounter, refs: {subject: patinet}}\n",
		}, []string{"messages/adt.yaml:5:", `"patinet"`}},
		{"reference element that is not a Reference", map[string]string{
			"messages/adt.yaml": "structure: ADT\nmessages: [ADT]\nresources:\n  - {map: PID-Patient, name: patient}\n  - {map: PV1-Encounter, refs: {status: patient}}\n",
		}, []string{"messages/adt.yaml:5:", "not a Reference"}},
		{"reference to a type the element refuses", map[string]string{
			"messages/adt.yaml": "structure: ADT\nmessages: [ADT]\nresources:\n  - {map: PV1-Encounter, name: enc}\n  - {map: PID-Patient, refs: {managingOrganization: enc}}\n",
		}, []string{"messages/adt.yaml:5:", "Organization", "not Encounter"}},
		{"near: with a side that is neither before nor after", map[string]string{
			"messages/adt.yaml": "structure: ADT\nmessages: [ADT]\nresources:\n  - {map: PID-Patient, name: patient}\n  - {map: PV1-Encounter, near: {PD1: behind}}\n",
		}, []string{"messages/adt.yaml:5:", `near: PD1: "behind"`, "before or after"}},
		{"a file outside the four kinds", map[string]string{
			"stuff/x.yaml": "a: 1\n",
		}, []string{"stuff/x.yaml", "belongs in"}},
		{"broken YAML", map[string]string{
			"tables/sex.yaml": "table: sex\nmap: {F: female\n",
		}, []string{"tables/sex.yaml"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(Layer{FS: files(tc.change)})
			if err == nil {
				t.Fatal("Load accepted it")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestLoadReportsEveryError: two problems in two files are both reported.
func TestLoadReportsEveryError(t *testing.T) {
	_, err := Load(Layer{FS: files(map[string]string{
		"segments/PID-Patient.yaml":   "segment: PID\nresource: Patient\nrules:\n  - {from: \"7\", to: birthdate}\n  - {from: \"8\", to: gendr}\n",
		"segments/PV1-Encounter.yaml": "segment: PV1\nresource: Encountr\nrules: []\n",
	})})
	if err == nil {
		t.Fatal("Load accepted it")
	}
	for _, w := range []string{"PID-Patient.yaml:4:", "PID-Patient.yaml:5:", "PV1-Encounter.yaml:1:"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not report %s:\n%v", w, err)
		}
	}
}

// TestLoadOverrideLayer: a later layer replaces a file at the same path, and
// its errors carry the directory it came from.
func TestLoadOverrideLayer(t *testing.T) {
	top := fstest.MapFS{"segments/PID-Patient.yaml": &fstest.MapFile{Data: []byte("segment: PID\nresource: Patient\nrules:\n  - {from: \"7\", to: birthdat}\n")}}
	_, err := Load(Layer{FS: files(nil)}, Layer{FS: top, Dir: "/etc/spinebridge/mappings"})
	if err == nil || !strings.Contains(err.Error(), "/etc/spinebridge/mappings/segments/PID-Patient.yaml:4:") {
		t.Fatalf("override error %v, want it located in the override directory", err)
	}
	top["segments/PID-Patient.yaml"].Data = []byte("segment: PID\nresource: Patient\nrules:\n  - {from: \"7\", to: birthDate}\n")
	set, err := Load(Layer{FS: files(nil)}, Layer{FS: top, Dir: "/etc/spinebridge/mappings"})
	if err != nil {
		t.Fatal(err)
	}
	if set.structures["ADT"].entries[0].smap.rules[0].target[0].name != "birthDate" {
		t.Error("the override did not replace the embedded file")
	}
}

// TestNewItemAndFirstReference: contact[+] starts an item per value and later
// rules fill the last one; a single Reference keeps its first target.
func TestNewItemAndFirstReference(t *testing.T) {
	set, err := Load(Layer{FS: files(map[string]string{
		"datatypes/XCN-Org.yaml": "datatype: XCN\nfhir: Organization\nname: XCN-Org\nrules:\n  - {from: \"2\", to: name}\n",
		"segments/PID-Patient.yaml": "segment: PID\nresource: Patient\nrules:\n" +
			"  - {from: \"5\", to: \"contact[+].name\", map: XPN-Name, each: true}\n" +
			"  - {value: next of kin, to: contact.relationship.text}\n" +
			"  - {from: \"6\", to: managingOrganization, map: XCN-Org, resource: Organization, each: true}\n",
	})})
	if err != nil {
		t.Fatal(err)
	}
	b, _, _ := convertWith(t, set, []byte("MSH|^~\\&|A|B|C|D|20260101||ADT^A01|1|P|2.5\rPID|1||||ONE^A~TWO^B|X^FIRST~Y^SECOND\r"), Options{Bundle: Collection, KeepIncomplete: true})
	p := b.one(t, "Patient")
	contacts := p["contact"].([]any)
	if len(contacts) != 2 {
		t.Fatalf("%d contacts, want one per PID-5 repetition: %v", len(contacts), contacts)
	}
	if _, ok := contacts[0].(map[string]any)["relationship"]; ok {
		t.Error("the first contact got the relationship meant for the last")
	}
	if rel := contacts[1].(map[string]any)["relationship"]; rel == nil {
		t.Error("the last contact has no relationship")
	}
	if org := b.byRef(t, p["managingOrganization"]); org["name"] != "FIRST" {
		t.Errorf("managingOrganization is %v, want the first value", org["name"])
	}
	if _, err := Load(Layer{FS: files(map[string]string{
		"segments/PID-Patient.yaml": "segment: PID\nresource: Patient\nrules:\n  - {from: \"7\", to: \"birthDate[+]\"}\n",
	})}); err == nil || !strings.Contains(err.Error(), "does not repeat") {
		t.Errorf("birthDate[+] loaded: %v", err)
	}
}

// TestAbsolutePathReadsItsOwnSegment: a path naming the segment a rule reads,
// without [n], reads that segment (each IN1's own IN1-5), while a path naming
// another segment, or with [n], reads the message's segment of that name.
func TestAbsolutePathReadsItsOwnSegment(t *testing.T) {
	set, err := Load(Layer{FS: files(map[string]string{
		"datatypes/XON-Payor.yaml": "datatype: XON\nfhir: Organization\nname: XON-Payor\nrules:\n" +
			"  - {from: \"1\", to: name}\n" +
			"  - {from: IN1-5.3, to: address.city}\n" +
			"  - {from: \"IN1[1]-5.3\", to: address.district}\n" +
			"  - {from: PID-5.1, to: alias}\n",
		"segments/IN1-Coverage.yaml": "segment: IN1\nresource: Coverage\nrules:\n" +
			"  - {value: active, to: status}\n" +
			"  - {from: \"4\", to: payor, map: XON-Payor, resource: Organization}\n" +
			"  - {expr: 'Get(\"IN1-5.3\")', to: subscriberId}\n",
		"messages/adt.yaml": "structure: ADT\nmessages: [ADT]\nresources:\n  - {map: PID-Patient, name: patient}\n" +
			"  - {map: IN1-Coverage, refs: {beneficiary: patient}}\n",
	})})
	if err != nil {
		t.Fatal(err)
	}
	b, _, _ := convertWith(t, set, []byte("MSH|^~\\&|A|B|C|D|20260101||ADT^A01|1|P|2.5\rPID|1||||DOE^JANE\r"+
		"IN1|1|||FIRST INSURER|1 High St^^LEEDS\rIN1|2|||SECOND INSURER|2 Low St^^YORK\r"), Options{Bundle: Collection, KeepIncomplete: true})
	b.expect(t, []want{
		{"Organization", "name", []string{"FIRST INSURER", "SECOND INSURER"}},
		{"Organization", "address.city", []string{"LEEDS", "YORK"}},
		{"Organization", "address.district", []string{"LEEDS", "LEEDS"}},
		{"Organization", "alias", []string{"DOE", "DOE"}},
		{"Coverage", "subscriberId", []string{"LEEDS", "YORK"}},
	})
}

// TestNearPathReadsItsGroup: <SEG and >SEG read the nearest SEG before or
// after the segment being read, never past the next segment of its own kind;
// a plain SEG path reads the message's first.
func TestNearPathReadsItsGroup(t *testing.T) {
	set, err := Load(Layer{FS: files(map[string]string{
		"datatypes/XON-Payor.yaml": "datatype: XON\nfhir: Organization\nname: XON-Payor\nrules:\n" +
			"  - {from: \"1\", to: name}\n" +
			"  - {from: \">IN2-2\", to: alias}\n",
		"segments/IN1-Coverage.yaml": "segment: IN1\nresource: Coverage\nrules:\n" +
			"  - {value: active, to: status}\n" +
			"  - {from: \"4\", to: payor, map: XON-Payor, resource: Organization}\n" +
			"  - {expr: 'Get(\"<ZIA-1\") + Get(\"IN2-2\")', to: subscriberId}\n",
		"messages/adt.yaml": "structure: ADT\nmessages: [ADT]\nresources:\n  - {map: PID-Patient, name: patient}\n" +
			"  - {map: IN1-Coverage, refs: {beneficiary: patient}}\n",
	})})
	if err != nil {
		t.Fatal(err)
	}
	b, _, _ := convertWith(t, set, []byte("MSH|^~\\&|A|B|C|D|20260101||ADT^A01|1|P|2.5\rPID|1||||DOE^JANE\r"+
		"ZIA|A\rIN1|1|||FIRST INSURER\rIN2|1|111\rIN1|2|||SECOND INSURER\rZIA|B\rIN1|3|||THIRD INSURER\rIN2|3|333\r"), Options{Bundle: Collection, KeepIncomplete: true})
	b.expect(t, []want{
		{"Organization", "name", []string{"FIRST INSURER", "SECOND INSURER", "THIRD INSURER"}},
		{"Organization", "alias", []string{"111", "333"}},
		{"Coverage", "subscriberId", []string{"A111", "111", "B111"}},
	})
}

// TestFollowsScopesToTheCurrentGroup: an entry with follows: runs only for a
// segment in the group one of those segments opens, looking back over its own
// kind and the segments over: names; into: then finds that group's resource.
func TestFollowsScopesToTheCurrentGroup(t *testing.T) {
	set, err := Load(Layer{FS: files(map[string]string{
		"segments/OBR-ServiceRequest.yaml": "segment: OBR\nresource: ServiceRequest\nrules:\n  - {value: active, to: status}\n  - {value: order, to: intent}\n  - {from: \"4\", to: code.text}\n",
		"segments/OBX-Observation.yaml":    "segment: OBX\nresource: Observation\nrules:\n  - {value: final, to: status}\n  - {from: \"3\", to: code.text}\n",
		"segments/NTE-OrderNote.yaml":      "segment: NTE\nresource: ServiceRequest\nname: NTE-OrderNote\nrules:\n  - {from: \"3\", to: \"note[+].text\"}\n",
		"segments/NTE-ResultNote.yaml":     "segment: NTE\nresource: Observation\nname: NTE-ResultNote\nrules:\n  - {from: \"3\", to: \"note[+].text\"}\n",
		"messages/oru.yaml": "structure: ORU\nmessages: [ORU]\nresources:\n" +
			"  - {map: OBR-ServiceRequest, name: order}\n" +
			"  - {map: OBX-Observation, name: result}\n" +
			"  - {map: NTE-OrderNote, into: order, repeat: true, follows: [OBR]}\n" +
			"  - {map: NTE-ResultNote, into: result, repeat: true, follows: [OBX], over: [PRT]}\n",
	})})
	if err != nil {
		t.Fatal(err)
	}
	b, _, out := convertWith(t, set, []byte("MSH|^~\\&|A|B|C|D|20260101||ORU^R01|1|P|2.5\r"+
		"OBR|1|||FBC\rNTE|1||order note 1\rNTE|2||order note 2\r"+
		"OBX|1|ST|HB\rPRT|1|AD\rNTE|1||HB note\r"+
		"OBX|2|ST|WBC\r"+
		"OBR|2|||CRP\rOBX|1|ST|CRP\rNTE|1||CRP note\r"), Options{Bundle: Collection, KeepIncomplete: true})
	if len(b.all("ServiceRequest")) != 2 || len(b.all("Observation")) != 3 {
		t.Fatalf("%d orders and %d results, want 2 and 3: %s", len(b.all("ServiceRequest")), len(b.all("Observation")), out)
	}
	notes := func(typ string) map[string][]string {
		got := map[string][]string{}
		for _, r := range b.all(typ) {
			code := r["code"].(map[string]any)["text"].(string)
			list, _ := r["note"].([]any)
			for _, n := range list {
				got[code] = append(got[code], n.(map[string]any)["text"].(string))
			}
		}
		return got
	}
	for typ, want := range map[string]map[string][]string{
		"ServiceRequest": {"FBC": {"order note 1", "order note 2"}, "CRP": nil},
		"Observation":    {"HB": {"HB note"}, "WBC": nil, "CRP": {"CRP note"}},
	} {
		got := notes(typ)
		for code, w := range want {
			if !slices.Equal(got[code], w) {
				t.Errorf("%s %s notes %q, want %q", typ, code, got[code], w)
			}
		}
	}
	if _, err := Load(Layer{FS: files(map[string]string{
		"messages/adt.yaml": "structure: ADT\nmessages: [ADT]\nresources:\n  - {map: PID-Patient, name: patient, over: [PD1]}\n",
	})}); err == nil || !strings.Contains(err.Error(), "over: is for follows:") {
		t.Errorf("over: without follows: loaded: %v", err)
	}
}

// TestLinksShareTheItemLaterRulesFill: a link is written when its entry runs,
// so an entry after it for the same segment fills the item the link started;
// with two DG1, each diagnosis holds its own condition, use and rank.
func TestLinksShareTheItemLaterRulesFill(t *testing.T) {
	b, _, _ := convertMessage(t, message("ADT^A01", "PID|1||123^^^^MR||DOE^JANE||19700101|F", "PV1|1|I",
		"DG1|1||I21^Infarction^I10|||A"+strings.Repeat("|", 9)+"1",
		"DG1|2||E11^Diabetes^I10|||W^Working"+strings.Repeat("|", 9)+"2"), Options{})
	diagnoses := b.one(t, "Encounter")["diagnosis"].([]any)
	if len(diagnoses) != 2 {
		t.Fatalf("%d diagnoses, want one per DG1: %v", len(diagnoses), diagnoses)
	}
	for i, want := range []struct{ code, rank string }{{"I21", "1"}, {"E11", "2"}} {
		d := diagnoses[i].(map[string]any)
		cond := b.byRef(t, d["condition"])
		code := cond["code"].(map[string]any)["coding"].([]any)[0].(map[string]any)["code"]
		if code != want.code || fmt.Sprint(d["rank"]) != want.rank {
			t.Errorf("diagnosis %d: condition %v rank %v, want %s and %s", i, code, d["rank"], want.code, want.rank)
		}
	}
	if use := diagnoses[0].(map[string]any)["use"].(map[string]any)["coding"].([]any)[0].(map[string]any)["code"]; use != "AD" {
		t.Errorf("first diagnosis use %v, want AD", use)
	}
	if use := diagnoses[1].(map[string]any)["use"].(map[string]any)["text"]; use != "Working" {
		t.Errorf("second diagnosis use %v, want the text Working", use)
	}
}

// TestChoiceHoldsOneType: a choice element is written in one type. A rule
// writing another type of a choice that holds a value is left out, whichever
// segment comes first, unless it prefers its own type, which then replaces the
// value; prefer on an element that is no choice's type is a load error.
func TestChoiceHoldsOneType(t *testing.T) {
	set, err := Load(Layer{FS: files(map[string]string{
		"segments/PID-Patient.yaml": "segment: PID\nresource: Patient\nrules:\n" +
			"  - {from: \"29\", to: deceasedDateTime}\n" +
			"  - {from: \"30\", to: deceasedBoolean}\n",
		"segments/PV1-Patient.yaml": "segment: PV1\nresource: Patient\nrules:\n" +
			"  - {from: \"2\", to: multipleBirthBoolean}\n" +
			"  - {from: \"3\", to: multipleBirthInteger, as: integer, prefer: true}\n",
		"messages/adt.yaml": "structure: ADT\nmessages: [ADT]\nresources:\n  - {map: PID-Patient, name: patient}\n" +
			"  - {map: PV1-Patient, into: patient}\n",
	})})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, segments string
		want           map[string][]string
	}{
		{"the first type written is kept", "PID|1||||DOE^JANE" + strings.Repeat("|", 24) + "20250101|Y\rPV1|1|Y",
			map[string][]string{"deceasedDateTime": {"2025-01-01"}, "deceasedBoolean": nil, "multipleBirthBoolean": {"true"}}},
		{"a preferred type replaces another", "PID|1||||DOE^JANE\rPV1|1|Y|2",
			map[string][]string{"multipleBirthBoolean": nil, "multipleBirthInteger": {"2"}}},
		{"another type is written when the first is empty", "PID|1||||DOE^JANE" + strings.Repeat("|", 25) + "Y\rPV1|1||2",
			map[string][]string{"deceasedDateTime": nil, "deceasedBoolean": {"true"}, "multipleBirthInteger": {"2"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, _, out := convertWith(t, set, []byte("MSH|^~\\&|A|B|C|D|20260101||ADT^A01|1|P|2.5\r"+tc.segments), Options{Bundle: Collection, KeepIncomplete: true})
			for path, want := range tc.want {
				if got := b.at("Patient", path); !slices.Equal(got, want) {
					t.Errorf("Patient.%s = %q, want %q\n%s", path, got, want, out)
				}
			}
		})
	}
	// A preferred map that finds nothing to write leaves the other type's value.
	set, err = Load(Layer{FS: files(map[string]string{
		"datatypes/CQ-Qty.yaml": "datatype: CQ\nfhir: Quantity\nname: CQ-Qty\nrules:\n  - {from: \"1\", to: value, as: decimal}\n",
		"segments/OBX-Observation.yaml": "segment: OBX\nresource: Observation\nrules:\n  - {value: final, to: status}\n" +
			"  - {from: \"5\", to: valueString}\n  - {from: \"6\", to: valueQuantity, map: CQ-Qty, prefer: true}\n",
		"messages/oru.yaml": "structure: ORU\nmessages: [ORU]\nresources:\n  - {map: OBX-Observation}\n",
	})})
	if err != nil {
		t.Fatal(err)
	}
	b, _, out := convertWith(t, set, []byte("MSH|^~\\&|A|B|C|D|20260101||ORU^R01|1|P|2.5\r"+
		"OBX|1|ST|HB||kept|^g/L\rOBX|2|ST|WBC||replaced|7.5^10*9/L\r"), Options{Bundle: Collection, KeepIncomplete: true})
	for path, want := range map[string][]string{"valueString": {"kept"}, "valueQuantity.value": {"7.5"}} {
		if got := b.at("Observation", path); !slices.Equal(got, want) {
			t.Errorf("Observation.%s = %q, want %q\n%s", path, got, want, out)
		}
	}
	_, err = Load(Layer{FS: files(map[string]string{
		"segments/PID-Patient.yaml": "segment: PID\nresource: Patient\nrules:\n  - {from: \"7\", to: birthDate, prefer: true}\n",
	})})
	if err == nil || !strings.Contains(err.Error(), "segments/PID-Patient.yaml:4:") || !strings.Contains(err.Error(), "no choice element's type") {
		t.Errorf("prefer on birthDate: %v", err)
	}
}

// TestSharedSegmentMap: with shared: true, segments of one message with the
// same identity make one resource, which each links to; without it, or without
// identifying values, each makes its own.
func TestSharedSegmentMap(t *testing.T) {
	for _, shared := range []bool{true, false} {
		set, err := Load(Layer{FS: files(map[string]string{
			"segments/PR1-Procedure.yaml": "segment: PR1\nresource: Procedure\nrules:\n  - {value: unknown, to: status}\n  - {from: \"3\", to: code.text}\n",
			"segments/PR1-Parent.yaml": fmt.Sprintf("segment: PR1\nresource: Procedure\nname: PR1-Parent\nidentity: [\"25\"]\nshared: %v\nrules:\n", shared) +
				"  - {value: unknown, to: status}\n  - {from: \"25\", to: identifier.value}\n",
			"messages/adt.yaml": "structure: ADT\nmessages: [ADT]\nresources:\n  - {map: PID-Patient, name: patient}\n" +
				"  - {map: PR1-Procedure, name: procedure}\n" +
				"  - {map: PR1-Parent, links: {procedure: partOf}, when: 'Has(\"25\")'}\n",
		})})
		if err != nil {
			t.Fatal(err)
		}
		pr1 := func(code, parent string) string { return "PR1|1||" + code + strings.Repeat("|", 22) + parent + "\r" }
		b, _, out := convertWith(t, set, []byte("MSH|^~\\&|A|B|C|D|20260101||ADT^A01|1|P|2.5\rPID|1||||DOE^JANE\r"+
			pr1("BIOPSY", "P1")+pr1("SCOPE", "P1")+pr1("XRAY", "P2")), Options{Bundle: Collection, KeepIncomplete: true})
		wantIDs := []string{"P1", "P2"}
		if !shared {
			wantIDs = []string{"P1", "P1", "P2"}
		}
		if got := b.at("Procedure", "identifier.value"); !slices.Equal(got, wantIDs) {
			t.Errorf("shared %v: parents %q, want %q\n%s", shared, got, wantIDs, out)
		}
		parentOf := map[string]string{}
		byURL := map[string]map[string]any{}
		for _, e := range b.Entry {
			byURL[e.FullURL] = e.Resource
		}
		for _, r := range b.all("Procedure") {
			code, _ := r["code"].(map[string]any)
			parts, _ := r["partOf"].([]any)
			if code == nil || len(parts) != 1 {
				continue
			}
			parent := byURL[parts[0].(map[string]any)["reference"].(string)]
			parentOf[code["text"].(string)] = fmt.Sprint(parent["identifier"])
		}
		if len(parentOf) != 3 || parentOf["BIOPSY"] != parentOf["SCOPE"] || parentOf["BIOPSY"] == parentOf["XRAY"] {
			t.Errorf("shared %v: parents by procedure %v\n%s", shared, parentOf, out)
		}
	}
}

// TestExpressionStringsLastTheirMessage: the strings an expression makes
// (Get, +) live in the converter's arena for one message. Two Gets in one
// expression each keep their own text, though both were unescaped into the
// same scratch buffer, and a converter reused for the next message writes
// what a new one would.
func TestExpressionStringsLastTheirMessage(t *testing.T) {
	set, err := Load(Layer{FS: files(map[string]string{
		"segments/PID-Patient.yaml": "segment: PID\nresource: Patient\nrules:\n" +
			"  - {expr: 'Get(\"5.1\") + \"/\" + Get(\"5.2\")', to: name.text}\n" +
			"  - {expr: 'Get(\"5.1\") == Get(\"5.2\") ? \"same\" : \"differ\"', to: name.prefix}\n",
		"messages/adt.yaml": "structure: ADT\nmessages: [ADT]\nresources:\n  - {map: PID-Patient}\n",
	})})
	if err != nil {
		t.Fatal(err)
	}
	c := set.NewConverter(Options{Bundle: Collection, KeepIncomplete: true})
	for _, tc := range []struct{ pid, text, prefix string }{
		{`PID|1||||A\T\B^C\T\D`, "A&B/C&D", "differ"},
		{`PID|1||||X\S\Y^X\S\Y`, "X^Y/X^Y", "same"},
		{`PID|1||||A\T\B^C\T\D`, "A&B/C&D", "differ"},
	} {
		m, err := hl7v2.Parse([]byte("MSH|^~\\&|A|B|C|D|20260101||ADT^A01|1|P|2.5\r" + tc.pid))
		if err != nil {
			t.Fatal(err)
		}
		out, err := c.Convert(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		var b bundle
		if err := json.Unmarshal(out, &b); err != nil {
			t.Fatal(err)
		}
		if got := b.at("Patient", "name.text"); !slices.Equal(got, []string{tc.text}) {
			t.Errorf("%s: name.text = %q, want %q", tc.pid, got, tc.text)
		}
		if got := b.at("Patient", "name.prefix"); !slices.Equal(got, []string{tc.prefix}) {
			t.Errorf("%s: name.prefix = %q, want %q", tc.pid, got, tc.prefix)
		}
	}
}

// TestSegmentMapCondition: a segment map's own when: holds in every entry that
// uses it, after the entry's condition.
func TestSegmentMapCondition(t *testing.T) {
	set, err := Load(Layer{FS: files(map[string]string{
		"segments/PR1-Procedure.yaml": "segment: PR1\nresource: Procedure\nwhen: 'Has(\"3\")'\nrules:\n" +
			"  - {value: unknown, to: status}\n  - {from: \"3\", to: code.text}\n  - {from: \"4\", to: note.text}\n",
		"messages/adt.yaml": "structure: ADT\nmessages: [ADT]\nresources:\n  - {map: PID-Patient, name: patient}\n" +
			"  - {map: PR1-Procedure, when: 'Get(\"4\") != \"skip\"'}\n",
		"messages/bar.yaml": "structure: BAR\nmessages: [BAR]\nresources:\n  - {map: PID-Patient, name: patient}\n" +
			"  - {map: PR1-Procedure}\n",
	})})
	if err != nil {
		t.Fatal(err)
	}
	segments := "PID|1||||DOE^JANE\rPR1|1||BIOPSY|kept\rPR1|2|||no code\rPR1|3||SCOPE|skip\r"
	// The second PR1, without PR1-3, is no Procedure in either structure; the
	// third is one only where the entry's own condition lets it through.
	for typ, want := range map[string][]string{"ADT^A01": {"kept"}, "BAR^P01": {"kept", "skip"}} {
		b, _, out := convertWith(t, set, []byte("MSH|^~\\&|A|B|C|D|20260101||"+typ+"|1|P|2.5\r"+segments), Options{Bundle: Collection, KeepIncomplete: true})
		if got := b.at("Procedure", "note.text"); !slices.Equal(got, want) {
			t.Errorf("%s: procedures' notes %q, want %q\n%s", typ, got, want, out)
		}
	}
}

// TestConditionsRunOncePerFrame: the conditions a when: joins with && are each
// run once for all the rules of a map in one segment or value (see
// conditions), so their results must stay with that frame: each PR1 is
// judged on its own, a data-type map's conditions do not disturb its
// segment's, and a condition reading Value, which differs from rule to rule,
// is never shared.
func TestConditionsRunOncePerFrame(t *testing.T) {
	set, err := Load(Layer{FS: files(map[string]string{
		"datatypes/CWE-Category.yaml": "datatype: CWE\nfhir: CodeableConcept\nname: CWE-Category\nrules:\n" +
			"  - {from: \"1\", to: coding.code, when: 'Has(\"2\")'}\n" +
			"  - {from: \"2\", to: text, when: 'Has(\"2\") && Value != \"skip\"'}\n",
		"segments/PR1-Procedure.yaml": "segment: PR1\nresource: Procedure\nrules:\n" +
			"  - {from: \"3\", to: code.text, when: 'Get(\"2\") == \"A\" && Has(\"4\")'}\n" +
			"  - {from: \"6\", to: category, map: CWE-Category, when: 'Has(\"4\")'}\n" +
			"  - {from: \"4\", to: note.text, when: 'Has(\"4\") && Get(\"2\") == \"A\"'}\n" +
			"  - {value: completed, to: status, when: 'Get(\"2\") == \"A\"'}\n" +
			"  - {value: unknown, to: status, when: 'Get(\"2\") != \"A\"'}\n" +
			"  - {from: \"3\", to: reasonCode.text, when: 'Get(\"2\") == \"A\" || Value == \"X\"'}\n",
		"messages/adt.yaml": "structure: ADT\nmessages: [ADT]\nresources:\n  - {map: PID-Patient, name: patient}\n" +
			"  - {map: PR1-Procedure}\n",
	})})
	if err != nil {
		t.Fatal(err)
	}
	b, _, _ := convertWith(t, set, []byte("MSH|^~\\&|A|B|C|D|20260101||ADT^A01|1|P|2.5\rPID|1||||DOE^JANE\r"+
		"PR1|1|A|CODE1|NOTE1||C1^T1\rPR1|2|B|CODE2|NOTE2||C2^skip\rPR1|3|B|X\rPR1|4|A|Y||\r"), Options{Bundle: Collection, KeepIncomplete: true})
	b.expect(t, []want{
		{"Procedure", "code.text", []string{"CODE1"}},
		{"Procedure", "note.text", []string{"NOTE1"}},
		{"Procedure", "status", []string{"completed", "unknown", "unknown", "completed"}},
		{"Procedure", "category.coding.code", []string{"C1", "C2"}},
		{"Procedure", "category.text", []string{"T1"}},
		{"Procedure", "reasonCode.text", []string{"CODE1", "X", "Y"}},
	})
}

// TestUnused names the maps and tables nothing uses, and finds none in the
// default set: a map left behind by a change is dead text a reader would take
// for a rule in force.
func TestUnused(t *testing.T) {
	if u := loadDefault(t).Unused(); len(u) != 0 {
		t.Errorf("the default set has maps or tables nothing uses:\n%s", strings.Join(u, "\n"))
	}
	set, err := Load(Layer{FS: fstest.MapFS{
		"messages/zzz.yaml":         {Data: []byte("structure: ZZZ\nmessages: [ZZZ]\nresources:\n  - {map: PID-Patient, name: patient}\n")},
		"segments/PID-Patient.yaml": {Data: []byte("segment: PID\nresource: Patient\nrules:\n  - {from: \"8\", to: gender, table: sex}\n  - {from: \"5\", to: name, map: XPN-Name}\n")},
		"segments/ZPI-Patient.yaml": {Data: []byte("segment: ZPI\nresource: Patient\nrules:\n  - {from: \"8\", to: gender, table: sex}\n")},
		"datatypes/XPN-Name.yaml":   {Data: []byte("datatype: XPN\nfhir: HumanName\nname: XPN-Name\nrules:\n  - {from: \"1\", to: family}\n")},
		"datatypes/XPN-Other.yaml":  {Data: []byte("datatype: XPN\nfhir: HumanName\nname: XPN-Other\nrules:\n  - {from: \"2\", to: given}\n")},
		"tables/sex.yaml":           {Data: []byte("table: sex\nmap: {F: female}\n")},
		"tables/unused.yaml":        {Data: []byte("table: unused\nmap: {F: female}\n")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"datatypes/XPN-Other.yaml:1: data-type map XPN-Other is used by nothing",
		"segments/ZPI-Patient.yaml:1: segment map ZPI-Patient is used by nothing",
		"tables/unused.yaml:1: table unused is used by nothing",
	}
	if got := set.Unused(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Unused:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestExtends adds a segment map for a local Z-segment to a structure with a
// file of its own, without copying the structure.
func TestExtends(t *testing.T) {
	base := fstest.MapFS{
		"messages/adt.yaml":         {Data: []byte("structure: ADT\nmessages: [ADT]\nresources:\n  - {map: PID-Patient, name: patient}\n")},
		"segments/PID-Patient.yaml": {Data: []byte("segment: PID\nresource: Patient\nrules:\n  - {from: \"7\", to: birthDate}\n")},
	}
	local := fstest.MapFS{
		"messages/adt-local.yaml":   {Data: []byte("extends: ADT\nresources:\n  - {map: ZPI-Patient, into: patient}\n")},
		"segments/ZPI-Patient.yaml": {Data: []byte("segment: ZPI\nresource: Patient\nrules:\n  - {from: \"2\", to: gender}\n")},
	}
	set, err := Load(Layer{FS: base}, Layer{FS: local})
	if err != nil {
		t.Fatal(err)
	}
	if u := set.Unused(); len(u) != 0 {
		t.Errorf("unused: %v", u)
	}
	m, err := hl7v2.Parse([]byte("MSH|^~\\&|A|B|C|D|20260101||ADT^A01|1|P|2.5\rPID|1||||DOE||19800101\rZPI|1|female\r"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := set.NewConverter(Options{Bundle: Collection}).Convert(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `"birthDate":"1980-01-01","gender":"female"`) {
		t.Errorf("the extension's ZPI is not on the structure's patient: %s", out)
	}
	if s := set.Structures(); !slices.Equal(s, []string{"ADT"}) {
		t.Errorf("structures %v, want the one extended", s)
	}

	for _, tc := range []struct{ file, want string }{
		{"extends: ADX\nresources:\n  - {map: ZPI-Patient, into: patient}\n", `messages/z.yaml:1: extends: no structure "ADX" (have: ADT)`},
		{"extends: ADT\nstructure: ZZZ\nresources:\n  - {map: ZPI-Patient, into: patient}\n", "messages/z.yaml:1: a file that extends a structure names no structure or messages of its own"},
		{"extends: ADT\nresources:\n  - {map: ZPI-Patinet, into: patient}\n", `messages/z.yaml:3: no segment map "ZPI-Patinet"`},
	} {
		bad := fstest.MapFS{"messages/z.yaml": {Data: []byte(tc.file)}, "segments/ZPI-Patient.yaml": local["segments/ZPI-Patient.yaml"]}
		if _, err := Load(Layer{FS: base}, Layer{FS: bad}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("load of\n%s: %v, want %s", tc.file, err, tc.want)
		}
	}
}

// TestDefaultReadsAMountedConfigMap: a Kubernetes ConfigMap volume holds its
// files in a hidden ..<timestamp> directory, reached through the ..data link
// and one link per top-level name (segments -> ..data/segments). The set
// loads through the links, once, and a dangling editor lock (.#name) is not a
// mapping file.
func TestDefaultReadsAMountedConfigMap(t *testing.T) {
	dir := t.TempDir()
	gen := filepath.Join(dir, "..2026_11_22_10_00_00.123456789")
	if err := os.MkdirAll(filepath.Join(gen, "segments"), 0o755); err != nil {
		t.Fatal(err)
	}
	pid := "segment: PID\nresource: Patient\nrules:\n  - {from: \"7\", to: birthDate}\n"
	if err := os.WriteFile(filepath.Join(gen, "segments", "PID-Patient.yaml"), []byte(pid), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, l := range [][2]string{
		{"..data", filepath.Base(gen)},
		{"segments", "..data/segments"},
		{"segments/.#PID-Patient.yaml", "root@host.4242:1763800000"},
	} {
		if err := os.Symlink(l[1], filepath.Join(dir, l[0])); err != nil {
			t.Fatal(err)
		}
	}
	set, err := Default(dir)
	if err != nil {
		t.Fatalf("a ConfigMap volume does not load: %v", err)
	}
	b, _, _ := convertWith(t, set, message("ADT^A01", "PID|1||123^^^H^MR||DOE^JANE||19580314|F"), Options{})
	p := b.one(t, "Patient")
	if p["birthDate"] != "1958-03-14" || p["name"] != nil {
		t.Errorf("Patient %v: want the override in force (birthDate only)", p)
	}
}

// TestMappingFilesStopsAtALinkLoop: a directory link back up the tree is an
// error naming it, not an endless walk.
func TestMappingFilesStopsAtALinkLoop(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "segments"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..", filepath.Join(dir, "segments", "up")); err != nil {
		t.Fatal(err)
	}
	if _, err := MappingFiles(os.DirFS(dir)); err == nil || !strings.Contains(err.Error(), "link loop") {
		t.Errorf("MappingFiles = %v, want a link loop error", err)
	}
}

// TestMappingDirsPassesOverWhatTheLoaderRefuses: the directories a watch
// covers are the ones the loader reads, through the same links, hidden ones
// left out; a link loop and a dangling link, which the loader reports, are
// passed over, so the rest of the tree is still listed.
func TestMappingDirsPassesOverWhatTheLoaderRefuses(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"segments", "..2026_11_22/tables", ".git"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range [][2]string{
		{"segments/up", ".."},
		{"tables", "..2026_11_22/tables"},
		{"zz-gone", "nowhere"},
	} {
		if err := os.Symlink(l[1], filepath.Join(dir, l[0])); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := MappingFiles(os.DirFS(dir)); err == nil {
		t.Fatal("MappingFiles passed over a link loop and a dangling link")
	}
	dirs, err := MappingDirs(os.DirFS(dir))
	if err != nil {
		t.Fatalf("MappingDirs: %v", err)
	}
	// segments/up leads back to the top, level after level, until the links
	// run out: never more than maxLinks of them in a row.
	if want := []string{".", "segments", "segments/up", "segments/up/segments"}; len(dirs) < len(want) || !slices.Equal(dirs[:len(want)], want) {
		t.Errorf("MappingDirs starts %q, want %q", dirs, want)
	}
	if !slices.Contains(dirs, "tables") {
		t.Errorf("MappingDirs = %q, want the linked tables", dirs)
	}
	for _, d := range dirs {
		if strings.Contains(d, ".git") || strings.Contains(d, "zz-gone") || strings.Contains(d, "..2026") || strings.Count(d, "up") > maxLinks {
			t.Errorf("MappingDirs lists %q", d)
		}
	}
}
