package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.etcd.io/bbolt"
)

// ErrNotFound is returned by Get when no record matches.
var ErrNotFound = errors.New("store: record not found")

// Reader reads a log without writing to it. It takes bbolt's shared file
// lock, so it cannot open a log a running Store holds.
type Reader struct {
	db   *bbolt.DB
	path string
}

// OpenReader opens the log at path read-only. It fails with a clear error
// if the file is missing, locked by a running sessctl, not a bbolt file,
// or a bbolt file that is not a sessctl log.
func OpenReader(path string) (*Reader, error) {
	db, err := bbolt.Open(path, 0o400, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return nil, openError(path, err)
	}
	err = db.View(func(tx *bbolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		if m == nil || tx.Bucket(bucketLeaves) == nil {
			return errors.New("not a sessctl log (no meta or leaves bucket)")
		}
		if f := string(m.Get(metaFormat)); f != dbFormat {
			return fmt.Errorf("not a sessctl log or an unsupported version (format %q, want %q)", f, dbFormat)
		}
		for _, b := range [][]byte{bucketTree, bucketBodies, bucketCheckpoints, bucketSessions, bucketTimes} {
			if tx.Bucket(b) == nil {
				return fmt.Errorf("damaged sessctl log: bucket %q is missing", b)
			}
		}
		return checkJournalApplied(path, m)
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	return &Reader{db: db, path: path}, nil
}

// SecretKey returns the log's key for HMACs of masked secrets, so that an
// investigator can ask whether a given secret passed through.
func (r *Reader) SecretKey() ([]byte, error) {
	var key []byte
	err := r.db.View(func(tx *bbolt.Tx) error {
		key = bytes.Clone(tx.Bucket(bucketMeta).Get(metaSecret))
		return nil
	})
	if err == nil && len(key) == 0 {
		err = fmt.Errorf("store: %s has no secret key", r.path)
	}
	return key, err
}

// Close releases the file.
func (r *Reader) Close() error {
	if err := r.db.Close(); err != nil {
		return fmt.Errorf("store: close %s: %w", r.path, err)
	}
	return nil
}

// Filter selects records for List. Zero fields match everything; a record
// must match every field that is set.
type Filter struct {
	Since, Until time.Time // on the record's Start; Until is exclusive
	// Runner is the runner name of a static runner token.
	Runner string
	// Repo, Run and Actor match the verified pipeline claims repository
	// (GitLab: project_path), run_id (pipeline_id) and actor (user_login):
	// of each pair, the first claim that is set.
	Repo, Run, Actor string
	// SHA matches the sha claim in full, or by an abbreviation of at least
	// 7 characters.
	SHA     string
	Outcome Outcome
	Host    string
	// Provider is the API the exchange spoke (openai, anthropic,
	// azure-openai).
	Provider string
	Kind     Kind
	// Rule is the name of a rule that fired on the record.
	Rule string
	// Session is a session id; every record sharing it matches.
	Session string
	Limit   int // 0: no limit
}

// Match reports whether r passes every field of f except the time bounds
// and the limit.
func (f *Filter) Match(r *Record) bool {
	id := &r.Identity
	if (f.Runner != "" && id.Runner != f.Runner) ||
		(f.Repo != "" && id.Claim(repoClaims...) != f.Repo) ||
		(f.Run != "" && id.Claim(runClaims...) != f.Run) ||
		(f.SHA != "" && !shaMatch(id.Claims["sha"], f.SHA)) ||
		(f.Actor != "" && id.Claim(actorClaims...) != f.Actor) ||
		(f.Outcome != "" && r.Outcome != f.Outcome) ||
		(f.Host != "" && r.Host != f.Host) ||
		(f.Provider != "" && r.Provider != f.Provider) ||
		(f.Kind != "" && r.Kind != f.Kind) ||
		(f.Session != "" && r.SessionID != f.Session) {
		return false
	}
	return f.Rule == "" || slices.ContainsFunc(r.Rules, func(h RuleHit) bool { return h.Name == f.Rule })
}

// needles returns byte strings that the leaf of every record f matches
// contains: the JSON encoding of each value f asks for (as EncodeLeaf
// writes it), without the closing quote for a SHA, which may be an
// abbreviation. Most other leaves lack one, and are skipped undecoded.
func (f *Filter) needles() [][]byte {
	var ns [][]byte
	for _, v := range []string{f.Runner, f.Repo, f.Run, f.Actor, string(f.Outcome), f.Host, f.Provider, string(f.Kind), f.Rule, f.Session} {
		if v != "" && utf8.ValidString(v) {
			ns = append(ns, jsonString(v))
		}
	}
	if f.SHA != "" && utf8.ValidString(f.SHA) {
		// A prefix of a valid string encodes to a prefix of its encoding.
		s := jsonString(f.SHA)
		ns = append(ns, s[:len(s)-1])
	}
	return ns
}

// jsonString is s as EncodeLeaf encodes it, quotes included.
func jsonString(s string) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(s) // a string always encodes
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

func containsAll(b []byte, needles [][]byte) bool {
	for _, n := range needles {
		if !bytes.Contains(b, n) {
			return false
		}
	}
	return true
}

// minSHAAbbrev is the shortest abbreviation of a commit hash a SHA filter
// accepts as a prefix.
const minSHAAbbrev = 7

// shaMatch accepts the full commit hash or an abbreviation of at least
// minSHAAbbrev characters.
func shaMatch(sha, want string) bool {
	if sha == "" {
		return false
	}
	if len(want) >= minSHAAbbrev && len(want) < len(sha) {
		return strings.HasPrefix(sha, want)
	}
	return sha == want
}

// Get returns the record named by id (a session id, or a sequence number
// in decimal) with its request and response bodies (nil if none or
// pruned). A session id shared by several records (an approval and its
// exchange) names the latest.
func (r *Reader) Get(id string) (*Record, []byte, []byte, error) { return get(r.db, id) }

// List calls fn for each record matching f, newest first (by start time,
// then sequence number). Records passed to fn have no bodies. An error
// from fn stops the walk and is returned.
func (r *Reader) List(f Filter, fn func(*Record) error) error { return list(r.db, f, fn) }

// Get is [Reader.Get] on the live log.
func (s *Store) Get(id string) (*Record, []byte, []byte, error) {
	if err := s.flush(); err != nil {
		return nil, nil, nil, err
	}
	return get(s.db, id)
}

// List is [Reader.List] on the live log.
func (s *Store) List(f Filter, fn func(*Record) error) error {
	if err := s.flush(); err != nil {
		return err
	}
	return list(s.db, f, fn)
}

func get(db *bbolt.DB, id string) (rec *Record, req, resp []byte, err error) {
	err = db.View(func(tx *bbolt.Tx) error {
		seq, ok := uint64(0), false
		if n, perr := strconv.ParseUint(id, 10, 64); perr == nil {
			seq, ok = n, true
		} else if id != "" {
			prefix := append([]byte(id), 0)
			c := tx.Bucket(bucketSessions).Cursor()
			for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
				if len(k) == len(prefix)+8 {
					seq, ok = binary.BigEndian.Uint64(k[len(prefix):]), true
				}
			}
		}
		if !ok {
			return ErrNotFound
		}
		leaf := tx.Bucket(bucketLeaves).Get(u64key(seq))
		if leaf == nil {
			return ErrNotFound
		}
		var err error
		if rec, err = DecodeLeaf(leaf); err != nil {
			return fmt.Errorf("record %d: %w", seq, err)
		}
		b := tx.Bucket(bucketBodies)
		req = unseal(b.Get(bodyKey(seq, bodyRequest)))
		resp = unseal(b.Get(bodyKey(seq, bodyResponse)))
		rec.RequestBody, rec.ResponseBody = req, resp
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		return nil, nil, nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("store: get %q: %w", id, err)
	}
	return rec, req, resp, nil
}

// unseal returns a copy of the body in a stored value (salt ‖ body).
func unseal(v []byte) []byte {
	if len(v) < saltSize {
		return nil
	}
	return bytes.Clone(v[saltSize:])
}

func list(db *bbolt.DB, f Filter, fn func(*Record) error) error {
	return db.View(func(tx *bbolt.Tx) error {
		upper := pos{math.MaxUint64, math.MaxUint64}
		if !f.Until.IsZero() {
			u := timeBits(f.Until)
			if u == 0 {
				return nil
			}
			upper = pos{u - 1, math.MaxUint64}
		}
		since := uint64(0)
		if !f.Since.IsZero() {
			since = timeBits(f.Since)
		}
		lists, covered := queryLists(tx, &f)
		if len(lists) == 0 {
			lists = append(lists, newCursorPostings(tx.Bucket(bucketTimes), nil))
		}
		// The records the index does not hold yet, newest last.
		tail, err := scanTail(tx, &f, covered, upper, since)
		if err != nil {
			return err
		}
		leaves := tx.Bucket(bucketLeaves)
		needles := f.needles()
		n, done := 0, false
		emit := func(rec *Record) error {
			if err := fn(rec); err != nil {
				return err
			}
			n++
			done = f.Limit > 0 && n >= f.Limit
			return nil
		}
		err = intersect(lists, upper, since, func(p pos) (bool, error) {
			// Tail records that come first in list order.
			for ; len(tail) > 0 && p.less(tail[len(tail)-1].pos); tail = tail[:len(tail)-1] {
				if err := emit(tail[len(tail)-1].rec); err != nil || done {
					return false, err
				}
			}
			leaf := leaves.Get(u64key(p.seq))
			if leaf == nil || !containsAll(leaf, needles) {
				return true, nil
			}
			rec, err := DecodeLeaf(leaf)
			if err != nil {
				return false, fmt.Errorf("store: list: record %d: %w", p.seq, err)
			}
			if !f.Match(rec) {
				return true, nil
			}
			err = emit(rec)
			return !done, err
		})
		for ; err == nil && !done && len(tail) > 0; tail = tail[:len(tail)-1] {
			err = emit(tail[len(tail)-1].rec)
		}
		return err
	})
}

// tailRecord is a record that matched in scanTail.
type tailRecord struct {
	pos pos
	rec *Record
}

// scanTail returns the records from sequence number from to the end of
// the log that match f and lie in [since, upper], sorted in list order
// (newest last).
func scanTail(tx *bbolt.Tx, f *Filter, from uint64, upper pos, since uint64) ([]tailRecord, error) {
	if from == math.MaxUint64 {
		return nil, nil
	}
	var tail []tailRecord
	needles := f.needles()
	c := tx.Bucket(bucketLeaves).Cursor()
	for k, leaf := c.Seek(u64key(from)); k != nil; k, leaf = c.Next() {
		if len(k) != 8 || !containsAll(leaf, needles) {
			continue
		}
		seq := binary.BigEndian.Uint64(k)
		// Decode what the filter reads, and the whole record only if it
		// matches.
		var v filterView
		body, err := leafBody(leaf)
		if err == nil {
			err = json.Unmarshal(body, &v)
		}
		if err != nil {
			return nil, fmt.Errorf("store: list: record %d: %w", seq, err)
		}
		p := pos{timeBits(v.Start), seq}
		if p.t < since || upper.less(p) || !f.Match(v.record()) {
			continue
		}
		rec, err := DecodeLeaf(leaf)
		if err != nil {
			return nil, fmt.Errorf("store: list: record %d: %w", seq, err)
		}
		tail = append(tail, tailRecord{p, rec})
	}
	slices.SortFunc(tail, func(a, b tailRecord) int { return comparePos(a.pos, b.pos) })
	return tail, nil
}

// Session returns every record of the session id (an exchange and the
// approval decisions on it, say) in log order, without bodies. It returns
// ErrNotFound if there is none.
func (r *Reader) Session(id string) ([]*Record, error) { return session(r.db, id) }

// Session is [Reader.Session] on the live log.
func (s *Store) Session(id string) ([]*Record, error) {
	if err := s.flush(); err != nil {
		return nil, err
	}
	return session(s.db, id)
}

func session(db *bbolt.DB, id string) ([]*Record, error) {
	var recs []*Record
	err := db.View(func(tx *bbolt.Tx) error {
		if id == "" {
			return nil
		}
		prefix := append([]byte(id), 0)
		leaves := tx.Bucket(bucketLeaves)
		c := tx.Bucket(bucketSessions).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if len(k) != len(prefix)+8 {
				continue
			}
			seq := binary.BigEndian.Uint64(k[len(prefix):])
			leaf := leaves.Get(u64key(seq))
			if leaf == nil {
				continue
			}
			rec, err := DecodeLeaf(leaf)
			if err != nil {
				return fmt.Errorf("record %d: %w", seq, err)
			}
			recs = append(recs, rec)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: session %q: %w", id, err)
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("%w: session %q", ErrNotFound, id)
	}
	return recs, nil
}

// LatestCheckpoint returns the newest signed checkpoint stored in the log.
func (r *Reader) LatestCheckpoint() ([]byte, error) { return latestCheckpoint(r.db) }

// LatestCheckpoint is [Reader.LatestCheckpoint] on the live log.
func (s *Store) LatestCheckpoint() ([]byte, error) { return latestCheckpoint(s.db) }

func latestCheckpoint(db *bbolt.DB) ([]byte, error) {
	var msg []byte
	err := db.View(func(tx *bbolt.Tx) error {
		_, v := tx.Bucket(bucketCheckpoints).Cursor().Last()
		msg = bytes.Clone(v)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: checkpoint: %w", err)
	}
	if msg == nil {
		return nil, errors.New("store: checkpoint: the log has no checkpoint")
	}
	return msg, nil
}

// WriteSnapshot writes a consistent copy of the whole database file to w
// (bbolt Tx.WriteTo), for verifying a running log elsewhere.
func (s *Store) WriteSnapshot(w io.Writer) (int64, error) {
	if err := s.flush(); err != nil {
		return 0, err
	}
	var n int64
	err := s.db.View(func(tx *bbolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("store: snapshot %s: %w", s.path, err)
	}
	return n, nil
}
