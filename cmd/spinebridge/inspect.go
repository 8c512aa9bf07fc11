package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/spinebridge/spinebridge/adapters/hl7v2"
)

func newInspectCommand() *cobra.Command {
	var (
		gets    []string
		raw     bool
		charset string
	)
	cmd := &cobra.Command{
		Use:   "inspect [--get PATH]... FILE|-",
		Short: "Print the fields of HL7 v2 messages, or the values at given paths",
		Long: `Inspect prints every field of each HL7 v2 message in FILE (or standard input
for -) with its path, one per line, e.g.

  PID-5.1  THOMPSON

Values are decoded: escape sequences resolved and text converted to UTF-8 from
the MSH-18 character set; control characters such as line breaks are shown as
\n, \r, \t or \xHH. With --get, only the values at the given paths are printed,
one per line, an empty line for a path the message does not have.

Paths are SEG[k]-F[r].C.S, all 1-based, [k] and [r] optional: PID-5.1,
PID-3[2].1, OBX[3]-5, MSH-9.2. FILE may hold several messages or a batch.

Bad input exits with status 1 and the place of the problem on standard error.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(cmd, map[string]string{"hl7.default_charset": "charset"})
			if err != nil {
				return err
			}
			paths := make([]hl7v2.Path, len(gets))
			for i, g := range gets {
				if paths[i], err = hl7v2.ParsePath(g); err != nil {
					return usageError{fmt.Errorf("inspect: --get %q: not a path like PID-5.1 or OBX[2]-5", g)}
				}
			}
			data, err := readInput(cmd.InOrStdin(), args[0])
			if err != nil {
				return err
			}
			in := inspector{
				name:    args[0],
				paths:   paths,
				raw:     raw,
				charset: cfg.HL7.DefaultCharset,
				force:   cmd.Flags().Changed("charset"),
				out:     bufio.NewWriter(cmd.OutOrStdout()),
				errOut:  cmd.ErrOrStderr(),
			}
			return in.run(data)
		},
	}
	cmd.Flags().StringArrayVar(&gets, "get", nil, "print only the value at `PATH` (repeatable)")
	cmd.Flags().BoolVar(&raw, "raw", false, "print values as they stand in the message, escapes and bytes unchanged")
	cmd.Flags().StringVar(&charset, "charset", "", "character set to read text in, overriding MSH-18 (e.g. 8859/1, UNICODE UTF-8); config key hl7.default_charset sets it only for messages without MSH-18")
	return cmd
}

func readInput(stdin io.Reader, name string) ([]byte, error) {
	if name == "-" {
		b, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("read standard input: %w", err)
		}
		return b, nil
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// inspector prints messages for the inspect command.
type inspector struct {
	name    string
	paths   []hl7v2.Path
	raw     bool
	charset string // assumed character set; from --charset or configuration
	force   bool   // charset overrides MSH-18 rather than standing in for it
	out     *bufio.Writer
	errOut  io.Writer

	msg      hl7v2.Message
	text     []byte // decoded values
	unesc    []byte // unescaped values on their way to decoding
	scratch  []byte // the path of the line being written
	warnings int
	failed   bool // some input could not be split, parsed or decoded: exit 1
}

func (in *inspector) run(data []byte) error {
	msgs, splitErr := hl7v2.SplitMessages(data)
	if splitErr != nil {
		fmt.Fprintf(in.errOut, "spinebridge: inspect: %s: %v\n", in.name, splitErr)
		in.failed = true
	}
	for i, raw := range msgs {
		if err := in.msg.Parse(raw); err != nil {
			fmt.Fprintf(in.errOut, "spinebridge: inspect: %s: message %d: %v\n", in.name, i+1, err)
			in.failed = true
			continue
		}
		if len(msgs) > 1 && len(in.paths) == 0 {
			if i > 0 {
				in.out.WriteByte('\n')
			}
			fmt.Fprintf(in.out, "# message %d of %d\n", i+1, len(msgs))
		}
		in.warnings = 0
		if len(in.paths) > 0 {
			for _, p := range in.paths {
				in.writeValue(p.Location, in.msg.Get(p))
				in.out.WriteByte('\n')
			}
		} else {
			in.listMessage()
		}
		if in.warnings > 0 {
			fmt.Fprintf(in.errOut, "spinebridge: inspect: %s: message %d: %d value(s) shown with warnings above\n", in.name, i+1, in.warnings)
		}
	}
	if err := in.out.Flush(); err != nil {
		return err
	}
	if in.failed {
		return exitError{1}
	}
	return nil
}

// listMessage prints every non-empty leaf of the message with its path: the
// component (or subcomponent) when a value has several, the repetition when a field
// repeats, the segment occurrence when a segment id repeats.
func (in *inspector) listMessage() {
	m := &in.msg
	occurrence := map[string]int{}
	for i := range m.SegmentCount() {
		s := m.Segment(i)
		id := string(s.ID())
		occurrence[id]++
		loc := hl7v2.Location{Segment: id}
		if m.Count(id) > 1 {
			loc.Occurrence = occurrence[id]
		}
		header := s.Is("MSH") || s.Is("FHS") || s.Is("BHS")
		for n := 1; n <= s.FieldCount(); n++ {
			f := s.Field(n)
			if f.IsEmpty() {
				continue
			}
			loc.Field = n
			if header && n <= 2 {
				in.writeLine(loc, f)
				continue
			}
			reps := f.Reps()
			for r := 1; r <= reps; r++ {
				rep := f.Rep(r)
				loc.Repetition = 0
				if reps > 1 {
					loc.Repetition = r
				}
				in.listComponents(loc, rep)
			}
		}
	}
}

func (in *inspector) listComponents(loc hl7v2.Location, rep hl7v2.Value) {
	comps := rep.Comps()
	if comps <= 1 && rep.Subs() <= 1 {
		loc.Component, loc.Sub = 0, 0
		if !rep.IsEmpty() {
			in.writeLine(loc, rep)
		}
		return
	}
	for c := 1; c <= comps; c++ {
		comp := rep.Comp(c)
		loc.Component, loc.Sub = c, 0
		subs := comp.Subs()
		if subs <= 1 {
			if !comp.IsEmpty() {
				in.writeLine(loc, comp)
			}
			continue
		}
		for k := 1; k <= subs; k++ {
			if sub := comp.Sub(k); !sub.IsEmpty() {
				loc.Sub = k
				in.writeLine(loc, sub)
			}
		}
	}
}

func (in *inspector) writeLine(loc hl7v2.Location, v hl7v2.Value) {
	in.scratch = loc.AppendTo(in.scratch[:0])
	in.scratch = append(in.scratch, "  "...)
	in.out.Write(in.scratch)
	in.writeValue(loc, v)
	in.out.WriteByte('\n')
}

// writeValue writes v decoded (or raw with --raw), control characters escaped.
func (in *inspector) writeValue(loc hl7v2.Location, v hl7v2.Value) {
	text := v.Bytes()
	if !in.raw && !in.isDelimiterField(loc) {
		var err error
		text, err = in.decode(v)
		if errors.Is(err, hl7v2.ErrUnknownCharset) {
			// Not a warning: the text cannot be read at all. Show the raw bytes.
			fmt.Fprintf(in.errOut, "spinebridge: inspect: %s: %s: %v\n", in.name, loc, err)
			in.failed = true
			text = v.Bytes()
		} else if err != nil {
			// The warning names the place, never the value.
			fmt.Fprintf(in.errOut, "spinebridge: inspect: %s: %s: %v\n", in.name, loc, err)
			in.warnings++
		}
	}
	for _, c := range text {
		switch {
		case c == '\n':
			in.out.WriteString(`\n`)
		case c == '\r':
			in.out.WriteString(`\r`)
		case c == '\t':
			in.out.WriteString(`\t`)
		case c < 0x20 || c == 0x7f:
			in.out.WriteString(`\x`)
			in.out.WriteString(strconv.FormatUint(uint64(c)|0x100, 16)[1:])
		default:
			in.out.WriteByte(c)
		}
	}
}

// isDelimiterField reports MSH-1/MSH-2 (and FHS, BHS): delimiters, never decoded.
func (in *inspector) isDelimiterField(loc hl7v2.Location) bool {
	return loc.Field <= 2 && (loc.Segment == "MSH" || loc.Segment == "FHS" || loc.Segment == "BHS")
}

// decode returns v unescaped and in UTF-8. The results may be views of the message
// itself, so they are never kept as buffers for the next value.
func (in *inspector) decode(v hl7v2.Value) ([]byte, error) {
	if in.text == nil {
		in.text, in.unesc = make([]byte, 0, 4096), make([]byte, 0, 4096)
	}
	declared := in.msg.Charset()
	if !in.force && (len(declared) > 0 || in.charset == "") {
		return in.msg.Text(in.text, v)
	}
	unescaped, escErr := v.Unescape(in.unesc)
	text, err := hl7v2.DecodeText(in.text, unescaped, []byte(in.charset))
	return text, errors.Join(escErr, err)
}
