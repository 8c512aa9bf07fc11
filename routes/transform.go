package routes

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
	"github.com/spinebridge/spinebridge/transforms"
)

// MappingTransformer turns HL7 v2 records into FHIR Bundles with a mapping
// set. Each goroutine converts with its own Converter from a pool.
type MappingTransformer struct {
	pool sync.Pool // *mappingConverter
}

type mappingConverter struct {
	conv *transforms.Converter
	msg  hl7v2.Message
}

// NewMappingTransformer returns a transformer converting with set and opts;
// opts.Structure names the message structure to use, or is empty to pick it
// from MSH-9.
func NewMappingTransformer(set *transforms.Set, opts transforms.Options) *MappingTransformer {
	t := &MappingTransformer{}
	t.pool.New = func() any { return &mappingConverter{conv: set.NewConverter(opts)} }
	return t
}

// MappingTransformers returns the transformers a routes file may name for set:
// "fhir", which picks the structure from each message's MSH-9, and one per
// structure in lower case ("adt", "oru_r01"), which converts every message with
// that structure.
func MappingTransformers(set *transforms.Set, opts transforms.Options) map[string]Transformer {
	out := map[string]Transformer{"fhir": NewMappingTransformer(set, opts)}
	for _, name := range set.Structures() {
		o := opts
		o.Structure = name
		out[strings.ToLower(name)] = NewMappingTransformer(set, o)
	}
	return out
}

var _ IssueTransformer = (*MappingTransformer)(nil)

// Transform converts rec, which must be HL7 v2, to a FHIR Bundle.
func (t *MappingTransformer) Transform(dst []byte, rec *Record) ([]byte, string, error) {
	out, ctype, _, err := t.TransformIssues(dst, rec, nil)
	return out, ctype, err
}

// TransformIssues converts rec, which must be HL7 v2, to a FHIR Bundle, and
// appends to issues those the conversion met.
func (t *MappingTransformer) TransformIssues(dst []byte, rec *Record, issues []Issue) ([]byte, string, []Issue, error) {
	if rec.Format != FormatHL7v2 {
		return dst, "", issues, fmt.Errorf("a %s document is not HL7 v2", rec.Format)
	}
	c := t.pool.Get().(*mappingConverter)
	defer t.pool.Put(c)
	// A message the intake accepted parses; one with a fault further in still
	// converts as far as it reads, as `spinebridge convert` does.
	if err := c.msg.Parse(rec.Raw); err != nil {
		var pe *hl7v2.ParseError
		if !errors.As(err, &pe) || c.msg.SegmentCount() == 0 {
			return dst, "", issues, err
		}
	}
	out, err := c.conv.Convert(dst, &c.msg)
	if err != nil {
		return dst, "", issues, err
	}
	for _, is := range c.conv.Issues() {
		issues = append(issues, Issue{Kind: string(is.Kind), At: is.At, Text: is.String()})
	}
	return out, ContentTypeFHIR, issues, nil
}
