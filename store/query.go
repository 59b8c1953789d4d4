package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"

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
		return nil
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

// Filter selects records for List. Zero fields match everything.
type Filter struct {
	Since, Until time.Time // on the record's Start; Until is exclusive
	Runner       string
	Outcome      string
	Host         string
	Kind         string
	Limit        int // 0: no limit
}

func (f *Filter) match(r *Record) bool {
	return (f.Runner == "" || r.Identity.Runner == f.Runner) &&
		(f.Outcome == "" || r.Outcome == f.Outcome) &&
		(f.Host == "" || r.Host == f.Host) &&
		(f.Kind == "" || r.Kind == f.Kind)
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
func (s *Store) Get(id string) (*Record, []byte, []byte, error) { return get(s.db, id) }

// List is [Reader.List] on the live log.
func (s *Store) List(f Filter, fn func(*Record) error) error { return list(s.db, f, fn) }

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
		leaves := tx.Bucket(bucketLeaves)
		c := tx.Bucket(bucketTimes).Cursor()
		var k []byte
		if f.Until.IsZero() {
			k, _ = c.Last()
		} else {
			// Position on the last key before Until.
			k, _ = c.Seek(timeKey(f.Until, 0))
			if k == nil {
				k, _ = c.Last()
			} else {
				k, _ = c.Prev()
			}
		}
		since := uint64(0)
		if !f.Since.IsZero() {
			since = timeBits(f.Since)
		}
		until := uint64(math.MaxUint64)
		if !f.Until.IsZero() {
			until = timeBits(f.Until)
		}
		n := 0
		for ; k != nil; k, _ = c.Prev() {
			if len(k) != 16 {
				continue
			}
			t := binary.BigEndian.Uint64(k[:8])
			if t < since {
				break
			}
			if t >= until {
				continue
			}
			seq := binary.BigEndian.Uint64(k[8:])
			leaf := leaves.Get(u64key(seq))
			if leaf == nil {
				continue
			}
			rec, err := DecodeLeaf(leaf)
			if err != nil {
				return fmt.Errorf("store: list: record %d: %w", seq, err)
			}
			if !f.match(rec) {
				continue
			}
			if err := fn(rec); err != nil {
				return err
			}
			if n++; f.Limit > 0 && n >= f.Limit {
				break
			}
		}
		return nil
	})
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
