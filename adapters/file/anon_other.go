//go:build !linux

package file

func anonymousFiles() bool { return false }

func (d *Destination) writeAnonymous(dir, path string, body []byte) error { return errNoAnonymous }
