package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/spinebridge/spinebridge/routes"
)

// routesDeps is what the routes commands load tables with.
type routesDeps struct {
	// Options returns the destination kinds and transforms a routes file may
	// name. It is called once a command's flags are parsed, so that it can read
	// the configuration (--config) the transforms are built from.
	Options func(cmd *cobra.Command) (routes.TableOptions, error)
}

func newRoutesCommand(deps routesDeps) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "routes",
		Short: "Check and test routing tables",
		Long: `A routing table is one or more YAML files: routes, each a when expression over
the message, a transform and the destinations it goes to, and the destinations
by name. A directory holds a table in its *.yaml and *.yml files, read in name
order; its *_test.yaml files hold test cases for it.`,
	}
	cmd.AddCommand(newRoutesLintCommand(deps), newRoutesTestCommand(deps))
	return cmd
}

func newRoutesLintCommand(deps routesDeps) *cobra.Command {
	return &cobra.Command{
		Use:   "lint FILE|DIR...",
		Short: "Check a routing table as the engine loads it, reporting every error",
		Long: `Lint loads a routing table from the files and directories given, as serve
does: it parses every file, compiles every expression, checks every transform
and destination a route names and builds every destination from its settings,
without connecting to any. Every problem is printed as path:line:col: message,
and the exit status is 1 when there is one.`,
		Args: minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := loadTable(cmd, deps, args)
			if err != nil {
				return err
			}
			defer t.Close()
			fmt.Fprintf(cmd.OutOrStdout(), "ok: %s, %s in %s\n",
				plural(len(t.Routes), "route"), plural(len(t.Destinations), "destination"), plural(len(t.Files), "file"))
			return nil
		},
	}
}

func newRoutesTestCommand(deps routesDeps) *cobra.Command {
	return &cobra.Command{
		Use:   "test DIR",
		Short: "Run a routing table's test cases",
		Long: `Test loads the routing table in DIR and runs the cases of every *_test.yaml
file there: each case's message is matched as the engine would match it, the
routes it takes are compared with those the case lists, and each transform of
those routes is run and its output checked for the case's facts. A fact is
written as conformance reports print it: Resource.path = "value".

Each case is printed with its file and line, pass or fail, and for a failure
what differed. The exit status is 1 when a case fails or a file has errors.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := loadTable(cmd, deps, args)
			if err != nil {
				return err
			}
			defer t.Close()
			results, err := routes.RunCases(args[0], t)
			out := cmd.OutOrStdout()
			failed := 0
			for _, r := range results {
				if r.Passed() {
					fmt.Fprintf(out, "ok    %s  %s\n", r.Pos, r.Name)
					continue
				}
				failed++
				fmt.Fprintf(out, "FAIL  %s  %s\n", r.Pos, r.Name)
				for _, f := range r.Failures {
					fmt.Fprintf(out, "      %s\n", strings.ReplaceAll(f, "\n", "\n        "))
				}
			}
			if len(results) > 0 {
				summary := plural(len(results)-failed, "case") + " passed"
				if failed > 0 {
					summary += fmt.Sprintf(", %d failed", failed)
				}
				fmt.Fprintln(out, summary)
			}
			if err != nil {
				printTableErrors(cmd.ErrOrStderr(), err)
			}
			if failed > 0 || err != nil {
				return exitError{1}
			}
			return nil
		},
	}
}

// loadTable loads the table in paths as serve would; its errors are printed
// and make the command exit 1.
func loadTable(cmd *cobra.Command, deps routesDeps, paths []string) (*routes.Table, error) {
	opts, err := deps.Options(cmd)
	if err != nil {
		return nil, err
	}
	t, err := routes.LoadTable(paths, opts)
	if err != nil {
		printTableErrors(cmd.ErrOrStderr(), err)
		return nil, exitError{1}
	}
	return t, nil
}

// printTableErrors prints each of a table's errors on a line of its own, and
// how many there were.
func printTableErrors(w io.Writer, err error) {
	errs := []error{err}
	var list interface{ Unwrap() []error }
	if errors.As(err, &list) {
		errs = list.Unwrap()
	}
	for _, e := range errs {
		fmt.Fprintln(w, e)
	}
	if len(errs) > 1 {
		fmt.Fprintf(w, "%d errors\n", len(errs))
	}
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
