package routes

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spinebridge/spinebridge/transforms"
)

// Mappings is the mapping set the engine's HL7 v2 transforms convert with: the
// embedded set, overlaid with a directory of mapping files. It is replaced
// whole when the directory's files change (Run) or when asked (Reload, for
// SIGHUP and the admin API). A new set is loaded and checked in full before it
// replaces the old one, so a bad edit changes nothing: the set in force stays,
// and its errors are logged with their file:line and counted.
type Mappings struct {
	dir  string
	opts transforms.Options
	log  *slog.Logger
	mu   sync.Mutex // one reload at a time, so sets are put in force in load order

	// ts are the transforms routes may name, fixed at start: "fhir" and one
	// per structure of the first set.
	ts map[string]*MappingTransformer

	stats *reloadStats
}

// NewMappings loads the embedded set overlaid with dir ("" for none) and
// returns Mappings holding it, converting with opts. An error here is the
// set's errors: there is nothing to run with.
func NewMappings(dir string, opts transforms.Options, log *slog.Logger) (*Mappings, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	set, err := transforms.Default(dir)
	if err != nil {
		return nil, err
	}
	opts.Structure = ""
	m := &Mappings{
		dir:  dir,
		opts: opts,
		log:  log,
		ts:   mappingTransformers(set, opts),
		stats: newReloadStats("mappings: ", "the set in force",
			"spinebridge_mappings_reloads_total",
			"Reloads of the mapping set, by result (ok: the new set is in force; error: the old one stays).",
			"spinebridge_mappings_last_reload_successful",
			"1 when the last attempt to load the mapping set succeeded, 0 when the set in force is older than the files."),
	}
	return m, nil
}

// Transformers returns the transforms a routes file may name: "fhir", which
// picks the structure from each message's MSH-9, and one per structure in
// lower case ("adt", "oru_r01"). They convert with the set in force.
func (m *Mappings) Transformers() map[string]Transformer {
	out := make(map[string]Transformer, len(m.ts))
	for name, t := range m.ts {
		out[name] = t
	}
	return out
}

// Collectors returns the reload metrics, for the caller to register.
func (m *Mappings) Collectors() []prometheus.Collector {
	return m.stats.collectors()
}

// Reload loads the set again. On success every transform converts with the
// new set from its next message on; on failure the set in force stays and the
// errors, which are also returned, are logged. A set that no longer has a
// structure a transform is named after is refused: routes name that transform.
// A structure the new set adds is converted by "fhir" at once; a transform
// named after it needs a restart.
func (m *Mappings) Reload() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	next, err := transforms.Default(m.dir)
	if err == nil {
		err = m.keepsStructures(next)
	}
	if err != nil {
		m.stats.failed(err, m.log)
		return err
	}
	for _, t := range m.ts {
		t.use(next, m.opts)
	}
	m.stats.ok()
	m.log.Info("mappings: reloaded", "dir", m.dir, "structures", len(next.Structures()))
	return nil
}

// keepsStructures reports an error when next lacks a structure one of the
// transforms converts with.
func (m *Mappings) keepsStructures(next *transforms.Set) error {
	have := map[string]bool{}
	for _, s := range next.Structures() {
		have[strings.ToLower(s)] = true
	}
	var gone []string
	for name, t := range m.ts {
		if t.structure != "" && !have[name] {
			gone = append(gone, t.structure)
		}
	}
	if len(gone) == 0 {
		return nil
	}
	slices.Sort(gone)
	return fmt.Errorf("mappings: structure %s is gone from the files, but routes may name its transform; restart to remove it", strings.Join(gone, ", "))
}

// Run reloads the set whenever a mapping file under the directory changes,
// until ctx ends. With no directory there is nothing to watch.
func (m *Mappings) Run(ctx context.Context) error {
	if m.dir == "" {
		return nil
	}
	if _, err := os.Stat(m.dir); err != nil {
		return fmt.Errorf("mappings: watch: %w", err)
	}
	return watchFiles(ctx, watchSpec{
		what:    "mappings",
		dirs:    []string{m.dir},
		deep:    true,
		concern: concernsMappings,
		reload:  m.Reload, // errors are logged and counted by Reload
	}, m.log)
}

// concernsMappings reports whether a change to the file name can change the
// mapping set: a mapping file, or a directory (one removed or renamed can no
// longer be told from a file, so a name without an extension counts), or a
// Kubernetes ConfigMap volume's ..data link, which its updates swap to a new
// copy of every file at once.
func concernsMappings(name string) bool {
	if filepath.Base(name) == "..data" {
		return true
	}
	return !hidden(name) && (transforms.IsMappingFile(name) || filepath.Ext(name) == "")
}
