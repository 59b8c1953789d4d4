package store

import (
	"os"
	"sync/atomic"
	"time"
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
