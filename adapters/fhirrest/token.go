package fhirrest

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// maxTokenSize bounds a token file: a bearer token is a few kilobytes at most,
// and a larger file is not one.
const maxTokenSize = 64 << 10

// tokenSource gives the bearer token: a fixed one, or a file's, read again
// when the file changes so that a token rotated on disk takes effect at the
// next request.
type tokenSource struct {
	file string // "" for a fixed token

	mu    sync.Mutex
	token string
	mtime time.Time // of the file when token was read
	size  int64
}

// get returns the current token. Errors name the file, never its content.
func (t *tokenSource) get() (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.file == "" {
		return t.token, nil
	}
	fi, err := os.Stat(t.file)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	if t.token != "" && fi.ModTime().Equal(t.mtime) && fi.Size() == t.size {
		return t.token, nil
	}
	if fi.Size() > maxTokenSize {
		return "", fmt.Errorf("token file %s: larger than %d bytes", t.file, maxTokenSize)
	}
	b, err := os.ReadFile(t.file)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	if err := t.set(string(b)); err != nil {
		return "", fmt.Errorf("token file %s: %w", t.file, err)
	}
	t.mtime, t.size = fi.ModTime(), fi.Size()
	return t.token, nil
}

// set checks and keeps a token, without the white space around it.
func (t *tokenSource) set(s string) error {
	s = strings.TrimSpace(s)
	if s == "" {
		return errors.New("empty token")
	}
	if !validHeaderValue(s) || strings.ContainsAny(s, " \t") {
		return errors.New("token holds white space or a control character")
	}
	t.token = s
	return nil
}
