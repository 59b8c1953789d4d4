package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"time"

	"go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/tlog"
)

// maxBatch bounds the number of jobs committed in one transaction.
const maxBatch = 4096

// maxYields is how many times the appender yields the processor while
// collecting a batch before it commits what it has.
const maxYields = 3

// job is one unit of work for the appender goroutine.
type job struct {
	rec     *Record  // record to append (a copy of the caller's), or nil
	pre     []byte   // JSON of rec with seq 0 and prev "" (see leafFrom)
	req     []byte   // stored request body value (salt ‖ body), or nil
	resp    []byte   // stored response body value, or nil
	pending []byte   // Begin: pending entry for rec.SessionID
	charges []Charge // budget charges written with rec
	// chargesJSON is charges as the journal holds them.
	chargesJSON []byte
	// leaf is the record as stored, once it has its place in the chain
	// (see assign).
	leaf []byte
	// moot marks a note whose record is in the same batch.
	moot bool
	// fn runs alone in its own transaction before rec is appended.
	fn   func(tx *bbolt.Tx, st *chainState) error
	hash tlog.Hash
	err  error
	done chan struct{}
}

// chainState is the tip of the log during an append transaction, with the
// index keys of the records the transaction appends (see flushIndex).
type chainState struct {
	size    uint64
	head    tlog.Hash
	index   [][]byte
	flushed bool // the transaction writes the held-back index keys
}

// encodedPrefix is how the JSON of a record with Seq 0 and Prev "" starts.
const encodedPrefix = `{"seq":0,"prev":""`

// newJob validates r and prepares everything that can be done outside the
// appender: a copy of the record, sealed bodies with their commitments,
// and the JSON encoding. Only seq and prev are filled in later.
func newJob(r *Record) (*job, error) {
	if r == nil {
		return nil, errors.New("store: append: nil record")
	}
	if r.Kind == "" {
		return nil, errors.New("store: append: record has no kind")
	}
	if err := checkCharges(r.Charges); err != nil {
		return nil, err
	}
	rec := *r
	rec.Seq, rec.Prev, rec.Request, rec.Response = 0, "", nil, nil
	rec.RequestBody, rec.ResponseBody = nil, nil
	if rec.Start.IsZero() {
		rec.Start = time.Now()
	}
	if rec.End.IsZero() {
		rec.End = rec.Start
	}
	rec.Start, rec.End = rec.Start.UTC(), rec.End.UTC()
	j := &job{rec: &rec, charges: r.Charges, done: make(chan struct{})}
	rec.Charges = nil
	if len(r.Charges) > 0 {
		var err error
		if j.chargesJSON, err = json.Marshal(r.Charges); err != nil {
			return nil, fmt.Errorf("store: append: encode charges: %w", err)
		}
	}
	if rec.Recording != RecordingMetadata {
		var err error
		if len(r.RequestBody) > 0 {
			if j.req, rec.Request, err = sealBody(r.RequestBody); err != nil {
				return nil, err
			}
		}
		if len(r.ResponseBody) > 0 {
			if j.resp, rec.Response, err = sealBody(r.ResponseBody); err != nil {
				return nil, err
			}
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&rec); err != nil {
		return nil, fmt.Errorf("store: append: encode record: %w", err)
	}
	j.pre = bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if !bytes.HasPrefix(j.pre, []byte(encodedPrefix)) {
		return nil, errors.New("store: append: unexpected record encoding")
	}
	if len(LeafPrefix)+len(j.pre)+100 > maxLeafSize {
		return nil, fmt.Errorf("store: append: record of %d bytes exceeds the %d byte limit", len(j.pre), maxLeafSize)
	}
	return j, nil
}

// leafFrom splices seq and prev into the pre-encoded record. The result is
// byte for byte what EncodeLeaf returns for the record with Seq and Prev
// set, because they are the first two fields of the JSON object.
func leafFrom(pre []byte, seq uint64, prev string) []byte {
	leaf := make([]byte, 0, len(LeafPrefix)+len(pre)+96)
	leaf = append(leaf, LeafPrefix...)
	leaf = append(leaf, `{"seq":`...)
	leaf = strconv.AppendUint(leaf, seq, 10)
	leaf = append(leaf, `,"prev":"`...)
	leaf = append(leaf, prev...)
	leaf = append(leaf, '"')
	return append(leaf, pre[len(encodedPrefix):]...)
}

// Append adds r to the log and returns once the record is durable
// (fsynced, unless Options.NoSync). The store assigns Seq and Prev and
// replaces the bodies by commitments; on success these are also set in r.
// Concurrent appends are committed together (group commit). If ctx ends
// first, Append returns its error; the record may still be written.
func (s *Store) Append(ctx context.Context, r *Record) (Receipt, error) {
	j, err := newJob(r)
	if err != nil {
		return Receipt{}, err
	}
	if err := s.submit(ctx, j); err != nil {
		return Receipt{}, err
	}
	r.Seq, r.Prev, r.Request, r.Response = j.rec.Seq, j.rec.Prev, j.rec.Request, j.rec.Response
	return Receipt{Seq: j.rec.Seq, Hash: hex.EncodeToString(j.hash[:])}, nil
}

// Begin durably notes that the exchange r (which must have a SessionID)
// is in flight. If sessctl stops before a record with the same SessionID
// is appended, the next Open appends an aborted record for it. Bodies are
// not kept. Begin is BeginQueued followed by waiting for the note.
func (s *Store) Begin(ctx context.Context, r *Record) error {
	wait, err := s.BeginQueued(ctx, r)
	if err != nil {
		return err
	}
	return wait(ctx)
}

// BeginQueued is Begin without the wait: it hands the in-flight note to
// the next group commit and returns at once, so that the commit runs
// while the exchange is forwarded instead of before. The returned wait
// returns once the note is durable (or with the commit's error). A caller
// must wait before any byte of the answer reaches its client, so that
// every exchange the client saw an answer to leaves a trace.
//
// A commit holding only notes waits up to noteDelay for more work: when
// the exchange's record arrives within it, the note is dropped (the
// record says more) and the exchange costs one commit, not two; when
// someone waits for a note, it is committed at once. The price is a
// window of at most noteDelay plus one commit after forwarding in which
// a crash leaves no trace of the exchange (before BeginQueued it was one
// commit before forwarding).
func (s *Store) BeginQueued(ctx context.Context, r *Record) (wait func(context.Context) error, err error) {
	if r == nil || r.SessionID == "" {
		return nil, errors.New("store: begin: record has no session id")
	}
	p := *r
	p.RequestBody, p.ResponseBody, p.Request, p.Response = nil, nil, nil, nil
	if p.Start.IsZero() {
		p.Start = time.Now().UTC()
	}
	v, err := json.Marshal(&p)
	if err != nil {
		return nil, fmt.Errorf("store: begin: %w", err)
	}
	j := &job{rec: &p, pending: v, done: make(chan struct{})}
	if err := s.enqueue(ctx, j); err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		s.Hurry()
		return s.await(ctx, j)
	}, nil
}

// Hurry asks the appender to commit the in-flight notes it holds (see
// BeginQueued) now instead of waiting for their records: for an exchange
// whose answer will stream, so that the note is durable, or nearly, when
// the first answer byte arrives.
func (s *Store) Hurry() {
	select {
	case s.urgent <- struct{}{}:
	default: // a request to commit is already pending
	}
}

func (s *Store) submit(ctx context.Context, j *job) error {
	if err := s.enqueue(ctx, j); err != nil {
		return err
	}
	return s.await(ctx, j)
}

// enqueue hands j to the appender.
func (s *Store) enqueue(ctx context.Context, j *job) error {
	select {
	case <-s.quit:
		return ErrClosed
	default:
	}
	select {
	case s.jobs <- j:
		return nil
	case <-s.quit:
		return ErrClosed
	case <-ctx.Done():
		return fmt.Errorf("store: append: %w", ctx.Err())
	}
}

// await returns once j is committed (or failed).
func (s *Store) await(ctx context.Context, j *job) error {
	select {
	case <-j.done:
		return j.err
	case <-ctx.Done():
		return fmt.Errorf("store: append: %w", ctx.Err())
	}
}

// appender is the single writer goroutine.
func (s *Store) appender() {
	defer close(s.done)
	tick := s.opts.CheckpointInterval / 2
	tick = min(max(tick, 10*time.Millisecond), time.Second)
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	// applyTimer runs out applyDelay after the first record waits in
	// the journal.
	applyTimer := time.NewTimer(time.Hour)
	applyTimer.Stop()
	armed := false
	for {
		switch {
		case len(s.unapplied) == 0:
		case s.applyDue():
			s.applyPending()
		case !armed:
			applyTimer.Reset(s.opts.applyDelay)
			armed = true
		}
		select {
		case j := <-s.jobs:
			batch := []*job{j}
			var special *job
			if j.fn != nil {
				batch, special = nil, j
			}
			// Take every job already waiting. Appenders just released by
			// the previous commit are a few microseconds from sending
			// again: yield briefly so they join this batch instead of
			// waiting a whole fsync for the next.
			yields := 0
		collect:
			for special == nil && len(batch) < maxBatch {
				select {
				case j := <-s.jobs:
					if j.fn != nil {
						special = j
						break collect
					}
					batch = append(batch, j)
				default:
					if yields >= maxYields {
						break collect
					}
					yields++
					runtime.Gosched()
				}
			}
			if special == nil && onlyNotes(batch) {
				batch, special = s.holdNotes(batch)
			}
			if len(batch) > 0 {
				s.runBatch(batch)
			}
			if special != nil {
				s.runBatch([]*job{special})
			}
			if s.size-s.lastCP >= uint64(s.opts.CheckpointEvery) {
				s.tryCheckpoint()
			}
		case <-applyTimer.C:
			armed = false
			s.applyPending()
		case ch := <-s.flushes:
			ch <- s.applyPending()
		case <-ticker.C:
			if s.Healthy() != nil {
				s.probe()
			}
			if s.size > s.lastCP && time.Since(s.lastCPTime) >= s.opts.CheckpointInterval {
				s.tryCheckpoint()
			}
		case <-s.quit:
			s.shutdown()
			return
		}
	}
}

// noteDelay is how long a commit of in-flight notes alone waits for the
// records that would make them moot (see BeginQueued).
const noteDelay = 2 * time.Millisecond

func onlyNotes(batch []*job) bool {
	for _, j := range batch {
		if j.pending == nil {
			return false
		}
	}
	return len(batch) > 0
}

// holdNotes waits up to noteDelay for more jobs to join a batch of
// in-flight notes: it returns as soon as a record (or a special job, which
// is returned apart) arrives, someone waits for a note, the batch is full
// or the store closes.
func (s *Store) holdNotes(batch []*job) ([]*job, *job) {
	select {
	case <-s.urgent:
		return batch, nil
	default:
	}
	timer := time.NewTimer(noteDelay)
	defer timer.Stop()
	for len(batch) < maxBatch {
		select {
		case j := <-s.jobs:
			if j.fn != nil {
				return batch, j
			}
			batch = append(batch, j)
			if j.pending == nil {
				return batch, nil
			}
		case <-s.urgent:
			return batch, nil
		case <-timer.C:
			return batch, nil
		case <-s.quit:
			return batch, nil
		}
	}
	return batch, nil
}

func (s *Store) runBatch(batch []*job) {
	// Records that failed before go first: a forwarded exchange is in
	// the log as soon as the store can write.
	t0 := time.Now()
	err := s.writeOrphans()
	if err == nil {
		err = s.commit(batch)
	}
	if s.opts.OnCommit != nil {
		s.opts.OnCommit(len(batch), time.Since(t0), err)
	}
	if err != nil {
		s.keepOrphans(batch, err)
	} else {
		s.recordedOK(batch)
	}
	s.publish()
	health := err
	if health == nil {
		health = s.applyErr
	}
	s.setHealth(health)
	for _, j := range batch {
		if err != nil {
			j.err = err
		}
		close(j.done)
	}
}

// Bounds on what waits in the journal for the bbolt file: the appender
// applies it when any is reached (and when a reader, a checkpoint or a
// special job needs the bbolt file complete).
const (
	applyRecords = 512
	applyBytes   = 4 << 20
	applyDelay   = 100 * time.Millisecond
)

// commit makes batch durable. Small batches go to the journal (one
// write, one flush) and wait there to be applied to the bbolt file with
// others; a batch with a special job or too large for a journal frame is
// applied at once, after everything that waits, in one synced bbolt
// transaction. Without a journal (Options.NoSync) everything is applied
// at once.
func (s *Store) commit(batch []*job) error {
	for _, j := range batch {
		if j.fn != nil {
			return s.apply(batch, false)
		}
	}
	markMoot(batch)
	size := frameSize(batch)
	if s.jnl == nil || size > maxJournalFrame {
		return s.apply(batch, false)
	}
	if s.pendingBytes+size > applyBytes {
		if err := s.apply(nil, false); err != nil {
			return err
		}
	}
	st := chainState{size: s.size, head: s.head}
	for _, j := range batch {
		if j.pending == nil && j.rec != nil {
			assign(&st, j)
		}
	}
	s.frame = encodeBatch(s.frame, s.batchNo+1, batch)
	if err := s.jnl.append(s.frame); err != nil {
		return err
	}
	s.batchNo++
	s.size, s.head = st.size, st.head
	for _, j := range batch {
		if !j.moot {
			s.unapplied = append(s.unapplied, j)
		}
	}
	s.pendingBytes += len(s.frame)
	if cap(s.frame) > 4*maxJournalFrame {
		s.frame = nil
	}
	return nil
}

// markMoot marks the notes of batch whose record is in it too.
func markMoot(batch []*job) {
	recorded := recordedSessions(batch)
	for _, j := range batch {
		j.moot = j.pending != nil && recorded[j.rec.SessionID]
	}
}

// applyDue reports whether what waits in the journal should be applied
// now rather than at the timer.
func (s *Store) applyDue() bool {
	return len(s.unapplied) >= applyRecords || s.pendingBytes >= applyBytes
}

// applyPending applies what waits in the journal and records the
// outcome in the store's health.
func (s *Store) applyPending() error {
	if len(s.unapplied) == 0 {
		return s.applyErr
	}
	err := s.apply(nil, false)
	s.applyErr = err
	if err != nil {
		s.setHealth(err)
	}
	return err
}

// apply writes the jobs that wait in the journal, then extra, in one
// synced bbolt transaction; with flush it also writes every held-back
// index key. Records of extra get their place in the chain here.
func (s *Store) apply(extra []*job, flush bool) error {
	all := s.unapplied
	if len(extra) > 0 {
		all = append(all[:len(all):len(all)], extra...)
	}
	st := chainState{size: s.appliedSize, head: s.appliedHead}
	err := s.db.Update(func(tx *bbolt.Tx) error {
		st = chainState{size: s.appliedSize, head: s.appliedHead}
		packAppendOnly(tx)
		if err := s.applyJobs(tx, &st, all); err != nil {
			return err
		}
		if err := s.flushIndex(tx, &st, flush); err != nil {
			return err
		}
		if s.jnl != nil {
			if err := tx.Bucket(bucketMeta).Put(metaJournal, u64key(s.batchNo)); err != nil {
				return err
			}
		}
		return putHead(tx, st)
	})
	if err != nil {
		for _, j := range extra {
			j.leaf = nil
		}
		return fmt.Errorf("store: append to %s: %w", s.path, err)
	}
	s.appliedSize, s.appliedHead = st.size, st.head
	s.size, s.head = st.size, st.head
	s.indexed(st)
	clear(s.unapplied)
	s.unapplied, s.pendingBytes, s.applyErr = s.unapplied[:0], 0, nil
	if cap(s.unapplied) > 4*applyRecords {
		s.unapplied = nil
	}
	if s.jnl != nil {
		s.jnl.rewind()
	}
	s.dropMapped()
	return nil
}

// applyJobs writes jobs in tx, in order, after st: special jobs run,
// notes go to the pending bucket (unless their record is among jobs),
// records already placed in the chain (journaled) are checked to follow
// st, the others are placed here.
func (s *Store) applyJobs(tx *bbolt.Tx, st *chainState, jobs []*job) error {
	recorded := recordedSessions(jobs)
	for _, j := range jobs {
		if j.fn != nil {
			if err := j.fn(tx, st); err != nil {
				return err
			}
		}
		if j.pending != nil {
			if recorded[j.rec.SessionID] {
				continue // its record is in this commit: the note is moot
			}
			if err := tx.Bucket(bucketPending).Put([]byte(j.rec.SessionID), j.pending); err != nil {
				return err
			}
			continue
		}
		if j.rec == nil {
			continue
		}
		if j.leaf == nil {
			assign(st, j)
		} else if j.rec.Seq != st.size || j.rec.Prev != hex.EncodeToString(st.head[:]) {
			return fmt.Errorf("journaled record %d does not follow record %d", j.rec.Seq, st.size-1)
		}
		if err := s.applyTx(tx, st, j); err != nil {
			return err
		}
	}
	return nil
}

// recordedSessions is the set of session ids whose record (not note) is
// in batch; nil when the batch holds no note.
func recordedSessions(batch []*job) map[string]bool {
	var m map[string]bool
	notes := false
	for _, j := range batch {
		if j.pending != nil {
			notes = true
		}
	}
	if !notes {
		return nil
	}
	for _, j := range batch {
		if j.pending == nil && j.rec != nil && j.rec.SessionID != "" {
			if m == nil {
				m = make(map[string]bool)
			}
			m[j.rec.SessionID] = true
		}
	}
	return m
}

// flushIndex writes the index keys held back since the last flush and
// those of this transaction, in key order, once they cover
// Options.indexEvery records (or if force), and moves meta/indexed to the
// new size.
//
// Writing each record's keys as it is appended would dirty a page per
// distinct value in every commit (a run id, a commit hash, a repository
// each sit elsewhere in the index): measured, that cut group-commit
// throughput several times over. Held back, the keys of many records
// share pages. Readers scan the records after meta/indexed.
func (s *Store) flushIndex(tx *bbolt.Tx, st *chainState, force bool) error {
	if st.size == s.indexedTo || (!force && st.size-s.indexedTo < uint64(s.opts.indexEvery)) {
		return nil
	}
	keys := make([][]byte, 0, len(s.ixKeys)+len(st.index))
	keys = append(append(keys, s.ixKeys...), st.index...)
	if err := putIndexKeys(tx.Bucket(bucketIndex), keys); err != nil {
		return err
	}
	st.flushed = true
	return tx.Bucket(bucketMeta).Put(metaIndexed, u64key(st.size))
}

// indexed updates the held-back index keys after a committed transaction.
func (s *Store) indexed(st chainState) {
	if st.flushed {
		s.ixKeys, s.indexedTo = nil, st.size
		return
	}
	s.ixKeys = append(s.ixKeys, st.index...)
}

// assign gives the record of j its place in the chain after st: its
// sequence number, the hash of the record before it, its leaf and hash.
func assign(st *chainState, j *job) {
	seq := st.size
	prev := hex.EncodeToString(st.head[:])
	j.leaf = leafFrom(j.pre, seq, prev)
	j.hash = tlog.RecordHash(j.leaf)
	j.rec.Seq, j.rec.Prev = seq, prev
	st.size, st.head = seq+1, j.hash
}

// applyTx writes one placed record (leaf, tree hashes, bodies, indexes)
// in tx.
func (s *Store) applyTx(tx *bbolt.Tx, st *chainState, j *job) error {
	seq := j.rec.Seq
	if err := tx.Bucket(bucketLeaves).Put(u64key(seq), j.leaf); err != nil {
		return err
	}
	tree := tx.Bucket(bucketTree)
	hashes, err := tlog.StoredHashesForRecordHash(int64(seq), j.hash, bucketHashReader{tree})
	if err != nil {
		return fmt.Errorf("tree: %w", err)
	}
	idx := tlog.StoredHashIndex(0, int64(seq))
	for i, hh := range hashes {
		if err := tree.Put(u64key(uint64(idx+int64(i))), bytes.Clone(hh[:])); err != nil {
			return err
		}
	}
	bodies := tx.Bucket(bucketBodies)
	if j.req != nil {
		if err := bodies.Put(bodyKey(seq, bodyRequest), j.req); err != nil {
			return err
		}
	}
	if j.resp != nil {
		if err := bodies.Put(bodyKey(seq, bodyResponse), j.resp); err != nil {
			return err
		}
	}
	r := j.rec
	if r.SessionID != "" {
		if err := tx.Bucket(bucketSessions).Put(sessionKey(r.SessionID, seq), nil); err != nil {
			return err
		}
		if r.Kind != KindApproval {
			if err := tx.Bucket(bucketPending).Delete([]byte(r.SessionID)); err != nil {
				return err
			}
		}
	}
	if err := tx.Bucket(bucketTimes).Put(timeKey(r.Start, seq), nil); err != nil {
		return err
	}
	if err := putCharges(tx, j.charges); err != nil {
		return err
	}
	t := timeBits(r.Start)
	for _, x := range recordTerms(r) {
		st.index = append(st.index, indexKey(x.field, x.value, t, seq))
	}
	st.size, st.head = seq+1, j.hash
	return nil
}

// packAppendOnly fills the pages of the buckets that only grow at their
// end (sequence numbers, tree indexes, uuid v7 session ids, start times)
// almost fully when they split, instead of bbolt's default half: fewer
// pages to write per commit and a smaller file.
func packAppendOnly(tx *bbolt.Tx) {
	for _, name := range [][]byte{bucketLeaves, bucketTree, bucketBodies, bucketSessions, bucketTimes} {
		if b := tx.Bucket(name); b != nil {
			b.FillPercent = 0.9
		}
	}
	// The index grows at the end of each value's range.
	if b := tx.Bucket(bucketIndex); b != nil {
		b.FillPercent = 0.9
	}
}

func putHead(tx *bbolt.Tx, st chainState) error {
	v := make([]byte, 8+tlog.HashSize)
	binary.BigEndian.PutUint64(v, st.size)
	copy(v[8:], st.head[:])
	return tx.Bucket(bucketMeta).Put(metaHead, v)
}

// bucketHashReader reads stored tree hashes from the tree bucket.
type bucketHashReader struct{ b *bbolt.Bucket }

func (r bucketHashReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, idx := range indexes {
		v := r.b.Get(u64key(uint64(idx)))
		if len(v) != tlog.HashSize {
			return nil, fmt.Errorf("stored hash %d missing", idx)
		}
		copy(out[i][:], v)
	}
	return out, nil
}

// probe tries a small write to find out whether the disk works again.
func (s *Store) probe() {
	if len(s.unapplied) > 0 {
		if s.applyPending() == nil {
			s.setHealth(s.writeOrphans())
		}
		return
	}
	err := s.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(metaProbe, []byte(time.Now().UTC().Format(time.RFC3339Nano)))
	})
	if err != nil {
		err = fmt.Errorf("store: write to %s: %w", s.path, err)
	} else {
		err = s.writeOrphans()
	}
	s.setHealth(err)
}

func (s *Store) tryCheckpoint() {
	if err := s.checkpoint(); err != nil {
		s.setHealth(err)
	}
}

// checkpoint signs and stores a checkpoint for the current size, then
// copies it to the checkpoint file and hook.
func (s *Store) checkpoint() error {
	if err := s.applyPending(); err != nil {
		return err
	}
	c := Checkpoint{Origin: s.origin, Size: int64(s.size)}
	err := s.db.View(func(tx *bbolt.Tx) error {
		var err error
		c.Root, err = tlog.TreeHash(c.Size, bucketHashReader{tx.Bucket(bucketTree)})
		return err
	})
	if err != nil {
		return fmt.Errorf("store: checkpoint %s: %w", s.path, err)
	}
	msg, err := signCheckpoint(c, s.signer)
	if err != nil {
		return err
	}
	if err := s.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketCheckpoints).Put(u64key(s.size), msg)
	}); err != nil {
		return fmt.Errorf("store: checkpoint %s: %w", s.path, err)
	}
	s.lastCP, s.lastCPTime = s.size, time.Now()
	s.publish()
	if s.opts.CheckpointFile != "" {
		if err := appendFile(s.opts.CheckpointFile, msg); err != nil {
			s.log.Error("could not copy checkpoint", "file", s.opts.CheckpointFile, "err", err)
		}
	}
	if s.opts.OnCheckpoint != nil {
		s.opts.OnCheckpoint(bytes.Clone(msg))
	}
	return nil
}

func appendFile(name string, data []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// shutdown appends the shutdown record and the final checkpoint.
func (s *Store) shutdown() {
	now := time.Now().UTC()
	j, err := newJob(&Record{Kind: KindShutdown, Start: now, End: now})
	if err == nil {
		err = s.writeOrphans()
	}
	if err == nil {
		// Leave the log fully indexed for readers.
		err = s.apply([]*job{j}, true)
	}
	if err == nil && s.size > s.lastCP {
		err = s.checkpoint()
	}
	if err != nil {
		s.closeErr = fmt.Errorf("store: close %s: %w", s.path, err)
	}
}
