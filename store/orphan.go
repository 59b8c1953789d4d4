package store

import (
	"fmt"

	"go.etcd.io/bbolt"
)

// maxOrphans bounds the failed records held in memory until the store can
// write again; beyond it, their pending entries still make aborted records
// at the next Open.
const maxOrphans = 10000

// maxOrphanReason bounds the error text an aborted record carries.
const maxOrphanReason = 512

// keepOrphans notes, after a failed commit, the records of the batch whose
// exchange was announced with Begin: they were (or may have been)
// forwarded, and must not stay out of the log until the next start.
// writeOrphans appends them as aborted records, with the error, as soon as
// the store can write again. It runs on the appender goroutine.
func (s *Store) keepOrphans(batch []*job, cause error) {
	// Notes of this batch failed with it: their exchanges go on being
	// forwarded (BeginQueued), so their records must be kept if they
	// fail too.
	inBatch := map[string]bool{}
	// Notes that wait in the journal are durable but not yet in the
	// pending bucket.
	for _, j := range s.unapplied {
		if j.pending != nil {
			inBatch[j.rec.SessionID] = true
		}
	}
	for _, j := range batch {
		if j.pending != nil {
			inBatch[j.rec.SessionID] = true
			if len(s.failedNotes) < maxOrphans {
				s.failedNotes[j.rec.SessionID] = true
			}
		}
	}
	var cands []*job
	for _, j := range batch {
		if j.rec != nil && j.pending == nil && j.fn == nil && j.rec.SessionID != "" && j.rec.Kind != KindApproval {
			cands = append(cands, j)
		}
	}
	if len(cands) == 0 {
		return
	}
	pending := make([]bool, len(cands))
	err := s.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketPending)
		for i, j := range cands {
			id := j.rec.SessionID
			pending[i] = inBatch[id] || s.failedNotes[id] || b.Get([]byte(id)) != nil
		}
		return nil
	})
	for i, j := range cands {
		// If the pending entries cannot be read, keep the record: an
		// aborted record too many is better than a forwarded request
		// missing.
		if err == nil && !pending[i] {
			continue
		}
		if len(s.orphans) >= maxOrphans {
			s.orphansDropped++
			continue
		}
		delete(s.failedNotes, j.rec.SessionID)
		a := *j.rec
		a.Kind = KindAborted
		a.Outcome = OutcomeAborted
		a.Request, a.Response, a.RequestBody, a.ResponseBody = nil, nil, nil, nil
		a.Reason = truncateString(fmt.Sprintf("forwarded, but its record could not be written: %v", cause), maxOrphanReason)
		extra := make(map[string]string, len(a.Extra)+1)
		for k, v := range a.Extra {
			extra[k] = v
		}
		if j.rec.Outcome != "" {
			extra["outcome_was"] = string(j.rec.Outcome)
		}
		a.Extra = extra
		s.orphans = append(s.orphans, &a)
	}
}

// recordedOK forgets the failed notes of the records a commit wrote.
func (s *Store) recordedOK(batch []*job) {
	if len(s.failedNotes) == 0 {
		return
	}
	for _, j := range batch {
		if j.rec != nil && j.pending == nil {
			delete(s.failedNotes, j.rec.SessionID)
		}
	}
}

// writeOrphans appends the kept records as aborted records. It runs on the
// appender goroutine before any other write.
func (s *Store) writeOrphans() error {
	if len(s.orphans) == 0 {
		return nil
	}
	batch := make([]*job, 0, len(s.orphans))
	for _, r := range s.orphans {
		j, err := newJob(r)
		if err != nil {
			s.log.Error("dropping an aborted record that cannot be encoded", "session_id", r.SessionID, "err", err)
			continue
		}
		batch = append(batch, j)
	}
	if err := s.commit(batch); err != nil {
		return err
	}
	s.log.Warn("records that could not be written are in the log as aborted", "count", len(batch), "dropped_over_limit", s.orphansDropped)
	s.orphans, s.orphansDropped = nil, 0
	return nil
}

func truncateString(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
