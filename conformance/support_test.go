package conformance_test

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spinebridge/spinebridge/adapters/mllp"
)

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// writeArchiveRoutes writes dir/routes.yaml, a routes table sending every
// message unchanged to the file destination "archive" in dir/out, with the
// destination's further keys given one per line, and returns its path.
func writeArchiveRoutes(t *testing.T, dir string, keys ...string) string {
	t.Helper()
	text := fmt.Sprintf(`routes:
  - name: originals
    when: "true"
    to: [archive]
destinations:
  archive:
    kind: file
    dir: %s
`, filepath.Join(dir, "out"))
	for _, k := range keys {
		text += "    " + k + "\n"
	}
	path := filepath.Join(dir, "routes.yaml")
	writeFile(t, path, text)
	return path
}

// testPKI is a CA with a valid server certificate, an expired one and a client
// certificate, as PEM files.
type testPKI struct {
	caFile                  string
	serverCert, serverKey   string
	expiredCert, expiredKey string
	clientPair              tls.Certificate
	expiredClient           tls.Certificate
	pool                    *x509.CertPool
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Spinebridge test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	p := &testPKI{caFile: filepath.Join(dir, "ca.pem"), pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	writePEM(t, p.caFile, "CERTIFICATE", caDER)

	issue := func(name string, serial int64, notAfter time.Time, usage x509.ExtKeyUsage) (certFile, keyFile string, pair tls.Certificate) {
		key := newKey(t)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: notAfter,
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature,
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, _ := x509.MarshalECPrivateKey(key)
		certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
		writePEM(t, certFile, "CERTIFICATE", der)
		writePEM(t, keyFile, "EC PRIVATE KEY", keyDER)
		pair, err = tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		return certFile, keyFile, pair
	}
	p.serverCert, p.serverKey, _ = issue("server", 2, time.Now().Add(24*time.Hour), x509.ExtKeyUsageServerAuth)
	p.expiredCert, p.expiredKey, _ = issue("expired", 3, time.Now().Add(-time.Hour), x509.ExtKeyUsageServerAuth)
	_, _, p.clientPair = issue("client", 4, time.Now().Add(24*time.Hour), x509.ExtKeyUsageClientAuth)
	_, _, p.expiredClient = issue("expired-client", 5, time.Now().Add(-time.Hour), x509.ExtKeyUsageClientAuth)
	return p
}

// client returns a client TLS configuration trusting the test CA.
func (p *testPKI) client(withCert bool) *tls.Config {
	c := &tls.Config{RootCAs: p.pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	if withCert {
		c.Certificates = []tls.Certificate{p.clientPair}
	}
	return c
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writePEM(t *testing.T, path, kind string, der []byte) {
	t.Helper()
	writeFile(t, path, string(pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der})))
}

// scriptedReceiver is an MLLP receiver whose answers a case scripts, standing in
// for a legacy system in the sender-side cases.
type scriptedReceiver struct {
	addr     string
	attempts atomic.Int64
}

// newScriptedReceiver answers the n-th message (from 1) with reply(n, its MSH-10);
// false sends nothing.
func newScriptedReceiver(t *testing.T, reply func(n int, controlID string) (string, bool)) *scriptedReceiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &scriptedReceiver{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				fr := mllp.NewFrameReader(conn, mllp.FrameOptions{})
				for {
					msg, err := fr.ReadFrame()
					if err != nil {
						return
					}
					n := int(s.attempts.Add(1))
					if a, ok := reply(n, field(string(msg), "MSH", 10)); ok {
						conn.Write(frame(a))
					}
				}
			}()
		}
	}()
	return s
}

func (s *scriptedReceiver) count() int { return int(s.attempts.Load()) }

// ackFor is a minimal ACK with the given MSA-2 and code.
func ackFor(controlID, code string) string {
	return "MSH|^~\\&|LEGACY|RX1|PAS|RX1|20261121||ACK^A01^ACK|L" + controlID + "|P|2.5.1\rMSA|" + code + "|" + controlID + "\r"
}

func asAckErr(err error, target **mllp.AckError) bool { return errors.As(err, target) }

// delayingProxy forwards MLLP connections to a target, holding back the replies
// on its first connection for delay: a slow receiver, for the timeout case.
type delayingProxy struct{ addr string }

func newDelayingProxy(t *testing.T, target string, delay time.Duration) *delayingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		conns atomic.Int64
	)
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			first := conns.Add(1) == 1
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer in.Close()
				out, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer out.Close()
				// Either side ending ends both, so no copy outlives the test.
				go func() { io.Copy(out, in); out.Close(); in.Close() }()
				if first {
					// Hold the reply back, then pass it on to a sender that has
					// likely given up on this connection.
					r := bufio.NewReader(out)
					var reply []byte
					for !strings.HasSuffix(string(reply), "\x1c\r") {
						more, err := r.ReadBytes('\r')
						reply = append(reply, more...)
						if err != nil {
							return
						}
					}
					time.Sleep(delay)
					in.Write(reply)
					return
				}
				io.Copy(in, out)
			}()
		}
	}()
	return &delayingProxy{addr: ln.Addr().String()}
}
