//go:build !linux

package store

import "errors"

func diskFullChild(string) error { return errors.New("disk-full child needs Linux (RLIMIT_FSIZE)") }
