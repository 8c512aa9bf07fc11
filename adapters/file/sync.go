package file

import (
	"context"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// groupSync makes the files of many deliveries durable with one syncfs(2) of
// the file system under the destination's directory. A delivery that has
// renamed its file into place calls sync, which returns once a syncfs that
// began after the call has finished; one syncfs serves every delivery that
// was waiting when it began, and the deliveries that arrive while it runs
// wait for the next. With several deliveries in flight this writes each
// file's data and the directory entries in one journal commit, where syncing
// each file and its directory costs two commits per delivery, and the commits
// of concurrent deliveries queue behind each other (and behind the journal's).
//
// The file descriptor stays open for the destination's life: syncfs reports
// a write-back error once to each descriptor open when it happened, so a
// descriptor opened afresh for each sync would miss errors from the kernel's
// own write-back between syncs.
type groupSync struct {
	dir string

	mu      sync.Mutex
	fd      int // the directory, opened by the first sync; -1 until then
	waiting []chan error
	running bool // a goroutine is syncing; it takes waiting when it is done
	closed  bool
	runs    sync.WaitGroup
}

func newGroupSync(dir string) *groupSync {
	return &groupSync{dir: dir, fd: -1}
}

// sync waits for a syncfs of the directory's file system begun after the call.
// When ctx ends first it returns ctx's error; the sync still runs.
func (g *groupSync) sync(ctx context.Context) error {
	done := make(chan error, 1)
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return os.ErrClosed
	}
	g.waiting = append(g.waiting, done)
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
func (g *groupSync) run() {
	for {
		g.mu.Lock()
		batch := g.waiting
		g.waiting = nil
		if len(batch) == 0 {
			g.running = false
			g.mu.Unlock()
			return
		}
		err := g.open()
		fd := g.fd
		g.mu.Unlock()
		if err == nil {
			err = unix.Syncfs(fd)
			if err != nil {
				err = fmt.Errorf("syncfs: %w", err)
			}
		}
		for _, done := range batch {
			done <- err
		}
	}
}

// open opens the directory for syncfs, once. g.mu is held.
func (g *groupSync) open() error {
	if g.fd >= 0 {
		return nil
	}
	fd, err := unix.Open(g.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s for syncfs: %w", g.dir, err)
	}
	g.fd = fd
	return nil
}

// close waits for a sync under way and releases the descriptor; sync fails
// with os.ErrClosed after it.
func (g *groupSync) close() error {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.runs.Wait()
	if g.fd < 0 {
		return nil
	}
	err := unix.Close(g.fd)
	g.fd = -1
	return err
}
