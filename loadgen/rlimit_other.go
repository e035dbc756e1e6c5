//go:build !unix

package loadgen

// RaiseFileLimit does nothing here.
func RaiseFileLimit() (uint64, error) { return 0, nil }
