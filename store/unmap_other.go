//go:build !linux

package store

// dropMapped does nothing where MADV_DONTNEED on a shared file mapping is
// not known to keep the file's contents.
func (s *Store) dropMapped() {}
