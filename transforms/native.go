package transforms

import (
	"bytes"
	"net/url"
	"regexp"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"
)

// Most mapping expressions are small: Has("29"), Get("2") == "NM",
// Get("2") in ["CE", "CWE"], a ternary over those. Run on expr-lang's VM, each
// call of Get or Has on the environment goes through reflection, and that was
// 70% of converting a 50-result ORU. So an expression whose syntax tree uses
// only those forms is also compiled here, to Go closures over paths parsed once
// at load; the VM keeps everything else. expr.Compile still checks every
// expression first, so both share one language and one set of load errors.

type native func(e *exprEnv) nval

// nval is a string or a boolean result.
type nval struct {
	s string
	b bool
}

// nativeCompiler compiles expressions of one kind of map (segment or
// data-type) to closures, taking the paths they read from the set's table.
type nativeCompiler struct {
	inDT  bool
	paths *pathTable
}

// compile returns a closure for src, or nil when src uses anything the
// closures do not cover.
func (nc *nativeCompiler) compile(src string) native {
	tree, err := parser.Parse(src)
	if err != nil {
		return nil
	}
	return nc.node(tree.Node)
}

// getPath returns the source of an expression that is nothing but Get with a
// constant path ('Get("1")'), whose text can then be used where it lies in the
// message rather than copied into a string.
func (nc *nativeCompiler) getPath(src string) (*source, bool) {
	tree, err := parser.Parse(src)
	if err != nil {
		return nil, false
	}
	if name, args, ok := callName(tree.Node); ok && name == "Get" {
		return nc.path(args)
	}
	return nil, false
}

// path returns the source a Get/Has call names, when its argument is a
// constant path.
func (nc *nativeCompiler) path(args []ast.Node) (*source, bool) {
	if len(args) != 1 {
		return nil, false
	}
	s, ok := args[0].(*ast.StringNode)
	if !ok {
		return nil, false
	}
	src, err := nc.paths.source(s.Value, nc.inDT)
	return src, err == nil
}

// readsContext reports whether expression src, in a data-type map when
// inDT, reads anything besides the value the map maps: Segment, a path naming
// a segment ("PV1-3"), or a path it cannot tell at load (one computed).
func readsContext(src string, inDT bool) bool {
	tree, err := parser.Parse(src)
	if err != nil {
		return true // it will not compile either
	}
	v := contextVisitor{inDT: inDT}
	ast.Walk(&tree.Node, &v)
	return v.found
}

type contextVisitor struct{ inDT, found bool }

func (v *contextVisitor) Visit(n *ast.Node) {
	switch x := (*n).(type) {
	case *ast.IdentifierNode:
		v.found = v.found || x.Value == "Segment"
	case *ast.CallNode:
		name, args, ok := callName(x)
		if !ok || name != "Get" && name != "Has" && name != "IsInstant" {
			return
		}
		var s *ast.StringNode
		if len(args) == 1 {
			s, _ = args[0].(*ast.StringNode)
		}
		if s == nil {
			v.found = true
			return
		}
		src, err := exprPath(s.Value, v.inDT)
		v.found = v.found || err != nil || src.abs
	}
}

// A pathTable gives each path that the rules and expressions of a set read
// (from: "5[1]", Get("2"), Has("5[2]")) one source with its own slot in a
// converter's memo, however many of them name it (see Converter.firstMemo).
type pathTable struct {
	sources map[pathKey]*source
}

type pathKey struct {
	path string
	inDT bool
}

func (t *pathTable) source(path string, inDT bool) (*source, error) {
	k := pathKey{path, inDT}
	if src, ok := t.sources[k]; ok {
		return src, nil
	}
	src, err := exprPath(path, inDT)
	if err != nil {
		return nil, err
	}
	if t.sources == nil {
		t.sources = map[pathKey]*source{}
	}
	src.slot, src.paths = int32(len(t.sources))+1, t
	t.sources[k] = &src
	return &src, nil
}

// slots is how many memo slots the table's sources use, slot 0 included.
func (t *pathTable) slots() int {
	if t == nil {
		return 0
	}
	return len(t.sources) + 1
}

func callName(n ast.Node) (string, []ast.Node, bool) {
	switch c := n.(type) {
	case *ast.CallNode:
		if id, ok := c.Callee.(*ast.IdentifierNode); ok {
			return id.Value, c.Arguments, true
		}
	case *ast.BuiltinNode:
		return c.Name, c.Arguments, true
	}
	return "", nil, false
}

func (nc *nativeCompiler) node(n ast.Node) native {
	switch x := n.(type) {
	case *ast.StringNode:
		v := nval{s: x.Value}
		return func(*exprEnv) nval { return v }
	case *ast.BoolNode:
		v := nval{b: x.Value}
		return func(*exprEnv) nval { return v }
	case *ast.IdentifierNode:
		switch x.Value {
		case "Value":
			return func(e *exprEnv) nval { return nval{s: e.Value} }
		case "Segment":
			return func(e *exprEnv) nval { return nval{s: e.Segment} }
		}
	case *ast.UnaryNode:
		if x.Operator == "!" || x.Operator == "not" {
			if inner := nc.node(x.Node); inner != nil {
				return func(e *exprEnv) nval { return nval{b: !inner(e).b} }
			}
		}
	case *ast.ConditionalNode:
		cond, a, b := nc.node(x.Cond), nc.node(x.Exp1), nc.node(x.Exp2)
		if cond != nil && a != nil && b != nil {
			return func(e *exprEnv) nval {
				if cond(e).b {
					return a(e)
				}
				return b(e)
			}
		}
	case *ast.BinaryNode:
		return nc.binary(x)
	case *ast.SliceNode:
		inner := nc.node(x.Node)
		from, ok := x.From.(*ast.IntegerNode)
		if inner != nil && ok && x.To == nil {
			return func(e *exprEnv) nval {
				s := inner(e).s
				if from.Value > len(s) {
					return nval{}
				}
				return nval{s: s[from.Value:]}
			}
		}
	}
	name, args, ok := callName(n)
	if !ok {
		return nil
	}
	switch name {
	case "Get":
		if src, ok := nc.path(args); ok {
			return func(e *exprEnv) nval { return nval{s: e.c.keep(e.text(src), "")} }
		}
	case "Has":
		if src, ok := nc.path(args); ok {
			return func(e *exprEnv) nval { return nval{b: e.has(src)} }
		}
	case "IsInstant":
		if src, ok := nc.path(args); ok {
			return func(e *exprEnv) nval { return nval{b: e.isInstant(src)} }
		}
	case "hasPrefix", "hasSuffix":
		if len(args) == 2 {
			a, b := nc.node(args[0]), nc.node(args[1])
			if a != nil && b != nil {
				if name == "hasPrefix" {
					return func(e *exprEnv) nval { return nval{b: strings.HasPrefix(a(e).s, b(e).s)} }
				}
				return func(e *exprEnv) nval { return nval{b: strings.HasSuffix(a(e).s, b(e).s)} }
			}
		}
	case "replace":
		if len(args) == 3 {
			a := nc.node(args[0])
			old, okOld := args[1].(*ast.StringNode)
			repl, okNew := args[2].(*ast.StringNode)
			if a != nil && okOld && okNew {
				return func(e *exprEnv) nval { return nval{s: strings.ReplaceAll(a(e).s, old.Value, repl.Value)} }
			}
		}
	case "URIEscape":
		if len(args) == 1 {
			if a := nc.node(args[0]); a != nil {
				return func(e *exprEnv) nval { return nval{s: url.PathEscape(a(e).s)} }
			}
		}
	case "Language":
		if len(args) == 1 {
			if a := nc.node(args[0]); a != nil {
				return func(e *exprEnv) nval { return nval{s: e.Language(a(e).s)} }
			}
		}
	case "trim", "upper", "lower":
		if len(args) == 1 {
			if a := nc.node(args[0]); a != nil {
				fn := map[string]func(string) string{"trim": strings.TrimSpace, "upper": strings.ToUpper, "lower": strings.ToLower}[name]
				return func(e *exprEnv) nval { return nval{s: fn(a(e).s)} }
			}
		}
	}
	return nil
}

func (nc *nativeCompiler) binary(x *ast.BinaryNode) native {
	// len(Get("2")) >= 12, len(filter([Has("3"), Has("2")], #)) == 1.
	if cmp := intComparison(x.Operator); cmp != nil {
		if l, r := nc.counter(x.Left), nc.counter(x.Right); l != nil && r != nil {
			return func(e *exprEnv) nval { return nval{b: cmp(l(e), r(e))} }
		}
	}
	// Get("2") == "NM" compares the message's bytes without making a string.
	if x.Operator == "==" || x.Operator == "!=" {
		if name, args, ok := callName(x.Left); ok && name == "Get" {
			if src, ok := nc.path(args); ok {
				if lit, ok := x.Right.(*ast.StringNode); ok {
					want, eq := []byte(lit.Value), x.Operator == "=="
					return func(e *exprEnv) nval { return nval{b: bytes.Equal(e.text(src), want) == eq} }
				}
			}
		}
	}
	// Get("5") matches "^<" runs the pattern, compiled once here, on the
	// message's bytes.
	if x.Operator == "matches" {
		lit, ok := x.Right.(*ast.StringNode)
		if !ok {
			return nil
		}
		re, err := regexp.Compile(lit.Value)
		if err != nil {
			return nil
		}
		if name, args, ok := callName(x.Left); ok && name == "Get" {
			if src, ok := nc.path(args); ok {
				return func(e *exprEnv) nval { return nval{b: re.Match(e.text(src))} }
			}
		}
		if left := nc.node(x.Left); left != nil {
			return func(e *exprEnv) nval { return nval{b: re.MatchString(left(e).s)} }
		}
		return nil
	}
	if x.Operator == "in" {
		arr, ok := x.Right.(*ast.ArrayNode)
		left := nc.node(x.Left)
		if !ok || left == nil {
			return nil
		}
		var set []string
		for _, el := range arr.Nodes {
			s, ok := el.(*ast.StringNode)
			if !ok {
				return nil
			}
			set = append(set, s.Value)
		}
		// Get("3") in ["Internet", "X.400"] compares the message's bytes, as
		// == does, without making a string of them.
		if name, args, ok := callName(x.Left); ok && name == "Get" {
			if src, ok := nc.path(args); ok {
				return func(e *exprEnv) nval {
					text := e.text(src)
					for _, s := range set {
						if string(text) == s {
							return nval{b: true}
						}
					}
					return nval{}
				}
			}
		}
		return func(e *exprEnv) nval {
			v := left(e).s
			for _, s := range set {
				if s == v {
					return nval{b: true}
				}
			}
			return nval{}
		}
	}
	l, r := nc.node(x.Left), nc.node(x.Right)
	if l == nil || r == nil {
		return nil
	}
	switch x.Operator {
	case "&&", "and":
		return func(e *exprEnv) nval { return nval{b: l(e).b && r(e).b} }
	case "||", "or":
		return func(e *exprEnv) nval { return nval{b: l(e).b || r(e).b} }
	case "==":
		return func(e *exprEnv) nval { return nval{b: l(e).s == r(e).s} }
	case "!=":
		return func(e *exprEnv) nval { return nval{b: l(e).s != r(e).s} }
	case "+":
		return func(e *exprEnv) nval {
			a := l(e).s
			return nval{s: e.c.keep(unsafe.Slice(unsafe.StringData(a), len(a)), r(e).s)}
		}
	}
	return nil
}

// count is an integer-valued closure: a constant, or len of text or of the
// true values among a list of conditions.
type count func(e *exprEnv) int

func intComparison(op string) func(a, b int) bool {
	switch op {
	case "==":
		return func(a, b int) bool { return a == b }
	case "!=":
		return func(a, b int) bool { return a != b }
	case "<":
		return func(a, b int) bool { return a < b }
	case "<=":
		return func(a, b int) bool { return a <= b }
	case ">":
		return func(a, b int) bool { return a > b }
	case ">=":
		return func(a, b int) bool { return a >= b }
	}
	return nil
}

// nativeCount compiles an integer literal, len(Get(path)), len(STRING) (in
// characters, as expr-lang counts), or len(filter([CONDITIONS], #)), the
// number of conditions that hold.
func (nc *nativeCompiler) counter(n ast.Node) count {
	if x, ok := n.(*ast.IntegerNode); ok {
		v := x.Value
		return func(*exprEnv) int { return v }
	}
	name, args, ok := callName(n)
	if !ok || name != "len" || len(args) != 1 {
		return nil
	}
	if inner, innerArgs, ok := callName(args[0]); ok && inner == "Get" {
		if src, ok := nc.path(innerArgs); ok {
			return func(e *exprEnv) int { return utf8.RuneCount(e.text(src)) }
		}
	}
	if inner, innerArgs, ok := callName(args[0]); ok && inner == "filter" && len(innerArgs) == 2 {
		arr, isArr := innerArgs[0].(*ast.ArrayNode)
		pred, isPred := innerArgs[1].(*ast.PredicateNode)
		if !isArr || !isPred {
			return nil
		}
		if _, self := pred.Node.(*ast.PointerNode); !self {
			return nil
		}
		conds := make([]native, len(arr.Nodes))
		for i, el := range arr.Nodes {
			if conds[i] = nc.node(el); conds[i] == nil {
				return nil
			}
		}
		return func(e *exprEnv) int {
			n := 0
			for _, cond := range conds {
				if cond(e).b {
					n++
				}
			}
			return n
		}
	}
	if str := nc.node(args[0]); str != nil {
		return func(e *exprEnv) int { return utf8.RuneCountInString(str(e).s) }
	}
	return nil
}

// text returns the unescaped text at src in the environment's frame, or nil.
func (e *exprEnv) text(src *source) []byte {
	v, _, ok := e.c.firstValue(src, &e.f)
	if !ok {
		return nil
	}
	return trimSpace(e.c.textOf(v))
}

// isInstant reports whether the first part of src's value in the
// environment's frame is a date/time with at least minutes: what a rule
// writing it to an instant element would write.
func (e *exprEnv) isInstant(src *source) bool {
	v, _, ok := e.c.firstValue(src, &e.f)
	if !ok {
		return false
	}
	d, err := parseDTM(trimSpace(e.c.textOf(v.Sub(1))))
	return err == nil && d.instant()
}

// has reports whether src holds a value in the environment's frame.
func (e *exprEnv) has(src *source) bool {
	_, _, ok := e.c.firstValue(src, &e.f)
	return ok
}

// A conjunct is one of the conditions a rule's when: joins with && at its
// top: Get("2") == "NM" and !Has("5[2]") in 'Get("2") == "NM" && !Has("5[2]")'.
type conjunct struct {
	key string // its text as expr-lang prints it, the same for the same condition
	fn  native
}

// conjuncts splits condition src into its conjuncts, each compiled to a
// closure. ok is false when one does not compile or reads Value, which differs
// from rule to rule where the rest depends only on what the frame reads.
func (nc *nativeCompiler) conjuncts(src string) ([]conjunct, bool) {
	tree, err := parser.Parse(src)
	if err != nil {
		return nil, false
	}
	var out []conjunct
	var split func(n ast.Node) bool
	split = func(n ast.Node) bool {
		if b, ok := n.(*ast.BinaryNode); ok && (b.Operator == "&&" || b.Operator == "and") {
			return split(b.Left) && split(b.Right)
		}
		fn := nc.node(n)
		key := n.String()
		if fn == nil || strings.Contains(key, "Value") {
			return false
		}
		out = append(out, conjunct{key: key, fn: fn})
		return true
	}
	if !split(tree.Node) {
		return nil, false
	}
	return out, true
}
