package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every problem with the AMQP inbound queues is reported at once, each naming
// its key, together with the other configuration problems, and serve does not
// start.
func TestServeInboundAMQPConfigErrors(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "bad.yaml")
	writeTestFile(t, conf, `mllp:
  idle_action: sulk
inbound:
  amqp:
    - url: amqp://spine:hunter2@broker/
    - name: mllp
      url: amqp://spine@broker/
      password_env: SB_TEST_UNSET_PASSWORD
      queue: q
      queue_type: stream
      tls: {ca_file: `+filepath.Join(dir, "missing-ca.pem")+`}
    - name: lab
      url: amqps://broker/
      queue: lab
      password_file: `+filepath.Join(dir, "missing-password")+`
      dead_letter_exchange: rejected
    - name: lab
      url: amqp://broker/
      queue: lab2
`)
	data := filepath.Join(dir, "data")
	code, _, errOut := runCLI(t, "", "serve", "--config", conf, "--data-dir", data)
	if code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	for _, want := range []string{
		`mllp.idle_action "sulk"`,
		"config: inbound.amqp[0]: amqp: consumer: url: holds a password",
		"config: inbound.amqp[0]: amqp: consumer: queue: required",
		`config: inbound.amqp[1].name: "mllp" is the name of a listener already`,
		"config: inbound.amqp[1].password_env: the variable SB_TEST_UNSET_PASSWORD is not set",
		"config: inbound.amqp[1]: tls.ca_file:",
		`config: inbound.amqp[1]: amqp: consumer: queue_type: is "stream"`,
		"config: inbound.amqp[2].password_file:",
		"config: inbound.amqp[2]: amqp: consumer: dead_letter_exchange: set without declare",
		`config: inbound.amqp[3].name: "lab" is also the name of inbound.amqp[2]`,
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if strings.Contains(errOut, "hunter2") {
		t.Errorf("stderr echoes the password from the URL:\n%s", errOut)
	}
	if _, err := os.Stat(filepath.Join(data, "journal")); err == nil {
		t.Error("the journal was opened despite the configuration errors")
	}
}

// A misspelt key in a queue's mapping is named with the queue's place.
func TestServeInboundAMQPUnknownKey(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "typo.yaml")
	writeTestFile(t, conf, "inbound:\n  amqp:\n    - url: amqp://broker/\n      queue: q\n      prefetsh: 4\n")
	code, _, errOut := runCLI(t, "", "serve", "--config", conf, "--data-dir", t.TempDir())
	if code == 0 || !strings.Contains(errOut, "inbound.amqp[0]") || !strings.Contains(errOut, "prefetsh") {
		t.Errorf("exit %d, stderr:\n%s", code, errOut)
	}
}

// SPINEBRIDGE_INBOUND_AMQP gives the whole list as YAML; text that is not a
// list is a clear error.
func TestServeInboundAMQPFromEnvironment(t *testing.T) {
	t.Setenv("SPINEBRIDGE_INBOUND_AMQP", `[{name: http, url: "amqp://broker/", queue: q}]`)
	code, _, errOut := runCLI(t, "", "serve", "--data-dir", t.TempDir())
	if code != 2 || !strings.Contains(errOut, `config: inbound.amqp[0].name: "http" is the name of a listener already`) {
		t.Errorf("exit %d, stderr:\n%s", code, errOut)
	}
	t.Setenv("SPINEBRIDGE_INBOUND_AMQP", `url: amqp://broker/`)
	code, _, errOut = runCLI(t, "", "serve", "--data-dir", t.TempDir())
	if code != 2 || !strings.Contains(errOut, "config: SPINEBRIDGE_INBOUND_AMQP: want inbound.amqp as a YAML list") {
		t.Errorf("exit %d, stderr:\n%s", code, errOut)
	}
}

// The example configuration loads and its queue builds.
func TestExampleInboundAMQPConfig(t *testing.T) {
	t.Setenv("SPINEBRIDGE_AMQP_PASSWORD", "guest")
	cmd := newServeCommand()
	cmd.Flags().String("config", filepath.Join("..", "..", "examples", "rabbitmq-inbound.yaml"), "")
	cfg, err := loadConfig(cmd, nil)
	if err != nil {
		t.Fatal(err)
	}
	ins, err := newAMQPInbound(cfg.Inbound.AMQP, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	if len(ins) != 1 || ins[0].name != "lims-results" || ins[0].queue != "lims-results" {
		t.Errorf("inbound = %+v", ins)
	}
}

func writeTestFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}
