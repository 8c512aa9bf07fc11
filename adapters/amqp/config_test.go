package amqp

import (
	"context"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/spinebridge/spinebridge/routes"
)

func parseNode(t *testing.T, src string) *yaml.Node {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatalf("test YAML: %v", err)
	}
	return doc.Content[0]
}

func TestFactoryErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // each must be in the error
		not  []string // none may be
	}{
		{
			name: "bad scheme",
			src:  "kind: amqp\nurl: http://broker/\nexchange: spine\n",
			want: []string{"2:6: url: scheme must be amqp or amqps"},
		},
		{
			name: "not a URL",
			src:  "url: \"amqp://broker:port/\"\nexchange: spine\n",
			want: []string{"1:6: url: not a URL"},
		},
		{
			name: "password in the URL is refused and not echoed",
			src:  "url: amqp://spine:hunter2@broker/\nexchange: spine\n",
			want: []string{"1:6: url: holds a password"},
			not:  []string{"hunter2"},
		},
		{
			name: "user without a password source",
			src:  "url: amqp://spine@broker/\nexchange: spine\n",
			want: []string{"1:6: url: names a user but no password_file or password_env"},
		},
		{
			name: "both password sources",
			src:  "url: amqp://spine@broker/\npassword_file: /run/secrets/p\npassword_env: P\nexchange: spine\n",
			want: []string{"3:15: password_env: set password_file or password_env, not both"},
		},
		{
			name: "unknown placeholder",
			src:  "url: amqp://broker/\nexchange: spine\nrouting_key: \"{{route}}.{{sender}}\"\n",
			want: []string{"3:14: routing_key: unknown placeholder {{sender}}"},
		},
		{
			name: "unclosed placeholder",
			src:  "url: amqp://broker/\nexchange: spine\nrouting_key: \"a.{{route\"\n",
			want: []string{"3:14: routing_key: \"{{route\" is not closed"},
		},
		{
			name: "unknown key, every error reported",
			src:  "url: amqp://broker/\nexchange: spine\nconfirm_timout: 5s\nchannels: 0\nin_flight: -1\n",
			want: []string{"3:1: unknown key \"confirm_timout\"", "5:12: in_flight: must be between 1 and"},
		},
		{
			name: "unknown key in a nested block",
			src:  "url: amqps://broker/\nexchange: spine\ntls:\n  ca: /etc/ca.pem\n",
			want: []string{"4:3: unknown key \"ca\""},
		},
		{
			name: "exchange left out",
			src:  "url: amqp://broker/\n",
			want: []string{"1:1: exchange: required"},
		},
		{
			name: "default exchange needs a routing key",
			src:  "url: amqp://broker/\nexchange: \"\"\n",
			want: []string{"1:1: routing_key: required with the default exchange"},
		},
		{
			name: "a value of the wrong type does not also fail the checks",
			src:  "url: amqp://broker/\nexchange: spine\nconfirm_timeout: soon\n",
			want: []string{"3:18: confirm_timeout:"},
			not:  []string{"must not be negative"},
		},
		{
			name: "tls on a plain URL",
			src:  "url: amqp://broker/\nexchange: spine\ntls:\n  ca_file: /etc/ca.pem\n",
			want: []string{"4:3: tls: set for an amqp:// URL"},
		},
		{
			name: "declare",
			src:  "url: amqp://broker/\nexchange: spine\ndeclare:\n  exchange_type: fan-out\n  binding_key: \"#\"\n",
			want: []string{"4:18: declare.exchange_type: is \"fan-out\"", "5:16: declare.binding_key: set without declare.queue"},
		},
		{
			name: "reserved header",
			src:  "url: amqp://broker/\nexchange: spine\nheaders:\n  x-spinebridge-route: mine\n  x-team: clinical\n",
			want: []string{"4:3: headers.x-spinebridge-route: is set by the publisher"},
			not:  []string{"x-team"},
		},
		{
			name: "other kind",
			src:  "kind: fhir\nurl: amqp://broker/\nexchange: spine\n",
			want: []string{"1:7: kind: is \"fhir\""},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Factory("events", parseNode(t, tt.src))
			if err == nil {
				d.Close()
				t.Fatal("Factory accepted the configuration")
			}
			msg := err.Error()
			// Each wanted message is there, in the order given: by position.
			last := -1
			for _, w := range tt.want {
				i := strings.Index(msg, w)
				switch {
				case i < 0:
					t.Errorf("error does not contain %q:\n%s", w, msg)
				case i < last:
					t.Errorf("%q is out of position order:\n%s", w, msg)
				default:
					last = i
				}
			}
			for _, n := range tt.not {
				if strings.Contains(msg, n) {
					t.Errorf("error contains %q:\n%s", n, msg)
				}
			}
		})
	}
}

func TestFactoryBuildsWithoutConnecting(t *testing.T) {
	// Nothing listens on port 1: building must not try it.
	src := `
kind: amqp
url: amqps://spine@broker.invalid:1/clinical
password_env: SPINEBRIDGE_TEST_UNSET
exchange: spine
routing_key: "{{route}}.{{ type }}.{{trigger}}"
mandatory: false
persistent: false
confirm_timeout: 5s
channels: 4
in_flight: 64
tls: { ca_file: /nonexistent/ca.pem, server_name: broker }
declare: { exchange_type: topic, durable: false, queue: events, queue_type: classic, binding_key: "#" }
headers: { x-team: clinical }
`
	d, err := Factory("events", parseNode(t, src))
	if err != nil {
		t.Fatal(err)
	}
	p := d.(*Publisher)
	s := p.set
	if s.mandatory || s.persistent || s.durable || s.channels != 4 || s.inFlight != 64 || s.exchange != "spine" || s.bindingKey != "#" {
		t.Errorf("settings not as configured: %+v", s)
	}
	if s.endpoint.user != "spine" || s.endpoint.url != "amqps://broker.invalid:1/clinical" || !s.endpoint.secure {
		t.Errorf("endpoint = %+v", s.endpoint)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestDefaults(t *testing.T) {
	ex := "spine"
	p, err := New("events", Config{URL: "amqp://broker", Exchange: &ex}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	s := p.set
	if !s.mandatory || !s.persistent || s.confirmTimeout != defaultConfirmTimeout || s.channels != defaultChannels || s.inFlight != defaultInFlight {
		t.Errorf("defaults not applied: %+v", s)
	}
	if !s.endpoint.guest || s.endpoint.user != "guest" {
		t.Errorf("a URL without a user should log in as the broker's default guest: %+v", s.endpoint)
	}
}

func TestNewErrorsNameTheDestination(t *testing.T) {
	_, err := New("events", Config{URL: "amqp://u:secret@broker"}, nil)
	if err == nil {
		t.Fatal("New accepted a password in the URL and no exchange")
	}
	msg := err.Error()
	for _, w := range []string{"amqp: destination events: url: holds a password", "amqp: destination events: exchange: required"} {
		if !strings.Contains(msg, w) {
			t.Errorf("error does not contain %q:\n%s", w, msg)
		}
	}
	if strings.Contains(msg, "secret") {
		t.Errorf("error echoes the password:\n%s", msg)
	}
}

func TestKeyTemplate(t *testing.T) {
	d := &routes.Delivery{Route: "adt-to-pds", Destination: "events", Type: "ADT", Trigger: "A01", Version: "2.4"}
	tests := []struct{ tmpl, want string }{
		{"", ""},
		{"fixed", "fixed"},
		{"{{route}}", "adt-to-pds"},
		{"hl7.{{type}}.{{trigger}}", "hl7.ADT.A01"},
		{"{{ destination }}/{{version}}", "events/2.4"},
		{"{{route}}{{route}}", "adt-to-pdsadt-to-pds"},
		{"a{b}c", "a{b}c"},
	}
	for _, tt := range tests {
		kt, err := parseKeyTemplate(tt.tmpl)
		if err != nil {
			t.Errorf("%q: %v", tt.tmpl, err)
			continue
		}
		if got := kt.render(d); got != tt.want {
			t.Errorf("%q renders %q, want %q", tt.tmpl, got, tt.want)
		}
	}
	if _, err := parseKeyTemplate(strings.Repeat("k", 256)); err == nil {
		t.Error("a literal key of 256 bytes was accepted")
	}
}

func TestNewConsumerErrors(t *testing.T) {
	recv := func(ctx context.Context, a routes.Arrival) (routes.Reply, func()) { return routes.Reply{}, func() {} }
	_, err := NewConsumer(ConsumerConfig{URL: "amqp://u:pw@broker", Prefetch: 70000}, recv, nil)
	if err == nil {
		t.Fatal("NewConsumer accepted a bad configuration")
	}
	msg := err.Error()
	for _, w := range []string{"url: holds a password", "queue: required", "prefetch: must be between 1 and 65535"} {
		if !strings.Contains(msg, w) {
			t.Errorf("error does not contain %q:\n%s", w, msg)
		}
	}
	_, err = NewConsumer(ConsumerConfig{URL: "amqp://broker", Queue: "in", QueueType: "stream", DeadLetterExchange: "rejected"}, recv, nil)
	if err == nil {
		t.Fatal("NewConsumer accepted queue settings without declare")
	}
	msg = err.Error()
	for _, w := range []string{"queue_type: is \"stream\"; want classic or quorum", "queue_type: set without declare", "dead_letter_exchange: set without declare"} {
		if !strings.Contains(msg, w) {
			t.Errorf("error does not contain %q:\n%s", w, msg)
		}
	}
	if _, err := NewConsumer(ConsumerConfig{URL: "amqp://broker", Queue: "in"}, nil, nil); err == nil {
		t.Error("NewConsumer accepted no receiver")
	}
	c, err := NewConsumer(ConsumerConfig{URL: "amqp://broker", Queue: "in"}, recv, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.cfg.Prefetch != defaultPrefetch || c.cfg.Workers != 1 || c.peer != "amqp://in" {
		t.Errorf("defaults not applied: %+v, peer %q", c.cfg, c.peer)
	}
}
