package routes

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
	"github.com/spinebridge/spinebridge/transforms"
)

// MappingTransformer turns HL7 v2 records into FHIR Bundles with a mapping
// set. Each goroutine converts with its own Converter from a pool. The set can
// be replaced while it runs (Mappings.Reload): a conversion under way finishes
// with the set it started with, and the next one takes the new set.
type MappingTransformer struct {
	structure string // the structure every message is converted with, or "" for MSH-9's
	cur       atomic.Pointer[converterPool]
}

// converterPool is the Converters of one mapping set.
type converterPool struct {
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
	t := &MappingTransformer{structure: opts.Structure}
	t.use(set, opts)
	return t
}

// use makes set the one the next conversion takes.
func (t *MappingTransformer) use(set *transforms.Set, opts transforms.Options) {
	opts.Structure = t.structure
	p := &converterPool{}
	p.pool.New = func() any { return &mappingConverter{conv: set.NewConverter(opts)} }
	t.cur.Store(p)
}

// MappingTransformers returns the transformers a routes file may name for set:
// "fhir", which picks the structure from each message's MSH-9, and one per
// structure in lower case ("adt", "oru_r01"), which converts every message with
// that structure.
func MappingTransformers(set *transforms.Set, opts transforms.Options) map[string]Transformer {
	out := map[string]Transformer{}
	for name, t := range mappingTransformers(set, opts) {
		out[name] = t
	}
	return out
}

func mappingTransformers(set *transforms.Set, opts transforms.Options) map[string]*MappingTransformer {
	out := map[string]*MappingTransformer{"fhir": NewMappingTransformer(set, opts)}
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
	p := t.cur.Load()
	c := p.pool.Get().(*mappingConverter)
	defer p.pool.Put(c)
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
