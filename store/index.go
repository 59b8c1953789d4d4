package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/bbolt"
)

// The index bucket holds one empty-valued key
//
//	field ‖ 0x00 ‖ value ‖ 0x00 ‖ BE64(start ns) ‖ BE64(seq)
//
// for each (field, value) a record is listed under (recordTerms), so that
// the records with a given value lie together, in list order. It is
// derived data (FORMAT.md §1.2): written in the append transaction,
// brought up to date by Open, never read by Verify.

// Indexed fields, the first part of an index key.
const (
	fieldRunner  = "runner"
	fieldRepo    = "repo"
	fieldRun     = "run"
	fieldSHA     = "sha"
	fieldActor   = "actor"
	fieldOutcome = "outcome"
	fieldHost    = "host"
	fieldKind    = "kind"
	fieldRule    = "rule"
)

// maxIndexValue is the longest value indexed as it is. A longer value is
// indexed as 0xff ‖ SHA-256(value): 0xff never occurs in UTF-8, and every
// string in a leaf is valid UTF-8.
const maxIndexValue = 128

// indexChunk is the number of records one transaction of the index
// migration covers, to bound its memory.
const indexChunk = 20000

// defaultIndexEvery is how many records' index keys the store holds back
// before it writes them (see Store.flushIndex); readers scan about that
// many records beyond meta/indexed.
const defaultIndexEvery = 1024

// maxTail is the most records beyond meta/indexed a reader scans to
// complete what the index gives; with more (a log appended to by a sessctl
// without indexes, not reopened since), it walks the time index instead.
const maxTail = 16384

// The claims behind the Repo, Run and Actor filters: the first one set
// (GitHub's name, then GitLab's).
var (
	repoClaims  = []string{"repository", "project_path"}
	runClaims   = []string{"run_id", "pipeline_id"}
	actorClaims = []string{"actor", "user_login"}
)

// term is one (field, value) a record is indexed under.
type term struct{ field, value string }

// unindexed are the values most records have: a filter on one of them
// alone selects most of the log, which the time index serves as well, so
// indexing them would only cost writes.
var unindexed = map[term]bool{
	{fieldKind, string(KindExchange)}:        true,
	{fieldOutcome, string(OutcomeForwarded)}: true,
}

// recordTerms lists the terms r is indexed under: one per non-empty
// filterable field (but the unindexed values), and one per distinct rule
// that fired.
func recordTerms(r *Record) []term {
	id := &r.Identity
	ts := make([]term, 0, 8+len(r.Rules))
	add := func(f, v string) {
		if v != "" && !unindexed[term{f, v}] {
			ts = append(ts, term{f, v})
		}
	}
	add(fieldRunner, id.Runner)
	add(fieldRepo, id.Claim(repoClaims...))
	add(fieldRun, id.Claim(runClaims...))
	add(fieldSHA, id.Claims["sha"])
	add(fieldActor, id.Claim(actorClaims...))
	add(fieldOutcome, string(r.Outcome))
	add(fieldHost, r.Host)
	add(fieldKind, string(r.Kind))
	for i, h := range r.Rules {
		if !slices.ContainsFunc(r.Rules[:i], func(x RuleHit) bool { return x.Name == h.Name }) {
			add(fieldRule, h.Name)
		}
	}
	return ts
}

// indexPrefix returns field ‖ 0x00 ‖ value ‖ 0x00, the common start of the
// keys of the records listed under (field, value).
func indexPrefix(field, value string) []byte {
	b := make([]byte, 0, len(field)+2+min(len(value), 1+sha256.Size)+16)
	b = append(b, field...)
	b = append(b, 0)
	if len(value) > maxIndexValue {
		sum := sha256.Sum256([]byte(value))
		b = append(b, 0xff)
		b = append(b, sum[:]...)
	} else {
		b = append(b, value...)
	}
	return append(b, 0)
}

// indexKey is the key listing record seq, started at t (timeBits), under
// (field, value).
func indexKey(field, value string, t, seq uint64) []byte {
	b := indexPrefix(field, value)
	b = binary.BigEndian.AppendUint64(b, t)
	return binary.BigEndian.AppendUint64(b, seq)
}

// putIndexKeys sorts keys and writes them to the index b (if the log has
// one). In key order, inserts into one bbolt node follow each other rather
// than shifting each other's entries, and each page is touched once.
func putIndexKeys(b *bbolt.Bucket, keys [][]byte) error {
	if b == nil {
		return nil
	}
	slices.SortFunc(keys, bytes.Compare)
	for _, k := range keys {
		if err := b.Put(k, nil); err != nil {
			return err
		}
	}
	return nil
}

// usableIndex returns the index bucket and meta/indexed (records below it
// are indexed) if the index can serve a query: it exists and at most
// maxTail records lie beyond it. Else it returns nil.
func usableIndex(tx *bbolt.Tx) (*bbolt.Bucket, uint64) {
	ix := tx.Bucket(bucketIndex)
	if ix == nil {
		return nil, 0
	}
	v := tx.Bucket(bucketMeta).Get(metaIndexed)
	size := uint64(0)
	if k, _ := tx.Bucket(bucketLeaves).Cursor().Last(); len(k) == 8 {
		size = binary.BigEndian.Uint64(k) + 1
	}
	if len(v) != 8 {
		return nil, 0
	}
	indexed := binary.BigEndian.Uint64(v)
	if indexed > size || size-indexed > maxTail {
		return nil, 0
	}
	return ix, indexed
}

// filterView is the part of a leaf the index and Filter.Match read.
type filterView struct {
	Kind      Kind      `json:"kind"`
	SessionID string    `json:"session_id"`
	Start     time.Time `json:"start"`
	Identity  Identity  `json:"identity"`
	Host      string    `json:"host"`
	Outcome   Outcome   `json:"outcome"`
	Rules     []RuleHit `json:"rules"`
}

// record returns the view as a Record (with only these fields).
func (v *filterView) record() *Record {
	return &Record{Kind: v.Kind, SessionID: v.SessionID, Start: v.Start, Identity: v.Identity, Host: v.Host, Outcome: v.Outcome, Rules: v.Rules}
}

// buildIndex brings the index up to date before the appender starts: it
// creates it for a log written before indexes existed, and indexes the
// records appended since meta/indexed (by a sessctl without indexes), in
// transactions of indexChunk records each (an interrupted build resumes).
// A record that cannot be read is skipped with a warning: the index only
// speeds up queries, Verify reports the damage.
func (s *Store) buildIndex() error {
	var from, size uint64
	reset := false
	if err := s.db.View(func(tx *bbolt.Tx) error {
		if k, _ := tx.Bucket(bucketLeaves).Cursor().Last(); len(k) == 8 {
			size = binary.BigEndian.Uint64(k) + 1
		}
		v := tx.Bucket(bucketMeta).Get(metaIndexed)
		switch {
		case tx.Bucket(bucketIndex) == nil:
			reset = true
		case len(v) == 8 && binary.BigEndian.Uint64(v) <= size:
			from = binary.BigEndian.Uint64(v)
		default:
			// Claims to cover records the log does not have.
			reset = true
		}
		return nil
	}); err != nil {
		return fmt.Errorf("store: index %s: %w", s.path, err)
	}
	if !reset && from == size {
		s.indexedTo = size
		return nil
	}
	start := time.Now()
	logf := s.log.Debug // the tail a stop left unindexed
	if reset || size-from > maxTail {
		logf = s.log.Info
	}
	logf("building the query indexes", "from", from, "records", size)
	if reset {
		err := s.db.Update(func(tx *bbolt.Tx) error {
			if tx.Bucket(bucketIndex) != nil {
				if err := tx.DeleteBucket(bucketIndex); err != nil {
					return err
				}
			}
			if _, err := tx.CreateBucket(bucketIndex); err != nil {
				return err
			}
			return tx.Bucket(bucketMeta).Put(metaIndexed, u64key(0))
		})
		if err != nil {
			return fmt.Errorf("store: index %s: %w", s.path, err)
		}
	}
	if s.opts.Progress != nil {
		s.opts.Progress("indexing", from, size)
	}
	for from < size {
		to := min(from+indexChunk, size)
		err := s.db.Update(func(tx *bbolt.Tx) error {
			leaves, ix := tx.Bucket(bucketLeaves), tx.Bucket(bucketIndex)
			ix.FillPercent = 0.9
			var keys [][]byte
			for seq := from; seq < to; seq++ {
				var v filterView
				leaf := leaves.Get(u64key(seq))
				body, err := leafBody(leaf)
				if err == nil {
					err = json.Unmarshal(body, &v)
				}
				if leaf == nil || err != nil {
					s.log.Warn("record not indexed: missing or unreadable; run sessctl verify", "seq", seq, "err", err)
					continue
				}
				t := timeBits(v.Start)
				for _, x := range recordTerms(v.record()) {
					keys = append(keys, indexKey(x.field, x.value, t, seq))
				}
			}
			if err := putIndexKeys(ix, keys); err != nil {
				return err
			}
			return tx.Bucket(bucketMeta).Put(metaIndexed, u64key(to))
		})
		if err != nil {
			return fmt.Errorf("store: index %s: %w", s.path, err)
		}
		s.log.Debug("indexed records", "to", to, "of", size)
		if s.opts.Progress != nil {
			s.opts.Progress("indexing", to, size)
		}
		from = to
	}
	s.indexedTo = size
	logf("built the query indexes", "records", size, "took", time.Since(start).Round(time.Millisecond))
	return nil
}
