package amqp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/spinebridge/spinebridge/routes"
)

// Connection defaults.
const (
	defaultConnectTimeout = 10 * time.Second
	heartbeat             = 10 * time.Second
	// The pause before connecting again doubles from minBackoff to maxBackoff.
	minBackoff = 100 * time.Millisecond
	maxBackoff = 30 * time.Second
	// steadyAfter is how long a connection must have lasted for the pause before
	// the next one to start again from minBackoff, so that a broker that takes
	// connections and drops them at once is not hammered.
	steadyAfter = 30 * time.Second
)

// TLSConfig is TLS for an amqps:// URL, as files read at each connection. With
// none of the files set, the broker is verified against the system's roots.
type TLSConfig struct {
	CAFile     string `yaml:"ca_file"`     // PEM CA certificates that sign the broker's certificate
	CertFile   string `yaml:"cert_file"`   // PEM client certificate chain, for mutual TLS
	KeyFile    string `yaml:"key_file"`    // PEM private key of CertFile
	ServerName string `yaml:"server_name"` // name expected in the broker's certificate; the URL's host when empty
}

func (c TLSConfig) isZero() bool { return c == TLSConfig{} }

// client loads the files and returns the client TLS configuration.
func (c TLSConfig) client(host string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	var ps routes.ConfigProblems
	routes.LoadClientTLS(cfg, c.CAFile, c.CertFile, c.KeyFile, &ps)
	if len(ps) > 0 {
		return nil, ps.Plain("tls")
	}
	return cfg, nil
}

// fieldError is a configuration problem with the dotted path of the key at
// fault, so that Factory can put the key's position in front of it.
type fieldError struct {
	path string
	err  error
}

func (e fieldError) Error() string { return e.path + ": " + e.err.Error() }

func fieldErr(path, format string, args ...any) fieldError {
	return fieldError{path: path, err: fmt.Errorf(format, args...)}
}

// endpoint is a broker to connect to: its URL with no user in it, the user, and
// where the password and TLS material are read from.
type endpoint struct {
	url            string // amqp:// or amqps://, without user information
	host           string
	secure         bool
	user           string
	passwordFile   string
	passwordEnv    string
	guest          bool // no user and no password source: the broker's default guest/guest
	tls            TLSConfig
	connectTimeout time.Duration
}

// parseEndpoint checks a broker's settings, reporting every problem. The URL is
// never quoted in an error, since a mistaken one may hold a password.
func parseEndpoint(raw, passwordFile, passwordEnv string, tlsc TLSConfig, connectTimeout time.Duration) (endpoint, []fieldError) {
	var errs []fieldError
	e := endpoint{passwordFile: passwordFile, passwordEnv: passwordEnv, tls: tlsc, connectTimeout: connectTimeout}
	if connectTimeout < 0 {
		errs = append(errs, fieldErr("connect_timeout", "must not be negative"))
	}
	if e.connectTimeout == 0 {
		e.connectTimeout = defaultConnectTimeout
	}
	if passwordFile != "" && passwordEnv != "" {
		errs = append(errs, fieldErr("password_env", "set password_file or password_env, not both"))
	}
	if raw == "" {
		return e, append(errs, fieldErr("url", "required"))
	}
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return e, append(errs, fieldErr("url", "not a URL: %v", err))
	}
	switch u.Scheme {
	case "amqp":
	case "amqps":
		e.secure = true
	default:
		return e, append(errs, fieldErr("url", "scheme must be amqp or amqps"))
	}
	if u.Host == "" || u.Hostname() == "" {
		errs = append(errs, fieldErr("url", "has no host"))
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			errs = append(errs, fieldErr("url", "holds a password; give it with password_file or password_env instead"))
		}
		e.user = u.User.Username()
	}
	u.User = nil
	e.url = u.String()
	e.host = u.Hostname()
	if _, err := amqp091.ParseURI(e.url); err != nil {
		errs = append(errs, fieldErr("url", "%v", err))
	}
	switch {
	case e.user == "" && passwordFile == "" && passwordEnv == "":
		e.user, e.guest = "guest", true
	case e.user == "":
		e.user = "guest"
	case passwordFile == "" && passwordEnv == "":
		errs = append(errs, fieldErr("url", "names a user but no password_file or password_env gives its password"))
	}
	if !tlsc.isZero() && !e.secure {
		errs = append(errs, fieldErr("tls", "set for an amqp:// URL; use amqps://"))
	}
	if (tlsc.CertFile == "") != (tlsc.KeyFile == "") {
		errs = append(errs, fieldErr("tls", "cert_file and key_file go together"))
	}
	return e, errs
}

// password reads the password from its file or variable. Errors never hold it.
func (e *endpoint) password() (string, error) {
	switch {
	case e.guest:
		return "guest", nil
	case e.passwordFile != "":
		b, err := os.ReadFile(e.passwordFile)
		if err != nil {
			return "", fmt.Errorf("password file: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	case e.passwordEnv != "":
		v, ok := os.LookupEnv(e.passwordEnv)
		if !ok {
			return "", fmt.Errorf("password variable %s is not set", e.passwordEnv)
		}
		return v, nil
	}
	return "", errors.New("no password source")
}

// dial connects and logs in. The connection's name shows in the broker's
// management views. Ending ctx aborts the TCP connect and the handshakes, which
// are otherwise bounded by the connect timeout.
func (e *endpoint) dial(ctx context.Context, name string) (*amqp091.Connection, error) {
	password, err := e.password()
	if err != nil {
		return nil, err
	}
	props := amqp091.NewConnectionProperties()
	props.SetClientConnectionName(name)
	cfg := amqp091.Config{
		SASL:       []amqp091.Authentication{&amqp091.PlainAuth{Username: e.user, Password: password}},
		Heartbeat:  heartbeat,
		Properties: props,
	}
	if e.secure {
		if cfg.TLSClientConfig, err = e.tls.client(e.host); err != nil {
			return nil, err
		}
	}
	var stop func() bool
	cfg.Dial = func(network, addr string) (net.Conn, error) {
		d := net.Dialer{Timeout: e.connectTimeout}
		conn, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		// The library clears this deadline once the AMQP handshake is done.
		if err := conn.SetDeadline(time.Now().Add(e.connectTimeout)); err != nil {
			conn.Close()
			return nil, err
		}
		stop = context.AfterFunc(ctx, func() { conn.Close() })
		return newWriteBehind(conn), nil
	}
	conn, err := amqp091.DialConfig(e.url, cfg)
	if stop != nil {
		stop()
	}
	if err != nil {
		return nil, err
	}
	return conn, nil
}

// backoff is the pause before each attempt to connect again.
type backoff struct{ n int }

// next returns the next pause: it doubles from minBackoff up to maxBackoff and
// is drawn between half and all of that, so that engines do not reconnect in
// step.
func (b *backoff) next() time.Duration {
	d := maxBackoff
	if b.n < 20 {
		d = min(minBackoff<<b.n, maxBackoff)
	}
	b.n++
	return d/2 + rand.N(d/2+1)
}

func (b *backoff) reset() { b.n = 0 }

// sleep waits d or until done is closed, and reports whether it waited d.
func sleep(done <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-done:
		return false
	}
}
