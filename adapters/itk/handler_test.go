package itk

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
	"github.com/spinebridge/spinebridge/routes"
)

func TestHandlerCDA(t *testing.T) {
	j := &fakeJournal{}
	h := newTestHandler(t, Config{}, j)
	w := post(h, fixture(t, "cda_discharge.xml"))
	mustOK(t, w)
	body := w.Body.String()
	for _, want := range []string{
		"<wsa:RelatesTo>uuid:6B1E2C3A-0F4D-4E21-9A7B-2C1D3E4F5A60</wsa:RelatesTo>",
		"<wsa:Action>urn:nhs-itk:services:201005:SendCDADocument-v2-0Response</wsa:Action>",
		"<itk:SimpleMessageResponse>OK</itk:SimpleMessageResponse>",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("response lacks %s:\n%s", want, body)
		}
	}
	if len(j.records) != 1 || len(j.arrivals) != 0 {
		t.Fatalf("journaled %d records and %d v2 arrivals, want 1 and 0", len(j.records), len(j.arrivals))
	}
	rec := j.records[0]
	if rec.Listener != "itk" || rec.Format != routes.FormatCDA || rec.Type != "CDA" || rec.Trigger != "373942005" ||
		rec.ControlID != "7F3E8A21-4B5C-4D6E-8F90-A1B2C3D4E5F6" || rec.NHSNumber != "9434765919" ||
		rec.Sender != "urn:nhs-uk:addressing:ods:RX1:DISCHARGE|urn:nhs-uk:identity:ods:RX1" || rec.Status != routes.StatusAccepted {
		t.Errorf("record = %+v", rec)
	}
	m, ok := MetaOf(rec)
	if !ok {
		t.Fatalf("no ITK metadata in peer %q", rec.Peer)
	}
	want := Meta{
		Remote: "192.0.2.1:1234", Service: "urn:nhs-itk:services:201005:SendCDADocument-v2-0",
		TrackingID: "7F3E8A21-4B5C-4D6E-8F90-A1B2C3D4E5F6", MessageID: "uuid:6B1E2C3A-0F4D-4E21-9A7B-2C1D3E4F5A60",
		PayloadID:     "uuid_2A4C6E80-1B3D-4F57-9A1C-3E5F7A9B1C2D",
		Interaction:   "urn:nhs-itk:interaction:primaryRecipienteDischargeInpatientDischargeSummaryDocument-v1-0",
		SenderAddress: "urn:nhs-uk:addressing:ods:RX1:DISCHARGE", Recipient: "urn:nhs-uk:addressing:ods:X26",
		AuditIdentity: "urn:nhs-uk:identity:ods:RX1", InfAckRequested: true, BusAckRequested: true,
		DocumentID: Identifier{Root: "C0A81F2E-5D4B-4A3C-9E8F-7D6C5B4A3921"},
	}
	if m != want {
		t.Errorf("meta =\n%+v\nwant\n%+v", m, want)
	}
	// The CDA is journaled as a document of its own, with the namespace the
	// envelope declared for it.
	golden(t, "cda_discharge.cda.xml", rec.Raw)
}

func TestHandlerV2XML(t *testing.T) {
	j := &fakeJournal{}
	h := newTestHandler(t, Config{}, j)
	mustOK(t, post(h, fixture(t, "adt_a01_v2xml.xml")))
	if len(j.arrivals) != 1 || len(j.records) != 0 {
		t.Fatalf("journaled %d v2 arrivals and %d records, want 1 and 0", len(j.arrivals), len(j.records))
	}
	a := j.arrivals[0]
	golden(t, "adt_a01_v2xml.er7", a.Payload)
	m, ok := ParseMeta(a.Peer)
	if !ok || m.TrackingID != "5C6D7E8F-9A0B-4C1D-8E2F-3A4B5C6D7E8F" || !m.InfAckRequested || m.BusAckRequested || m.SenderAddress != "urn:nhs-uk:addressing:ods:RX1" {
		t.Errorf("peer %q gives meta %+v", a.Peer, m)
	}
	msg, err := hl7v2.Parse(a.Payload)
	if err != nil {
		t.Fatalf("converted message does not parse: %v", err)
	}
	for path, want := range map[string]string{
		"MSH-9.2": "A01", "MSH-10": "ITK0000123", "PID-3[2].4.2": "2.16.840.1.113883.2.1.3.2.4.19.1",
		"PID-5.1": "O'Brien-Thompson", "PID-32": "NSTS01", "IN1-2.1": "NHS",
	} {
		v, err := msg.Lookup(path)
		if err != nil || v.String() != want {
			t.Errorf("%s = %q (%v), want %q", path, v.String(), err, want)
		}
	}
	// Delimiters in values come back out of the escapes unchanged.
	for path, want := range map[string]string{
		"PID-11.1.1": "Flat 2 | Riverside Court ^ Block B",
		"PD1-3.1":    "Riverside Surgery ~ Annexe",
		"ZU1-1":      "Admitted via A&E\nWard round at 10:00 \\ review",
	} {
		v, err := msg.Lookup(path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		got, err := v.Unescape(nil)
		if err != nil || string(got) != want {
			t.Errorf("%s unescaped = %q (%v), want %q", path, got, err, want)
		}
	}
}

func TestHandlerV2Outcomes(t *testing.T) {
	rejectAck := []byte("MSH|^~\\&|SB|X26|RX1PAS|RX1|20261121093100+0000||ACK^A01^ACK|SB1|P|2.5\rMSA|AR|ITK0000123\rERR|||203^Unsupported version id^HL70357|E\r")
	missingAck := []byte("MSH|^~\\&|SB|X26|RX1PAS|RX1|20261121093100+0000||ACK^A01^ACK|SB1|P|2.5\rMSA|AR|ITK0000123\rERR|||101^Required field missing^HL70357|E\r")
	tests := []struct {
		name      string
		code      hl7v2.AckCode
		committed bool
		ack       []byte
		want      Code
	}{
		{"CA", hl7v2.CA, true, nil, 0},
		{"AE not stored", hl7v2.AE, false, nil, CodeRetryable},
		{"CE not stored", hl7v2.CE, false, nil, CodeRetryable},
		{"AE stored", hl7v2.AE, true, nil, CodeNotRetryable},
		{"AR unsupported version", hl7v2.AR, true, rejectAck, CodeNotRetryable},
		{"AR required field", hl7v2.AR, true, missingAck, CodeInvalidMessage},
		{"CR without ERR", hl7v2.CR, true, nil, CodeInvalidMessage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := &fakeJournal{code: tt.code, committed: tt.committed, ack: tt.ack}
			w := post(newTestHandler(t, Config{}, j), fixture(t, "adt_a01_v2xml.xml"))
			if tt.want == 0 {
				mustOK(t, w)
				return
			}
			if f := mustFault(t, w); f.Code != tt.want {
				t.Errorf("fault code %d, want %d", f.Code, tt.want)
			}
		})
	}
}

func TestHandlerJournalFailure(t *testing.T) {
	j := &fakeJournal{appendErr: errors.New("disk full")}
	w := post(newTestHandler(t, Config{}, j), fixture(t, "cda_discharge.xml"))
	f := mustFault(t, w)
	if f.Code != CodeRetryable || f.FaultCode != FaultServer || !f.Retryable() {
		t.Errorf("fault %+v, want a retryable Server fault 2100", f)
	}
	if !strings.Contains(w.Body.String(), "<wsa:RelatesTo>uuid:6B1E2C3A-0F4D-4E21-9A7B-2C1D3E4F5A60</wsa:RelatesTo>") {
		t.Errorf("fault does not relate to the request:\n%s", w.Body)
	}
	if strings.Contains(w.Body.String(), "disk full") {
		t.Error("fault shows the journal's error text")
	}
}

func TestHandlerHTTP(t *testing.T) {
	h := newTestHandler(t, Config{MaxBodySize: 64 << 10}, &fakeJournal{})
	t.Run("GET", func(t *testing.T) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/itk", nil))
		if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "POST" {
			t.Errorf("status %d, Allow %q", w.Code, w.Header().Get("Allow"))
		}
	})
	for _, ct := range []string{"", "application/soap+xml; charset=utf-8", "application/json", "text/xml; charset"} {
		t.Run("Content-Type "+ct, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/itk", strings.NewReader("<a/>"))
			r.Header.Set("Content-Type", ct)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != http.StatusUnsupportedMediaType {
				t.Errorf("status %d, want 415", w.Code)
			}
		})
	}
	t.Run("charset", func(t *testing.T) {
		r := httptest.NewRequest(http.MethodPost, "/itk", strings.NewReader(string(fixture(t, "cda_discharge.xml"))))
		r.Header.Set("Content-Type", "text/xml; charset=iso-8859-1")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if f := mustFault(t, w); f.Code != CodeInvalidMessage {
			t.Errorf("code %d, want 1000", f.Code)
		}
	})
	t.Run("SOAPAction", func(t *testing.T) {
		r := httptest.NewRequest(http.MethodPost, "/itk", strings.NewReader(string(fixture(t, "cda_discharge.xml"))))
		r.Header.Set("Content-Type", "text/xml")
		r.Header.Set("SOAPAction", `"urn:nhs-itk:services:201005:SendNHS111Report-v2-0"`)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if f := mustFault(t, w); f.Code != CodeInvalidMessage || !strings.Contains(f.Diagnostic, "soap-action") {
			t.Errorf("fault %+v, want 1000 soap-action", f)
		}
	})
	t.Run("too large", func(t *testing.T) {
		big := strings.Repeat(" ", 65<<10)
		w := post(h, []byte("<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\">"+big+"</soap:Envelope>"))
		if f := mustFault(t, w); f.Code != CodeInvalidMessage || !strings.Contains(f.Diagnostic, "size-limit") {
			t.Errorf("fault %+v, want 1000 size-limit", f)
		}
	})
}
