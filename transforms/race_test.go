//go:build race

package transforms

// The race detector slows the converter and the validator about tenfold, and
// a converter is one goroutine's: the field robustness test tries a sample of
// its variants under it (see robustSample).
func init() { robustSample = 6 }
