package store

import (
	"go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// dropMapped removes the bbolt file's pages from the process's mapping of
// it (MADV_DONTNEED on bbolt's read-only shared mapping). The pages stay
// in the page cache, and the next read of one maps it again from there;
// what goes is their count in sessctl's resident memory, which would
// otherwise grow with every page of a large log that a commit or a query
// ever read (hundreds of MiB with a million records).
//
// The read transaction holds bbolt's mmap lock, so the mapping cannot be
// replaced (and its address reused) while the advice is given.
func (s *Store) dropMapped() {
	err := s.db.View(func(tx *bbolt.Tx) error {
		size := tx.Size()
		if size <= 0 {
			return nil
		}
		_, _, errno := unix.Syscall(unix.SYS_MADVISE, s.db.Info().Data, uintptr(size), unix.MADV_DONTNEED)
		if errno != 0 {
			return errno
		}
		return nil
	})
	if err != nil {
		s.log.Debug("could not release the log's mapped pages", "err", err)
	}
}
