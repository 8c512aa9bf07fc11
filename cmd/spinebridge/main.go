// Command spinebridge is the Spinebridge integration engine and its tools: it
// inspects and converts HL7 v2 messages, and (as the engine grows) serves, routes
// and delivers them.
package main

import (
	"io"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes the command line args with the given streams and returns the exit
// status: 0 success, 1 bad input or a failed operation, 2 a usage error.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCommand(stdin, stdout, stderr)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		return reportError(stderr, err)
	}
	return 0
}
