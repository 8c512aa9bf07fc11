package itk

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"encoding/base64"
	"fmt"
	"io"
	"strings"
)

// payloadKind is what a payload holds, told by its root element.
type payloadKind int

const (
	kindCDA payloadKind = iota + 1 // an HL7 CDA document (hl7:ClinicalDocument)
	kindV2                         // an HL7 v2 message in its XML encoding
)

// content is one payload, decoded and ready to journal.
type content struct {
	id   string
	kind payloadKind
	// raw is the CDA document as XML (as sent when it came base64-encoded, or
	// written out with its namespaces when it came inline), or the v2 message
	// converted to ER7.
	raw []byte
	cda *CDAHeader // the CDA header, for kindCDA
}

// contents decodes every payload of req: none is journaled unless all can be.
func (req *Request) contents(lim xmlLimits) ([]content, error) {
	items := map[string]ManifestItem{}
	for _, m := range req.Envelope.Manifest {
		items[m.ID] = m
	}
	out := make([]content, 0, len(req.Envelope.Payloads))
	for i, p := range req.Envelope.Payloads {
		path := fmt.Sprintf("/soap:Envelope/soap:Body/itk:DistributionEnvelope/itk:payloads/itk:payload[%d]", i+1)
		c, err := decodePayload(p, items[p.ID], lim, path)
		if err != nil {
			if e, ok := err.(*Error); ok && e.Path == "" {
				e.Path = path
			}
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

func decodePayload(p Payload, m ManifestItem, lim xmlLimits, path string) (content, error) {
	c := content{id: p.ID}
	if m.Encrypted {
		return c, &Error{Code: CodeNotRetryable, Fault: FaultServer, DECode: "DE0012", Rule: "payload-encrypted", Path: path, Text: "encrypted payloads are not accepted by this receiver", Err: ErrUnsupported}
	}
	if m.Compressed && !m.Base64 {
		return c, invalid("payload-compressed-base64", "DE0012", path, "a compressed payload must also be base64-encoded", ErrPayload)
	}
	var root *xmlElem
	if m.Base64 {
		if len(p.elem.elems()) > 0 {
			return c, invalid("payload-base64", "DE0012", path, "a base64 payload holds text only", ErrPayload)
		}
		data, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(p.elem.text()), ""))
		if err != nil {
			return c, invalid("payload-base64", "DE0012", path, "the payload is not valid base64", ErrPayload)
		}
		if m.Compressed {
			if data, err = decompress(data, lim.maxSize); err != nil {
				return c, err
			}
		}
		if root, err = parseXML(data, lim); err != nil {
			return c, err
		}
		c.raw = data
	} else {
		kids := p.elem.elems()
		if len(kids) != 1 || p.elem.hasText() {
			return c, invalid("payload-inline", "DE0012", path, "an inline payload holds one XML element and no text", ErrPayload)
		}
		root = kids[0]
	}
	switch {
	case root.is(nsHL7v3, "ClinicalDocument"):
		c.kind = kindCDA
		if c.raw == nil {
			c.raw = appendDocument(nil, root)
		}
		h, err := ReadCDAHeader(c.raw, Limits{MaxSize: lim.maxSize, MaxDepth: lim.maxDepth})
		if err != nil {
			return c, err
		}
		c.cda = h
	case root.space == nsV2XML:
		c.kind = kindV2
		er7, err := appendER7(nil, root)
		if err != nil {
			return c, err
		}
		c.raw = er7
	default:
		return c, &Error{Code: CodeNotRetryable, Fault: FaultServer, DECode: "DE0012", Rule: "payload-kind", Path: path, Text: "the payload is neither a CDA document nor an HL7 v2 XML message", Err: ErrUnsupported}
	}
	return c, nil
}

// decompress inflates a compressed payload: gzip, zlib or raw deflate, told
// apart by their headers. It stops past max bytes, so a small payload that
// inflates enormously is refused rather than held.
func decompress(data []byte, max int) ([]byte, error) {
	var r io.Reader
	switch {
	case len(data) >= 2 && data[0] == 0x1f && data[1] == 0x8b:
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, invalid("payload-compressed", "DE0012", "", "the payload is not valid gzip", ErrPayload)
		}
		r = zr
	case len(data) >= 2 && data[0]&0x0f == 8 && (uint16(data[0])<<8|uint16(data[1]))%31 == 0:
		zr, err := zlib.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, invalid("payload-compressed", "DE0012", "", "the payload is not valid zlib", ErrPayload)
		}
		r = zr
	default:
		r = flate.NewReader(bytes.NewReader(data))
	}
	out, err := io.ReadAll(io.LimitReader(r, int64(max)+1))
	if err != nil {
		return nil, invalid("payload-compressed", "DE0012", "", "the payload could not be decompressed", ErrPayload)
	}
	if len(out) > max {
		return nil, invalid("payload-size-limit", "DE0012", "", fmt.Sprintf("the payload decompresses to more than %d bytes", max), ErrTooLarge)
	}
	return out, nil
}
