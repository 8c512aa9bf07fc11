package routes

import (
	"slices"
	"strings"
	"unsafe"

	"github.com/expr-lang/expr/ast"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
)

// Env is what a route's when and order_by expressions see: one name, msg.
// Expressions are compiled against it once, at load, so a misspelt field or a
// comparison of a string with a number is a load error, not a surprise at run
// time.
type Env struct {
	Msg *Msg `expr:"msg"`
}

// Msg is the message a route's expressions read, as msg. Its fields come from
// the journal record and, for HL7 v2, from the parsed message; Get and Has reach
// any other part of an HL7 v2 message by path.
//
// A Msg is reused from message to message (Reset): its strings, and those Get
// returns, are valid until the next Reset and only while the record's bytes are
// unchanged. Copy one (strings.Clone) to keep it longer.
type Msg struct {
	Type         string // MSH-9.1, e.g. "ADT"
	Trigger      string // MSH-9.2, e.g. "A01"
	Structure    string // MSH-9.3, e.g. "ADT_A01"
	Version      string // MSH-12.1, e.g. "2.5.1"
	ControlID    string // MSH-10
	ProcessingID string // MSH-11.1: "P", "T" or "D"

	// Sender is MSH-3 and MSH-4 as they stand, joined as "APP|FACILITY", as in
	// the journal record.
	Sender            string
	SendingApp        string // MSH-3.1
	SendingFacility   string // MSH-4.1, often an ODS code
	ReceivingApp      string // MSH-5.1
	ReceivingFacility string // MSH-6.1

	NHSNumber string // the NHS number from PID-3, when there is one
	Listener  string // the listener that received the message, e.g. "mllp"
	Peer      string // the remote address it came from
	// Format is what the record holds: "hl7v2" or "cda".
	Format string

	parsed *hl7v2.Message // nil for formats other than HL7 v2
	// scratch holds the text of values that needed unescaping or decoding. It is
	// only ever appended to between Resets, so a string handed out earlier is
	// never overwritten by a later Get; when it is full a new one is started and
	// the strings into the old one keep it alive.
	scratch []byte
}

// Paths of the header fields Reset reads from the parsed message.
var (
	pathStructure         = hl7v2.MustParsePath("MSH-9.3")
	pathProcessingID      = hl7v2.MustParsePath("MSH-11.1")
	pathSendingApp        = hl7v2.MustParsePath("MSH-3.1")
	pathSendingFacility   = hl7v2.MustParsePath("MSH-4.1")
	pathReceivingApp      = hl7v2.MustParsePath("MSH-5.1")
	pathReceivingFacility = hl7v2.MustParsePath("MSH-6.1")
)

// formatName is the name expressions see for a record's format.
func formatName(f string) string {
	if f == FormatHL7v2 {
		return "hl7v2"
	}
	return f
}

// Reset makes m describe rec and parsed, its HL7 v2 message; parsed is nil for
// other formats (the v2 fields are then empty and Get returns ""). rec may be
// nil when only the parsed message is known. Reset does not allocate once m's
// scratch space has grown to the size of the messages it sees.
func (m *Msg) Reset(rec *Record, parsed *hl7v2.Message) {
	scratch := m.scratch[:0]
	*m = Msg{parsed: parsed, scratch: scratch, Format: "hl7v2"}
	if rec != nil {
		m.Type, m.Trigger, m.Version, m.ControlID = rec.Type, rec.Trigger, rec.Version, rec.ControlID
		m.Sender, m.NHSNumber, m.Listener, m.Peer = rec.Sender, rec.NHSNumber, rec.Listener, rec.Peer
		m.Format = formatName(rec.Format)
	}
	if parsed == nil {
		return
	}
	m.Structure = m.text(parsed.Get(pathStructure))
	m.ProcessingID = m.text(parsed.Get(pathProcessingID))
	m.SendingApp = m.text(parsed.Get(pathSendingApp))
	m.SendingFacility = m.text(parsed.Get(pathSendingFacility))
	m.ReceivingApp = m.text(parsed.Get(pathReceivingApp))
	m.ReceivingFacility = m.text(parsed.Get(pathReceivingFacility))
}

// Get returns the text of the first value at an HL7 v2 path ("PID-3.1",
// "PID-3[2].1", "OBX[2]-5"): unescaped, decoded from the message's character
// set, without leading and trailing spaces. It returns "" when the message has
// no such part, is not HL7 v2, or path is not a path (a constant path is checked
// when the table loads).
func (m *Msg) Get(path string) string {
	if m.parsed == nil {
		return ""
	}
	p, err := hl7v2.ParsePath(path)
	if err != nil {
		return ""
	}
	return m.text(m.parsed.Get(p))
}

// Has reports whether Get(path) is not empty.
func (m *Msg) Has(path string) bool { return m.Get(path) != "" }

// getPath is Get for a path parsed at load.
func (m *Msg) getPath(p hl7v2.Path) string {
	if m.parsed == nil {
		return ""
	}
	return m.text(m.parsed.Get(p))
}

// text returns v as text without copying it when it needs neither unescaping nor
// decoding, and otherwise as a view of m's scratch space.
func (m *Msg) text(v hl7v2.Value) string {
	raw := v.Bytes()
	if len(raw) == 0 {
		return ""
	}
	// Four times the raw length always holds the text (hl7v2.Message.Text).
	if need := 4 * len(raw); cap(m.scratch)-len(m.scratch) < need {
		m.scratch = make([]byte, 0, max(2*cap(m.scratch), need, 512))
	}
	free := m.scratch[len(m.scratch):cap(m.scratch)]
	out, err := m.parsed.Text(free[:0], v)
	if out == nil && err != nil {
		// A character set this engine cannot decode: route on the unescaped
		// bytes rather than on nothing.
		out, _ = v.Unescape(free[:0])
	}
	out = trimSpaces(out)
	if len(out) == 0 {
		return ""
	}
	if cap(out) <= cap(free) && &free[cap(free)-cap(out)] == &out[0] {
		// out lies in the scratch space: keep it from being written over.
		m.scratch = m.scratch[:len(m.scratch)+cap(free)-cap(out)+len(out)]
	}
	return unsafe.String(&out[0], len(out))
}

// trimSpaces drops the spaces legacy systems pad fields with.
func trimSpaces(b []byte) []byte {
	for len(b) > 0 && b[0] == ' ' {
		b = b[1:]
	}
	for len(b) > 0 && b[len(b)-1] == ' ' {
		b = b[:len(b)-1]
	}
	return b
}

// Routes mostly compare header fields with constants: msg.Type == "ADT",
// msg.Trigger in ["A01", "A04"], msg.Has("PV1-3"). On expr-lang's VM every field
// a program reads is boxed into an interface and every method call goes through
// reflection, which allocates for each message. So an expression made only of
// those forms is also compiled here, to Go closures over fields and paths
// resolved at load; the VM runs everything else. expr.Compile still checks every
// expression first, so both share one language and one set of load errors, and
// a test runs both on the same messages.

// msgFields reads the string fields of Msg by name.
var msgFields = map[string]func(*Msg) string{
	"Type":              func(m *Msg) string { return m.Type },
	"Trigger":           func(m *Msg) string { return m.Trigger },
	"Structure":         func(m *Msg) string { return m.Structure },
	"Version":           func(m *Msg) string { return m.Version },
	"ControlID":         func(m *Msg) string { return m.ControlID },
	"ProcessingID":      func(m *Msg) string { return m.ProcessingID },
	"Sender":            func(m *Msg) string { return m.Sender },
	"SendingApp":        func(m *Msg) string { return m.SendingApp },
	"SendingFacility":   func(m *Msg) string { return m.SendingFacility },
	"ReceivingApp":      func(m *Msg) string { return m.ReceivingApp },
	"ReceivingFacility": func(m *Msg) string { return m.ReceivingFacility },
	"NHSNumber":         func(m *Msg) string { return m.NHSNumber },
	"Listener":          func(m *Msg) string { return m.Listener },
	"Peer":              func(m *Msg) string { return m.Peer },
	"Format":            func(m *Msg) string { return m.Format },
}

// msgCall returns the method (Get or Has) and the constant path of a call on
// msg, such as msg.Get("PID-3.1").
func msgCall(n ast.Node) (string, hl7v2.Path, bool) {
	call, ok := n.(*ast.CallNode)
	if !ok || len(call.Arguments) != 1 {
		return "", hl7v2.Path{}, false
	}
	member, ok := call.Callee.(*ast.MemberNode)
	if !ok || !isMsg(member.Node) {
		return "", hl7v2.Path{}, false
	}
	name, ok := member.Property.(*ast.StringNode)
	arg, isStr := call.Arguments[0].(*ast.StringNode)
	if !ok || !isStr {
		return "", hl7v2.Path{}, false
	}
	p, err := hl7v2.ParsePath(arg.Value)
	if err != nil {
		return "", hl7v2.Path{}, false
	}
	return name.Value, p, true
}

func isMsg(n ast.Node) bool {
	id, ok := n.(*ast.IdentifierNode)
	return ok && id.Value == "msg"
}

// nativeString returns a closure computing the string expression n, or nil
// when n uses anything the closures do not cover.
func nativeString(n ast.Node) func(*Msg) string {
	switch x := n.(type) {
	case *ast.StringNode:
		s := x.Value
		return func(*Msg) string { return s }
	case *ast.MemberNode:
		prop, ok := x.Property.(*ast.StringNode)
		if ok && isMsg(x.Node) && !x.Optional {
			return msgFields[prop.Value]
		}
	case *ast.CallNode:
		if name, p, ok := msgCall(x); ok && name == "Get" {
			return func(m *Msg) string { return m.getPath(p) }
		}
	case *ast.ConditionalNode:
		cond, a, b := nativeBool(x.Cond), nativeString(x.Exp1), nativeString(x.Exp2)
		if cond != nil && a != nil && b != nil {
			return func(m *Msg) string {
				if cond(m) {
					return a(m)
				}
				return b(m)
			}
		}
	}
	return nil
}

// nativeBool returns a closure computing the boolean expression n, or nil when
// n uses anything the closures do not cover.
func nativeBool(n ast.Node) func(*Msg) bool {
	switch x := n.(type) {
	case *ast.BoolNode:
		v := x.Value
		return func(*Msg) bool { return v }
	case *ast.CallNode:
		if name, p, ok := msgCall(x); ok && name == "Has" {
			return func(m *Msg) bool { return m.getPath(p) != "" }
		}
	case *ast.UnaryNode:
		if x.Operator == "!" || x.Operator == "not" {
			if inner := nativeBool(x.Node); inner != nil {
				return func(m *Msg) bool { return !inner(m) }
			}
		}
	case *ast.ConditionalNode:
		cond, a, b := nativeBool(x.Cond), nativeBool(x.Exp1), nativeBool(x.Exp2)
		if cond != nil && a != nil && b != nil {
			return func(m *Msg) bool {
				if cond(m) {
					return a(m)
				}
				return b(m)
			}
		}
	case *ast.BinaryNode:
		return nativeBinary(x)
	}
	return nil
}

func nativeBinary(x *ast.BinaryNode) func(*Msg) bool {
	switch x.Operator {
	case "&&", "and":
		a, b := nativeBool(x.Left), nativeBool(x.Right)
		if a != nil && b != nil {
			return func(m *Msg) bool { return a(m) && b(m) }
		}
		return nil
	case "||", "or":
		a, b := nativeBool(x.Left), nativeBool(x.Right)
		if a != nil && b != nil {
			return func(m *Msg) bool { return a(m) || b(m) }
		}
		return nil
	case "in":
		left := nativeString(x.Left)
		list, ok := stringList(x.Right)
		if left != nil && ok {
			return func(m *Msg) bool { return slices.Contains(list, left(m)) }
		}
		return nil
	}
	if a, b := nativeString(x.Left), nativeString(x.Right); a != nil && b != nil {
		var op func(a, b string) bool
		switch x.Operator {
		case "==":
			op = func(a, b string) bool { return a == b }
		case "!=":
			op = func(a, b string) bool { return a != b }
		case "startsWith":
			op = strings.HasPrefix
		case "endsWith":
			op = strings.HasSuffix
		case "contains":
			op = strings.Contains
		default:
			return nil
		}
		return func(m *Msg) bool { return op(a(m), b(m)) }
	}
	if a, b := nativeBool(x.Left), nativeBool(x.Right); a != nil && b != nil {
		switch x.Operator {
		case "==":
			return func(m *Msg) bool { return a(m) == b(m) }
		case "!=":
			return func(m *Msg) bool { return a(m) != b(m) }
		}
	}
	return nil
}

// stringList returns the values of an array of string constants.
func stringList(n ast.Node) ([]string, bool) {
	arr, ok := n.(*ast.ArrayNode)
	if !ok {
		return nil, false
	}
	list := make([]string, len(arr.Nodes))
	for i, e := range arr.Nodes {
		s, ok := e.(*ast.StringNode)
		if !ok {
			return nil, false
		}
		list[i] = s.Value
	}
	return list, true
}
