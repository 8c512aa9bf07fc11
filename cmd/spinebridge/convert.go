package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
	_ "time/tzdata" // Europe/London and every other zone, whatever the host has

	"github.com/spf13/cobra"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
	"github.com/spinebridge/spinebridge/transforms"
)

func newConvertCommand() *cobra.Command {
	var pretty bool
	cmd := &cobra.Command{
		Use:   "convert [--tz ZONE] [--bundle TYPE] [--mappings DIR] [--pretty] FILE...|-",
		Short: "Convert HL7 v2 messages to FHIR R4 Bundles",
		Long: `Convert writes one FHIR R4 Bundle (UK Core) per HL7 v2 message to standard
output: one JSON document per line when there are several (files may hold
several messages or a batch), or indented with --pretty.

Times without an offset are read in --tz (default Europe/London). --bundle sets
Bundle.type: transaction (default: conditional updates, so a replay does not
duplicate), batch, message (MessageHeader first) or collection. The mapping set
is the embedded one, with the files of --mappings (fhir.mappings,
SPINEBRIDGE_FHIR_MAPPINGS) replacing or adding to it.

A message that cannot be converted is reported on standard error with its file
and position, the others are still converted, and the exit status is 1.
Problems that leave a value out (a date that is not a date, an NHS number whose
check digit fails) are warnings on standard error.`,
		Args: minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(cmd, map[string]string{"hl7.timezone": "tz", "fhir.bundle": "bundle", "fhir.mappings": "mappings"})
			if err != nil {
				return err
			}
			conv, err := newConverter(cfg)
			if err != nil {
				return err
			}
			out := bufio.NewWriter(cmd.OutOrStdout())
			defer out.Flush()
			failed := false
			for _, name := range args {
				data, err := readInput(cmd.InOrStdin(), name)
				if err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "%s: %v\n", name, err)
					failed = true
					continue
				}
				if !convertFile(conv, name, data, pretty, out, cmd.ErrOrStderr()) {
					failed = true
				}
			}
			if failed {
				out.Flush()
				return exitError{1}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.String("tz", "Europe/London", "zone of times written without an offset")
	f.String("bundle", "transaction", "Bundle.type: transaction, batch, message or collection")
	f.BoolVar(&pretty, "pretty", false, "indent the JSON")
	f.String("mappings", "", "directory of mapping files over the embedded set (config fhir.mappings)")
	return cmd
}

// newConverter loads the mapping set the configuration names.
func newConverter(cfg config) (*transforms.Converter, error) {
	set, opts, err := loadMappings(cfg)
	if err != nil {
		return nil, err
	}
	return set.NewConverter(opts), nil
}

// loadMappings loads the configured mapping set and the options it converts
// with, for convert and conformance run; the engine's transforms load it
// through routes.NewMappings, with the same options.
func loadMappings(cfg config) (*transforms.Set, transforms.Options, error) {
	opts, err := mappingOptions(cfg)
	if err != nil {
		return nil, transforms.Options{}, err
	}
	set, err := transforms.Default(cfg.FHIR.Mappings)
	if err != nil {
		return nil, transforms.Options{}, fmt.Errorf("mappings:\n%w", err)
	}
	return set, opts, nil
}

// mappingOptions are the options the configuration converts with.
func mappingOptions(cfg config) (transforms.Options, error) {
	zone, err := time.LoadLocation(cfg.HL7.Timezone)
	if err != nil {
		return transforms.Options{}, usageError{fmt.Errorf("time zone %q: %w", cfg.HL7.Timezone, err)}
	}
	bt, err := transforms.ParseBundleType(cfg.FHIR.Bundle)
	if err != nil {
		return transforms.Options{}, usageError{err}
	}
	return transforms.Options{Zone: zone, Bundle: bt}, nil
}

// convertFile converts every message in data, writing bundles to out and
// problems to errOut; it reports whether all of them converted.
func convertFile(conv *transforms.Converter, name string, data []byte, pretty bool, out *bufio.Writer, errOut io.Writer) bool {
	msgs, splitErr := hl7v2.SplitMessages(data)
	ok := splitErr == nil
	if splitErr != nil {
		fmt.Fprintf(errOut, "%s: %v\n", name, splitErr)
	}
	var m hl7v2.Message
	var buf []byte
	for i, raw := range msgs {
		where := name
		if len(msgs) > 1 {
			where = fmt.Sprintf("%s: message %d", name, i+1)
		}
		if warn, err := parseForConversion(&m, raw); err != nil {
			fmt.Fprintf(errOut, "%s: %v\n", where, err)
			ok = false
			continue
		} else if warn != nil {
			fmt.Fprintf(errOut, "%s: warning: %v (converting the segments before it)\n", where, warn)
		}
		var err error
		buf, err = conv.Convert(buf[:0], &m)
		if err != nil {
			fmt.Fprintf(errOut, "%s: %v\n", where, err)
			ok = false
			continue
		}
		for _, is := range conv.Issues() {
			fmt.Fprintf(errOut, "%s: warning: %s\n", where, is)
		}
		if pretty {
			buf = indentJSON(buf)
		}
		out.Write(buf)
		out.WriteByte('\n')
	}
	return ok
}

// parseForConversion parses raw into m. A malformed segment after MSH is a
// warning: the segments before it are still converted. Anything else is an
// error.
func parseForConversion(m *hl7v2.Message, raw []byte) (warning, err error) {
	err = m.Parse(raw)
	if err == nil {
		return nil, nil
	}
	var pe *hl7v2.ParseError
	if !errors.As(err, &pe) || m.SegmentCount() == 0 {
		return nil, err
	}
	return err, nil
}

// indentJSON indents a bundle for reading; the bundle is valid JSON by
// construction, so Indent cannot fail on it.
func indentJSON(b []byte) []byte {
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return b
	}
	return out.Bytes()
}
