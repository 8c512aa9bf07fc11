package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
	"github.com/spinebridge/spinebridge/conformance"
	"github.com/spinebridge/spinebridge/transforms/fhirmodel"
)

func newConformanceCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "conformance",
		Short: "Run conformance suites",
	}
	cmd.AddCommand(newConformanceRunCommand())
	return cmd
}

func newConformanceRunCommand() *cobra.Command {
	var (
		junit, jsonOut, writeDir, deviationsFile string
		floor                                    float64
	)
	cmd := &cobra.Command{
		Use:   "run DIR... [--junit FILE] [--json FILE] [--floor PCT] [--deviations FILE]",
		Short: "Run conversion suites: HL7 v2 inputs beside expected FHIR bundles",
		Long: `Run converts every X.hl7 under each DIR and compares the Bundle with
X-expected.json beside it. A case passes when our bundle is valid FHIR R4
(checked with google/fhir/go) and carries every clinical fact of the expected
one: identifiers, names, birth date, gender, encounter class and period, codes,
values, statuses, times compared as instants, and the references between
patient, encounter, orders and results. Ids, Bundle type, request methods,
Provenance and narrative are not compared.

An expected fact our bundle lacks is "deliberate" when a deviation accounts for
it: a difference the default mappings make on purpose, following the HL7
v2-to-FHIR IG, each listed with its reason and IG row in
conformance/deviations.yaml (built in) or in the file given by --deviations
(/dev/null for none). Deviations never change the coverage, which is the share
of all expected facts found; they split the facts not found into deliberate and
missing, and a case with only deliberate ones passes.

It prints a table, writes JUnit XML (--junit) and JSON (--json) reports, and
with --write-dir keeps each of our bundles for a second validator. It exits 1
when a bundle of ours is invalid, a message does not convert, or the share of
expected facts found is below --floor.`,
		Args: minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(cmd, map[string]string{"hl7.timezone": "tz", "fhir.mappings": "mappings"})
			if err != nil {
				return err
			}
			conv, err := newConverter(cfg)
			if err != nil {
				return err
			}
			cases, err := conformance.Discover(args...)
			if err != nil {
				return err
			}
			deviations, err := conformance.DefaultDeviations()
			if deviationsFile != "" {
				deviations, err = conformance.ReadDeviations(deviationsFile)
			}
			if err != nil {
				return err
			}
			var m hl7v2.Message
			convert := func(input []byte) ([]byte, error) {
				msgs, err := hl7v2.SplitMessages(input)
				if err != nil {
					return nil, err
				}
				if len(msgs) != 1 {
					return nil, fmt.Errorf("a case holds one message; this file holds %d", len(msgs))
				}
				if _, err := parseForConversion(&m, msgs[0]); err != nil {
					return nil, err
				}
				return conv.Convert(nil, &m)
			}
			rep, err := conformance.Run(cmd.Context(), cases, conformance.Options{
				Convert:    convert,
				Validate:   fhirmodel.Validate,
				WriteDir:   writeDir,
				Deviations: deviations,
			})
			if err != nil {
				return err
			}
			rep.WriteTable(cmd.OutOrStdout())
			if junit != "" {
				if err := writeReport(junit, rep.WriteJUnit); err != nil {
					return err
				}
			}
			if jsonOut != "" {
				if err := writeReport(jsonOut, rep.WriteJSON); err != nil {
					return err
				}
			}
			return rep.Check(floor)
		},
	}
	f := cmd.Flags()
	f.StringVar(&junit, "junit", "", "write a JUnit XML report to FILE")
	f.StringVar(&jsonOut, "json", "", "write a JSON report to FILE")
	f.StringVar(&writeDir, "write-dir", "", "keep each of our bundles as DIR/<case>.json")
	f.StringVar(&deviationsFile, "deviations", "", "read the deliberate differences from FILE instead of the built-in list")
	f.Float64Var(&floor, "floor", 0, "fail when fewer than PCT percent of the expected facts are found")
	f.String("tz", "Europe/London", "zone of times written without an offset")
	f.String("mappings", "", "directory of mapping files over the embedded set (config fhir.mappings)")
	return cmd
}

func writeReport(name string, write func(io.Writer) error) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
