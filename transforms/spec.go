package transforms

import (
	"fmt"
	"io/fs"
	"path"
	"reflect"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The mapping files as written. Each is read from YAML with its line numbers,
// so that every problem found later, when it is compiled against the FHIR
// model, is reported at file:line. The formats are documented in
// mappings/README.md.

// ruleSpec is one rule of a segment or data-type map.
type ruleSpec struct {
	From      string `yaml:"from"`      // source: field ("3", "3.1", "3[1]"), component ("1", "4.2") or absolute path ("PID-32")
	To        string `yaml:"to"`        // FHIR element path from the object being built
	Map       string `yaml:"map"`       // data-type map applied to each source value
	Resource  string `yaml:"resource"`  // with map: build a separate resource and write a reference to it
	As        string `yaml:"as"`        // conversion override: text, date, dateTime, instant, decimal, integer, boolean
	Table     string `yaml:"table"`     // code table applied to the value
	Value     any    `yaml:"value"`     // a constant
	Expr      string `yaml:"expr"`      // a computed value (expr-lang)
	When      string `yaml:"when"`      // condition (expr-lang, boolean)
	Extension string `yaml:"extension"` // the rule writes into a new extension with this url; To is inside it
	Each      *bool  `yaml:"each"`      // every repetition (default when To is repeated) or only the first
	Weak      bool   `yaml:"weak"`      // the value alone does not make its object worth writing
	Prefer    bool   `yaml:"prefer"`    // a choice's type that replaces another type already written
	Check     string `yaml:"check"`     // "nhs-number": Modulus 11, reported as a warning
	IG        string `yaml:"ig"`        // the IG row implemented, for reviewers

	pos string
}

// segmentMapSpec is a mappings/segments file: one segment to one resource.
type segmentMapSpec struct {
	Segment     string     `yaml:"segment"`
	Resource    string     `yaml:"resource"`
	Name        string     `yaml:"name"`
	IG          string     `yaml:"ig"`
	Profile     string     `yaml:"profile"`
	Identity    []string   `yaml:"identity"`    // sources whose values make the resource id
	Conditional string     `yaml:"conditional"` // "identifier": transaction entries update conditionally on it
	Shared      bool       `yaml:"shared"`      // one resource per identity in a message, however many segments name it
	When        string     `yaml:"when"`        // condition on the segment, for every entry that uses the map
	Rules       []ruleSpec `yaml:"-"`

	pos string
}

// datatypeMapSpec is a mappings/datatypes file: one v2 data type to one FHIR
// type (or to a resource, for XCN, XON, PL and the like).
type datatypeMapSpec struct {
	Datatype string `yaml:"datatype"`
	FHIR     string `yaml:"fhir"`
	Name     string `yaml:"name"`
	IG       string `yaml:"ig"`
	Profile  string `yaml:"profile"`
	// Identity, for a map that builds a resource, names the components whose
	// values make its id; without it the whole value does. It applies when
	// one of them holds a value and IdentityWhen (if any) holds; otherwise
	// the whole value makes the id.
	Identity     []string   `yaml:"identity"`
	IdentityWhen string     `yaml:"identity_when"`
	Rules        []ruleSpec `yaml:"-"`

	pos string
}

// tableSpec is a mappings/tables file: v2 codes to FHIR codes.
type tableSpec struct {
	Table   string            `yaml:"table"`
	IG      string            `yaml:"ig"`
	Map     map[string]string `yaml:"map"`
	Default string            `yaml:"default"` // for codes not in Map; "" drops them
	Keep    bool              `yaml:"keep"`    // codes not in Map pass through unchanged

	pos string
}

// structureSpec is a mappings/messages file: which segment maps build which
// resources for a message structure, and how they refer to each other.
type structureSpec struct {
	Structure string      `yaml:"structure"`
	Extends   string      `yaml:"extends"` // a structure this file adds its entries to, after that structure's own
	Messages  []string    `yaml:"messages"`
	IG        string      `yaml:"ig"`
	Resources []entrySpec `yaml:"-"`

	pos string
}

type entrySpec struct {
	Segment string            `yaml:"segment"`
	Map     string            `yaml:"map"`
	Name    string            `yaml:"name"`
	Into    string            `yaml:"into"`
	Repeat  bool              `yaml:"repeat"`  // with into: every such segment merges in, not only the first
	Follows []string          `yaml:"follows"` // runs only in the group one of these segments opens
	Over    []string          `yaml:"over"`    // with follows: segments of that group that may come between
	Group   bool              `yaml:"group"`   // with into and follows: merge only into a resource the group built, never start one
	When    string            `yaml:"when"`
	Refs    map[string]string `yaml:"refs"`  // element -> name of the resource it refers to
	Links   map[string]string `yaml:"links"` // name -> element of that resource that refers back to this one
	// Near says, for this structure, on which side of the entry's segment
	// stands the segment of each kind its map reads as <SEG or >SEG:
	// {ORC: after} where an order's ORC follows its OBR (OUL).
	Near map[string]string `yaml:"near"`

	pos string
}

// Layer is one source of mapping files. Dir, when set, is where FS was read
// from on disk, and prefixes the file names in errors.
type Layer struct {
	FS  fs.FS
	Dir string
}

// specs is everything read from a mapping directory.
type specs struct {
	segments   []*segmentMapSpec
	datatypes  []*datatypeMapSpec
	tables     []*tableSpec
	structures []*structureSpec
}

// IsMappingFile reports whether a file at path is read as a mapping file: a
// .yaml or .yml file.
func IsMappingFile(path string) bool {
	return strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")
}

// MappingFiles lists the mapping files of fsys (see IsMappingFile), in
// lexical order. Hidden files and directories are passed over: an editor's
// lock file (.#PID-Patient.yaml, often a dangling link) is not a mapping, and
// a Kubernetes ConfigMap volume keeps its files in a hidden ..<timestamp>
// directory, reached through a link per top-level name (segments ->
// ..data/segments), which are followed, so that each file is read once and
// under the name the volume gives it. A link that cannot be followed, or
// directory links more than maxLinks deep (a link loop), is an error.
func MappingFiles(fsys fs.FS) ([]string, error) {
	var files []string
	err := walkMappingTree(fsys, true, func(p string, dir bool) {
		if !dir {
			files = append(files, p)
		}
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	return files, nil
}

// MappingDirs lists the directories MappingFiles reads files from: "." and
// every directory below it, through the same links, for a watch on the files
// to cover. It is lenient where MappingFiles is strict: a link it cannot
// follow, or one past maxLinks, is passed over, since reporting it is the
// loader's part and the rest of the tree still wants watching.
func MappingDirs(fsys fs.FS) ([]string, error) {
	var dirs []string
	err := walkMappingTree(fsys, false, func(p string, dir bool) {
		if dir {
			dirs = append(dirs, p)
		}
	})
	return dirs, err
}

// walkMappingTree walks fsys as the loader reads it (see MappingFiles),
// calling visit for each directory it enters, "." first, and each mapping
// file. With strict, a link that cannot be followed or one too deep ends the
// walk with an error; otherwise it is passed over.
func walkMappingTree(fsys fs.FS, strict bool, visit func(p string, dir bool)) error {
	var walk func(root string, links int) error
	walk = func(root string, links int) error {
		return fs.WalkDir(fsys, root, func(p string, d fs.DirEntry, err error) error {
			switch {
			case err != nil:
				return err
			case p != root && strings.HasPrefix(d.Name(), "."):
				if d.IsDir() {
					return fs.SkipDir
				}
				return nil
			case d.Type()&fs.ModeSymlink != 0:
				info, err := fs.Stat(fsys, p)
				switch {
				case err != nil && strict:
					return err
				case err != nil:
					return nil
				case !info.IsDir():
				case links < maxLinks:
					return walk(p, links+1)
				case strict:
					return fmt.Errorf("%s: more than %d directory links deep (a link loop?)", p, maxLinks)
				default:
					return nil
				}
			case d.IsDir():
				visit(p, true)
				return nil
			}
			if IsMappingFile(p) {
				visit(p, false)
			}
			return nil
		})
	}
	return walk(".", 0)
}

// maxLinks bounds how many directory links deep the walk follows.
const maxLinks = 8

// readSpecs reads every .yaml file of the layers. A file in a later layer
// replaces the file at the same path in an earlier one, so a directory of
// overrides can change one embedded map and add others. The directory a file
// is in says what it is: segments/, datatypes/, tables/, messages/.
func readSpecs(layers []Layer) (*specs, []error) {
	var s specs
	var errs []error
	contents := map[string][]byte{}
	origin := map[string]int{}
	for li, layer := range layers {
		names, err := MappingFiles(layer.FS)
		if err != nil {
			return nil, []error{err}
		}
		for _, p := range names {
			b, err := fs.ReadFile(layer.FS, p)
			if err != nil {
				return nil, []error{err}
			}
			contents[p], origin[p] = b, li
		}
	}
	files := make([]string, 0, len(contents))
	for f := range contents {
		files = append(files, f)
	}
	sort.Strings(files)
	for _, f := range files {
		b := contents[f]
		name := f
		if dir := layers[origin[f]].Dir; dir != "" {
			name = path.Join(dir, f)
		}
		var doc yaml.Node
		if err := yaml.Unmarshal(b, &doc); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		if len(doc.Content) == 0 {
			errs = append(errs, fmt.Errorf("%s: empty file", name))
			continue
		}
		root := doc.Content[0]
		at := func(n *yaml.Node) string { return fmt.Sprintf("%s:%d", name, n.Line) }
		switch kind := strings.SplitN(path.Clean(f), "/", 2)[0]; kind {
		case "segments":
			m := &segmentMapSpec{pos: at(root)}
			errs = append(errs, decodeWithList(name, root, m, "rules", &m.Rules, func(r *ruleSpec, n *yaml.Node) { r.pos = at(n) })...)
			s.segments = append(s.segments, m)
		case "datatypes":
			m := &datatypeMapSpec{pos: at(root)}
			errs = append(errs, decodeWithList(name, root, m, "rules", &m.Rules, func(r *ruleSpec, n *yaml.Node) { r.pos = at(n) })...)
			s.datatypes = append(s.datatypes, m)
		case "tables":
			t := &tableSpec{pos: at(root)}
			errs = append(errs, decodeWithList[struct{}](name, root, t, "", nil, nil)...)
			s.tables = append(s.tables, t)
		case "messages":
			m := &structureSpec{pos: at(root)}
			errs = append(errs, decodeWithList(name, root, m, "resources", &m.Resources, func(e *entrySpec, n *yaml.Node) { e.pos = at(n) })...)
			s.structures = append(s.structures, m)
		default:
			errs = append(errs, fmt.Errorf("%s: a mapping file belongs in segments/, datatypes/, tables/ or messages/", name))
		}
	}
	return &s, errs
}

// decodeWithList decodes the mapping node into v, refusing keys v does not
// have, and decodes the sequence under listKey item by item so that each keeps
// its line.
func decodeWithList[T any](file string, root *yaml.Node, v any, listKey string, list *[]T, setPos func(*T, *yaml.Node)) []error {
	if root.Kind != yaml.MappingNode {
		return []error{fmt.Errorf("%s:%d: expected a mapping", file, root.Line)}
	}
	var errs []error
	errs = append(errs, unknownKeys(file, root, v, listKey)...)
	rest := &yaml.Node{Kind: yaml.MappingNode, Line: root.Line}
	var items *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		if listKey != "" && root.Content[i].Value == listKey {
			items = root.Content[i+1]
			continue
		}
		rest.Content = append(rest.Content, root.Content[i], root.Content[i+1])
	}
	if err := rest.Decode(v); err != nil {
		errs = append(errs, fmt.Errorf("%s:%d: %w", file, root.Line, err))
	}
	if items == nil {
		return errs
	}
	if items.Kind != yaml.SequenceNode {
		return append(errs, fmt.Errorf("%s:%d: %s must be a list", file, items.Line, listKey))
	}
	for _, n := range items.Content {
		var item T
		errs = append(errs, unknownKeys(file, n, &item, "")...)
		if err := n.Decode(&item); err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %w", file, n.Line, err))
			continue
		}
		setPos(&item, n)
		*list = append(*list, item)
	}
	return errs
}

// unknownKeys reports keys of mapping node n that v's yaml tags do not name:
// a misspelt key is an error, never a silently ignored rule.
func unknownKeys(file string, n *yaml.Node, v any, extra string) []error {
	if n.Kind != yaml.MappingNode {
		return []error{fmt.Errorf("%s:%d: expected a mapping", file, n.Line)}
	}
	known := map[string]bool{}
	if extra != "" {
		known[extra] = true
	}
	t := reflect.TypeOf(v).Elem()
	for i := 0; i < t.NumField(); i++ {
		if tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]; tag != "" && tag != "-" {
			known[tag] = true
		}
	}
	var errs []error
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if !known[k.Value] {
			names := make([]string, 0, len(known))
			for name := range known {
				names = append(names, name)
			}
			sort.Strings(names)
			errs = append(errs, fmt.Errorf("%s:%d: unknown key %q (known: %s)", file, k.Line, k.Value, strings.Join(names, ", ")))
		}
	}
	return errs
}
