package file

import (
	"context"
	"os"
	"sync"
)

// syncGroup makes the writes of many deliveries durable with one sync of what
// they wrote into: a directory their files were renamed into, or a file they
// appended to. A delivery that has written calls sync with the key, which
// returns once a sync of it (do) begun after the call has finished; one sync
// serves every delivery waiting on that key when it begins, and the
// deliveries that arrive while it runs wait for the next. Syncing the
// directory after each rename cost a journal commit per delivery, queued
// behind the others and behind the journal's own syncs; the files' own
// fsyncs, made concurrently by the deliveries in flight, the file system
// already commits together.
//
// It syncs only what a delivery wrote: syncfs(2), which would cover files and
// renames in one call, also waits for every other writer's dirty data on the
// file system, and on a shared disk made both the deliveries and the
// journal's syncs wait seconds.
type syncGroup[K comparable] struct {
	do      func(K) error
	mu      sync.Mutex
	waiting map[K][]chan error
	running bool // a goroutine is syncing; it takes waiting when it is done
	closed  bool
	runs    sync.WaitGroup
}

// sync waits for a sync of key begun after the call. When ctx ends first it
// returns ctx's error; the sync still runs.
func (g *syncGroup[K]) sync(ctx context.Context, key K) error {
	done := make(chan error, 1)
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return os.ErrClosed
	}
	if g.waiting == nil {
		g.waiting = map[K][]chan error{}
	}
	g.waiting[key] = append(g.waiting[key], done)
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
func (g *syncGroup[K]) run() {
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
		for key, waiters := range batch {
			err := g.do(key)
			for _, done := range waiters {
				done <- err
			}
		}
	}
}

// close waits for a sync under way; sync fails with os.ErrClosed after it.
func (g *syncGroup[K]) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.runs.Wait()
}
