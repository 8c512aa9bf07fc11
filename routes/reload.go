package routes

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Reloader holds the routing table in force and replaces it when its files
// change (Run) or when asked (Reload, for SIGHUP). A new table is loaded and
// checked in full before it replaces the old one, so a bad edit changes
// nothing: the old table stays, and the errors are logged and counted.
type Reloader struct {
	// OnSwap is called after each successful reload with the replaced table and
	// its successor, from the goroutine that reloaded. The Reloader never closes
	// a table: OnSwap hands the new one to its users and closes the old one
	// once they are done with it (Dispatcher.SetRouting does both). Set it
	// before Run or the first Reload.
	OnSwap func(old, next *Table)

	paths []string
	opts  TableOptions
	log   *slog.Logger
	cur   atomic.Pointer[Table]
	mu    sync.Mutex // one reload at a time, so tables are swapped in load order

	stats *reloadStats
}

// NewReloader loads the table from paths (as LoadTable does) and returns a
// Reloader holding it. An error here is the table's errors: there is nothing to
// keep running with.
func NewReloader(paths []string, opts TableOptions, log *slog.Logger) (*Reloader, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t, err := LoadTable(paths, opts)
	if err != nil {
		return nil, err
	}
	r := &Reloader{
		paths: slices.Clone(paths),
		opts:  opts,
		log:   log,
		stats: newReloadStats("routes: ", "the table in force",
			"spinebridge_routes_reloads_total",
			"Reloads of the routing table, by result (ok: the new table is in force; error: the old one stays).",
			"spinebridge_routes_config_last_reload_successful",
			"1 when the last attempt to load the routing table succeeded, 0 when the table in force is older than the files."),
	}
	r.cur.Store(t)
	return r, nil
}

// Current returns the table in force.
func (r *Reloader) Current() *Table { return r.cur.Load() }

// Collectors returns the reloader's metrics, for the caller to register.
func (r *Reloader) Collectors() []prometheus.Collector {
	return r.stats.collectors()
}

// Reload loads the table again. On success the new table is put in force and
// OnSwap is called; on failure the table in force stays and the errors, which
// are also returned, are logged.
func (r *Reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	next, err := LoadTable(r.paths, r.opts)
	if err != nil {
		r.stats.failed(err, r.log)
		return err
	}
	old := r.cur.Swap(next)
	r.stats.ok()
	r.log.Info("routes: reloaded", "routes", len(next.Routes), "destinations", len(next.Destinations), "files", len(next.Files))
	if r.OnSwap != nil {
		r.OnSwap(old, next)
	}
	return nil
}

// Run reloads the table whenever its files change, until ctx ends. It watches
// the directories that hold them rather than the files, so that a file an
// editor replaces by renaming a new one over it, or one added to a routes
// directory, is seen. A burst of changes is loaded once, after a quiet
// reloadDelay.
func (r *Reloader) Run(ctx context.Context) error {
	dirs, whole, files, err := r.watchSet()
	if err != nil {
		return err
	}
	return watchFiles(ctx, watchSpec{
		what:    "routes",
		dirs:    dirs,
		concern: func(name string) bool { return concerns(name, whole, files) },
		reload:  r.Reload, // errors are logged and counted by Reload
	}, r.log)
}

// watchSet returns the directories to watch: those given, whose routes files
// all count (whole), and those of files given on their own, where only those
// files count.
func (r *Reloader) watchSet() (dirs []string, whole, files map[string]bool, err error) {
	whole, files = map[string]bool{}, map[string]bool{}
	for _, p := range r.paths {
		info, err := os.Stat(p)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("routes: watch: %w", err)
		}
		p = filepath.Clean(p)
		if info.IsDir() {
			whole[p] = true
			dirs = append(dirs, p)
		} else {
			files[p] = true
			dirs = append(dirs, filepath.Dir(p))
		}
	}
	slices.Sort(dirs)
	return slices.Compact(dirs), whole, files, nil
}

// concerns reports whether a change to the file name can change the table.
func concerns(name string, whole, files map[string]bool) bool {
	name = filepath.Clean(name)
	dir, base := filepath.Dir(name), filepath.Base(name)
	// A Kubernetes ConfigMap volume replaces its files at once by renaming a
	// new ..data directory into place.
	if base == "..data" {
		for f := range files {
			if filepath.Dir(f) == dir {
				return true
			}
		}
		return whole[dir]
	}
	return files[name] || (whole[dir] && isTableFile(base))
}
