package fhirrest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/spinebridge/spinebridge/routes"
)

// bundleEntry is one Bundle entry as mode resources reads it.
type bundleEntry struct {
	FullURL  string          `json:"fullUrl"`
	Resource json.RawMessage `json:"resource"`
	Request  *struct {
		Method      string `json:"method"`
		URL         string `json:"url"`
		IfNoneExist string `json:"ifNoneExist"`
	} `json:"request"`
}

// plannedEntry is an entry made ready to send.
type plannedEntry struct {
	index       int    // in the Bundle
	method      string // PUT or POST
	url         string
	typ         string // resourceType
	ifNoneExist string
	fullURL     string
	resource    json.RawMessage
	tree        any   // the decoded resource, kept when it refers to other entries
	refs        []int // the entries it refers to
	referred    bool  // another entry refers to it
}

// deliverResources sends the Bundle's entries one request each, every entry
// after those it refers to, with its references to them rewritten to the ids
// the server gave them.
func (d *Destination) deliverResources(ctx context.Context, del *routes.Delivery, tok string) error {
	var b struct {
		ResourceType string        `json:"resourceType"`
		Entry        []bundleEntry `json:"entry"`
	}
	if json.Unmarshal(del.Body, &b) != nil || b.ResourceType != "Bundle" {
		return routes.Permanent(errors.New("fhir: mode resources sends the entries of a Bundle, and the body is none"))
	}
	entries, err := d.plan(b.Entry)
	if err != nil {
		return routes.Permanent(err)
	}
	order, err := sendOrder(entries)
	if err != nil {
		return routes.Permanent(err)
	}
	correlationID := nameUUID(&correlationNamespace, del.MessageID.String())
	ids := make(map[string]string) // fullUrl → "Type/id" on the server
	for _, i := range order {
		e := &entries[i]
		body := []byte(e.resource)
		if e.tree != nil {
			walkReferences(e.tree, func(ref string) (string, bool) {
				id, ok := ids[ref]
				return id, ok
			})
			if body, err = encode(e.tree); err != nil {
				return routes.Permanent(fmt.Errorf("fhir: entry %d: %w", e.index, err))
			}
		}
		what := fmt.Sprintf("%s %s (entry %d)", e.method, e.typ, e.index)
		resp, err := d.send(ctx, &request{
			method: e.method,
			url:    e.url,
			what:   what,
			body:   body,
			// Each entry is a request of its own to the server, so each has its
			// own ID, the same on every attempt.
			requestID:     nameUUID(&requestNamespace, del.ID+"#"+strconv.Itoa(e.index)),
			correlationID: correlationID,
			token:         tok,
			ifNoneExist:   e.ifNoneExist,
		})
		if err != nil {
			return err
		}
		if err := classify(what, resp.status, resp.header, resp.body, time.Now()); err != nil {
			return err
		}
		if e.referred {
			ref, ok := createdRef(e.typ, resp)
			if !ok {
				return routes.Permanent(fmt.Errorf("fhir: %s: the answer names no id for the entries that refer to it", what))
			}
			ids[e.fullURL] = ref
		}
	}
	return nil
}

// plan checks the entries and works out each one's request and the entries
// it refers to. Its errors say which entry, never what it holds.
func (d *Destination) plan(in []bundleEntry) ([]plannedEntry, error) {
	entries := make([]plannedEntry, len(in))
	byURL := make(map[string]int, len(in))
	for i, be := range in {
		e := &entries[i]
		e.index, e.fullURL, e.resource = i, be.FullURL, be.Resource
		if len(be.Resource) == 0 {
			return nil, fmt.Errorf("fhir: entry %d has no resource", i)
		}
		// UseNumber keeps decimals as they were written for when the resource
		// is written out again.
		dec := json.NewDecoder(bytes.NewReader(be.Resource))
		dec.UseNumber()
		if err := dec.Decode(&e.tree); err != nil {
			return nil, fmt.Errorf("fhir: entry %d: the resource is not JSON", i)
		}
		obj, _ := e.tree.(map[string]any)
		e.typ, _ = obj["resourceType"].(string)
		if !validType(e.typ) {
			return nil, fmt.Errorf("fhir: entry %d: the resource has no valid resourceType", i)
		}
		if err := e.setRequest(d.base, be); err != nil {
			return nil, fmt.Errorf("fhir: entry %d: %w", i, err)
		}
		if be.FullURL != "" {
			byURL[be.FullURL] = i
		}
	}
	for i := range entries {
		e := &entries[i]
		if len(byURL) > 0 {
			walkReferences(e.tree, func(ref string) (string, bool) {
				if j, ok := byURL[ref]; ok {
					e.refs = append(e.refs, j)
					entries[j].referred = true
				}
				return "", false
			})
		}
		if len(e.refs) == 0 {
			e.tree = nil // sent as it came
		}
	}
	return entries, nil
}

// setRequest sets the method and URL an entry is sent with: PUT to
// base/request.url for a PUT, POST to base/Type otherwise.
func (e *plannedEntry) setRequest(base string, be bundleEntry) error {
	method := http.MethodPost
	if be.Request != nil && be.Request.Method != "" {
		method = be.Request.Method
	}
	switch method {
	case http.MethodPost:
		e.method, e.url = method, base+"/"+e.typ
		if be.Request != nil && be.Request.IfNoneExist != "" {
			if !validHeaderValue(be.Request.IfNoneExist) {
				return errors.New("request.ifNoneExist holds a control character")
			}
			e.ifNoneExist = be.Request.IfNoneExist
		}
		return nil
	case http.MethodPut:
		u, err := url.Parse(be.Request.URL)
		if err != nil || u.Scheme != "" || u.Host != "" || u.Fragment != "" || strings.HasPrefix(u.Path, "/") {
			return errors.New("request.url is not a relative URL")
		}
		if first, _, _ := strings.Cut(u.Path, "/"); first != e.typ || path.Clean(u.Path) != u.Path {
			return errors.New("request.url does not name the resource's type, or has empty or dot segments")
		}
		e.method, e.url = method, base+"/"+u.EscapedPath()
		if u.RawQuery != "" {
			e.url += "?" + escapeQuery(u.RawQuery)
		}
		return nil
	}
	return fmt.Errorf("mode resources sends PUT and POST entries, not %s", clean(method, maxCode))
}

// validType reports whether s can be a resource type: a capitalised name.
func validType(s string) bool {
	if s == "" || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// escapeQuery percent-encodes the bytes a URL query may not hold as they are,
// such as the '|' of "identifier=system|value", leaving the rest, escapes
// included, as written.
func escapeQuery(q string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := range len(q) {
		c := q[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~!$&'()*+,;=:@/?%", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// sendOrder returns the order to send entries in: the Bundle's, except that an
// entry goes after the entries it refers to. Entries that refer to each other
// in a circle cannot be sent one by one.
func sendOrder(entries []plannedEntry) ([]int, error) {
	const (
		unseen = iota
		visiting
		done
	)
	state := make([]uint8, len(entries))
	order := make([]int, 0, len(entries))
	var visit func(i int) error
	visit = func(i int) error {
		switch state[i] {
		case done:
			return nil
		case visiting:
			return fmt.Errorf("fhir: entry %d is part of a circle of references, which only a transaction resolves: use mode bundle", i)
		}
		state[i] = visiting
		for _, j := range entries[i].refs {
			if err := visit(j); err != nil {
				return err
			}
		}
		state[i] = done
		order = append(order, i)
		return nil
	}
	for i := range entries {
		if err := visit(i); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// walkReferences calls fn with every Reference.reference in a decoded
// resource, and replaces it when fn returns a replacement and true.
func walkReferences(v any, fn func(ref string) (string, bool)) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && k == "reference" {
				if r, ok := fn(s); ok {
					v[k] = r
				}
				continue
			}
			walkReferences(x, fn)
		}
	case []any:
		for _, x := range v {
			walkReferences(x, fn)
		}
	}
}

// encode writes a decoded resource as JSON.
func encode(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, errors.New("cannot write the resource with its references resolved")
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// createdRef returns the "Type/id" of the resource a request made or updated,
// from its Location (or Content-Location) header, else from the id in the
// body.
func createdRef(typ string, resp *response) (string, bool) {
	for _, h := range []string{"Location", "Content-Location"} {
		loc := resp.header.Get(h)
		if loc == "" {
			continue
		}
		u, err := url.Parse(loc)
		if err != nil {
			continue
		}
		segs := strings.Split(strings.Trim(u.Path, "/"), "/")
		for k := len(segs) - 2; k >= 0; k-- {
			if segs[k] == typ && validID(segs[k+1]) {
				return typ + "/" + segs[k+1], true
			}
		}
	}
	var r struct {
		ResourceType string `json:"resourceType"`
		ID           string `json:"id"`
	}
	if json.Unmarshal(resp.body, &r) == nil && r.ResourceType == typ && validID(r.ID) {
		return typ + "/" + r.ID, true
	}
	return "", false
}

// validID reports whether s matches FHIR's id: [A-Za-z0-9\-\.]{1,64}.
func validID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
