package main

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"

	"github.com/spf13/cobra"

	"github.com/spinebridge/spinebridge/mappings"
	"github.com/spinebridge/spinebridge/transforms"
)

func newMappingsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "mappings",
		Short: "Check mapping files",
		Long: `The mapping set is the embedded one (mappings/ in the source), with the files of
a directory (fhir.mappings, SPINEBRIDGE_FHIR_MAPPINGS) replacing or adding to it
path by path: segments/, datatypes/, tables/ and messages/. serve reloads it when
a file there changes, on SIGHUP and on POST /mappings/reload; convert and
conformance run read it once.

Test cases for mappings are routes test cases: a route with the transform fhir
(or a structure's), and the facts its bundle must hold (see routes test).`,
	}
	cmd.AddCommand(newMappingsLintCommand())
	return cmd
}

func newMappingsLintCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "lint [DIR]",
		Short: "Check a directory of mapping files as the engine loads it, reporting every error",
		Long: `Lint loads the embedded mapping set with the files of DIR over it (fhir.mappings
when DIR is not given), as serve and convert do: it parses every file, checks
every target element, type and cardinality against the FHIR R4 model, compiles
every expression, and checks every map, table and resource a file names. Every
problem is printed as file:line: message, and the exit status is 1 when there
is one. Otherwise each file of DIR is listed as replacing an embedded file or
as new, and a map or table of DIR that nothing names (a segment map no message
structure lists, a data-type map no rule maps with, a table no rule reads) is a
warning: it loads, but changes no bundle.`,
		Args: usageArgs(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(cmd, nil)
			if err != nil {
				return err
			}
			dir := cfg.FHIR.Mappings
			if len(args) == 1 {
				dir = args[0]
			}
			set, err := transforms.Default(dir)
			if err != nil {
				printTableErrors(cmd.ErrOrStderr(), err)
				return exitError{1}
			}
			out := cmd.OutOrStdout()
			// Maps and tables nothing names load but change no bundle: most
			// often a new segment map no message structure lists yet. Those
			// of the embedded set an override stopped using are its choice.
			for _, u := range set.Unused() {
				if dir == "" || strings.HasPrefix(u, path.Join(dir, "")+"/") {
					fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", u)
				}
			}
			if dir == "" {
				fmt.Fprintf(out, "ok: the embedded set, %s\n", plural(len(set.Structures()), "message structure"))
				return nil
			}
			files, err := overlayFiles(dir)
			if err != nil {
				return err
			}
			for _, f := range files {
				fmt.Fprintf(out, "%-40s %s\n", f.path, f.what)
			}
			fmt.Fprintf(out, "ok: %s over the embedded set, %s\n", plural(len(files), "file"), plural(len(set.Structures()), "message structure"))
			return nil
		},
	}
}

// overlayFile is a mapping file of an override directory, and whether it
// replaces an embedded file or is new.
type overlayFile struct{ path, what string }

func overlayFiles(dir string) ([]overlayFile, error) {
	names, err := transforms.MappingFiles(os.DirFS(dir))
	if err != nil {
		return nil, err
	}
	files := make([]overlayFile, 0, len(names))
	for _, p := range names {
		what := "new"
		if _, err := fs.Stat(mappings.Files, p); err == nil {
			what = "replaces the embedded file"
		}
		files = append(files, overlayFile{p, what})
	}
	return files, nil
}
