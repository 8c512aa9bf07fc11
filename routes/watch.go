package routes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/spinebridge/spinebridge/transforms"
)

// reloadDelay is how long the files must be quiet before a change is loaded:
// an editor's save is several events (write, rename, chmod), and a deploy
// copies several files.
const reloadDelay = 250 * time.Millisecond

// watchSpec is what watchFiles watches and what it does on a change.
type watchSpec struct {
	what string   // "routes", "mappings": names the watch in log lines
	dirs []string // directories watched
	// deep also watches every directory below dirs, those created later
	// included: mapping files live in segments/, datatypes/, tables/ and
	// messages/ under the directory named.
	deep bool
	// concern reports whether a change to the file name can change what is
	// loaded; other changes (an editor's swap file) are ignored.
	concern func(name string) bool
	// reload loads again; its errors are its own to log and count.
	reload func() error
}

// watchFiles calls s.reload once each burst of changes that concern it has
// been quiet for reloadDelay, until ctx ends. It watches directories rather
// than files, so that a file an editor replaces by renaming a new one over it,
// or one added, is seen.
func watchFiles(ctx context.Context, s watchSpec, log *slog.Logger) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("%s: watch: %w", s.what, err)
	}
	defer w.Close()
	for _, d := range s.dirs {
		if err := watchDir(w, d, s.deep); err != nil {
			return fmt.Errorf("%s: watch %s: %w", s.what, d, err)
		}
	}
	timer := time.NewTimer(reloadDelay)
	timer.Stop() // armed by the first change
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if s.deep && ev.Has(fsnotify.Create) {
				if info, err := os.Stat(ev.Name); err == nil && info.IsDir() && !hidden(ev.Name) {
					// Files copied into it before the watch began are read by
					// the reload this change arms.
					if err := watchDir(w, ev.Name, true); err != nil {
						log.Warn(s.what+": watching a new directory", "dir", ev.Name, "err", err)
					}
					timer.Reset(reloadDelay)
					continue
				}
			}
			if s.concern(ev.Name) {
				timer.Reset(reloadDelay)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			log.Warn(s.what+": watching the files", "err", err)
		case <-timer.C:
			_ = s.reload()
		}
	}
}

// watchDir adds dir to w, and with deep every directory below it that
// transforms.MappingFiles reads files from (transforms.MappingDirs).
func watchDir(w *fsnotify.Watcher, dir string, deep bool) error {
	if !deep {
		return w.Add(dir)
	}
	dirs, err := transforms.MappingDirs(os.DirFS(dir))
	if err != nil {
		return err
	}
	for _, d := range dirs {
		if err := w.Add(filepath.Join(dir, d)); err != nil {
			return err
		}
	}
	return nil
}

// hidden reports whether the file or directory name is hidden (a dot file).
func hidden(name string) bool { return strings.HasPrefix(filepath.Base(name), ".") }

// reloadStats counts the reloads of something loaded from files (the routing
// table, the mapping set) and logs their failures.
type reloadStats struct {
	what    string // "routes: ", "mappings: ": log lines' prefix
	kept    string // what stays in force after a failure, for the log
	reloads *prometheus.CounterVec
	lastOK  prometheus.Gauge
}

// newReloadStats returns the counter name{result} and the gauge lastOK, with
// their help texts, both outcomes at zero and the gauge at 1.
func newReloadStats(what, kept, name, help, lastOK, lastOKHelp string) *reloadStats {
	s := &reloadStats{
		what:    what,
		kept:    kept,
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"result"}),
		lastOK:  prometheus.NewGauge(prometheus.GaugeOpts{Name: lastOK, Help: lastOKHelp}),
	}
	s.reloads.WithLabelValues("ok")
	s.reloads.WithLabelValues("error")
	s.lastOK.Set(1)
	return s
}

func (s *reloadStats) collectors() []prometheus.Collector {
	return []prometheus.Collector{s.reloads, s.lastOK}
}

func (s *reloadStats) ok() {
	s.reloads.WithLabelValues("ok").Inc()
	s.lastOK.Set(1)
}

// failed counts a failed reload and logs each of its errors on a line of its
// own, so that each file:line is found by its own search.
func (s *reloadStats) failed(err error, log *slog.Logger) {
	s.reloads.WithLabelValues("error").Inc()
	s.lastOK.Set(0)
	errs := []error{err}
	var list interface{ Unwrap() []error }
	if errors.As(err, &list) {
		errs = list.Unwrap()
	}
	for _, e := range errs {
		log.Error(s.what+"reload failed; "+s.kept+" stays", "err", e)
	}
}
