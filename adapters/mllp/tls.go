package mllp

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"
)

// ClientAuth says whether a TLS listener asks senders for a certificate.
type ClientAuth int

// Client authentication policies.
const (
	// ClientAuthOff asks for no client certificate.
	ClientAuthOff ClientAuth = iota
	// ClientAuthOptional verifies a client certificate against the client CAs
	// when the sender presents one, and accepts a sender that presents none.
	ClientAuthOptional
	// ClientAuthRequired refuses a sender without a certificate signed by one of
	// the client CAs (mutual TLS).
	ClientAuthRequired
)

// String returns the policy's configuration name: off, optional or required.
func (a ClientAuth) String() string {
	switch a {
	case ClientAuthOff:
		return "off"
	case ClientAuthOptional:
		return "optional"
	case ClientAuthRequired:
		return "required"
	}
	return fmt.Sprintf("ClientAuth(%d)", int(a))
}

// TLSConfig is TLS as files on disk; zero CertFile = plain TCP.
type TLSConfig struct {
	CertFile     string // PEM certificate chain of the listener, leaf first
	KeyFile      string // PEM private key of CertFile
	ClientCAFile string // PEM CA certificates that sign client certificates
	ClientAuth   ClientAuth
	MinVersion   uint16 // tls.VersionTLS12 (the default when zero) or tls.VersionTLS13
}

// Server loads the files and returns the listener's TLS configuration, or nil
// when c configures no TLS. It refuses a certificate outside its validity
// period, which no sender would accept. Errors name the file at fault and never
// hold key material.
func (c TLSConfig) Server() (*tls.Config, error) {
	if c.CertFile == "" {
		if c.KeyFile != "" || c.ClientCAFile != "" || c.ClientAuth != ClientAuthOff {
			return nil, errors.New("mllp: tls: key file, client CA file or client auth set without a certificate file")
		}
		return nil, nil
	}
	if c.KeyFile == "" {
		return nil, fmt.Errorf("mllp: tls: certificate file %s has no key file", c.CertFile)
	}
	minVersion := c.MinVersion
	switch minVersion {
	case 0:
		minVersion = tls.VersionTLS12
	case tls.VersionTLS12, tls.VersionTLS13:
	default:
		return nil, fmt.Errorf("mllp: tls: minimum version %#04x: want TLS 1.2 (%#04x) or 1.3 (%#04x)", c.MinVersion, tls.VersionTLS12, tls.VersionTLS13)
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("mllp: tls: certificate %s, key %s: %w", c.CertFile, c.KeyFile, err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("mllp: tls: certificate %s: %w", c.CertFile, err)
		}
	}
	now := time.Now()
	if now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("mllp: tls: certificate %s expired at %s", c.CertFile, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(leaf.NotBefore) {
		return nil, fmt.Errorf("mllp: tls: certificate %s is not valid before %s", c.CertFile, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: minVersion}
	switch c.ClientAuth {
	case ClientAuthOff:
		if c.ClientCAFile != "" {
			return nil, fmt.Errorf("mllp: tls: client CA file %s set but client auth is off", c.ClientCAFile)
		}
		return tc, nil
	case ClientAuthOptional:
		tc.ClientAuth = tls.VerifyClientCertIfGiven
	case ClientAuthRequired:
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	default:
		return nil, fmt.Errorf("mllp: tls: client auth %v: want off, optional or required", c.ClientAuth)
	}
	if c.ClientCAFile == "" {
		return nil, fmt.Errorf("mllp: tls: client auth %v needs a client CA file to verify certificates against", c.ClientAuth)
	}
	pem, err := os.ReadFile(c.ClientCAFile)
	if err != nil {
		return nil, fmt.Errorf("mllp: tls: client CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("mllp: tls: client CA file %s holds no PEM certificate", c.ClientCAFile)
	}
	tc.ClientCAs = pool
	return tc, nil
}
