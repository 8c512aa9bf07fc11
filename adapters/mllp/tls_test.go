package mllp

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testPKI is a CA with server and client certificates, valid and expired,
// written as PEM files.
type testPKI struct {
	dir                    string
	caFile                 string
	pool                   *x509.CertPool
	serverCert, serverKey  string
	expiredCert, expiredKe string
	client, expiredClient  tls.Certificate
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	p := &testPKI{dir: t.TempDir(), pool: x509.NewCertPool()}
	now := time.Now()
	caKey := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Spinebridge Test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	p.pool.AddCert(ca)
	p.caFile = p.write(t, "ca.pem", "CERTIFICATE", caDER)

	issue := func(serial int64, cn string, notAfter time.Time, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
		key := newKey(t)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    now.Add(-48 * time.Hour),
			NotAfter:     notAfter,
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, key
	}
	der, key := issue(2, "spinebridge.test", now.Add(time.Hour), x509.ExtKeyUsageServerAuth)
	p.serverCert, p.serverKey = p.write(t, "server.pem", "CERTIFICATE", der), p.writeKey(t, "server.key", key)
	der, key = issue(3, "spinebridge.test", now.Add(-time.Hour), x509.ExtKeyUsageServerAuth)
	p.expiredCert, p.expiredKe = p.write(t, "expired.pem", "CERTIFICATE", der), p.writeKey(t, "expired.key", key)
	der, key = issue(4, "pas.example.nhs.uk", now.Add(time.Hour), x509.ExtKeyUsageClientAuth)
	p.client = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	der, key = issue(5, "old-pas.example.nhs.uk", now.Add(-time.Hour), x509.ExtKeyUsageClientAuth)
	p.expiredClient = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	return p
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func (p *testPKI) write(t *testing.T, name, kind string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func (p *testPKI) writeKey(t *testing.T, name string, key *ecdsa.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return p.write(t, name, "PRIVATE KEY", der)
}

// clientConfig returns a client TLS configuration trusting the test CA and
// presenting certs.
func (p *testPKI) clientConfig(certs ...tls.Certificate) *tls.Config {
	return &tls.Config{RootCAs: p.pool, Certificates: certs, MinVersion: tls.VersionTLS12}
}

// Case 15: TLS and mutual TLS.
func TestListenerCase15TLS(t *testing.T) {
	pki := newTestPKI(t)
	tests := []struct {
		name    string
		auth    ClientAuth
		certs   []tls.Certificate
		wantCN  string
		refused bool
	}{
		{name: "mtls_off_no_cert", auth: ClientAuthOff},
		{name: "mtls_off_cert_not_asked_for", auth: ClientAuthOff, certs: []tls.Certificate{pki.client}},
		{name: "mtls_optional_no_cert", auth: ClientAuthOptional},
		{name: "mtls_optional_with_cert", auth: ClientAuthOptional, certs: []tls.Certificate{pki.client}, wantCN: "pas.example.nhs.uk"},
		{name: "mtls_optional_expired_cert", auth: ClientAuthOptional, certs: []tls.Certificate{pki.expiredClient}, refused: true},
		{name: "mtls_required_no_cert", auth: ClientAuthRequired, refused: true},
		{name: "mtls_required_with_cert", auth: ClientAuthRequired, certs: []tls.Certificate{pki.client}, wantCN: "pas.example.nhs.uk"},
		{name: "mtls_required_expired_cert", auth: ClientAuthRequired, certs: []tls.Certificate{pki.expiredClient}, refused: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := TLSConfig{CertFile: pki.serverCert, KeyFile: pki.serverKey, ClientAuth: tt.auth}
			if tt.auth != ClientAuthOff {
				cfg.ClientCAFile = pki.caFile
			}
			e := startListener(t, ListenerConfig{TLS: cfg}, nil)
			ctx := context.Background()
			s, err := Dial(ctx, SenderConfig{Addr: e.addr, TLS: pki.clientConfig(tt.certs...), AckTimeout: 5 * time.Second})
			if err == nil {
				defer s.Close()
				_, err = s.Send(ctx, testMessage("T1"))
			}
			if tt.refused {
				// In TLS 1.3 the client learns of the refusal only when it reads.
				if err == nil {
					t.Fatal("message accepted; want the handshake refused")
				}
				waitFor(t, "the handshake failure to be counted", func() bool { return e.l.Stats().HandshakeFailures == 1 })
				if len(e.h.calls()) != 0 {
					t.Error("a message from a refused client was dispatched")
				}
				return
			}
			if err != nil {
				t.Fatalf("send: %v", err)
			}
			calls := e.h.calls()
			if len(calls) != 1 || !calls[0].conn.TLS || calls[0].conn.PeerCommonName != tt.wantCN {
				t.Errorf("handler saw %+v, want TLS with peer CN %q", calls, tt.wantCN)
			}
		})
	}
}

// Case 15: a sender that does not speak TLS fails the handshake, which is
// counted and logged, and the listener goes on serving.
func TestListenerCase15HandshakeFailure(t *testing.T) {
	pki := newTestPKI(t)
	e := startListener(t, ListenerConfig{TLS: TLSConfig{CertFile: pki.serverCert, KeyFile: pki.serverKey}}, nil)
	plain := dialClient(t, e.addr)
	plain.write([]byte(framed("PLAIN")))
	if got := plain.end(); got != "eof" && got != "reset" {
		t.Errorf("plain connection ended with %s", got)
	}
	waitFor(t, "the handshake failure", func() bool { return e.l.Stats().HandshakeFailures == 1 })
	if !strings.Contains(e.logs.String(), "TLS handshake failed") {
		t.Errorf("handshake failure not logged:\n%s", e.logs)
	}
	// A client that does not trust the listener's certificate refuses it.
	if _, err := tls.Dial("tcp", e.addr, &tls.Config{MinVersion: tls.VersionTLS12}); err == nil {
		t.Error("handshake succeeded without trusting the certificate")
	}
	c := dialTLSClient(t, e.addr, pki.clientConfig())
	c.write([]byte(framed("TLS")))
	if code, id := c.ack(); code != "AA" || id != "TLS" {
		t.Errorf("ACK %s %s", code, id)
	}
	if len(e.h.calls()) != 1 {
		t.Errorf("%d messages dispatched, want 1", len(e.h.calls()))
	}
}

// Case 15: a listener does not start on an expired certificate, and bad TLS
// settings name the file at fault.
func TestTLSConfigServer(t *testing.T) {
	pki := newTestPKI(t)
	missing := filepath.Join(pki.dir, "missing.pem")
	tests := []struct {
		name string
		cfg  TLSConfig
		want string // "" for success
	}{
		{"plain", TLSConfig{}, ""},
		{"valid", TLSConfig{CertFile: pki.serverCert, KeyFile: pki.serverKey}, ""},
		{"mtls", TLSConfig{CertFile: pki.serverCert, KeyFile: pki.serverKey, ClientCAFile: pki.caFile, ClientAuth: ClientAuthRequired}, ""},
		{"expired", TLSConfig{CertFile: pki.expiredCert, KeyFile: pki.expiredKe}, pki.expiredCert + " expired at"},
		{"no_key", TLSConfig{CertFile: pki.serverCert}, "has no key file"},
		{"missing_cert", TLSConfig{CertFile: missing, KeyFile: pki.serverKey}, missing},
		{"key_mismatch", TLSConfig{CertFile: pki.serverCert, KeyFile: pki.expiredKe}, pki.serverCert},
		{"auth_without_ca", TLSConfig{CertFile: pki.serverCert, KeyFile: pki.serverKey, ClientAuth: ClientAuthOptional}, "needs a client CA file"},
		{"ca_without_auth", TLSConfig{CertFile: pki.serverCert, KeyFile: pki.serverKey, ClientCAFile: pki.caFile}, "client auth is off"},
		{"ca_not_pem", TLSConfig{CertFile: pki.serverCert, KeyFile: pki.serverKey, ClientCAFile: pki.serverKey, ClientAuth: ClientAuthRequired}, pki.serverKey + " holds no PEM certificate"},
		{"old_version", TLSConfig{CertFile: pki.serverCert, KeyFile: pki.serverKey, MinVersion: tls.VersionTLS10}, "want TLS 1.2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc, err := tt.cfg.Server()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if tt.cfg.CertFile != "" && (tc == nil || tc.MinVersion != tls.VersionTLS12) {
					t.Errorf("config %+v, want TLS 1.2 at least", tc)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "PRIVATE KEY") {
				t.Errorf("error shows key material: %v", err)
			}
		})
	}
	_, err := NewListener(ListenerConfig{Addr: ":0", TLS: TLSConfig{CertFile: pki.expiredCert, KeyFile: pki.expiredKe}}, &recorder{}, nil)
	if err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("NewListener with an expired certificate: %v", err)
	}
}
