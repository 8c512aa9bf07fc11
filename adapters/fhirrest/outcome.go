package fhirrest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spinebridge/spinebridge/routes"
)

// Bounds on what a server's words may add to an error, which ends up in logs
// and dead letters.
const (
	maxDiagnostics = 200 // bytes of one issue's diagnostics
	maxCode        = 40  // bytes of a severity or code
	maxIssues      = 3   // issues summarised; the rest are counted
	// maxRetryAfter caps the wait a server may ask for, so that a wrong header
	// cannot park a delivery for days.
	maxRetryAfter = time.Hour
)

// classify turns a response into the outcome of an attempt: nil for 2xx, an
// error the dispatcher retries, or a routes.Permanent one. what names the
// request in the error ("POST Bundle"); body is the response's, as far as it
// was read.
func classify(what string, status int, header http.Header, body []byte, now time.Time) error {
	if status >= 200 && status < 300 {
		return nil
	}
	err := fmt.Errorf("fhir: %s: %s%s", what, statusText(status), summarise(body))
	switch {
	case retryableStatus(status):
		if wait, ok := retryAfter(header.Get("Retry-After"), now); ok {
			return routes.RetryAfter(err, wait)
		}
		return err
	case status >= 400 && status < 500:
		return routes.Permanent(err)
	}
	// 1xx at the end of an exchange and 3xx (redirects are not followed) say
	// nothing against the message: the server or the url is at fault.
	return err
}

// retryableStatus reports whether another attempt may meet a better answer:
// the server timed out, was early, is throttling or failing, or wants a token
// that a rotated token file may give it.
func retryableStatus(status int) bool {
	switch status {
	case http.StatusRequestTimeout, http.StatusTooEarly, http.StatusTooManyRequests, http.StatusUnauthorized:
		return true
	}
	return status >= 500
}

// statusText is the status code and its standard reason phrase; the server's own
// phrase is not used, being free text.
func statusText(status int) string {
	if t := http.StatusText(status); t != "" {
		return strconv.Itoa(status) + " " + t
	}
	return "status " + strconv.Itoa(status)
}

// retryAfter reads a Retry-After header, in seconds or as an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	var d time.Duration
	if secs, err := strconv.ParseUint(v, 10, 32); err == nil {
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	} else {
		return 0, false
	}
	return min(max(d, 0), maxRetryAfter), true
}

// operationOutcome is the part of an OperationOutcome an error summarises.
type operationOutcome struct {
	ResourceType string `json:"resourceType"`
	Issue        []struct {
		Severity    string `json:"severity"`
		Code        string `json:"code"`
		Diagnostics string `json:"diagnostics"`
		Details     struct {
			Text string `json:"text"`
		} `json:"details"`
	} `json:"issue"`
}

// summarise returns ": " and what an OperationOutcome in body says, or "" when
// body holds none: each issue's severity, code and diagnostics (its details'
// text when it has no diagnostics), cut short, and the number of issues left
// out.
func summarise(body []byte) string {
	var oo operationOutcome
	if json.Unmarshal(body, &oo) != nil || oo.ResourceType != "OperationOutcome" || len(oo.Issue) == 0 {
		return ""
	}
	var b strings.Builder
	for i, is := range oo.Issue {
		if i == maxIssues {
			fmt.Fprintf(&b, " (and %d more issues)", len(oo.Issue)-maxIssues)
			break
		}
		if i > 0 {
			b.WriteString(";")
		}
		b.WriteString(" ")
		b.WriteString(clean(is.Severity, maxCode))
		b.WriteString(" ")
		b.WriteString(clean(is.Code, maxCode))
		text := is.Diagnostics
		if text == "" {
			text = is.Details.Text
		}
		if text != "" {
			b.WriteString(": ")
			b.WriteString(clean(text, maxDiagnostics))
		}
	}
	return ":" + b.String()
}

// clean returns s cut to at most n bytes on a character boundary, with line
// breaks and other control characters made spaces so that a server cannot
// forge log lines.
func clean(s string, n int) string {
	if len(s) > n {
		cut := n
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || r == utf8.RuneError {
			return ' '
		}
		return r
	}, s)
}

// responseBundle is the part of a transaction-response or batch-response
// Bundle that says how each entry went.
type responseBundle struct {
	ResourceType string `json:"resourceType"`
	Type         string `json:"type"`
	Entry        []struct {
		Response *struct {
			Status  string          `json:"status"`
			Outcome json.RawMessage `json:"outcome"`
		} `json:"response"`
	} `json:"entry"`
}

// checkEntries looks in a 2xx response for a transaction-response or
// batch-response Bundle with an entry whose status is not 2xx, and classifies
// the delivery as classify would the worst such entry: retried when any entry
// may pass on another attempt, else permanent. A body that is not such a
// Bundle, or was too long to read whole, passes.
func checkEntries(what string, body []byte) error {
	var rb responseBundle
	if json.Unmarshal(body, &rb) != nil || rb.ResourceType != "Bundle" ||
		rb.Type != "transaction-response" && rb.Type != "batch-response" {
		return nil
	}
	var (
		failed, first int
		status        int
		outcome       json.RawMessage
		retry         bool
	)
	for i, e := range rb.Entry {
		if e.Response == nil {
			continue
		}
		code := entryStatus(e.Response.Status)
		if code >= 200 && code < 300 {
			continue
		}
		if failed == 0 {
			first, status, outcome = i, code, e.Response.Outcome
		}
		failed++
		retry = retry || code == 0 || retryableStatus(code)
	}
	if failed == 0 {
		return nil
	}
	more := ""
	if failed > 1 {
		more = fmt.Sprintf(" (and %d more entries failed)", failed-1)
	}
	text := "status " + strconv.Quote(clean(rb.Entry[first].Response.Status, maxCode))
	if status != 0 {
		text = statusText(status)
	}
	err := fmt.Errorf("fhir: %s: entry %d: %s%s%s", what, first, text, summarise(outcome), more)
	if retry {
		return err
	}
	return routes.Permanent(err)
}

// entryStatus reads the code at the start of a Bundle entry's response.status
// ("201 Created"), or 0.
func entryStatus(s string) int {
	code, _, _ := strings.Cut(strings.TrimSpace(s), " ")
	n, err := strconv.Atoi(code)
	if err != nil || n < 100 || n > 999 {
		return 0
	}
	return n
}
