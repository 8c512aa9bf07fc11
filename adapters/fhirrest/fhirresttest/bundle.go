package fhirresttest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/spinebridge/spinebridge/transforms/fhirmodel"
)

// bundleEntry is a transaction or batch entry.
type bundleEntry struct {
	FullURL  string          `json:"fullUrl"`
	Resource json.RawMessage `json:"resource"`
	Request  struct {
		Method      string `json:"method"`
		URL         string `json:"url"`
		IfNoneExist string `json:"ifNoneExist"`
	} `json:"request"`
}

// entryResponse is a transaction-response or batch-response entry.
type entryResponse struct {
	Response struct {
		Status   string         `json:"status"`
		Location string         `json:"location,omitempty"`
		Etag     string         `json:"etag,omitempty"`
		Outcome  map[string]any `json:"outcome,omitempty"`
	} `json:"response"`
}

// bundle handles a Bundle POSTed to the base. A transaction is applied whole
// or not at all, its references between entries resolved; a batch entry by
// entry, each with its own status.
func (s *Server) bundle(w http.ResponseWriter, body []byte) {
	if err := fhirmodel.Validate(body); err != nil {
		writeOutcome(w, http.StatusBadRequest, validationIssues(err)...)
		return
	}
	var b struct {
		ResourceType string        `json:"resourceType"`
		Type         string        `json:"type"`
		Entry        []bundleEntry `json:"entry"`
	}
	if err := json.Unmarshal(body, &b); err != nil || b.ResourceType != "Bundle" || b.Type != "transaction" && b.Type != "batch" {
		writeOutcome(w, http.StatusBadRequest, issue("not-supported", "the base takes transaction and batch Bundles only"))
		return
	}
	ops := make([]op, len(b.Entry))
	problems := make([]*outcomeIssue, len(b.Entry))
	for i, e := range b.Entry {
		ops[i], problems[i] = entryOp(i, e)
	}
	resp := make([]entryResponse, len(ops))
	if b.Type == "batch" {
		for i := range ops {
			s.batchEntry(&ops[i], problems[i], &resp[i])
		}
		writeJSON(w, http.StatusOK, map[string]any{"resourceType": "Bundle", "type": "batch-response", "entry": resp})
		return
	}
	for _, p := range problems {
		if p != nil {
			writeOutcome(w, http.StatusBadRequest, *p)
			return
		}
	}
	s.mu.Lock()
	ids := make(map[string]string) // fullUrl → Type/id
	for i := range ops {
		o := &ops[i]
		if status, iss := s.target(o); iss != nil {
			s.mu.Unlock()
			iss.Diagnostics = fmt.Sprintf("Bundle.entry[%d]: %s", i, iss.Diagnostics)
			writeOutcome(w, status, *iss)
			return
		}
		if o.fullURL != "" {
			ids[o.fullURL] = o.typ + "/" + o.target
		}
	}
	for i := range ops {
		o := &ops[i]
		resolveReferences(o.resource, ids)
		created := !o.exists
		version := s.write(o)
		respond(&resp[i], o, created, version)
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"resourceType": "Bundle", "type": "transaction-response", "entry": resp})
}

// batchEntry applies one batch entry and fills in its response.
func (s *Server) batchEntry(o *op, problem *outcomeIssue, r *entryResponse) {
	if problem != nil {
		r.Response.Status = "400 Bad Request"
		r.Response.Outcome = outcome(*problem)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	status, iss := s.target(o)
	if iss != nil {
		r.Response.Status = strconv.Itoa(status) + " " + http.StatusText(status)
		r.Response.Outcome = outcome(*iss)
		return
	}
	respond(r, o, !o.exists, s.write(o))
}

func respond(r *entryResponse, o *op, created bool, version int) {
	r.Response.Status = "200 OK"
	if created {
		r.Response.Status = "201 Created"
	}
	r.Response.Location = o.typ + "/" + o.target + "/_history/" + strconv.Itoa(version)
	r.Response.Etag = `W/"` + strconv.Itoa(version) + `"`
}

// entryOp reads what entry i asks for: a PUT to Type/id or Type?condition, or
// a POST to Type.
func entryOp(i int, e bundleEntry) (op, *outcomeIssue) {
	bad := func(code, text string) (op, *outcomeIssue) {
		is := issue(code, fmt.Sprintf("Bundle.entry[%d]: %s", i, text))
		return op{}, &is
	}
	res, err := decode(e.Resource)
	if err != nil {
		return bad("required", "the entry has no resource")
	}
	typ, _ := res["resourceType"].(string)
	o := op{method: e.Request.Method, typ: typ, fullURL: e.FullURL, resource: res}
	switch e.Request.Method {
	case http.MethodPost:
		o.ifNoneExist = e.Request.IfNoneExist
	case http.MethodPut:
		u, err := url.Parse(e.Request.URL)
		if err != nil {
			return bad("invalid", "request.url is not a URL")
		}
		t, id, _ := strings.Cut(u.Path, "/")
		switch {
		case t != typ:
			return bad("invalid", "request.url does not name the resource's type")
		case id == "" && u.RawQuery == "":
			return bad("invalid", "a PUT names an id or a condition")
		}
		o.id, o.cond = id, u.RawQuery
	default:
		return bad("not-supported", "request.method must be PUT or POST")
	}
	return o, nil
}

// resolveReferences rewrites every Reference.reference in v that names an
// entry's fullUrl to the Type/id that entry was given.
func resolveReferences(v any, ids map[string]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if ref, ok := x.(string); ok && k == "reference" {
				if id, ok := ids[ref]; ok {
					v[k] = id
				}
				continue
			}
			resolveReferences(x, ids)
		}
	case []any:
		for _, x := range v {
			resolveReferences(x, ids)
		}
	}
}
