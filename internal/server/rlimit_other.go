//go:build !unix

package server

// raiseNoFile does nothing where there is no RLIMIT_NOFILE.
func raiseNoFile() (uint64, error) { return 0, nil }
