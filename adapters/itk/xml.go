package itk

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/lestrrat-go/libxml2/clib"
	"github.com/lestrrat-go/libxml2/dom"
	"github.com/lestrrat-go/libxml2/parser"
	"github.com/lestrrat-go/libxml2/types"
)

// Namespaces of the request and its payloads.
const (
	nsSOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
	nsSOAP12 = "http://www.w3.org/2003/05/soap-envelope"
	nsWSA    = "http://www.w3.org/2005/08/addressing"
	nsWSSE   = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
	nsWSU    = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
	nsITK    = "urn:nhs-itk:ns:201005"
	nsHL7v3  = "urn:hl7-org:v3"
	nsV2XML  = "urn:hl7-org:v2xml"
)

// xmlLimits bound what one document may cost.
type xmlLimits struct {
	maxSize  int // bytes
	maxDepth int // element nesting
}

// parseOptions are libxml2's options for every document: no entity
// substitution (XML_PARSE_NOENT is left out), no DTD loading or DTD attribute
// defaults, no network, no XInclude, and no error printing (errors come back as
// values). XML_PARSE_HUGE is left out so libxml2's own limits stay on.
var parseOptions = parser.New(parser.XMLParseNoNet, parser.XMLParseNoError, parser.XMLParseNoWarning, parser.XMLParseNoCDATA)

// initLibxml2 runs one parse before any concurrent use: libxml2 sets up its
// global state on first use, and that first use must not race.
var initLibxml2 = sync.OnceFunc(func() {
	if doc, err := parseOptions.Parse([]byte("<a/>")); err == nil {
		doc.Free()
	}
})

// parseXML reads one document safely: it refuses what is not UTF-8, larger than
// the limit, or has a document type declaration, before libxml2 sees it; then
// parses with entity expansion, DTD loading and network access off; and copies
// the tree into Go values, refusing entity references and nesting past the
// limit.
func parseXML(b []byte, lim xmlLimits) (*xmlElem, error) {
	if err := screenXML(b, lim); err != nil {
		return nil, err
	}
	return parseTree(b, lim)
}

// screenXML applies the checks that need no parse. The DOCTYPE test is the
// sure defence against external entities (XXE) and entity expansion (billion
// laughs): without a DTD there is no entity to expand. It is a byte search, so
// the encoding must be known first: UTF-8, as ITK requires (WS-STD-01); a NUL
// byte, which UTF-16 and UTF-32 text always has, is refused with it.
func screenXML(b []byte, lim xmlLimits) error {
	if lim.maxSize > 0 && len(b) > lim.maxSize {
		return invalid("size-limit", "", "", fmt.Sprintf("the document is larger than %d bytes", lim.maxSize), ErrTooLarge)
	}
	if len(b) == 0 {
		return invalid("xml-well-formed", "", "", "the document is empty", ErrMalformed)
	}
	if bytes.IndexByte(b, 0) >= 0 || !utf8.Valid(b) {
		return invalid("utf-8", "", "", "the document is not UTF-8 (WS-STD-01)", ErrEncoding)
	}
	if bytes.Contains(b, []byte("<!DOCTYPE")) {
		return invalid("no-doctype", "", "", "a document type declaration is not accepted: DTDs and entities are never processed", ErrDoctype)
	}
	if enc, ok := declaredEncoding(b); ok && !strings.EqualFold(enc, "UTF-8") {
		return invalid("utf-8", "", "", "the XML declaration names an encoding other than UTF-8 (WS-STD-01)", ErrEncoding)
	}
	return nil
}

// declaredEncoding returns the encoding an XML declaration names, if any.
func declaredEncoding(b []byte) (string, bool) {
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	if !bytes.HasPrefix(b, []byte("<?xml")) {
		return "", false
	}
	end := bytes.Index(b, []byte("?>"))
	if end < 0 {
		return "", false
	}
	decl := b[:end]
	i := bytes.Index(decl, []byte("encoding"))
	if i < 0 {
		return "", false
	}
	rest := bytes.TrimLeft(decl[i+len("encoding"):], " \t\r\n")
	if len(rest) == 0 || rest[0] != '=' {
		return "", false
	}
	rest = bytes.TrimLeft(rest[1:], " \t\r\n")
	if len(rest) < 2 || rest[0] != '"' && rest[0] != '\'' {
		return "", false
	}
	q := rest[0]
	j := bytes.IndexByte(rest[1:], q)
	if j < 0 {
		return "", false
	}
	return string(rest[1 : j+1]), true
}

// parseTree parses b with libxml2 and copies the element tree out, then frees
// libxml2's. It is the second line of defence: with substitution off an entity
// stays a reference node, and a reference node refuses the document.
func parseTree(b []byte, lim xmlLimits) (*xmlElem, error) {
	var root *xmlElem
	err := withDocument(b, lim, func(_ types.Document, r *xmlElem) error {
		root = r
		return nil
	})
	return root, err
}

// withDocument parses b with libxml2, copies and checks its tree, and calls fn
// with both before freeing libxml2's document, for callers that run XPath on
// it.
func withDocument(b []byte, lim xmlLimits, fn func(types.Document, *xmlElem) error) error {
	initLibxml2()
	doc, err := parseOptions.Parse(b)
	if err != nil {
		return invalid("xml-well-formed", "", "", "the document is not well-formed XML", ErrMalformed)
	}
	defer doc.Free()
	top, err := doc.ChildNodes()
	if err != nil {
		return invalid("no-doctype", "", "", "the document holds a declaration or reference that is not accepted", ErrDoctype)
	}
	for _, n := range top {
		if n.NodeType() == clib.DTDNode || n.NodeType() == clib.DocumentTypeNode {
			return invalid("no-doctype", "", "", "a document type declaration is not accepted", ErrDoctype)
		}
	}
	docRoot, err := doc.DocumentElement()
	if err != nil {
		return invalid("xml-well-formed", "", "", "the document has no root element", ErrMalformed)
	}
	el, ok := docRoot.(*dom.Element)
	if !ok {
		return invalid("xml-well-formed", "", "", "the document has no root element", ErrMalformed)
	}
	maxDepth := lim.maxDepth
	if maxDepth <= 0 {
		maxDepth = defaultMaxDepth
	}
	root, err := copyElement(el, nil, 1, maxDepth)
	if err != nil {
		return err
	}
	return fn(doc, root)
}

const defaultMaxDepth = 100

func copyElement(n *dom.Element, parent *xmlElem, depth, maxDepth int) (*xmlElem, error) {
	if depth > maxDepth {
		return nil, invalid("depth-limit", "", "", fmt.Sprintf("elements are nested more than %d deep", maxDepth), ErrTooDeep)
	}
	e := &xmlElem{space: n.NamespaceURI(), local: n.LocalName(), prefix: n.Prefix(), parent: parent}
	nss, err := n.GetNamespaces()
	if err != nil {
		return nil, invalid("xml-well-formed", "", "", "a namespace declaration could not be read", ErrMalformed)
	}
	for _, ns := range nss {
		e.nsDecl = append(e.nsDecl, xmlNS{prefix: ns.Prefix(), uri: ns.URI()})
		ns.Free()
	}
	attrs, err := n.Attributes()
	if err != nil {
		return nil, invalid("xml-well-formed", "", "", "an attribute could not be read", ErrMalformed)
	}
	for _, a := range attrs {
		an, ok := a.(*dom.Attribute)
		if !ok {
			return nil, invalid("xml-well-formed", "", "", "an attribute could not be read", ErrMalformed)
		}
		e.attrs = append(e.attrs, xmlAttr{space: an.NamespaceURI(), local: an.LocalName(), prefix: an.Prefix(), value: a.Value()})
	}
	kids, err := n.ChildNodes()
	if err != nil {
		// ChildNodes fails on node kinds it cannot wrap: entity references and
		// declarations, which a document without a DTD cannot lawfully have.
		return nil, invalid("no-doctype", "", "", "an entity reference is not accepted", ErrDoctype)
	}
	for _, k := range kids {
		switch k.NodeType() {
		case clib.ElementNode:
			c, err := copyElement(k.(*dom.Element), e, depth+1, maxDepth)
			if err != nil {
				return nil, err
			}
			e.kids = append(e.kids, xmlNode{elem: c})
		case clib.TextNode, clib.CDataSectionNode:
			e.kids = append(e.kids, xmlNode{text: k.NodeValue()})
		case clib.CommentNode, clib.PiNode:
			// Neither carries data the engine reads.
		default:
			return nil, invalid("no-doctype", "", "", "an entity reference is not accepted", ErrDoctype)
		}
	}
	return e, nil
}

// xmlElem is one element copied out of libxml2's tree: Go values, so the rules
// that read it need no C memory and no cleanup.
type xmlElem struct {
	space, local, prefix string
	attrs                []xmlAttr
	nsDecl               []xmlNS // namespaces declared on this element
	parent               *xmlElem
	kids                 []xmlNode // child elements and text, in document order
}

type xmlAttr struct{ space, local, prefix, value string }

type xmlNS struct{ prefix, uri string }

// xmlNode is a child of an element: an element or a run of text.
type xmlNode struct {
	elem *xmlElem
	text string
}

// is reports whether e is the element {space}local.
func (e *xmlElem) is(space, local string) bool {
	return e != nil && e.space == space && e.local == local
}

// elems returns e's child elements.
func (e *xmlElem) elems() []*xmlElem {
	var out []*xmlElem
	for _, k := range e.kids {
		if k.elem != nil {
			out = append(out, k.elem)
		}
	}
	return out
}

// all returns e's child elements named {space}local.
func (e *xmlElem) all(space, local string) []*xmlElem {
	var out []*xmlElem
	for _, k := range e.kids {
		if k.elem.is(space, local) {
			out = append(out, k.elem)
		}
	}
	return out
}

// child returns e's first child element named {space}local, or nil.
func (e *xmlElem) child(space, local string) *xmlElem {
	for _, k := range e.kids {
		if k.elem.is(space, local) {
			return k.elem
		}
	}
	return nil
}

// text returns the text directly inside e.
func (e *xmlElem) text() string {
	var b strings.Builder
	for _, k := range e.kids {
		if k.elem == nil {
			b.WriteString(k.text)
		}
	}
	return b.String()
}

// hasText reports whether e has text directly inside it other than white space.
func (e *xmlElem) hasText() bool {
	for _, k := range e.kids {
		if k.elem == nil && strings.TrimSpace(k.text) != "" {
			return true
		}
	}
	return false
}

// attr returns the value of e's attribute local in no namespace.
func (e *xmlElem) attr(local string) (string, bool) { return e.attrNS("", local) }

func (e *xmlElem) attrNS(space, local string) (string, bool) {
	for _, a := range e.attrs {
		if a.space == space && a.local == local {
			return a.value, true
		}
	}
	return "", false
}

// name is e's name with its prefix, as written.
func (e *xmlElem) name() string {
	if e.prefix == "" {
		return e.local
	}
	return e.prefix + ":" + e.local
}

// inScope returns the namespace declarations in force at e, the nearest
// declaration of each prefix winning.
func (e *xmlElem) inScope() []xmlNS {
	var out []xmlNS
	seen := map[string]bool{}
	for p := e; p != nil; p = p.parent {
		for _, ns := range p.nsDecl {
			if !seen[ns.prefix] {
				seen[ns.prefix] = true
				out = append(out, ns)
			}
		}
	}
	return out
}

// appendDocument writes e as a document of its own: every namespace in force at
// e is declared on it, so a payload cut out of an envelope keeps its meaning.
func appendDocument(dst []byte, e *xmlElem) []byte {
	dst = append(dst, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"...)
	return appendElement(dst, e, e.inScope())
}

// appendElement writes e and its content, declaring decls on e itself (nil to
// write e's own declarations).
func appendElement(dst []byte, e *xmlElem, decls []xmlNS) []byte {
	if decls == nil {
		decls = e.nsDecl
	}
	dst = append(dst, '<')
	dst = append(dst, e.name()...)
	for _, ns := range decls {
		dst = append(dst, " xmlns"...)
		if ns.prefix != "" {
			dst = append(dst, ':')
			dst = append(dst, ns.prefix...)
		}
		dst = append(dst, `="`...)
		dst = appendEscaped(dst, ns.uri, true)
		dst = append(dst, '"')
	}
	for _, a := range e.attrs {
		dst = append(dst, ' ')
		if a.prefix != "" {
			dst = append(dst, a.prefix...)
			dst = append(dst, ':')
		}
		dst = append(dst, a.local...)
		dst = append(dst, `="`...)
		dst = appendEscaped(dst, a.value, true)
		dst = append(dst, '"')
	}
	if len(e.kids) == 0 {
		return append(dst, "/>"...)
	}
	dst = append(dst, '>')
	for _, k := range e.kids {
		if k.elem != nil {
			dst = appendElement(dst, k.elem, nil)
		} else {
			dst = appendEscaped(dst, k.text, false)
		}
	}
	dst = append(dst, "</"...)
	dst = append(dst, e.name()...)
	return append(dst, '>')
}

// appendEscaped writes s as XML character data, or as an attribute value when
// attr is set (where white space other than a plain space must be written as a
// reference to survive attribute value normalisation).
func appendEscaped(dst []byte, s string, attr bool) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '&':
			dst = append(dst, "&amp;"...)
		case '<':
			dst = append(dst, "&lt;"...)
		case '>':
			dst = append(dst, "&gt;"...)
		case '"':
			if attr {
				dst = append(dst, "&quot;"...)
			} else {
				dst = append(dst, c)
			}
		case '\r':
			dst = append(dst, "&#xD;"...)
		case '\n':
			if attr {
				dst = append(dst, "&#xA;"...)
			} else {
				dst = append(dst, c)
			}
		case '\t':
			if attr {
				dst = append(dst, "&#x9;"...)
			} else {
				dst = append(dst, c)
			}
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// el builds an element for writing: name is "prefix:local" (the prefix must be
// declared on it or an ancestor with ns), and each item is an xmlAttr (from
// at), an xmlNS (from ns), a child *xmlElem, or a string of text.
func el(name string, items ...any) *xmlElem {
	e := &xmlElem{local: name}
	if p, l, ok := strings.Cut(name, ":"); ok {
		e.prefix, e.local = p, l
	}
	for _, it := range items {
		switch v := it.(type) {
		case xmlAttr:
			e.attrs = append(e.attrs, v)
		case xmlNS:
			e.nsDecl = append(e.nsDecl, v)
		case *xmlElem:
			if v != nil {
				v.parent = e
				e.kids = append(e.kids, xmlNode{elem: v})
			}
		case []*xmlElem:
			for _, c := range v {
				c.parent = e
				e.kids = append(e.kids, xmlNode{elem: c})
			}
		case string:
			e.kids = append(e.kids, xmlNode{text: v})
		default:
			panic(fmt.Sprintf("itk: el: unexpected %T", it))
		}
	}
	return e
}

// at is an attribute for el; name may carry a declared prefix.
func at(name, value string) xmlAttr {
	a := xmlAttr{local: name, value: value}
	if p, l, ok := strings.Cut(name, ":"); ok {
		a.prefix, a.local = p, l
	}
	return a
}

// ns is a namespace declaration for el; prefix "" declares the default.
func ns(prefix, uri string) xmlNS { return xmlNS{prefix: prefix, uri: uri} }
