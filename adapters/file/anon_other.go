//go:build !linux

package file

import "os"

func anonymousFiles() bool { return false }

func (d *Destination) writeAnonymous(dir, path string, body []byte) error { return errNoAnonymous }

func datasync(f *os.File) error { return f.Sync() }
