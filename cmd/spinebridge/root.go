package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/spinebridge/spinebridge/routes"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// usageError marks errors in how the command was called, which exit with status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// exitError carries an exit status for a failure already reported to stderr.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func reportError(stderr io.Writer, err error) int {
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	fmt.Fprintf(stderr, "spinebridge: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

// exactArgs is cobra.ExactArgs with a usage error, so a wrong count exits 2.
func exactArgs(n int) cobra.PositionalArgs { return usageArgs(cobra.ExactArgs(n)) }

// minArgs is cobra.MinimumNArgs with a usage error.
func minArgs(n int) cobra.PositionalArgs { return usageArgs(cobra.MinimumNArgs(n)) }

func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageError{fmt.Errorf("%s: %w", cmd.Name(), err)}
		}
		return nil
	}
}

func newRootCommand(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "spinebridge",
		Short: "Integration engine for HL7 v2 and ITK traffic moving to FHIR R4",
		Long: `Spinebridge accepts HL7 v2 (MLLP) and NHS ITK messages from legacy clinical
systems, routes them through a declarative table, transforms them to FHIR R4
(UK Core) and delivers them to the services that replace Spine.`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.PersistentFlags().String("config", "", "configuration file (YAML); every key may also be set as SPINEBRIDGE_<KEY>")
	root.AddCommand(newInspectCommand(), newServeCommand(), newSendCommand(), newMessagesCommand(), newBenchCommand(), newConvertCommand(), newConformanceCommand(), newMappingsCommand(),
		newRoutesCommand(routesDeps{Options: func(cmd *cobra.Command) (routes.TableOptions, error) {
			cfg, err := loadConfig(cmd, nil)
			if err != nil {
				return routes.TableOptions{}, err
			}
			opts, _, err := tableOptions(cfg, nil)
			return opts, err
		}}))
	return root
}
