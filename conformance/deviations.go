package conformance

import (
	_ "embed"
	"errors"
	"fmt"
	"os"

	"go.yaml.in/yaml/v3"
)

// deviationsFile holds the deviations of Spinebridge's default mappings from the
// bundles Microsoft's FHIR-Converter expects, each with its IG row.
//
//go:embed deviations.yaml
var deviationsFile []byte

// DefaultDeviations returns the deviations of the default mappings, read from
// the embedded deviations.yaml.
func DefaultDeviations() ([]Deviation, error) {
	return ParseDeviations("conformance/deviations.yaml", deviationsFile)
}

// ReadDeviations reads a deviations file in the format of deviations.yaml. An
// empty file has none.
func ReadDeviations(path string) ([]Deviation, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("conformance: deviations: %w", err)
	}
	return ParseDeviations(path, data)
}

// deviationKeys are the keys a deviation may have; any other is a misspelling
// that would otherwise widen the deviation silently (a "value:" ignored leaves
// every value of the path deviated).
var deviationKeys = map[string]bool{"resource": true, "path": true, "values": true, "cases": true, "reason": true, "ig": true}

// ParseDeviations reads a YAML list of deviations; name is the file's name in
// errors. Every problem is reported at once, each as name:line: message.
func ParseDeviations(name string, data []byte) ([]Deviation, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	list := doc.Content[0]
	if list.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("%s:%d: want a list of deviations", name, list.Line)
	}
	var errs []error
	fail := func(n *yaml.Node, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s:%d: %s", name, n.Line, fmt.Sprintf(format, args...)))
	}
	out := make([]Deviation, 0, len(list.Content))
	for _, item := range list.Content {
		if item.Kind != yaml.MappingNode {
			fail(item, "a deviation is a mapping of resource, path, values, cases, reason and ig")
			continue
		}
		known := true
		for i := 0; i < len(item.Content); i += 2 {
			if key := item.Content[i]; !deviationKeys[key.Value] {
				fail(key, "unknown key %q (want resource, path, values, cases, reason or ig)", key.Value)
				known = false
			}
		}
		var d Deviation
		if err := item.Decode(&d); err != nil {
			fail(item, "%v", err)
			continue
		}
		if !known {
			continue
		}
		if err := d.check(); err != nil {
			fail(item, "%v", err)
			continue
		}
		d.Source = fmt.Sprintf("%s:%d", name, item.Line)
		out = append(out, d)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}
