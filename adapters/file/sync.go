package file

import (
	"context"
	"os"
	"sync"
)

// dirSync makes the renames of many deliveries durable with one fsync of
// their directory. A delivery that has renamed its (already synced) file into
// place calls sync with the directory, which returns once an fsync of it
// begun after the call has finished; one fsync serves every delivery waiting
// on that directory when it begins, and the deliveries that arrive while it
// runs wait for the next. Syncing the directory after each rename cost a
// journal commit per delivery, queued behind the others and behind the
// journal's own syncs; the files' own fsyncs, made concurrently by the
// deliveries in flight, the file system already commits together.
//
// It syncs only what a delivery wrote: syncfs(2), which would cover files and
// renames in one call, also waits for every other writer's dirty data on the
// file system, and on a shared disk made both the deliveries and the
// journal's syncs wait seconds.
type dirSync struct {
	mu      sync.Mutex
	waiting map[string][]chan error // by directory
	running bool                    // a goroutine is syncing; it takes waiting when it is done
	closed  bool
	runs    sync.WaitGroup
}

// sync waits for an fsync of dir begun after the call. When ctx ends first it
// returns ctx's error; the sync still runs.
func (g *dirSync) sync(ctx context.Context, dir string) error {
	done := make(chan error, 1)
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return os.ErrClosed
	}
	if g.waiting == nil {
		g.waiting = map[string][]chan error{}
	}
	g.waiting[dir] = append(g.waiting[dir], done)
	if !g.running {
		g.running = true
		g.runs.Go(g.run)
	}
	g.mu.Unlock()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run syncs for whoever is waiting, until no one is.
func (g *dirSync) run() {
	for {
		g.mu.Lock()
		batch := g.waiting
		g.waiting = nil
		if len(batch) == 0 {
			g.running = false
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
		for dir, waiters := range batch {
			err := syncDir(dir)
			for _, done := range waiters {
				done <- err
			}
		}
	}
}

// close waits for a sync under way; sync fails with os.ErrClosed after it.
func (g *dirSync) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.runs.Wait()
}
