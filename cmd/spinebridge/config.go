package main

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
)

// config is the whole Spinebridge configuration. It is loaded in one place,
// loadConfig, from (lowest to highest precedence) built-in defaults, the --config
// file, SPINEBRIDGE_<KEY> environment variables and command-line flags; components
// receive the plain typed parts they need, never viper.
type config struct {
	DataDir  string         `mapstructure:"data_dir"`
	HL7      hl7Config      `mapstructure:"hl7"`
	MLLP     mllpConfig     `mapstructure:"mllp"`
	Ack      ackConfig      `mapstructure:"ack"`
	HTTP     httpConfig     `mapstructure:"http"`
	Admin    adminConfig    `mapstructure:"admin"`
	Log      logConfig      `mapstructure:"log"`
	FHIR     fhirConfig     `mapstructure:"fhir"`
	Routes   routesConfig   `mapstructure:"routes"`
	Delivery deliveryConfig `mapstructure:"delivery"`
	ITK      itkConfig      `mapstructure:"itk"`
	Inbound  inboundConfig  `mapstructure:"inbound"`
	Journal  journalConfig  `mapstructure:"journal"`
}

// journalConfig is the embedded journal in <data_dir>/journal.
type journalConfig struct {
	// Retention is how long a message is kept once nothing needs it any more
	// (routed, every delivery made, no dead letter, no replay asked for); 0
	// keeps every message for ever. It may not be shorter than
	// ack.duplicate_window.
	Retention time.Duration `mapstructure:"retention"`
}

// itkConfig is the ITK 2.x listener: SOAP POSTs at /itk.
type itkConfig struct {
	// Addr is where /itk is served; empty (the default) or equal to http.addr
	// serves it on the HTTP listener, :8080 by default.
	Addr string `mapstructure:"addr"`
	// Identity is this engine's audit identity URI in the acknowledgements it
	// sends, e.g. urn:nhs-uk:identity:ods:X26.
	Identity        string        `mapstructure:"identity"`
	MaxBodySize     int64         `mapstructure:"max_body_size"`
	Timeout         time.Duration `mapstructure:"timeout"`
	TimestampWindow time.Duration `mapstructure:"timestamp_window"`
	// Services are the service URNs accepted; empty accepts every known one.
	Services []string `mapstructure:"services"`
}

// routesConfig is where the routing table comes from.
type routesConfig struct {
	// File is a routes file, or a directory of them; empty runs the embedded
	// default table (every HL7 v2 message to FHIR Bundles in ./out).
	File string `mapstructure:"file"`
	// Watch reloads the table when its files change (SIGHUP always does).
	Watch bool `mapstructure:"watch"`
}

// deliveryConfig is how deliveries are retried and how many run at once.
type deliveryConfig struct {
	Concurrency    int           `mapstructure:"concurrency"`
	MaxAttempts    int           `mapstructure:"max_attempts"`
	InitialBackoff time.Duration `mapstructure:"initial_backoff"`
	MaxBackoff     time.Duration `mapstructure:"max_backoff"`
	MaxPending     int           `mapstructure:"max_pending"`
}

// fhirConfig is how messages become FHIR.
type fhirConfig struct {
	// Mappings is a directory whose mapping files replace or add to the embedded
	// set, path by path (segments/PID-Patient.yaml replaces the default one).
	Mappings string `mapstructure:"mappings"`
	// Watch reloads the mappings when a file in Mappings changes (SIGHUP
	// always does).
	Watch bool `mapstructure:"watch"`
	// Bundle is the Bundle.type written: transaction, batch, message or collection.
	Bundle string `mapstructure:"bundle"`
}

// hl7Config is how HL7 v2 bytes are read.
type hl7Config struct {
	// DefaultCharset is the MSH-18 character set assumed for a message that does not
	// declare one. Empty means HL7's default (ASCII), read leniently: valid UTF-8 is
	// kept and other bytes are taken as Windows-1252.
	DefaultCharset string `mapstructure:"default_charset"`
	// Timezone is the zone of times written without an offset, ACKs' MSH-7 included.
	Timezone string `mapstructure:"timezone"`
}

// mllpConfig is the MLLP listener.
type mllpConfig struct {
	Addr           string        `mapstructure:"addr"`
	Strict         bool          `mapstructure:"strict"`
	MaxFrameSize   int           `mapstructure:"max_frame_size"`
	MaxConnections int           `mapstructure:"max_connections"`
	ReadTimeout    time.Duration `mapstructure:"read_timeout"`
	IdleTimeout    time.Duration `mapstructure:"idle_timeout"`
	IdleAction     string        `mapstructure:"idle_action"`
	KeepAlive      time.Duration `mapstructure:"keep_alive"`
	WriteTimeout   time.Duration `mapstructure:"write_timeout"`
	CommitAck      bool          `mapstructure:"commit_ack"`
	TLS            tlsConfig     `mapstructure:"tls"`
}

// tlsConfig is TLS as files on disk.
type tlsConfig struct {
	CertFile     string `mapstructure:"cert_file"`
	KeyFile      string `mapstructure:"key_file"`
	ClientCAFile string `mapstructure:"client_ca_file"`
	ClientAuth   string `mapstructure:"client_auth"`
}

// ackConfig is the acknowledgement policy.
type ackConfig struct {
	Point           string        `mapstructure:"point"`
	DuplicateWindow time.Duration `mapstructure:"duplicate_window"`
	Versions        []string      `mapstructure:"versions"`
	ProcessingIDs   []string      `mapstructure:"processing_ids"`
	MessageTypes    []string      `mapstructure:"message_types"`
	ParseErrorCode  string        `mapstructure:"parse_error_code"`
	RejectText      string        `mapstructure:"reject_text"`
	Application     string        `mapstructure:"application"`
}

// httpConfig is the inbound HTTP listener: HL7 v2 over HTTP at /hl7v2.
type httpConfig struct {
	Addr        string `mapstructure:"addr"`
	ErrorStatus bool   `mapstructure:"error_status"`
	MaxBodySize int64  `mapstructure:"max_body_size"`
}

// adminConfig is the admin HTTP endpoint.
type adminConfig struct {
	Addr string `mapstructure:"addr"`
	// Pprof serves Go's profiler at /debug/pprof/ on the admin address.
	Pprof bool `mapstructure:"pprof"`
}

// logConfig is the structured log.
type logConfig struct {
	Level  string `mapstructure:"level"`
	Format string `mapstructure:"format"`
}

// defaults are the embedded defaults `spinebridge serve` starts on. Every key is
// listed, so that each can also be set from the environment.
var defaults = map[string]any{
	"data_dir":                 "./data",
	"hl7.default_charset":      "",
	"hl7.timezone":             "Europe/London",
	"mllp.addr":                ":2575",
	"mllp.strict":              false,
	"mllp.max_frame_size":      16 << 20,
	"mllp.max_connections":     1024,
	"mllp.read_timeout":        30 * time.Second,
	"mllp.idle_timeout":        10 * time.Minute,
	"mllp.idle_action":         "close",
	"mllp.keep_alive":          time.Duration(0),
	"mllp.write_timeout":       30 * time.Second,
	"mllp.commit_ack":          false,
	"mllp.tls.cert_file":       "",
	"mllp.tls.key_file":        "",
	"mllp.tls.client_ca_file":  "",
	"mllp.tls.client_auth":     "off",
	"ack.point":                "durable",
	"ack.duplicate_window":     24 * time.Hour,
	"ack.versions":             []string{},
	"ack.processing_ids":       []string{"P", "T", "D"},
	"ack.message_types":        []string{},
	"ack.parse_error_code":     "AE",
	"ack.reject_text":          "Message rejected",
	"ack.application":          "record",
	"http.addr":                ":8080",
	"http.error_status":        false,
	"http.max_body_size":       int64(16 << 20),
	"admin.addr":               ":8081",
	"admin.pprof":              false,
	"log.level":                "info",
	"log.format":               "text",
	"fhir.mappings":            "",
	"fhir.watch":               true,
	"fhir.bundle":              "transaction",
	"routes.file":              "",
	"routes.watch":             true,
	"delivery.concurrency":     8,
	"delivery.max_attempts":    10,
	"delivery.initial_backoff": time.Second,
	"delivery.max_backoff":     5 * time.Minute,
	"delivery.max_pending":     20000,
	"itk.addr":                 "",
	"itk.identity":             "urn:nhs-uk:identity:ods:SPINEBRIDGE",
	"itk.max_body_size":        int64(16 << 20),
	"itk.timeout":              30 * time.Second,
	"itk.timestamp_window":     5 * time.Minute,
	"itk.services":             []string{},
	"inbound.amqp":             []any{},
	"journal.retention":        7 * 24 * time.Hour,
}

// loadConfig builds the configuration for cmd. flags maps configuration keys to the
// names of cmd's flags that override them.
func loadConfig(cmd *cobra.Command, flags map[string]string) (config, error) {
	v := viper.New()
	v.SetEnvPrefix("SPINEBRIDGE")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	for key, value := range defaults {
		v.SetDefault(key, value)
	}
	// Flags the user set override everything. They are applied as overrides rather
	// than bound with BindPFlag: a bound nested key (admin.addr) hides the
	// environment variables of its siblings (SPINEBRIDGE_ADMIN_PPROF).
	for key, name := range flags {
		f := cmd.Flags().Lookup(name)
		if f == nil {
			return config{}, fmt.Errorf("config: no flag --%s for %s", name, key)
		}
		if f.Changed {
			v.Set(key, f.Value.String())
		}
	}
	file, _ := cmd.Flags().GetString("config")
	if file != "" {
		v.SetConfigFile(file)
		if err := v.ReadInConfig(); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return config{}, usageError{fmt.Errorf("config: %s: not found", file)}
			}
			return config{}, fmt.Errorf("config: %s: %w", file, err)
		}
	}
	// A list cannot be set from the environment key by key, so
	// SPINEBRIDGE_INBOUND_AMQP holds the whole of inbound.amqp, as YAML.
	if text, ok := v.Get("inbound.amqp").(string); ok {
		var list []map[string]any
		if err := yaml.Unmarshal([]byte(text), &list); err != nil {
			return config{}, usageError{fmt.Errorf("config: SPINEBRIDGE_INBOUND_AMQP: want inbound.amqp as a YAML list of queues: %w", err)}
		}
		v.Set("inbound.amqp", list)
	}
	var c config
	if err := v.UnmarshalExact(&c); err != nil {
		if file != "" {
			return config{}, fmt.Errorf("config: %s: %w", file, err)
		}
		return config{}, fmt.Errorf("config: %w", err)
	}
	return c, nil
}
