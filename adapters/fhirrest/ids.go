package fhirrest

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
)

// The namespaces of the name-based UUIDs this package sends. They are part of
// the IDs a server has seen: changing one makes every retry after an upgrade
// look new to the server.
var (
	// requestNamespace names deliveries (and entries of deliveries) in
	// X-Request-ID.
	requestNamespace = [16]byte{0x5b, 0x1f, 0x0e, 0x7a, 0x3c, 0x52, 0x4d, 0x1e, 0x9a, 0x61, 0x27, 0xd4, 0x80, 0x3b, 0xc6, 0x11}
	// correlationNamespace names journal records in X-Correlation-ID.
	correlationNamespace = [16]byte{0x0c, 0x9e, 0x46, 0xb2, 0x71, 0xa8, 0x4f, 0x35, 0xb7, 0x0d, 0x52, 0xe9, 0x1a, 0x64, 0xf0, 0x2c}
)

// nameUUID returns the name-based UUID (RFC 9562 version 5: SHA-1) of name in
// namespace ns: the same name gives the same UUID every time.
func nameUUID(ns *[16]byte, name string) string {
	h := sha1.New()
	h.Write(ns[:])
	h.Write([]byte(name))
	var sum [sha1.Size]byte
	h.Sum(sum[:0])
	sum[6] = sum[6]&0x0f | 0x50
	sum[8] = sum[8]&0x3f | 0x80
	return formatUUID((*[16]byte)(sum[:16]))
}

// randomUUID returns a random (version 4) UUID.
func randomUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return formatUUID(&b)
}

// formatUUID writes b in the 8-4-4-4-12 form, lower case.
func formatUUID(b *[16]byte) string {
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}
