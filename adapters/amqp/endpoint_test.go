package amqp

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPasswordSources(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "password")
	if err := os.WriteFile(file, []byte("s3cret\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SPINEBRIDGE_TEST_AMQP_PASSWORD", "fromenv")
	tests := []struct {
		name, url, file, env string
		user, password       string
		wantErr              string
	}{
		{name: "no user, no source: guest", url: "amqp://broker/", user: "guest", password: "guest"},
		{name: "file, trailing newline dropped", url: "amqp://spine@broker/", file: file, user: "spine", password: "s3cret"},
		{name: "environment", url: "amqp://spine@broker/", env: "SPINEBRIDGE_TEST_AMQP_PASSWORD", user: "spine", password: "fromenv"},
		{name: "no user but a password", url: "amqp://broker/", env: "SPINEBRIDGE_TEST_AMQP_PASSWORD", user: "guest", password: "fromenv"},
		{name: "missing file", url: "amqp://spine@broker/", file: filepath.Join(dir, "none"), user: "spine", wantErr: "password file"},
		{name: "unset variable", url: "amqp://spine@broker/", env: "SPINEBRIDGE_TEST_AMQP_UNSET", user: "spine", wantErr: "SPINEBRIDGE_TEST_AMQP_UNSET is not set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ep, errs := parseEndpoint(tt.url, tt.file, tt.env, TLSConfig{}, 0)
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			if ep.user != tt.user {
				t.Errorf("user = %q, want %q", ep.user, tt.user)
			}
			pw, err := ep.password()
			switch {
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("password() error = %v, want one saying %q", err, tt.wantErr)
				}
			case err != nil:
				t.Errorf("password(): %v", err)
			case pw != tt.password:
				t.Errorf("password() = %q, want %q", pw, tt.password)
			}
		})
	}
}

func TestTLSClient(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeSelfSigned(t, dir)
	c := TLSConfig{CAFile: certFile, CertFile: certFile, KeyFile: keyFile}
	cfg, err := c.client("broker.example")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RootCAs == nil || len(cfg.Certificates) != 1 || cfg.ServerName != "broker.example" || cfg.MinVersion < 0x0303 {
		t.Errorf("TLS configuration not as the files say: roots %v, %d certificates, server name %q, min version %#x", cfg.RootCAs != nil, len(cfg.Certificates), cfg.ServerName, cfg.MinVersion)
	}
	c.ServerName = "other.example"
	if cfg, err := c.client("broker.example"); err != nil || cfg.ServerName != "other.example" {
		t.Errorf("server_name not used: %v, %v", cfg.ServerName, err)
	}

	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := (TLSConfig{CAFile: notPEM}).client("broker"); err == nil || !strings.Contains(err.Error(), "holds no PEM certificate") {
		t.Errorf("a CA file without certificates: %v", err)
	}
	if _, err := (TLSConfig{CertFile: certFile, KeyFile: filepath.Join(dir, "none")}).client("broker"); err == nil {
		t.Error("a missing key file was accepted")
	}
}

// writeSelfSigned writes a self-signed certificate and its key as PEM files.
func writeSelfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "spinebridge test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		DNSNames:              []string{"broker.example"},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestBackoffGrowsWithinBounds(t *testing.T) {
	var b backoff
	for i := range 25 {
		capped := maxBackoff
		if i < 20 {
			capped = min(minBackoff<<i, maxBackoff)
		}
		if d := b.next(); d < capped/2 || d > capped {
			t.Fatalf("pause %d = %v, want between %v and %v", i, d, capped/2, capped)
		}
	}
	b.reset()
	if d := b.next(); d > minBackoff {
		t.Errorf("pause after reset = %v, want at most %v", d, minBackoff)
	}
}
