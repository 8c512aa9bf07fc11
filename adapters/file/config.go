package file

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/spinebridge/spinebridge/routes"
)

// Defaults.
const (
	DefaultName = `{{.Received.Format "20060102"}}/{{.MessageID}}-{{.Route}}.{{.Ext}}`
	// DefaultAppendName is the default with append: a file a day per route.
	DefaultAppendName = `{{.Received.Format "20060102"}}/{{.Route}}.{{.Ext}}`
	DefaultMode       = 0o640
)

// Config configures a file destination. Its yaml tags are the keys of the
// destination's mapping in the routes file.
type Config struct {
	// Dir is the directory files are written to, created when first needed.
	// A relative path is taken from the working directory at build time.
	Dir string `yaml:"dir"`
	// Name is the template of a file's path below Dir; DefaultName when empty.
	// The package comment lists what it sees.
	Name string `yaml:"name"`
	// Mode is the files' permissions in octal, "0640" (DefaultMode) when empty.
	// Directories created get the same bits plus search where read is given.
	Mode string `yaml:"mode"`
	// Fsync makes each file durable before its delivery counts as done, with
	// syncs shared between deliveries (see the package comment); true when
	// absent.
	Fsync *bool `yaml:"fsync"`
	// Append writes each delivery as one line at the end of the file its name
	// gives (DefaultAppendName when Name is empty) rather than as a file of
	// its own; the package comment says what that changes.
	Append bool `yaml:"append"`
}

// Factory builds a file destination from its mapping in the routes file,
// without touching the file system. Its errors name the line and column of
// the value at fault, every one found.
func Factory(name string, node *yaml.Node) (routes.Destination, error) {
	return routes.DecodeDestination(name, node, build)
}

// New builds a file destination from cfg, without touching the file system:
// the directory is created by the first delivery or Ready.
func New(name string, cfg Config) (*Destination, error) {
	d, ps := build(name, cfg)
	if len(ps) > 0 {
		return nil, ps.Plain("file destination " + name)
	}
	return d, nil
}

// sample is the delivery a name template is tried on when it is loaded.
var sample = routes.Delivery{
	ID: "1.route.destination", MessageID: 1, Route: "route", Destination: "destination",
	Key: "key", ContentType: routes.ContentTypeFHIR, Type: "ADT", Trigger: "A01", Version: "2.5.1",
	ControlID: "MSG00001", Sender: "PAS|RX1", NHSNumber: "9000000009",
	Received: time.Date(2026, 11, 21, 9, 30, 15, 0, time.UTC),
}

func build(name string, cfg Config) (*Destination, problems) {
	var ps problems
	d := &Destination{name: name, mode: DefaultMode, fsync: cfg.Fsync == nil || *cfg.Fsync}
	d.dirs.do = syncDir
	d.append = cfg.Append
	d.appends.syncs.do = (*appendFile).datasync
	d.named.Store(!anonymousFiles())
	if cfg.Dir == "" {
		ps.Add(errors.New("required"), "dir")
	} else if dir, err := filepath.Abs(cfg.Dir); err != nil {
		ps.Add(err, "dir")
	} else {
		d.dir = dir
	}
	if cfg.Mode != "" {
		m, err := strconv.ParseUint(strings.TrimPrefix(cfg.Mode, "0o"), 8, 32)
		if err != nil || m > 0o777 {
			ps.Add(fmt.Errorf("%q: want permissions in octal, such as 0640", cfg.Mode), "mode")
		}
		d.mode = os.FileMode(m)
	}
	src := cfg.Name
	switch {
	case src == "" && cfg.Append:
		src = DefaultAppendName
	case src == "":
		src = DefaultName
	}
	tmpl, err := template.New("name").Parse(src)
	if err != nil {
		ps.Add(err, "name")
	} else {
		d.tmpl = tmpl
		d.parts = compileName(tmpl)
		if _, err := d.fileName(&sample); err != nil {
			ps.Add(err, "name")
		}
	}
	if len(ps) > 0 {
		return nil, ps
	}
	d.dirMode = d.mode | d.mode&0o444>>2
	return d, nil
}

// problems are the problems of a configuration, each at its key.
type problems = routes.ConfigProblems
