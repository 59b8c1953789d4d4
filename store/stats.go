package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"
)

// Stats describe a session log for monitoring.
type Stats struct {
	// Records is the number of records in the log.
	Records uint64
	// Bytes is the size of the database file (0 if it cannot be read).
	Bytes int64
	// CheckpointSize is the number of records the last signed checkpoint
	// covers; CheckpointTime is when it was signed, or when the store was
	// opened if none has been signed since.
	CheckpointSize uint64
	CheckpointTime time.Time
}

// stats is what the appender goroutine publishes for Stats.
type stats struct {
	records, cpSize atomic.Uint64
	cpTime          atomic.Int64 // unix nanoseconds
}

// publish copies the appender's view of the log for Stats; it runs on the
// appender goroutine (or before it starts).
func (s *Store) publish() {
	s.stats.records.Store(s.size)
	s.stats.cpSize.Store(s.lastCP)
	s.stats.cpTime.Store(s.lastCPTime.UnixNano())
}

// Stats returns the log's size and checkpoint state. It is cheap and safe
// to call at any time, e.g. at each metrics scrape.
func (s *Store) Stats() Stats {
	st := Stats{
		Records:        s.stats.records.Load(),
		CheckpointSize: s.stats.cpSize.Load(),
		CheckpointTime: time.Unix(0, s.stats.cpTime.Load()),
	}
	if fi, err := os.Stat(s.path); err == nil {
		st.Bytes = fi.Size()
	}
	return st
}

// progressEvery is how many records pass between two progress reports.
const progressEvery = 4096

// progressFunc returns a func that reports done of the records in leaves
// to f every progressEvery records (or does nothing when f is nil).
func progressFunc(f func(done, total uint64), leaves *bbolt.Cursor) func(done uint64) {
	if f == nil {
		return func(uint64) {}
	}
	var total uint64
	if k, _ := leaves.Last(); len(k) == 8 {
		total = binary.BigEndian.Uint64(k) + 1
	}
	return func(done uint64) {
		if done%progressEvery == 0 {
			f(done, total)
		}
	}
}

// Records returns the number of records in the log.
func (r *Reader) Records() (uint64, error) {
	var n uint64
	err := r.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketLeaves)
		if b == nil {
			return errors.New("not a sessctl log (no leaves bucket)")
		}
		if k, _ := b.Cursor().Last(); len(k) == 8 {
			n = binary.BigEndian.Uint64(k) + 1
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store: records: %w", err)
	}
	return n, nil
}
