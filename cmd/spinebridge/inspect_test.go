package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestInspectGolden(t *testing.T) {
	for _, name := range []string{
		"adt_a01", "escapes", "delims_custom", "delims_truncation", "zsegments",
		"endings_mixed", "batch_file", "charset_8859_1", "charset_mismatch",
	} {
		t.Run(name, func(t *testing.T) {
			code, out, errOut := runCLI(t, "", "inspect", fixturePath(name+".hl7"))
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			golden(t, filepath.Join("inspect", name+".golden"), out+stderrSection(errOut))
		})
	}
}

// stderrSection appends warnings to the golden text, so they are pinned too.
func stderrSection(errOut string) string {
	if errOut == "" {
		return ""
	}
	return "--- stderr\n" + errOut
}

func TestInspectGet(t *testing.T) {
	code, out, errOut := runCLI(t, "", "inspect",
		"--get", "PID-5.1", "--get", "PID-3[2].1", "--get", "NK1-2", "--get", "MSH-9.2",
		"--get", "PID-11.1", "--get", "NTE-3", "--get", "MSH-2",
		fixturePath("escapes.hl7"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want := "O^BRIEN\n\n\nA01\nFLAT 3|4 & ANNEX\n" +
		`Line one\nLine two\r\nhex break \H\bold\N\ normal \C2842\ \M2442\ \ZLOCAL\ \ backslash` + "\n" + `^~\&` + "\n"
	if out != want {
		t.Errorf("got\n%s\nwant\n%s", out, want)
	}
}

func TestInspectGetRaw(t *testing.T) {
	code, out, _ := runCLI(t, "", "inspect", "--raw", "--get", "PID-5.1", fixturePath("escapes.hl7"))
	if code != 0 || out != `O\S\BRIEN`+"\n" {
		t.Errorf("exit %d, out %q", code, out)
	}
}

func TestInspectStdin(t *testing.T) {
	data, err := os.ReadFile(fixturePath("adt_a01.hl7"))
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, string(data), "inspect", "--get", "PID-3.1", "-")
	if code != 0 || out != "9990000018\n" {
		t.Errorf("exit %d, out %q, err %q", code, out, errOut)
	}
}

func TestInspectBadInput(t *testing.T) {
	cases := []struct {
		file, where string
	}{
		{"malformed_segment_id.hl7", "segment 4 at byte 325: invalid segment id"},
		{"malformed_no_msh.hl7", "segment 1 at byte 0: message does not start with MSH"},
		{"malformed_delimiters.hl7", "(MSH-2) at byte 0: invalid delimiters"},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			code, out, errOut := runCLI(t, "", "inspect", fixturePath(c.file))
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			if !strings.Contains(errOut, c.where) {
				t.Errorf("stderr %q does not say %q", errOut, c.where)
			}
			if out != "" {
				t.Errorf("printed %q for a message that failed", out)
			}
			for _, leak := range []string{"THOMPSON", "9990000018", "pv1|1"} {
				if strings.Contains(errOut, leak) {
					t.Errorf("stderr leaks %q", leak)
				}
			}
		})
	}
}

func TestInspectUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"inspect"},
		{"inspect", "--get", "PID-", fixturePath("adt_a01.hl7")},
		{"inspect", "--no-such-flag", fixturePath("adt_a01.hl7")},
		{"inspect", "--config", "/nonexistent/spinebridge.yaml", fixturePath("adt_a01.hl7")},
	} {
		code, _, errOut := runCLI(t, "", args...)
		if code != 2 || errOut == "" {
			t.Errorf("%v: exit %d, stderr %q; want 2 and a message", args, code, errOut)
		}
	}
	if code, _, errOut := runCLI(t, "", "inspect", "/nonexistent.hl7"); code != 1 || !strings.Contains(errOut, "no such file") {
		t.Errorf("missing file: exit %d, %q", code, errOut)
	}
}

// A message without MSH-18 is read in the configured default character set, from
// a config file, the environment or --charset, in rising precedence.
func TestInspectCharsetConfig(t *testing.T) {
	latin1 := "MSH|^~\\&|PAS|RX1|SB|X26|20261121||ADT^A08|C1|P|2.4\rPID|1||9990000018^^^NHS^NH||BRONT\xcb^ZO\xcb\r"
	dir := t.TempDir()
	file := filepath.Join(dir, "m.hl7")
	if err := os.WriteFile(file, []byte(latin1), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "spinebridge.yaml")
	if err := os.WriteFile(conf, []byte("hl7:\n  default_charset: \"8859/1\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Undeclared and not UTF-8: read leniently, with a warning naming the place.
	code, out, errOut := runCLI(t, "", "inspect", "--get", "PID-5.1", file)
	if code != 0 || out != "BRONTË\n" || !strings.Contains(errOut, "PID-5.1") {
		t.Errorf("default: exit %d, out %q, err %q", code, out, errOut)
	}
	code, out, errOut = runCLI(t, "", "inspect", "--config", conf, "--get", "PID-5.1", file)
	if code != 0 || out != "BRONTË\n" || errOut != "" {
		t.Errorf("config: exit %d, out %q, err %q", code, out, errOut)
	}
	t.Setenv("SPINEBRIDGE_HL7_DEFAULT_CHARSET", "8859/15")
	code, out, errOut = runCLI(t, "", "inspect", "--get", "PID-5.1", file)
	if code != 0 || out != "BRONTË\n" || errOut != "" {
		t.Errorf("env: exit %d, out %q, err %q", code, out, errOut)
	}
	code, _, errOut = runCLI(t, "", "inspect", "--charset", "KLINGON", "--get", "PID-5.1", file)
	if code != 1 || !strings.Contains(errOut, "unknown character set") {
		t.Errorf("unknown charset: exit %d, err %q", code, errOut)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("hl7:\n  default_charsett: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runCLI(t, "", "inspect", "--config", bad, file); code == 0 || !strings.Contains(errOut, "default_charsett") {
		t.Errorf("misspelt key accepted: exit %d, err %q", code, errOut)
	}
}

// The built binary, run as a user would.
func TestInspectBinary(t *testing.T) {
	bin := buildBinary(t)
	out, err := exec.Command(bin, "inspect", "--get", "PID-5.1", "--get", "PID-32", fixturePath("bench/adt_a01.hl7")).Output()
	if err != nil || string(out) != "THOMPSON\nNSTS01\n" {
		t.Errorf("inspect: %q, %v", out, err)
	}
	cmd := exec.Command(bin, "inspect", fixturePath("malformed_no_msh.hl7"))
	if err := cmd.Run(); cmd.ProcessState.ExitCode() != 1 {
		t.Errorf("bad input: %v, exit %d", err, cmd.ProcessState.ExitCode())
	}
}

// The shipped example configuration loads and does what it says.
func TestExampleConfig(t *testing.T) {
	latin1 := "MSH|^~\\&|PAS|RX1|SB|X26|20261121||ADT^A08|C1|P|2.4\rPID|1||9990000018^^^NHS^NH||BRONT\xcb^ZO\xcb\r"
	file := filepath.Join(t.TempDir(), "m.hl7")
	if err := os.WriteFile(file, []byte(latin1), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join("..", "..", "examples", "spinebridge.yaml")
	code, out, errOut := runCLI(t, "", "inspect", "--config", conf, "--get", "PID-5.2", file)
	if code != 0 || out != "ZOË\n" || errOut != "" {
		t.Errorf("exit %d, out %q, err %q", code, out, errOut)
	}
}

// Every configuration key can be set from the environment, whichever flags the
// command binds.
func TestEveryKeyFromEnvironment(t *testing.T) {
	cmd := newServeCommand()
	cmd.Flags().String("config", "", "")
	for key, def := range defaults {
		env := "SPINEBRIDGE_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
		var val string
		switch def.(type) {
		case bool:
			val = "true"
		case int:
			val = "4242"
		case int64:
			val = "4242"
		case []string:
			val = "X1,X2"
		case []any: // a list of mappings, inbound.amqp: given whole, as YAML
			val = `[{name: set, url: "amqp://broker/", queue: q, prefetch: 7, connect_timeout: 42s}]`
		default:
			if strings.HasSuffix(key, "timeout") || strings.HasSuffix(key, "window") || strings.HasSuffix(key, "keep_alive") || strings.HasSuffix(key, "backoff") || strings.HasSuffix(key, "retention") {
				val = "42s"
			} else {
				val = "set-" + key
			}
		}
		t.Setenv(env, val)
	}
	c, err := loadConfig(cmd, map[string]string{"mllp.addr": "mllp-addr", "http.addr": "http-addr", "admin.addr": "admin-addr", "data_dir": "data-dir"})
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string]bool{
		"admin.pprof":          c.Admin.Pprof,
		"admin.addr":           c.Admin.Addr == "set-admin.addr",
		"mllp.strict":          c.MLLP.Strict,
		"mllp.commit_ack":      c.MLLP.CommitAck,
		"mllp.max_connections": c.MLLP.MaxConnections == 4242,
		"mllp.read_timeout":    c.MLLP.ReadTimeout == 42*time.Second,
		"mllp.tls.client_auth": c.MLLP.TLS.ClientAuth == "set-mllp.tls.client_auth",
		"ack.duplicate_window": c.Ack.DuplicateWindow == 42*time.Second,
		"journal.retention":    c.Journal.Retention == 42*time.Second,
		"ack.message_types":    len(c.Ack.MessageTypes) == 2 && c.Ack.MessageTypes[1] == "X2",
		"http.error_status":    c.HTTP.ErrorStatus,
		"http.max_body_size":   c.HTTP.MaxBodySize == 4242,
		"hl7.timezone":         c.HL7.Timezone == "set-hl7.timezone",
		"data_dir":             c.DataDir == "set-data_dir",
		"log.format":           c.Log.Format == "set-log.format",
		"routes.file":          c.Routes.File == "set-routes.file",
		"delivery.concurrency": c.Delivery.Concurrency == 4242,
		"delivery.max_backoff": c.Delivery.MaxBackoff == 42*time.Second,
		"itk.identity":         c.ITK.Identity == "set-itk.identity",
		"itk.services":         len(c.ITK.Services) == 2,
		"inbound.amqp":         len(c.Inbound.AMQP) == 1 && c.Inbound.AMQP[0].Queue == "q" && c.Inbound.AMQP[0].Prefetch == 7 && c.Inbound.AMQP[0].ConnectTimeout == 42*time.Second,
	}
	for key, ok := range checks {
		if !ok {
			t.Errorf("%s not taken from the environment: %+v", key, c)
		}
	}
	// A flag the user sets still wins over the environment.
	cmd.Flags().Set("mllp-addr", "127.0.0.1:9")
	if c, _ := loadConfig(cmd, map[string]string{"mllp.addr": "mllp-addr"}); c.MLLP.Addr != "127.0.0.1:9" {
		t.Errorf("flag lost to the environment: %q", c.MLLP.Addr)
	}
}

// Every configuration field has a default, and so an environment variable: viper
// reads the environment only for keys it knows.
func TestEveryConfigFieldHasDefault(t *testing.T) {
	var walk func(prefix string, typ reflect.Type)
	seen := map[string]bool{}
	walk = func(prefix string, typ reflect.Type) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			key := prefix + f.Tag.Get("mapstructure")
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Duration(0)) {
				walk(key+".", f.Type)
				continue
			}
			seen[key] = true
			if _, ok := defaults[key]; !ok {
				t.Errorf("config key %s has no default", key)
			}
		}
	}
	walk("", reflect.TypeOf(config{}))
	for key := range defaults {
		if !seen[key] {
			t.Errorf("default %s is no config field", key)
		}
	}
}
