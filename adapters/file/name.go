package file

import (
	"strconv"
	"text/template"
	"text/template/parse"

	"github.com/spinebridge/spinebridge/routes"
)

// A name template made only of text, fields ({{.Route}}) and the received
// time in a layout ({{.Received.Format "20060102"}}), as the defaults and most
// hand-written names are, is compiled to a list of parts appended in turn.
// text/template would find each field by reflection, which costs several
// microseconds and a dozen allocations a delivery; any other template (a
// pipeline, a condition, a variable) still runs through text/template. Both
// give the same name: TestCompiledNameMatchesTemplate holds them to it.

// namePart is one piece of a compiled name.
type namePart struct {
	text     string                                                      // literal text, when neither of the others is set
	field    func(d *Destination, b []byte, del *routes.Delivery) []byte // appends a field's safe value
	received bool                                                        // appends .Received.Format layout
	layout   string
}

// nameField appends each field of nameFields that a compiled name may hold,
// made safe as execute makes it.
var nameField = map[string]func(d *Destination, b []byte, del *routes.Delivery) []byte{
	"ID": func(_ *Destination, b []byte, del *routes.Delivery) []byte { return append(b, safe(del.ID)...) },
	"MessageID": func(_ *Destination, b []byte, del *routes.Delivery) []byte {
		return strconv.AppendUint(b, uint64(del.MessageID), 10)
	},
	"Route": func(_ *Destination, b []byte, del *routes.Delivery) []byte { return append(b, safe(del.Route)...) },
	"Destination": func(_ *Destination, b []byte, del *routes.Delivery) []byte {
		return append(b, safe(del.Destination)...)
	},
	"Key":       func(_ *Destination, b []byte, del *routes.Delivery) []byte { return append(b, safe(del.Key)...) },
	"Type":      func(_ *Destination, b []byte, del *routes.Delivery) []byte { return append(b, safe(del.Type)...) },
	"Trigger":   func(_ *Destination, b []byte, del *routes.Delivery) []byte { return append(b, safe(del.Trigger)...) },
	"Version":   func(_ *Destination, b []byte, del *routes.Delivery) []byte { return append(b, safe(del.Version)...) },
	"ControlID": func(_ *Destination, b []byte, del *routes.Delivery) []byte { return append(b, safe(del.ControlID)...) },
	"Sender":    func(_ *Destination, b []byte, del *routes.Delivery) []byte { return append(b, safe(del.Sender)...) },
	"NHSNumber": func(_ *Destination, b []byte, del *routes.Delivery) []byte { return append(b, safe(del.NHSNumber)...) },
	"Ext": func(d *Destination, b []byte, del *routes.Delivery) []byte {
		return append(b, extension(del.ContentType, d.append)...)
	},
}

// compileName returns the parts of t's name, or nil when t needs
// text/template.
func compileName(t *template.Template) []namePart {
	if t.Tree == nil || t.Tree.Root == nil {
		return nil
	}
	var parts []namePart
	for _, n := range t.Tree.Root.Nodes {
		switch n := n.(type) {
		case *parse.TextNode:
			parts = append(parts, namePart{text: string(n.Text)})
		case *parse.ActionNode:
			p, ok := compileAction(n.Pipe)
			if !ok {
				return nil
			}
			parts = append(parts, p)
		default:
			return nil
		}
	}
	if len(parts) == 0 {
		return nil
	}
	return parts
}

// compileAction compiles {{.Field}} and {{.Received.Format "layout"}}.
func compileAction(pipe *parse.PipeNode) (namePart, bool) {
	if pipe == nil || len(pipe.Decl) > 0 || len(pipe.Cmds) != 1 {
		return namePart{}, false
	}
	args := pipe.Cmds[0].Args
	f, ok := args[0].(*parse.FieldNode)
	if !ok {
		return namePart{}, false
	}
	switch {
	case len(f.Ident) == 1 && len(args) == 1:
		get, ok := nameField[f.Ident[0]]
		return namePart{field: get}, ok
	case len(f.Ident) == 2 && f.Ident[0] == "Received" && f.Ident[1] == "Format" && len(args) == 2:
		s, ok := args[1].(*parse.StringNode)
		if !ok {
			return namePart{}, false
		}
		return namePart{layout: s.Text, received: true}, true
	}
	return namePart{}, false
}

// appendName appends the compiled name of del to b.
func (d *Destination) appendName(b []byte, del *routes.Delivery) []byte {
	for i := range d.parts {
		p := &d.parts[i]
		switch {
		case p.field != nil:
			b = p.field(d, b, del)
		case p.received:
			b = del.Received.UTC().AppendFormat(b, p.layout)
		default:
			b = append(b, p.text...)
		}
	}
	return b
}
