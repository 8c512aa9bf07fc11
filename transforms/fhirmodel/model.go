package fhirmodel

import (
	"slices"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	apb "github.com/google/fhir/go/proto/google/fhir/proto/annotations_go_proto"
	dpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	bpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
)

// Element is one element of a FHIR type, as it appears in FHIR JSON.
//
// Codes and Targets are shared by every caller and must not be modified.
type Element struct {
	// Name is the JSON name: "birthDate", "class", and for a choice element
	// the name with its type ("deceasedBoolean", "valueQuantity").
	Name string
	// Type is the FHIR type: a primitive ("string", "date", "code"), a complex
	// type ("Identifier", "Reference"), "BackboneElement" or "Element" for a
	// component defined inside a resource or a data type, and "Resource" for
	// an element that holds a whole resource (contained, Bundle.entry.resource).
	// A profiled type is named by its base: Observation.referenceRange.low is
	// a "Quantity", though its own Type is the SimpleQuantity profile.
	Type string
	// Repeated says the element is a JSON array (max cardinality *).
	Repeated bool
	// Required says the element has min cardinality 1. Each alternative of a
	// required choice is not Required, since any one of them satisfies it.
	Required bool
	// Codes are the allowed codes, in their FHIR spelling, of a code bound to
	// a required value set (Patient.gender: male, female, other, unknown);
	// nil for any other element.
	Codes []string
	// Targets are the resource types a Reference may point to; nil for a
	// Reference to any resource and for elements that are not references.
	Targets []string
	// Choice is, for one alternative of a choice element, the choice's name
	// ("occurrence" for occurrenceTiming); "" for any other element.
	Choice string
}

// Type is a FHIR resource, complex data type, or a component (backbone
// element) defined inside one. It is read-only and safe to share.
type Type struct {
	name     string
	desc     protoreflect.MessageDescriptor
	elements []Element // sorted by Name
	children []*Type   // children[i] is the type below elements[i]; nil for primitives and resources
	byName   map[string]int
	choices  map[string][]string // "deceased": deceasedBoolean, deceasedDateTime, in FHIR's order
	// requiredChoices are the choices of min cardinality 1 (occurrence of
	// Immunization): one alternative must hold a value.
	requiredChoices map[string]bool
	// inDatatype says the type is a data type or a component of one, whose
	// components FHIR types as Element rather than BackboneElement.
	inDatatype bool
}

// Name returns the type's FHIR name: "Patient", "HumanName", and for a
// component its path from the type that defines it, "Patient.contact".
func (t *Type) Name() string { return t.name }

// Element returns the element with the given JSON name, choice elements by
// their full JSON name ("deceasedBoolean", "valueQuantity"). The returned
// Type is the element's own, so that callers can descend; it is nil for
// primitives and for elements of type Resource.
func (t *Type) Element(name string) (Element, *Type, bool) {
	i, ok := t.byName[name]
	if !ok {
		return Element{}, nil, false
	}
	return t.elements[i], t.children[i], true
}

// Alternatives returns the alternatives of the type's choice element named
// choice ("deceased": deceasedBoolean, deceasedDateTime), in FHIR's order.
func (t *Type) Alternatives(choice string) []string {
	return slices.Clone(t.choices[choice])
}

// ChoiceRequired reports whether the choice element named choice
// ("occurrence") has min cardinality 1: one of its alternatives must hold a
// value.
func (t *Type) ChoiceRequired(choice string) bool { return t.requiredChoices[choice] }

// Elements returns every element of the type, choice elements expanded to
// one per alternative, sorted by name.
func (t *Type) Elements() []Element {
	return slices.Clone(t.elements)
}

// Resource returns the R4 resource type with the given name ("Patient").
func Resource(name string) (*Type, bool) {
	t, ok := loadModel().resources[name]
	return t, ok
}

// Datatype returns the R4 complex data type with the given name ("HumanName").
// Primitive types have no elements of their own, so they are not Types.
func Datatype(name string) (*Type, bool) {
	t, ok := loadModel().datatypes[name]
	return t, ok
}

// model indexes every R4 resource and complex data type by name, and every
// message that has a Type by its descriptor.
type model struct {
	resources map[string]*Type
	datatypes map[string]*Type
	byDesc    map[protoreflect.FullName]*Type
	codes     map[protoreflect.FullName][]string // per code enum wrapper, shared by its elements
	// primitives and choices hold the messages that are primitive types and
	// choice types, so that a walk over a parsed resource can tell them
	// apart without reading annotations, which allocates.
	primitives map[protoreflect.FullName]bool
	choices    map[protoreflect.FullName]bool
	queue      []*Type // types whose elements are still to be filled in; only while building
}

var (
	modelOnce sync.Once
	theModel  *model
)

// loadModel builds the whole model on first use. Walking every R4 resource
// and data type takes some tens of milliseconds, once, mostly decoding the
// protos' annotations; afterwards every question is a map look-up with no
// locking, since the model is never written again.
func loadModel() *model {
	modelOnce.Do(func() { theModel = buildModel() })
	return theModel
}

const structureDefinitionPrefix = "http://hl7.org/fhir/StructureDefinition/"

var (
	containedResourceName = (&bpb.ContainedResource{}).ProtoReflect().Descriptor().FullName()
	anyName               = (&anypb.Any{}).ProtoReflect().Descriptor().FullName()
)

func buildModel() *model {
	m := &model{
		resources: make(map[string]*Type),
		datatypes: make(map[string]*Type),
		byDesc:    make(map[protoreflect.FullName]*Type),
		codes:     make(map[protoreflect.FullName][]string),

		primitives: make(map[protoreflect.FullName]bool),
		choices:    make(map[protoreflect.FullName]bool),
	}
	// ContainedResource has one oneof member per resource type, which makes
	// it the list of every R4 resource.
	cr := (&bpb.ContainedResource{}).ProtoReflect().Descriptor()
	members := cr.Oneofs().Get(0).Fields()
	for i := 0; i < members.Len(); i++ {
		md := members.Get(i).Message()
		if md == nil {
			continue
		}
		t := m.newType(string(md.Name()), md, false)
		m.resources[t.name] = t
	}
	// The complex data types all live in one file; Google's own profiles in
	// it (CodingWithFixedCode) have URLs outside hl7.org and are left out.
	file := (&dpb.String{}).ProtoReflect().Descriptor().ParentFile()
	for i := 0; i < file.Messages().Len(); i++ {
		md := file.Messages().Get(i)
		url := structureDefinitionURL(md)
		if kind(md) != apb.StructureDefinitionKindValue_KIND_COMPLEX_TYPE || !strings.HasPrefix(url, structureDefinitionPrefix) {
			continue
		}
		t := m.newType(strings.TrimPrefix(url, structureDefinitionPrefix), md, true)
		m.datatypes[t.name] = t
	}
	// Breadth first, so that a component reused further down (Observation's
	// referenceRange inside component) is named after its first, shallowest
	// use, as FHIR names it.
	for len(m.queue) > 0 {
		t := m.queue[0]
		m.queue = m.queue[1:]
		m.fill(t)
	}
	return m
}

func (m *model) newType(name string, md protoreflect.MessageDescriptor, inDatatype bool) *Type {
	t := &Type{name: name, desc: md, byName: make(map[string]int), choices: make(map[string][]string), requiredChoices: make(map[string]bool), inDatatype: inDatatype}
	m.byDesc[md.FullName()] = t
	m.queue = append(m.queue, t)
	return t
}

// fill works out t's elements from its message's fields.
func (m *model) fill(t *Type) {
	fields := t.desc.Fields()
	isReference := proto.HasExtension(t.desc.Options(), apb.E_FhirReferenceType)
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		if f.Message() == nil {
			continue
		}
		// A Reference's oneof holds the parsed forms of JSON's one
		// "reference" string (patient_id, fragment, ...); only the field
		// named "reference" in JSON exists in FHIR.
		if isReference && f.ContainingOneof() != nil && f.JSONName() != "reference" {
			continue
		}
		required := proto.GetExtension(f.Options(), apb.E_ValidationRequirement).(apb.Requirement) == apb.Requirement_REQUIRED_BY_FHIR
		if isChoice(f.Message()) {
			m.choices[f.Message().FullName()] = true
			alts := f.Message().Fields()
			if required {
				t.requiredChoices[f.JSONName()] = true
			}
			for j := 0; j < alts.Len(); j++ {
				alt := alts.Get(j)
				name := f.JSONName() + upperFirst(alt.JSONName())
				t.choices[f.JSONName()] = append(t.choices[f.JSONName()], name)
				m.add(t, f.JSONName(), name, alt, false, false)
			}
			continue
		}
		m.add(t, f.JSONName(), f.JSONName(), f, f.IsList(), required)
	}
	order := make([]int, len(t.elements))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(t.elements[a].Name, t.elements[b].Name) })
	elements := make([]Element, len(order))
	children := make([]*Type, len(order))
	for i, j := range order {
		elements[i], children[i] = t.elements[j], t.children[j]
		t.byName[elements[i].Name] = i
	}
	t.elements, t.children = elements, children
}

// add appends the element that field f (or choice alternative f) gives t.
// base is the field's own JSON name, used to name a component after it.
func (m *model) add(t *Type, base, name string, f protoreflect.FieldDescriptor, repeated, required bool) {
	el := Element{Name: name, Repeated: repeated, Required: required}
	if base != name {
		el.Choice = base
	}
	var child *Type
	md := f.Message()
	switch {
	case md.FullName() == containedResourceName || md.FullName() == anyName:
		// contained is a google.protobuf.Any, Bundle.entry.resource a
		// ContainedResource: both hold a whole resource of any type.
		el.Type = "Resource"
	case kind(md) == apb.StructureDefinitionKindValue_KIND_PRIMITIVE_TYPE:
		el.Type = typeName(md)
		el.Codes = m.enumCodes(md)
		m.primitives[md.FullName()] = true
	case kind(md) == apb.StructureDefinitionKindValue_KIND_COMPLEX_TYPE:
		el.Type = typeName(md)
		child = m.byDesc[md.FullName()]
		if child == nil {
			child = m.newType(lastSegment(structureDefinitionURL(md)), md, true)
		}
		if el.Type == "Reference" {
			el.Targets = targets(f)
		}
	default:
		// A message with no FHIR annotations is a component defined inside
		// a resource (BackboneElement) or a data type (Element).
		el.Type = "BackboneElement"
		if t.inDatatype {
			el.Type = "Element"
		}
		child = m.byDesc[md.FullName()]
		if child == nil {
			child = m.newType(t.name+"."+base, md, t.inDatatype)
		}
	}
	t.elements = append(t.elements, el)
	t.children = append(t.children, child)
}

// enumCodes lists the codes of a code element whose value set is required
// and so generated as an enum, spelled as jsonformat writes them: the
// fhir_original_code annotation when the enum name could not hold the code
// ("<", "1.0.2"), else the enum name lower-cased with '_' for '-'.
func (m *model) enumCodes(md protoreflect.MessageDescriptor) []string {
	value := md.Fields().ByName("value")
	if value == nil || value.Kind() != protoreflect.EnumKind {
		return nil
	}
	if codes, ok := m.codes[md.FullName()]; ok {
		return codes
	}
	values := value.Enum().Values()
	codes := make([]string, 0, values.Len())
	for i := 0; i < values.Len(); i++ {
		v := values.Get(i)
		if v.Number() == 0 {
			continue // INVALID_UNINITIALIZED: proto's zero value, no FHIR code
		}
		if orig := proto.GetExtension(v.Options(), apb.E_FhirOriginalCode).(string); orig != "" {
			codes = append(codes, orig)
			continue
		}
		codes = append(codes, strings.ReplaceAll(strings.ToLower(string(v.Name())), "_", "-"))
	}
	m.codes[md.FullName()] = codes
	return codes
}

// targets reads the valid_reference_type annotations of a Reference field.
// "Resource" among them means any resource, which Element says with nil.
func targets(f protoreflect.FieldDescriptor) []string {
	types := proto.GetExtension(f.Options(), apb.E_ValidReferenceType).([]string)
	if len(types) == 0 || slices.Contains(types, "Resource") {
		return nil
	}
	return types
}

func kind(md protoreflect.MessageDescriptor) apb.StructureDefinitionKindValue {
	return proto.GetExtension(md.Options(), apb.E_StructureDefinitionKind).(apb.StructureDefinitionKindValue)
}

func isChoice(md protoreflect.MessageDescriptor) bool {
	return md != nil && proto.GetExtension(md.Options(), apb.E_IsChoiceType).(bool)
}

func structureDefinitionURL(md protoreflect.MessageDescriptor) string {
	return proto.GetExtension(md.Options(), apb.E_FhirStructureDefinitionUrl).(string)
}

// profileBase is the last segment of the type a profile constrains, or "".
func profileBase(md protoreflect.MessageDescriptor) string {
	bases := proto.GetExtension(md.Options(), apb.E_FhirProfileBase).([]string)
	if len(bases) == 0 {
		return ""
	}
	return lastSegment(bases[0])
}

// typeName names the FHIR type of a message. A profile is named by the type
// it constrains, as FHIR's element definitions do: SimpleQuantity is a
// Quantity, and the per-element code wrappers (Patient.GenderCode), which
// have no structure definition of their own, are a code.
func typeName(md protoreflect.MessageDescriptor) string {
	if base := profileBase(md); base != "" {
		return base
	}
	return lastSegment(structureDefinitionURL(md))
}

func lastSegment(url string) string {
	return url[strings.LastIndexByte(url, '/')+1:]
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
