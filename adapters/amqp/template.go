package amqp

import (
	"fmt"
	"strings"

	"github.com/spinebridge/spinebridge/routes"
)

// maxRoutingKey is the longest routing key AMQP 0-9-1 can carry (a short string).
const maxRoutingKey = 255

// keyField is a placeholder of a routing key template.
type keyField uint8

const (
	literal keyField = iota
	fieldRoute
	fieldType
	fieldTrigger
	fieldDestination
	fieldVersion
)

var keyFields = map[string]keyField{
	"route":       fieldRoute,
	"type":        fieldType,
	"trigger":     fieldTrigger,
	"destination": fieldDestination,
	"version":     fieldVersion,
}

type keyPart struct {
	field keyField
	text  string // when field is literal
}

// keyTemplate is a routing key with {{route}}, {{type}}, {{trigger}},
// {{destination}} and {{version}} placeholders, parsed once.
type keyTemplate struct {
	parts  []keyPart
	static bool // no placeholder: the key is parts[0].text, or empty
}

// parseKeyTemplate parses s, refusing an unknown placeholder, an unclosed "{{"
// and a literal longer than a routing key can be.
func parseKeyTemplate(s string) (keyTemplate, error) {
	var t keyTemplate
	fixed := 0
	for rest := s; rest != ""; {
		open := strings.Index(rest, "{{")
		if open < 0 {
			t.parts = append(t.parts, keyPart{text: rest})
			fixed += len(rest)
			break
		}
		if open > 0 {
			t.parts = append(t.parts, keyPart{text: rest[:open]})
			fixed += open
		}
		end := strings.Index(rest[open+2:], "}}")
		if end < 0 {
			return keyTemplate{}, fmt.Errorf("%q is not closed with }}", rest[open:])
		}
		name := strings.TrimSpace(rest[open+2 : open+2+end])
		f, ok := keyFields[name]
		if !ok {
			return keyTemplate{}, fmt.Errorf("unknown placeholder {{%s}}; known: {{route}}, {{type}}, {{trigger}}, {{destination}}, {{version}}", name)
		}
		t.parts = append(t.parts, keyPart{field: f})
		rest = rest[open+2+end+2:]
	}
	if fixed > maxRoutingKey {
		return keyTemplate{}, fmt.Errorf("is %d bytes without its placeholders; a routing key holds at most %d", fixed, maxRoutingKey)
	}
	t.static = true
	for _, p := range t.parts {
		if p.field != literal {
			t.static = false
		}
	}
	return t, nil
}

// render returns the routing key of d.
func (t *keyTemplate) render(d *routes.Delivery) string {
	if t.static {
		if len(t.parts) == 0 {
			return ""
		}
		return t.parts[0].text
	}
	var buf [maxRoutingKey + 1]byte
	b := buf[:0]
	for _, p := range t.parts {
		switch p.field {
		case literal:
			b = append(b, p.text...)
		case fieldRoute:
			b = append(b, d.Route...)
		case fieldType:
			b = append(b, d.Type...)
		case fieldTrigger:
			b = append(b, d.Trigger...)
		case fieldDestination:
			b = append(b, d.Destination...)
		case fieldVersion:
			b = append(b, d.Version...)
		}
	}
	return string(b)
}
